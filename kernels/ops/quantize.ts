// Typed wrappers for int8 quantization (scales pass + pack pass) and dequantization.
import type { QuantizedInt8 } from '../backend.js'
import { dispatch1d, type GpuRuntime } from '../runtime.js'
import { ELEMENTWISE_WORKGROUP_SIZE } from '../wgsl/common.js'
import { blockScalesSource, dequantizeSource, quantizePackSource } from '../wgsl/quantize.js'
import { packParams, u32 } from './params.js'

export async function runQuantizeInt8(
  runtime: GpuRuntime,
  x: GPUBuffer,
  length: number,
  blockSize: number,
): Promise<QuantizedInt8> {
  const blocks = Math.ceil(length / blockSize)
  const words = Math.ceil(length / 4)
  if (length === 0) return { values: new Int8Array(0), scales: new Float32Array(0), blockSize, length }
  const maxGroups = runtime.description.maxComputeWorkgroupsPerDimension
  const scales = runtime.storageBuffer(blocks * 4)
  const packed = runtime.storageBuffer(words * 4)
  try {
    runtime.run([
      {
        pipeline: runtime.pipeline(blockScalesSource),
        uniform: packParams([u32(length), u32(blockSize), u32(blocks)]),
        buffers: [x, scales],
        workgroups: dispatch1d(blocks, ELEMENTWISE_WORKGROUP_SIZE, maxGroups),
      },
      {
        pipeline: runtime.pipeline(quantizePackSource),
        uniform: packParams([u32(length), u32(blockSize), u32(words)]),
        buffers: [x, scales, packed],
        workgroups: dispatch1d(words, ELEMENTWISE_WORKGROUP_SIZE, maxGroups),
      },
    ])
    const [scaleBytes, valueBytes] = await Promise.all([
      runtime.read(scales, blocks * 4),
      runtime.read(packed, words * 4),
    ])
    return {
      values: new Int8Array(valueBytes, 0, length),
      scales: new Float32Array(scaleBytes),
      blockSize,
      length,
    }
  } finally {
    runtime.releaseStorageBuffer(scales)
    runtime.releaseStorageBuffer(packed)
  }
}

/** writes the dequantized values into `y` (at least quantized.length floats) */
export function runDequantizeInt8(runtime: GpuRuntime, quantized: QuantizedInt8, y: GPUBuffer): void {
  const { values, scales, blockSize, length } = quantized
  if (length === 0) return
  const packed = runtime.storageBuffer(Math.ceil(length / 4) * 4)
  const scaleBuffer = runtime.storageBuffer(scales.byteLength)
  runtime.write(packed, new Uint8Array(values.buffer, values.byteOffset, length))
  runtime.write(scaleBuffer, scales)
  runtime.run([
    {
      pipeline: runtime.pipeline(dequantizeSource),
      uniform: packParams([u32(length), u32(blockSize)]),
      buffers: [packed, scaleBuffer, y],
      workgroups: dispatch1d(
        length,
        ELEMENTWISE_WORKGROUP_SIZE,
        runtime.description.maxComputeWorkgroupsPerDimension,
      ),
    },
  ])
  runtime.releaseStorageBuffer(packed)
  runtime.releaseStorageBuffer(scaleBuffer)
}
