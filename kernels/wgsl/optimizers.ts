// Optimizer updates, one thread per parameter, in place.
import { elementwiseEntry } from './common.js'

/** v = momentum*v + g; p -= lr * (v + weightDecay*p) */
export const sgdMomentumSource = /* wgsl */ `
struct Params { count: u32, learningRate: f32, momentum: f32, weightDecay: f32 }
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> param: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> velocity: array<f32>;
${elementwiseEntry(`  if (index >= params.count) { return; }
  let v = params.momentum * velocity[index] + grad[index];
  velocity[index] = v;
  let p = param[index];
  param[index] = p - params.learningRate * (v + params.weightDecay * p);`)}`

/**
 * AdamW with bias correction; the host passes 1/(1-beta^t) as biasCorrection1/2. The gradient is
 * multiplied by gradientScale (global-norm clipping) before the moments.
 */
export const adamWSource = /* wgsl */ `
struct Params {
  count: u32,
  learningRate: f32,
  beta1: f32,
  beta2: f32,
  epsilon: f32,
  weightDecay: f32,
  gradientScale: f32,
  biasCorrection1: f32,
  biasCorrection2: f32,
}
@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> param: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> m: array<f32>;
@group(0) @binding(4) var<storage, read_write> v: array<f32>;
${elementwiseEntry(`  if (index >= params.count) { return; }
  let g = grad[index] * params.gradientScale;
  let mNew = params.beta1 * m[index] + (1.0 - params.beta1) * g;
  let vNew = params.beta2 * v[index] + (1.0 - params.beta2) * g * g;
  m[index] = mNew;
  v[index] = vNew;
  let mHat = mNew * params.biasCorrection1;
  let vHat = vNew * params.biasCorrection2;
  let p = param[index];
  param[index] = p
    - params.learningRate * (mHat / (sqrt(vHat) + params.epsilon) + params.weightDecay * p);`)}`
