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

/**
 * The bits of a quiet NaN, passed in a uniform field: WGSL has no NaN literal and refuses a
 * constant expression that evaluates to NaN, so the NaN must come from a runtime value.
 */
export const QUIET_NAN_BITS = 0x7fc00000
