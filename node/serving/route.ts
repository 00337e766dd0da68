// Choosing servers for generation through a chain of layer spans (pure: no I/O).
//
// Like Petals' routing, a chain is a shortest path over block boundaries. The nodes are boundaries
// 0..L, restricted to those where a hop can usefully begin or end: 0, L, and every candidate span's
// start and end (a hop that switches servers between two such boundaries costs a linear function of
// where it switches, so one of the two ends is at least as good). An edge i -> j exists for every
// server whose span holds [i, j) (a server opens a session on any part of its span); its cost is the
// estimated time of one token through that hop:
//
//   (latencyMs + (j - i) * msPerBlock) * reputationFactor
//
// where msPerBlock = 1000 / (tokensPerSecond * spanBlocks) (the server measured tokens/s over its whole
// span) and reputationFactor = 1 + reputationPenalty * (1 - score): a peer with a perfect record costs
// what it measures, a newcomer (score 0.5) counts reputationPenalty / 2 + 1 times slower. Peers under
// scoreMin (one caught lie puts a newcomer at 0.14) and excluded peers are left out. Equal costs go to
// fewer hops, then to the lower peer id, so a table gives one answer.
//
// The path is found by dynamic programming in boundary order (the graph is a DAG: edges go forward).

/** A server of a model's span, as discovery and this node's own measurements see it. */
export interface RouteCandidate {
  peerId: string
  /** blocks [start, end) the server serves */
  start: number
  end: number
  /** the server's measured tokens/s over its whole span (one cached step) */
  tokensPerSecond: number
  /** round trip to the server; LATENCY_MS_DEFAULT when unknown */
  latencyMs?: number
  /** ReputationBook score 0..1; NEUTRAL 0.5 when unknown */
  reputation?: number
}

/** One hop of a chain: a server and the blocks [start, end) it runs for this chain. */
export interface RouteHop {
  peerId: string
  start: number
  end: number
  /** this hop's estimated per-token cost (ms, reputation-weighted) */
  costMs: number
}

export interface RouteOptions {
  /** peers not to use (dead, stalled, caught lying, already used for this span) */
  exclude?: ReadonlySet<string>
  /** @default REPUTATION_PENALTY_DEFAULT */
  reputationPenalty?: number
  /** @default REPUTATION_SCORE_MIN_DEFAULT */
  scoreMin?: number
  /** @default LATENCY_MS_DEFAULT */
  latencyMsDefault?: number
}

/** Round trip assumed for a server whose latency nobody measured. */
export const LATENCY_MS_DEFAULT = 20
/** A server with score s costs (1 + penalty * (1 - s)) times its estimate. */
export const REPUTATION_PENALTY_DEFAULT = 2
/** Servers scoring below this are not used at all. */
export const REPUTATION_SCORE_MIN_DEFAULT = 0.2
/** Blocks of a model at most (GPT_LIMITS.layersMax is 96; the router itself takes more). */
export const ROUTE_BLOCKS_MAX = 4096
/** Candidates considered at most; the fastest by tokens/s are kept. */
export const ROUTE_CANDIDATES_MAX = 4096

/** A request the router cannot take (bad block count or span), or no chain exists. */
export class RouteError extends Error {
  static override name = 'RouteError'
  constructor(message: string) {
    super(message)
    this.name = 'RouteError'
  }
}

interface Usable {
  peerId: string
  start: number
  end: number
  latencyMs: number
  msPerBlock: number
  factor: number
}

function checkBlocks(blocks: number): void {
  if (!Number.isInteger(blocks) || blocks < 1 || blocks > ROUTE_BLOCKS_MAX)
    throw new RouteError(`a model has 1 to ${ROUTE_BLOCKS_MAX} blocks, got ${blocks}`)
}

