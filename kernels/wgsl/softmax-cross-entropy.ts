// Fused softmax + cross-entropy, one thread per row of logits [M,C]: max, sum of exponentials,
// loss = log(sum) - (logit[label] - max), grad = (softmax - onehot) / M. Invalid labels give NaN.
import { elementwiseEntry } from './common.js'

/** rows per workgroup: rows are independent and long rows dominate, so keep workgroups small */
export const SOFTMAX_WORKGROUP_SIZE = 64

export const softmaxCrossEntropySource = /* wgsl */ `
// nanBits: common.ts QUIET_NAN_BITS
struct Params { rows: u32, classes: u32, inverseRows: f32, nanBits: u32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<f32>;
@group(0) @binding(3) var<storage, read_write> loss: array<f32>;
@group(0) @binding(4) var<storage, read_write> gradLogits: array<f32>;
${elementwiseEntry(
  `  if (index >= params.rows) { return; }
  let row = index;
  let base = row * params.classes;
  let label = labels[row];
  let valid = label >= 0.0 && label < f32(params.classes) && floor(label) == label;
  if (!valid) {
    loss[row] = bitcast<f32>(params.nanBits);
    for (var j = 0u; j < params.classes; j++) { gradLogits[base + j] = bitcast<f32>(params.nanBits); }
    return;
  }
  let labelIndex = u32(label);
  var maximum = logits[base];
  for (var j = 1u; j < params.classes; j++) { maximum = max(maximum, logits[base + j]); }
  var sumExp = 0.0;
  for (var j = 0u; j < params.classes; j++) { sumExp += exp(logits[base + j] - maximum); }
  // relative to the maximum first: log(sumExp) + maximum would round log(sumExp) away for huge logits
  loss[row] = log(sumExp) - (logits[base + labelIndex] - maximum);
  let inverseSum = 1.0 / sumExp;
  for (var j = 0u; j < params.classes; j++) {
    let probability = exp(logits[base + j] - maximum) * inverseSum;
    gradLogits[base + j] = (probability - select(0.0, 1.0, j == labelIndex)) * params.inverseRows;
  }`,
  SOFTMAX_WORKGROUP_SIZE,
)}`
