// Reference fused softmax + cross-entropy over rows. A label that is not an integer in [0, C)
// gives NaN loss and NaN gradients for its row (the device cannot throw; NaN is caught downstream).

/**
 * logits [M,C], labels [M] (class indices stored as float32).
 * loss[i] = logsumexp(logits[i,:]) - logits[i,label_i], computed as
 *   log(sum_j exp(logits[i,j] - max)) - (logits[i,label_i] - max)
 * gradLogits[i,j] = (softmax(logits[i,:])[j] - (j == label_i)) / M   (gradient of the mean loss)
 */
export function softmaxCrossEntropyReference(
  logits: Float32Array,
  labels: Float32Array,
  m: number,
  c: number,
): { loss: Float32Array; gradLogits: Float32Array } {
  const loss = new Float32Array(m) // [M]
  const gradLogits = new Float32Array(m * c) // [M,C]
  for (let i = 0; i < m; i++) {
    const label = labels[i]
    const row = i * c
    if (!(Number.isInteger(label) && label >= 0 && label < c)) {
      loss[i] = Number.NaN
      gradLogits.fill(Number.NaN, row, row + c)
      continue
    }
    let max = Number.NEGATIVE_INFINITY
    for (let j = 0; j < c; j++) max = Math.max(max, logits[row + j])
    let sumExp = 0
    for (let j = 0; j < c; j++) sumExp += Math.exp(logits[row + j] - max)
    // the label's logit relative to the maximum first: log(sumExp) + max - logit would lose
    // log(sumExp) to rounding once |max| dwarfs it (logits near 1e30)
    loss[i] = Math.log(sumExp) - (logits[row + label] - max)
    for (let j = 0; j < c; j++) {
      const p = Math.exp(logits[row + j] - max) / sumExp
      gradLogits[row + j] = (p - (j === label ? 1 : 0)) / m
    }
  }
  return { loss, gradLogits }
}
