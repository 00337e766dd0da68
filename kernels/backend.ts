// The contract every compute backend implements (WebGPU through Dawn, and the CPU backend built
// from the reference ops). Models, the executor and the benchmarks use only this interface, so the
// same tests run against both backends.
//
// Conventions:
// - Tensors are row-major float32 and live on the backend (device memory for webgpu).
// - Ops allocate and return a new tensor unless their name says "InPlace"; the caller disposes
//   tensors it no longer needs (the webgpu backend returns their buffers to a pool).
// - Ops are enqueued; `read` waits for everything before it. Reads are the only async calls.
// - Shapes are checked at the call and a mismatch throws ShapeError (a programmer error).
// - An in-place op refuses a tensor passed as two of its operands (AliasedTensorError): on webgpu the
//   same buffer bound as read and read_write invalidates the whole pending command buffer, which
//   Dawn then drops without an error the caller sees. Inputs of ops that allocate their output may
//   repeat (add(a, a)).

export type BackendKind = 'webgpu' | 'cpu'

export interface BackendInfo {
  kind: BackendKind
  /**
   * adapter description, e.g. "llvmpipe (LLVM 19.1.7, 256 bits)", or for cpu its engine:
   * "cpu (OpenBLAS 0.3.21 (openmp) + C kernels, 2 threads)"
   */
  adapterName: string
  vendor: string
  architecture: string
  /** true for software adapters such as lavapipe */
  isFallbackAdapter: boolean
  /** largest single storage buffer the device accepts, in bytes */
  maxBufferBytes: number
  /** set when webgpu was asked for and cpu was used instead: why */
  fallbackReason?: string
  /** the cpu backend's engine (kernels/cpu/engine.ts); absent on webgpu */
  cpuEngine?: 'native' | 'wasm' | 'reference'
}

export interface Tensor {
  readonly shape: readonly number[]
  /** number of elements */
  readonly size: number
  dispose(): void
}

export interface SgdMomentumOptions {
  learningRate: number
  /** @default 0.9 */
  momentum?: number
  /** decoupled weight decay; @default 0 */
  weightDecay?: number
}

export interface AdamWOptions {
  learningRate: number
  /** @default 0.9 */
  beta1?: number
  /** @default 0.999 */
  beta2?: number
  /** @default 1e-8 */
  epsilon?: number
  /** decoupled weight decay (AdamW); 0 gives Adam. @default 0 */
  weightDecay?: number
  /** 1-based step count, for bias correction */
  step: number
  /**
   * factor the gradient is multiplied by before the moments (global gradient-norm clipping:
   * min(1, maxNorm / norm)); @default 1
   */
  gradientScale?: number
}

/** int8 values with one float32 scale per block of `blockSize` consecutive elements */
export interface QuantizedInt8 {
  values: Int8Array
  scales: Float32Array
  blockSize: number
  length: number
}

export interface MatmulOptions {
  /** use A^T: a is stored [K, M] */
  transposeA?: boolean
  /** use B^T: b is stored [N, K] */
  transposeB?: boolean
}

/** Dimensions of causal multi-head attention over packed rows of [q | k | v]. */
export interface AttentionDims {
  /** sequences in the batch (B) */
  batch: number
  /** tokens per sequence (T) */
  sequence: number
  /** heads (H); the model width D is a multiple of it, head width D / H */
  heads: number
}

/** Dimensions of attention of new queries against a key/value cache (generation). */
export interface CachedAttentionDims {
  heads: number
  /**
   * absolute position of the first query: query i sits at offset + i and attends to the keys at
   * positions 0 ..= offset + i (the cache holds at least offset + queries rows)
   */
  offset: number
}

export interface Backend {
  readonly kind: BackendKind
  readonly info: BackendInfo

  /** copy host data to a new tensor of `shape` (product of shape must equal data.length) */
  upload(data: Float32Array, shape: readonly number[]): Tensor
  zeros(shape: readonly number[]): Tensor
  /** overwrite a tensor's contents from the host */
  write(tensor: Tensor, data: Float32Array): void
  /** copy a tensor's contents back to the host, after all previously enqueued work */
  read(tensor: Tensor): Promise<Float32Array>

