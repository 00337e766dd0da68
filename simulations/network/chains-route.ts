// The two choices of the chain simulation, as pure functions: where a server places its span of
// blocks (where the network's coverage is thinnest, as Petals' servers and shardnet's automatic span
// choice do), and which chain of servers a client routes a span of blocks through (the fastest by
// estimated time per token, as Petals' client and shardnet's route do). The simulation keeps its own
// copies of these rules: simulations/ may not import node/ (test/unit/architecture.test.ts), where
// the daemon's versions live. Placement is node/serving/placement.ts's rule exactly (the test checks
// both on the same tables); the route is a shortest path like node/serving/route.ts's, whose cost
// here also counts the hidden state's transfer and the server's queue (the simulation knows them),
// and has no reputation (no server lies here).

/**
 * The first block of the span of `length` blocks (of a model of `coverage.length` blocks) where
 * coverage is thinnest, by node/serving/placement.ts's rule (thinnestWindow): the window whose
 * coverages, sorted from the thinnest, are smallest in order (it holds the thinnest block, then the
 * thinnest next one, ...); ties go to the lowest start. `coverage[b]` is what serves block b now (the
 * tokens/s of the live servers holding it). A span as long as the model starts at 0.
 */
export function thinnestSpanStart(coverage: ArrayLike<number>, length: number): number {
  const blocks = coverage.length
  if (length >= blocks) return 0
  let best = 0
  let bestSorted: Float64Array | undefined
  const window = new Float64Array(length)
  for (let start = 0; start + length <= blocks; start++) {
    for (let i = 0; i < length; i++) window[i] = coverage[start + i]
    window.sort()
    if (bestSorted === undefined || compareSorted(window, bestSorted) < 0) {
      best = start
      bestSorted = Float64Array.from(window)
    }
  }
  return best
}

/** Compares two equally long ascending lists lexicographically. */
function compareSorted(a: Float64Array, b: Float64Array): number {
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i] - b[i]
  return 0
}

/** One hop of a chain: `server` runs blocks [start, end) (a part of its span, or all of it). */
export interface RouteHop {
  server: number
  start: number
  end: number
}

/** What the route planner reads of the live servers. */
export interface RouteView {
  /** The live servers holding block `block`, in a fixed order (ties go to the earlier one). */
  serversAt(block: number): ArrayLike<number>
  /** The end (exclusive) of `server`'s span. */
  spanEnd(server: number): number
  /** Estimated ms one token costs through `blocks` blocks on `server`, its link included. */
  hopCostMs(server: number, blocks: number): number
}

/**
 * The cheapest chain covering blocks [from, to): a shortest path over block positions, where a hop
 * from position p on a server holding p goes to the end of its span (or `to`). Undefined when some
 * block in [from, to) has no live server.
 */
export function planRoute(view: RouteView, from: number, to: number): RouteHop[] | undefined {
  const size = to - from + 1
  const cost = new Float64Array(size).fill(Number.POSITIVE_INFINITY)
  const viaServer = new Int32Array(size).fill(-1)
  const viaFrom = new Int32Array(size).fill(-1)
  cost[0] = 0
  for (let p = from; p < to; p++) {
    const here = cost[p - from]
    if (here === Number.POSITIVE_INFINITY) continue
    const servers = view.serversAt(p)
    for (let i = 0; i < servers.length; i++) {
      const server = servers[i]
      const end = Math.min(view.spanEnd(server), to)
      if (end <= p) continue
      const total = here + view.hopCostMs(server, end - p)
      if (total < cost[end - from]) {
        cost[end - from] = total
        viaServer[end - from] = server
        viaFrom[end - from] = p
      }
    }
  }
  if (cost[size - 1] === Number.POSITIVE_INFINITY) return undefined
  const hops: RouteHop[] = []
  for (let at = to; at > from; at = viaFrom[at - from]) {
    hops.push({ server: viaServer[at - from], start: viaFrom[at - from], end: at })
  }
  return hops.reverse()
}