/** The candidates that can be used at all, each with its cost terms; malformed ones are skipped. */
function usable(blocks: number, candidates: readonly RouteCandidate[], options: RouteOptions): Usable[] {
  const exclude = options.exclude ?? new Set<string>()
  const penalty = options.reputationPenalty ?? REPUTATION_PENALTY_DEFAULT
  const scoreMin = options.scoreMin ?? REPUTATION_SCORE_MIN_DEFAULT
  const latencyDefault = options.latencyMsDefault ?? LATENCY_MS_DEFAULT
  const out: Usable[] = []
  for (const c of candidates) {
    if (exclude.has(c.peerId)) continue
    if (!Number.isInteger(c.start) || !Number.isInteger(c.end) || c.start < 0 || c.end > blocks) continue
    if (c.start >= c.end) continue
    if (!(c.tokensPerSecond > 0) || !Number.isFinite(c.tokensPerSecond)) continue
    const score = c.reputation ?? 0.5
    if (!(score >= scoreMin)) continue
    const latencyMs = c.latencyMs !== undefined && c.latencyMs >= 0 ? c.latencyMs : latencyDefault
    out.push({
      peerId: c.peerId,
      start: c.start,
      end: c.end,
      latencyMs,
      msPerBlock: 1000 / (c.tokensPerSecond * (c.end - c.start)),
      factor: 1 + penalty * (1 - Math.min(1, score)),
    })
  }
  if (out.length > ROUTE_CANDIDATES_MAX) {
    out.sort((a, b) => a.msPerBlock - b.msPerBlock || (a.peerId < b.peerId ? -1 : 1))
    out.length = ROUTE_CANDIDATES_MAX
  }
  return out
}

function hopCost(server: Usable, start: number, end: number): number {
  return (server.latencyMs + (end - start) * server.msPerBlock) * server.factor
}

interface Label {
  cost: number
  hops: number
  previous: number
  server: Usable | undefined
}

/** whether label a (cost, hops, last peer) is strictly better than b */
function better(cost: number, hops: number, peerId: string, b: Label): boolean {
  const epsilon = 1e-9 * Math.max(1, Math.abs(cost), Math.abs(b.cost))
  if (cost < b.cost - epsilon) return true
  if (cost > b.cost + epsilon) return false
  if (hops !== b.hops) return hops < b.hops
  return b.server !== undefined && peerId < b.server.peerId
}

/**
 * The cheapest path of hops from boundary `from` to each boundary after it, over `servers`:
 * labels keyed by boundary (only reachable ones).
 */
function shortestFrom(from: number, blocks: number, servers: readonly Usable[]): Map<number, Label> {
  const points = new Set<number>([from, blocks])
  for (const s of servers) {
    if (s.start >= from) points.add(s.start)
    if (s.end > from) points.add(s.end)
  }
  const boundaries = [...points].filter((p) => p >= from && p <= blocks).sort((a, b) => a - b)
  const labels = new Map<number, Label>([[from, { cost: 0, hops: 0, previous: -1, server: undefined }]])
  for (let a = 0; a < boundaries.length; a++) {
    const i = boundaries[a]
    const here = labels.get(i)
    if (here === undefined) continue
    for (const s of servers) {
      if (s.start > i || s.end <= i) continue
      for (let b = a + 1; b < boundaries.length && boundaries[b] <= s.end; b++) {
        const j = boundaries[b]
        const cost = here.cost + hopCost(s, i, j)
        const there = labels.get(j)
        if (there === undefined || better(cost, here.hops + 1, s.peerId, there))
          labels.set(j, { cost, hops: here.hops + 1, previous: i, server: s })
      }
    }
  }
  return labels
}

function pathTo(labels: Map<number, Label>, to: number): RouteHop[] {
  const hops: RouteHop[] = []
  let at = to
  for (;;) {
    const label = labels.get(at)
    if (label === undefined || label.server === undefined) break
    hops.push({
      peerId: label.server.peerId,
      start: label.previous,
      end: at,
      costMs: hopCost(label.server, label.previous, at),
    })
    at = label.previous
  }
  return hops.reverse()
}

/** The blocks no usable candidate covers, as "a-b" ranges (inclusive, for messages). */
function gaps(from: number, to: number, servers: readonly Usable[]): string {
  const covered = new Array<boolean>(to - from).fill(false)
  for (const s of servers)
    for (let k = Math.max(from, s.start); k < Math.min(to, s.end); k++) covered[k - from] = true
  const out: string[] = []
  for (let k = 0; k < covered.length; k++) {
    if (covered[k]) continue
    let e = k
    while (e + 1 < covered.length && !covered[e + 1]) e++
    out.push(k + from === e + from ? `${k + from}` : `${k + from}-${e + from}`)
    k = e
  }
  return out.join(', ')
}

/** The estimated per-token time of a chain (ms): the sum of its hops' costs. */
export function chainCostMs(hops: readonly RouteHop[]): number {
  return hops.reduce((sum, hop) => sum + hop.costMs, 0)
}