  /** C[M,N] = op(A) op(B) with op(A) [M,K] and op(B) [K,N] */
  matmul(a: Tensor, b: Tensor, options?: MatmulOptions): Tensor
  /** y[M,N] = x[M,N] + bias[N] broadcast over rows (x may have any rank whose last dimension is N) */
  biasAdd(x: Tensor, bias: Tensor): Tensor
  /** y = x > 0 ? x : 0 (NaN gives 0) */
  relu(x: Tensor): Tensor
  /** dx = dy where x > 0, else 0 */
  reluBackward(gradOutput: Tensor, input: Tensor): Tensor
  /**
   * Fused softmax + cross-entropy over rows of logits [M,C] with integer class labels [M]
   * (stored as float32). Returns the per-row loss [M] and dLoss/dLogits [M,C] of the MEAN loss
   * over rows, i.e. (softmax - onehot) / M. A row whose label is not an integer in [0, C) gets NaN
   * loss and NaN gradients (the device cannot throw; callers reject NaN downstream).
   */
  softmaxCrossEntropy(logits: Tensor, labels: Tensor): { loss: Tensor; gradLogits: Tensor }
  /** y[N] = sum over rows of x[M,N] (bias gradients) */
  sumRows(x: Tensor): Tensor
  /** y[N] = mean over rows of x[M,N] (NaN when M = 0) */
  meanRows(x: Tensor): Tensor
  /** y[1] = sum of all elements */
  sum(x: Tensor): Tensor
  /** y[1] = mean of all elements (NaN for an empty tensor) */
  mean(x: Tensor): Tensor
  /** y += alpha * x, in place */
  axpyInPlace(alpha: number, x: Tensor, y: Tensor): void
  /** y = alpha * x */
  scale(x: Tensor, alpha: number): Tensor
  /** SGD with momentum: v = momentum*v + g; p -= lr * (v + weightDecay*p) */
  sgdMomentumInPlace(param: Tensor, grad: Tensor, velocity: Tensor, options: SgdMomentumOptions): void
  /** AdamW with bias correction; updates param, m and v in place */
  adamWInPlace(param: Tensor, grad: Tensor, m: Tensor, v: Tensor, options: AdamWOptions): void
  /**
   * symmetric int8 quantization with a per-block scale fl32(max|x| / 127), correctly rounded;
   * q = the integer nearest the exact quotient x / scale, an exact half away from zero, clamped to
   * [-127, 127]. A block whose max|x| is below 2^-100 (INT8_BLOCK_MAX_MIN: all zeros included) has
   * scale 0 and values 0. Every backend returns the same bits (reference/quantize.ts). Non-finite
   * input is not supported (reject NaN/Inf first): backends may disagree on it.
   */
  quantizeInt8(x: Tensor, blockSize: number): Promise<QuantizedInt8>
  /**
   * x[i] = q[i] * scale[floor(i / blockSize)], as a tensor of shape [length]. Refuses (RangeError)
   * a scale no quantizer makes: non-finite, or nonzero with magnitude below INT8_SCALE_MIN (a
   * subnormal scale would be flushed to zero on some devices).
   */
  dequantizeInt8(quantized: QuantizedInt8): Tensor

  // --- transformer ops (the GPT model kind) -----------------------------------------------------

  /** y = a + b elementwise (same shape) */
  add(a: Tensor, b: Tensor): Tensor
  /**
   * out[n, :] = table[ids[n], :] for table [V, D] and ids [N] (integers stored as float32); an id
   * that is not an integer in [0, V) gives a row of NaN. out [N, D]
   */
  embedding(table: Tensor, ids: Tensor): Tensor
  /**
   * The gradient of `embedding` with respect to its table: dTable [rows, D] where row v is the sum
   * of gradOutput[n, :] over every n with ids[n] = v, added in ascending n (deterministic: no
   * atomics); ids outside [0, rows) contribute nothing.
   */
  embeddingBackward(gradOutput: Tensor, ids: Tensor, rows: number): Tensor
  /**
   * LayerNorm over the last dimension of x [M, D]: y = (x - mean) * rstd * gamma + beta with
   * rstd = 1 / sqrt(var + epsilon) (biased variance). Returns y [M, D] and the row statistics
   * mean [M] and rstd [M] the backward needs.
   */
  layerNorm(
    x: Tensor,
    gamma: Tensor,
    beta: Tensor,
    epsilon: number,
  ): { y: Tensor; mean: Tensor; rstd: Tensor }
  /** gradients of layerNorm: dx [M, D], dGamma [D], dBeta [D] (row sums in ascending row order) */
  layerNormBackward(
    gradOutput: Tensor,
    x: Tensor,
    gamma: Tensor,
    mean: Tensor,
    rstd: Tensor,
  ): { gradInput: Tensor; gradGamma: Tensor; gradBeta: Tensor }
  /** GELU, tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) */
  gelu(x: Tensor): Tensor
  /** dx = dy * gelu'(x) */
  geluBackward(gradOutput: Tensor, input: Tensor): Tensor
  /**
   * Causal multi-head attention. qkv [B*T, 3D]: row b*T + t holds q, k and v of token t of sequence
   * b, in that order along the columns, heads contiguous within each (Hugging Face GPT-2's c_attn
   * layout). Scores are scaled by 1/sqrt(D/H). Returns output [B*T, D] (heads contiguous) and
   * logSumExp [B*H*T], the softmax's per-query log-sum-exp of the scaled scores (index
   * (b*H + h)*T + t), which the backward uses instead of the scores. A fused online-softmax
   * kernel: no [T, T] score matrix is written to memory.
   */
  attention(qkv: Tensor, dims: AttentionDims): { output: Tensor; logSumExp: Tensor }
  /** the gradient of `attention` with respect to qkv: dqkv [B*T, 3D] */
  attentionBackward(
    gradOutput: Tensor,
    qkv: Tensor,
    output: Tensor,
    logSumExp: Tensor,
    dims: AttentionDims,
  ): Tensor
  /**
   * Attention of `queries` [N, D] against the first offset + N rows of `keys` and `values` [L, D]
   * (a KV cache, L >= offset + N), causal by absolute position (see CachedAttentionDims). Output
   * [N, D]. Forward only: generation.
   */
  attentionCached(queries: Tensor, keys: Tensor, values: Tensor, dims: CachedAttentionDims): Tensor
  /** y[1] = sum of x[i]^2 (the squared norm, for gradient clipping) */
  sumSquares(x: Tensor): Tensor

  /** wait for all enqueued work */
  sync(): Promise<void>
  /** release the device; the process can exit afterwards */
  destroy(): void
}

export class ShapeError extends Error {
  static override name = 'ShapeError'
  constructor(message: string) {
    super(message)
    this.name = 'ShapeError'
  }
}

/** one tensor passed as two operands of an in-place op that must not share them */
export class AliasedTensorError extends Error {
  static override name = 'AliasedTensorError'
  constructor(message: string) {
    super(message)
    this.name = 'AliasedTensorError'
  }
}
