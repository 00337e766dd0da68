// Fixed-bin histograms: bounded memory whatever the run length, and deterministic quantiles.

export class Histogram {
  readonly counts: Float64Array
  overflow = 0
  count = 0
  sum = 0
  max = 0

  constructor(
    readonly binWidth: number,
    readonly bins: number,
  ) {
    this.counts = new Float64Array(bins)
  }

  add(value: number, weight = 1): void {
    const bin = Math.floor(value / this.binWidth)
    if (bin >= this.bins) this.overflow += weight
    else this.counts[Math.max(0, bin)] += weight
    this.count += weight
    this.sum += value * weight
    if (value > this.max) this.max = value
  }

  /** The upper edge of the bin holding quantile q (0..1); max when it falls in the overflow. */
  quantile(q: number): number {
    if (this.count === 0) return 0
    const target = q * this.count
    let seen = 0
    for (let i = 0; i < this.bins; i++) {
      seen += this.counts[i]
      if (seen >= target && this.counts[i] > 0) return (i + 1) * this.binWidth
    }
    return this.max
  }

  mean(): number {
    return this.count === 0 ? 0 : this.sum / this.count
  }

  /** The cumulative distribution as [value, share] points at every non-empty bin. */
  cdf(): [number, number][] {
    const points: [number, number][] = []
    if (this.count === 0) return points
    let seen = 0
    for (let i = 0; i < this.bins; i++) {
      if (this.counts[i] === 0) continue
      seen += this.counts[i]
      points.push([(i + 1) * this.binWidth, seen / this.count])
    }
    if (this.overflow > 0) points.push([this.max, 1])
    return points
  }
}