/**
 * The cheapest chain of servers covering blocks [0, blocks). Throws RouteError naming the blocks that
 * no usable server covers.
 */
export function planChain(
  blocks: number,
  candidates: readonly RouteCandidate[],
  options: RouteOptions = {},
): RouteHop[] {
  checkBlocks(blocks)
  const servers = usable(blocks, candidates, options)
  const labels = shortestFrom(0, blocks, servers)
  if (!labels.has(blocks))
    throw new RouteError(`no server covers block${gapsPlural(0, blocks, servers)} of ${blocks}`)
  return pathTo(labels, blocks)
}

function gapsPlural(from: number, to: number, servers: readonly Usable[]): string {
  const text = gaps(from, to, servers)
  return text.includes('-') || text.includes(',') ? `s ${text}` : ` ${text}`
}

/**
 * A replacement for the hops of `chain` from the hop that starts at `start` on: the cheapest path from
 * `start` to one of the later boundaries where a kept hop of `chain` begins (or to the end), plus the
 * kept hops. The hops before `start` stay as they are. The result is the whole new chain; `replaced`
 * says which hops of it are new (they need their history replayed).
 */
export function replanFrom(
  blocks: number,
  chain: readonly RouteHop[],
  start: number,
  candidates: readonly RouteCandidate[],
  options: RouteOptions = {},
): { chain: RouteHop[]; replaced: { from: number; to: number } } {
  checkBlocks(blocks)
  checkChain(blocks, chain)
  const index = chain.findIndex((hop) => hop.start === start)
  if (index < 0) throw new RouteError(`no hop of the chain starts at block ${start}`)
  const servers = usable(blocks, candidates, options)
  const labels = shortestFrom(start, blocks, servers)
  // the cost of keeping the old chain from each later hop start on; on equal costs, keeping more of
  // the old chain wins (fewer sessions to open and replay)
  let best: { to: number; cost: number } | undefined
  for (let k = index + 1; k <= chain.length; k++) {
    const to = k === chain.length ? blocks : chain[k].start
    const label = labels.get(to)
    if (label === undefined) continue
    const kept = chain.slice(k)
    // a kept hop on an excluded peer is no use
    if (kept.some((hop) => options.exclude?.has(hop.peerId))) continue
    const cost = label.cost + chainCostMs(kept)
    if (best === undefined || cost < best.cost - 1e-9 * Math.max(1, cost)) best = { to, cost }
  }
  if (best === undefined) {
    const end = chain[index].end
    throw new RouteError(`no other server covers block${gapsPlural(start, end, servers)} of ${blocks}`)
  }
  const newHops = pathTo(labels, best.to)
  const keptFrom = best.to === blocks ? chain.length : chain.findIndex((hop) => hop.start === best.to)
  return {
    chain: [...chain.slice(0, index), ...newHops, ...chain.slice(keptFrom)],
    replaced: { from: index, to: index + newHops.length },
  }
}

/**
 * The best server other than the excluded ones that serves all of [start, end) in one hop (to run the
 * same steps as a chain's hop and compare), or undefined when there is none.
 */
export function findVerifier(
  blocks: number,
  start: number,
  end: number,
  candidates: readonly RouteCandidate[],
  options: RouteOptions = {},
): RouteHop | undefined {
  checkBlocks(blocks)
  if (!Number.isInteger(start) || !Number.isInteger(end) || start < 0 || end > blocks || start >= end)
    throw new RouteError(`blocks [${start}, ${end}) are not a span of a model of ${blocks} blocks`)
  let best: RouteHop | undefined
  for (const s of usable(blocks, candidates, options)) {
    if (s.start > start || s.end < end) continue
    const costMs = hopCost(s, start, end)
    if (
      best === undefined ||
      costMs < best.costMs - 1e-9 * Math.max(1, costMs) ||
      (Math.abs(costMs - best.costMs) <= 1e-9 * Math.max(1, costMs) && s.peerId < best.peerId)
    )
      best = { peerId: s.peerId, start, end, costMs }
  }
  return best
}

function checkChain(blocks: number, chain: readonly RouteHop[]): void {
  let at = 0
  for (const hop of chain) {
    if (hop.start !== at || hop.end <= hop.start)
      throw new RouteError(`the chain's hops must cover [0, ${blocks}) in order, one after another`)
    at = hop.end
  }
  if (at !== blocks) throw new RouteError(`the chain's hops must cover [0, ${blocks}) in order`)
}
