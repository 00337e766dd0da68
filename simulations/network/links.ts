// The link model: regions with a one-way latency matrix, per-message latency drawn from a
// log-normal around the matrix entry (a long right tail, as measured Internet paths have), per-peer
// upload bandwidth that serialises a peer's sends, a loss probability, and partitions that cut the
// network in two for a while. Pure functions of the seeded RNG and the peer table, so a run replays.
import type { SeededRandom } from '../../protocols/raft/random.js'

export const REGIONS = ['us-east', 'us-west', 'europe', 'asia', 'south-america'] as const
export type Region = (typeof REGIONS)[number]

/**
 * Median one-way latency between regions in ms (symmetric), after public inter-region ping
 * tables (e.g. cloud provider region-to-region RTTs halved): same region 8-10 ms, same continent
 * 35 ms, across an ocean 40-150 ms.
 */
export const REGION_LATENCY_MS: readonly (readonly number[])[] = [
  [8, 35, 40, 90, 60],
  [35, 8, 70, 60, 90],
  [40, 70, 8, 110, 100],
  [90, 60, 110, 10, 150],
  [60, 90, 100, 150, 10],
]

/** Share of peers per region (the seed perturbs these). */
export const REGION_WEIGHTS = [0.3, 0.15, 0.3, 0.15, 0.1] as const

/** The spread of the log-normal latency around the median (sigma of ln latency). */
export const LATENCY_LOG_SIGMA = 0.25
/** No message is faster than this share of the median (propagation at the speed of light in fibre). */
export const LATENCY_FLOOR_SHARE = 0.6
/** A stream (an assignment, an inference request) that loses a message retransmits it after this long. */
export const STREAM_RETRANSMIT_MS = 1000

/** A standard normal draw (Box-Muller); consumes two uniforms. */
export function gaussian(random: SeededRandom): number {
  const u = Math.max(random.float(), 1e-12)
  const v = random.float()
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v)
}

/** Inverse of the standard normal CDF (Acklam's rational approximation, |error| < 1.2e-9). */
export function inverseNormal(p: number): number {
  const a = [
    -39.69683028665376, 220.9460984245205, -275.9285104469687, 138.357751867269, -30.66479806614716,
    2.506628277459239,
  ]
  const b = [-54.47609879822406, 161.5858368580409, -155.6989798598866, 66.80131188771972, -13.28068155288572]
  const c = [
    -0.007784894002430293, -0.3223964580411365, -2.400758277161838, -2.549732539343734, 4.374664141464968,
    2.938163982698783,
  ]
  const d = [0.007784695709041462, 0.3224671290700398, 2.445134137142996, 3.754408661907416]
  const low = 0.02425
  if (p < low) {
    const q = Math.sqrt(-2 * Math.log(p))
    return (
      (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
      ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1)
    )
  }
  if (p > 1 - low) return -inverseNormal(1 - p)
  const q = p - 0.5
  const r = q * q
  return (
    ((((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q) /
    (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1)
  )
}

/** Latency multipliers exp(sigma * z) at 4096 equally likely quantiles: one table lookup per message. */
const LATENCY_FACTOR_TABLE_SIZE = 4096
const LATENCY_FACTORS = Float64Array.from({ length: LATENCY_FACTOR_TABLE_SIZE }, (_, i) =>
  Math.max(
    LATENCY_FLOOR_SHARE,
    Math.exp(LATENCY_LOG_SIGMA * inverseNormal((i + 0.5) / LATENCY_FACTOR_TABLE_SIZE)),
  ),
)

/** One message's one-way latency between two regions, in ms (log-normal around the matrix median). */
export function sampleLatencyMs(
  random: SeededRandom,
  fromRegion: number,
  toRegion: number,
  scale = 1,
): number {
  return REGION_LATENCY_MS[fromRegion][toRegion] * scale * LATENCY_FACTORS[random.next32() >>> 20]
}

/** A time span like `90s`, `15m`, `1h`, `250ms` or a plain number of ms; NaN when malformed. */
export function parseDurationMs(text: string): number {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim())
  if (!match) return Number.NaN
  const value = Number(match[1])
  const unit = match[2] ?? 'ms'
  const factor = unit === 'ms' ? 1 : unit === 's' ? 1000 : unit === 'm' ? 60_000 : 3_600_000
  return value * factor
}

/**
 * A partition: from `startMs` for `durationMs`, peers on side A cannot exchange messages with
 * peers on side B. Side A is one region (`region:europe@10m+5m`) or a seeded random share of all
 * peers (`split:0.3@10m+5m`).
 */
export interface PartitionSpec {
  kind: 'region' | 'split'
  region: number
  share: number
  startMs: number
  durationMs: number
}

/** Most partitions one run may schedule. */
export const PARTITIONS_MAX = 16

/** Parses `--partition` (comma-separated specs); throws an Error naming the bad part. */
export function parsePartitionSpec(text: string): PartitionSpec[] {
  const specs: PartitionSpec[] = []
  for (const part of text
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)) {
    const match = /^(region|split):([a-z-]+|\d*\.?\d+)@([^+]+)\+(.+)$/.exec(part)
    if (!match)
      throw new Error(`partition "${part}" is not region:NAME@START+DURATION or split:SHARE@START+DURATION`)
    const startMs = parseDurationMs(match[3])
    const durationMs = parseDurationMs(match[4])
    if (!Number.isFinite(startMs) || !Number.isFinite(durationMs) || durationMs <= 0) {
      throw new Error(`partition "${part}" has a malformed start or duration (use e.g. 10m+5m)`)
    }
    if (match[1] === 'region') {
      const region = REGIONS.indexOf(match[2] as Region)
      if (region < 0)
        throw new Error(`partition "${part}" names unknown region ${match[2]} (one of ${REGIONS.join(', ')})`)
      specs.push({ kind: 'region', region, share: 0, startMs, durationMs })
    } else {
      const share = Number(match[2])
      if (!(share > 0 && share < 1))
        throw new Error(`partition "${part}" needs a share strictly between 0 and 1`)
      specs.push({ kind: 'split', region: -1, share, startMs, durationMs })
    }
  }
  if (specs.length > PARTITIONS_MAX) throw new Error(`at most ${PARTITIONS_MAX} partitions`)
  specs.sort((a, b) => a.startMs - b.startMs)
  for (let i = 1; i < specs.length; i++) {
    if (specs[i].startMs < specs[i - 1].startMs + specs[i - 1].durationMs)
      throw new Error('partitions may not overlap in time')
  }
  return specs
}
