// Packs a kernel's uniform Params struct: each field is a u32 or an f32, 4 bytes, in order.
export type ParamField = { u32: number } | { f32: number }

export function packParams(fields: readonly ParamField[]): ArrayBuffer {
  const buffer = new ArrayBuffer(Math.max(16, Math.ceil((fields.length * 4) / 16) * 16))
  const view = new DataView(buffer)
  fields.forEach((field, index) => {
    if ('u32' in field) {
      if (!Number.isInteger(field.u32) || field.u32 < 0 || field.u32 > 0xffffffff) {
        throw new RangeError(`uniform field ${index} is not a u32: ${field.u32}`)
      }
      view.setUint32(index * 4, field.u32, true)
    } else {
      view.setFloat32(index * 4, field.f32, true)
    }
  })
  return buffer
}

export const u32 = (value: number): ParamField => ({ u32: value })
export const f32 = (value: number): ParamField => ({ f32: value })
