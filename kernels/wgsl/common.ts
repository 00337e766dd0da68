// WGSL shared by the kernel families. The kernels are TypeScript string modules (not .wgsl files)
// because several are generated: workgroup sizes, transposed operands and tail handling are
// spliced in, and the WGSL stays next to the one function that builds it.

/** threads per workgroup of every 1-D (elementwise) kernel */
export const ELEMENTWISE_WORKGROUP_SIZE = 256

/**
 * The linear thread index of a 1-D kernel dispatched with runtime.dispatch1d, which folds large
 * dispatches into (x, y) to respect maxComputeWorkgroupsPerDimension.
 */
export function linearIndexFunction(workgroupSize: number): string {
  return /* wgsl */ `
fn linearIndex(workgroupId: vec3<u32>, localIndex: u32, workgroupCount: vec3<u32>) -> u32 {
  return (workgroupId.y * workgroupCount.x + workgroupId.x) * ${workgroupSize}u + localIndex;
}
`
}

/** the entry point signature of a 1-D kernel: `let i = linearIndex(...)` is available as `index` */
export function elementwiseEntry(body: string, workgroupSize = ELEMENTWISE_WORKGROUP_SIZE): string {
  return /* wgsl */ `${linearIndexFunction(workgroupSize)}
@compute @workgroup_size(${workgroupSize})
fn main(
  @builtin(workgroup_id) workgroupId: vec3<u32>,
  @builtin(local_invocation_index) localIndex: u32,
  @builtin(num_workgroups) workgroupCount: vec3<u32>,
) {
  let index = linearIndex(workgroupId, localIndex, workgroupCount);
${body}
}
`
}

/** a quiet NaN, for rows whose label is invalid (WGSL has no NaN literal) */
export const NAN_FUNCTION = /* wgsl */ `
fn quietNan() -> f32 {
  return bitcast<f32>(0x7fc00000u);
}
`
