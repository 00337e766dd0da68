// Inference chains in the network simulator: servers each hold a span of a large model's blocks
// (placed where coverage is thinnest), clients open generation sessions that route a chain of
// servers over every block and step hidden states through it token by token, and servers churn. A
// session whose server left or crashed fails over as shardnet's chain client does (SERVING.md,
// node/serving/chain.ts): it re-routes that hop's blocks over live servers, replays the hop's
// history there (a prefill of every row so far, so the cost grows with the tokens generated) and goes
// on. A session fails only when some block of the hop it re-routes has no live server.
//
// One seed decides everything, as in simulator.ts: the servers (region, GPU, slowness, uplink),
// every latency draw and loss, churn, and the sessions (arrival, client region, uplink); sessions and
// their clients come from their own random stream, so runs that differ only in churn serve the same
// sessions. The link model is links.ts's (regional one-way latency, log-normal, a 1 s retransmission
// per lost message); a server's step time is chains-model.ts's roofline.
//
// A step goes client -> hop 1 -> client -> hop 2 ... -> client, as Petals' client and shardnet's
// chain client drive it; each leg queues behind the sender's uplink at its bandwidth, each server
// runs the steps it is sent one at a time (first come, first served). A crashed server is noticed
// when a request to it has waited `stallTimeoutMs`; a server that left (or restarted, losing its
// sessions) answers at once with a closed stream or an unknown session.
import { SeededRandom } from '../../protocols/raft/random.js'
import {
  blocksThatFit,
  CHAIN_MODELS,
  type ChainModel,
  type ChainModelName,
  GPU_CLASSES,
  HIDDEN_FRAME_BYTES,
  spanStepMs,
} from './chains-model.js'
import { planRoute, type RouteHop, type RouteView, thinnestSpanStart } from './chains-route.js'
import { REGION_LATENCY_MS, REGION_WEIGHTS, STREAM_RETRANSMIT_MS, sampleLatencyMs } from './links.js'
import { round3 } from './metrics.js'
import { EventQueue } from './queue.js'

export interface ChainSimulationOptions {
  seed: number
  /** Servers at the start. @default CHAIN_OPTION_DEFAULTS.servers */
  servers?: number
  model?: ChainModelName
  /** Share of servers that leave or crash per hour. */
  churnPerHour?: number
  /** Generation sessions clients open per hour (Poisson arrivals). */
  sessionsPerHour?: number
  /** Prompt tokens of each session, and tokens it generates. */
  promptTokens?: number
  newTokens?: number
  /** Sessions arrive over this long; the run then goes on until every session has ended. */
  durationMs?: number
  /** A request unanswered this long means the server is gone (the chain client's step timeout). */
  stallTimeoutMs?: number
  lossProbability?: number
  /**
   * Bytes of one hidden-state value on the wire: 4 is float32, shardnet's wire format (SERVING.md);
   * 2 shows what a 16-bit wire (as Petals sends) would give.
   */
  hiddenValueBytes?: 2 | 4
}

/** What a test may watch: every session that fails, with the live servers' spans at that moment. */
export interface ChainSimulationHooks {
  onSessionFailed?: (failure: ChainSessionFailure) => void
  /** Every session that ends, completed or failed (a bench pools these over seeds). */
  onSessionEnded?: (record: ChainSessionRecord) => void
}

export interface ChainSessionRecord {
  session: number
  outcome: 'completed' | 'failed'
  tokens: number
  /** Completed sessions only; -1 otherwise. */
  timeToFirstTokenMs: number
  tokensPerSecond: number
  failovers: number
}

export interface ChainSessionFailure {
  session: number
  atMs: number
  /** The blocks [from, to) the session could not route. */
  from: number
  to: number
  /** Every live server's span [start, end) when it failed. */
  liveSpans: [number, number][]
}

export const CHAIN_OPTION_DEFAULTS = {
  servers: 1000,
  model: 'bloom-176b' as ChainModelName,
  churnPerHour: 0.5,
  sessionsPerHour: 1200,
  promptTokens: 32,
  newTokens: 128,
  durationMs: 3_600_000,
  stallTimeoutMs: 5_000,
  lossProbability: 0.001,
  hiddenValueBytes: 4 as 2 | 4,
}

export const CHAIN_SERVERS_MAX = 100_000
export const CHAIN_SESSIONS_PER_HOUR_MAX = 100_000
/** Prompt plus generated tokens of one session (the models' context is 2,048 and more). */
export const CHAIN_SESSION_TOKENS_MAX = 2048
export const CHAIN_CHURN_PER_HOUR_MAX = 100
export const CHAIN_DURATION_MS_MAX = 7 * 24 * 3_600_000
/** After the last arrival, sessions still running get at most this long to end. */
export const CHAIN_DRAIN_MS_MAX = 3_600_000
/** Most sessions one run may open. */
export const CHAIN_SESSIONS_MAX = 1_000_000

/** Options out of range. */
export class ChainOptionsError extends RangeError {
  override name = 'ChainOptionsError'
}

/** Everything the seed and the options decide; printed and reported. */
export interface ChainDerivedParameters {
  seed: number
  servers: number
  model: ChainModel
  churnPerHour: number
  sessionsPerHour: number
  promptTokens: number
  newTokens: number
  durationMs: number
  stallTimeoutMs: number
  lossProbability: number
  hiddenValueBytes: 2 | 4
  regionShares: number[]
  latencyScale: number
  slowServerShare: number
  slowFactorMin: number
  slowFactorMax: number
  crashShareOfChurn: number
  restartDelayMsMin: number
  restartDelayMsMax: number
  replacementJoinMsMax: number
  uploadMbpsMin: number
  uploadMbpsMax: number
  /** Round trips a client's DHT lookup of the model's servers takes before a session opens. */
  lookupRoundTrips: number
  gpuShares: Record<string, number>
}

function integerIn(name: string, value: number, min: number, max: number): number {
  if (!Number.isSafeInteger(value) || value < min || value > max)
    throw new ChainOptionsError(`${name} must be an integer from ${min} to ${max}, not ${value}`)
  return value
}

function numberIn(name: string, value: number, min: number, max: number): number {
  if (!Number.isFinite(value) || value < min || value > max)
    throw new ChainOptionsError(`${name} must be a number from ${min} to ${max}, not ${value}`)
  return value
}

function hiddenValueBytes(value: number): 2 | 4 {
  if (value !== 2 && value !== 4) throw new ChainOptionsError(`hiddenValueBytes must be 2 or 4, not ${value}`)
  return value
}

/** The run's parameters; throws ChainOptionsError naming the option out of range. */
export function deriveChainParameters(options: ChainSimulationOptions): ChainDerivedParameters {
  const d = CHAIN_OPTION_DEFAULTS
  const modelName = options.model ?? d.model
  const model: ChainModel | undefined = (CHAIN_MODELS as Record<string, ChainModel>)[modelName]
  if (!model) throw new ChainOptionsError(`unknown model ${modelName} (one of ${Object.keys(CHAIN_MODELS)})`)
  const promptTokens = integerIn(
    'promptTokens',
    options.promptTokens ?? d.promptTokens,
    1,
    CHAIN_SESSION_TOKENS_MAX,
  )
  const newTokens = integerIn('newTokens', options.newTokens ?? d.newTokens, 1, CHAIN_SESSION_TOKENS_MAX)
  if (promptTokens + newTokens > CHAIN_SESSION_TOKENS_MAX)
    throw new ChainOptionsError(`promptTokens + newTokens must be at most ${CHAIN_SESSION_TOKENS_MAX}`)
  const random = new SeededRandom(integerIn('seed', options.seed, 0, 0xffffffff) ^ 0x3c6ef372)
  const weights = REGION_WEIGHTS.map((w) => w * (0.8 + 0.4 * random.float()))
  const total = weights.reduce((a, b) => a + b, 0)
  const round = (x: number) => Math.round(x * 1e4) / 1e4
  return {
    seed: options.seed,
    servers: integerIn('servers', options.servers ?? d.servers, 1, CHAIN_SERVERS_MAX),
    model,
    churnPerHour: numberIn(
      'churnPerHour',
      options.churnPerHour ?? d.churnPerHour,
      0,
      CHAIN_CHURN_PER_HOUR_MAX,
    ),
    sessionsPerHour: numberIn(
      'sessionsPerHour',
      options.sessionsPerHour ?? d.sessionsPerHour,
      0,
      CHAIN_SESSIONS_PER_HOUR_MAX,
    ),
    promptTokens,
    newTokens,
    durationMs: numberIn('durationMs', options.durationMs ?? d.durationMs, 1000, CHAIN_DURATION_MS_MAX),
    stallTimeoutMs: numberIn('stallTimeoutMs', options.stallTimeoutMs ?? d.stallTimeoutMs, 1, 600_000),
    lossProbability: numberIn('lossProbability', options.lossProbability ?? d.lossProbability, 0, 0.5),
    hiddenValueBytes: hiddenValueBytes(options.hiddenValueBytes ?? d.hiddenValueBytes),
    regionShares: weights.map((w) => round(w / total)),
    latencyScale: round(0.9 + 0.2 * random.float()),
    slowServerShare: round(0.05 + 0.1 * random.float()),
    slowFactorMin: 2,
    slowFactorMax: 5,
    crashShareOfChurn: 0.5,
    restartDelayMsMin: 30_000,
    restartDelayMsMax: 600_000,
    replacementJoinMsMax: 120_000,
    uploadMbpsMin: 10,
    uploadMbpsMax: 100,
    lookupRoundTrips: 3,
    gpuShares: Object.fromEntries(GPU_CLASSES.map((gpu) => [gpu.name, gpu.share])),
  }
}

/** One line per parameter, `name=value`. */
export function describeChainParameters(parameters: ChainDerivedParameters): string[] {
  return Object.entries(parameters).map(([name, value]) => `${name}=${JSON.stringify(value)}`)
}

const Kind = {
  churn: 0,
  restart: 1,
  join: 2,
  arrival: 3,
  hopArrives: 4,
  hopReturns: 5,
  failover: 6,
  stepBegins: 7,
  sample: 8,
} as const

const ServerState = { up: 1, crashed: 2, left: 3 } as const

/** Every minute the run records a sample. */
export const CHAIN_SAMPLE_INTERVAL_MS = 60_000

interface Hop extends RouteHop {
  /** The server's incarnation when the hop was routed (a restarted server has lost the session). */
  incarnation: number
  /** Rows of history this hop must be sent before its next step (a replacement's replay). */
  replayRows: number
}

interface Session {
  id: number
  clientRegion: number
  clientUploadBytesPerMs: number
  clientUplinkFreeAtMs: number
  startedAtMs: number
  firstTokenAtMs: number
  lastTokenAtMs: number
  chain: Hop[]
  /** Rows every hop's cache holds (prompt and tokens fed so far). */
  history: number
  /** Rows of the step under way (the prompt on the first step, then 1). */
  stepRows: number
  tokens: number
  hop: number
  /** When the current hop's request was sent (a stall is noticed stallTimeoutMs later). */
  sentAtMs: number
  /** Bumped at every re-route: events of an older chain are dropped. */
  epoch: number
  failovers: number
  stalledMs: number
  replayedRows: number
  outcome: 'running' | 'completed' | 'failed'
}

export interface ChainSample {
  atS: number
  serversUp: number
  /** The fewest live servers holding any one block. */
  coverageMin: number
  sessionsRunning: number
}

export interface Quantiles {
  count: number
  mean: number
  p10: number
  p50: number
  p90: number
  max: number
}

export function quantilesOf(values: readonly number[]): Quantiles {
  if (values.length === 0) return { count: 0, mean: 0, p10: 0, p50: 0, p90: 0, max: 0 }
  const sorted = Float64Array.from(values).sort()
  const at = (q: number) => round3(sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))])
  let sum = 0
  for (const v of sorted) sum += v
  return {
    count: sorted.length,
    mean: round3(sum / sorted.length),
    p10: at(0.1),
    p50: at(0.5),
    p90: at(0.9),
    max: round3(sorted[sorted.length - 1]),
  }
}

export interface ChainSimulationResult {
  parameters: ChainDerivedParameters
  events: number
  endedAtS: number
  sessions: {
    started: number
    completed: number
    /** No chain covered every block when the session opened. */
    failedAtStart: number
    /** A failover found a block of the hop with no live server. */
    failedMidway: number
    /** Still running when the drain time ran out. */
    unfinished: number
  }
  /** completed / (completed + failed). */
  completedShare: number
  /** Decode tokens/s of each completed session: (tokens - 1) / (last token - first token). */
  tokensPerSecond: Quantiles
  timeToFirstTokenMs: Quantiles
  /** Per session that opened a chain and ended (those that failed at the start have none). */
  failoversPerSession: Quantiles
  /** Sessions (ended) that failed over at least once. */
  sessionsWithFailover: number
  /** Per failover: how long the session waited before it noticed (a stall timeout or a closed stream). */
  failoverNoticeMs: Quantiles
  /** Per failover: rows replayed to the replacement hops. */
  replayedRowsPerFailover: Quantiles
  /** Hops of each session's first chain. */
  chainHops: Quantiles
  servers: {
    initial: number
    joins: number
    leaves: number
    crashes: number
    restarts: number
    blocksPerServer: Quantiles
    /** The fewest live servers on any block, over the minute samples. */
    coverageMin: number
  }
  samples: ChainSample[]
}

/** The chain simulation: servers, their churn, sessions, over one event queue. */
export class ChainSimulation {
  readonly parameters: ChainDerivedParameters
  private readonly queue = new EventQueue()
  private now = 0
  private events = 0
  private readonly random: SeededRandom
  private readonly sessionRandom: SeededRandom
  private readonly linkRandom: SeededRandom
  private readonly model: ChainModel
  // servers, one row each (rows are never reused)
  private readonly state: number[] = []
  private readonly region: number[] = []
  private readonly gpu: number[] = []
  private readonly slow: number[] = []
  private readonly uploadBytesPerMs: number[] = []
  private readonly uplinkFreeAtMs: number[] = []
  private readonly busyUntilMs: number[] = []
  private readonly spanStart: number[] = []
  private readonly spanEnd: number[] = []
  private readonly incarnation: number[] = []
  private readonly tokensPerSecond: number[] = []
  private readonly upList: number[] = []
  private readonly upPosition: number[] = []
  /** Live servers holding each block, in the order they came up. */
  private readonly byBlock: number[][]
  /** Summed tokens/s of the live servers holding each block (what placement reads). */
  private readonly coverage: Float64Array
  private readonly sessions: Session[] = []
  private running = 0
  private readonly counters = {
    completed: 0,
    failedAtStart: 0,
    failedMidway: 0,
    joins: 0,
    leaves: 0,
    crashes: 0,
    restarts: 0,
  }
  private readonly tokensPerSecondValues: number[] = []
  private readonly ttftValues: number[] = []
  private readonly failoverValues: number[] = []
  private readonly noticeValues: number[] = []
  private readonly replayValues: number[] = []
  private readonly hopValues: number[] = []
  private readonly samples: ChainSample[] = []
  private readonly view: RouteView

  private readonly hooks: ChainSimulationHooks

  constructor(options: ChainSimulationOptions, hooks: ChainSimulationHooks = {}) {
    const p = deriveChainParameters(options)
    this.hooks = hooks
    this.parameters = p
    this.model = p.model
    this.random = new SeededRandom(p.seed)
    this.sessionRandom = this.random.fork()
    this.linkRandom = this.random.fork()
    this.byBlock = Array.from({ length: p.model.blocks }, () => [])
    this.coverage = new Float64Array(p.model.blocks)
    this.view = {
      serversAt: (block) => this.byBlock[block],
      spanEnd: (server) => this.spanEnd[server],
      hopCostMs: (server, blocks) => this.hopCostMs(server, blocks),
    }
  }

  /** What routing ranks a hop by: the round trip, the hidden state both ways, the compute, the queue. */
  private hopCostMs(server: number, blocks: number): number {
    const client = this.routingClientRegion
    const rtt = 2 * REGION_LATENCY_MS[client][this.region[server]] * this.parameters.latencyScale
    const bytes = this.wireBytes(1)
    const transfer = bytes / this.uploadBytesPerMs[server] + bytes / this.routingClientUpload
    const compute = spanStepMs(this.model, GPU_CLASSES[this.gpu[server]], this.slow[server], blocks, 1)
    const queued = Math.max(0, this.busyUntilMs[server] - this.now)
    return rtt + transfer + compute + queued
  }
  private wireBytes(rows: number): number {
    return HIDDEN_FRAME_BYTES + rows * this.model.width * this.parameters.hiddenValueBytes
  }
  private routingClientRegion = 0
  private routingClientUpload = 1

  private pickRegion(random: SeededRandom): number {
    const shares = this.parameters.regionShares
    let u = random.float()
    for (let r = 0; r < shares.length; r++) {
      u -= shares[r]
      if (u < 0) return r
    }
    return shares.length - 1
  }

  private uploadDraw(random: SeededRandom): number {
    const p = this.parameters
    const mbps = p.uploadMbpsMin * (p.uploadMbpsMax / p.uploadMbpsMin) ** random.float()
    return (mbps * 1e6) / 8 / 1000
  }

  /** A new server: region, GPU, speed and uplink from the seed, its span where coverage is thinnest. */
  private createServer(): number {
    const random = this.random
    const p = this.parameters
    const server = this.state.length
    this.region.push(this.pickRegion(random))
    let u = random.float()
    let gpu = 0
    while (gpu < GPU_CLASSES.length - 1 && u >= GPU_CLASSES[gpu].share) u -= GPU_CLASSES[gpu++].share
    this.gpu.push(gpu)
    this.slow.push(
      random.chance(p.slowServerShare)
        ? p.slowFactorMin + (p.slowFactorMax - p.slowFactorMin) * random.float()
        : 1,
    )
    this.uploadBytesPerMs.push(this.uploadDraw(random))
    this.uplinkFreeAtMs.push(0)
    this.busyUntilMs.push(0)
    this.incarnation.push(0)
    this.upPosition.push(-1)
    this.state.push(ServerState.crashed)
    const length = blocksThatFit(this.model, GPU_CLASSES[gpu])
    const start = thinnestSpanStart(this.coverage, length)
    this.spanStart.push(start)
    this.spanEnd.push(start + length)
    this.tokensPerSecond.push(1000 / spanStepMs(this.model, GPU_CLASSES[gpu], this.slow[server], 1, 1))
    return server
  }

  private markUp(server: number): void {
    this.state[server] = ServerState.up
    this.upPosition[server] = this.upList.length
    this.upList.push(server)
    this.busyUntilMs[server] = this.now
    for (let b = this.spanStart[server]; b < this.spanEnd[server]; b++) {
      this.byBlock[b].push(server)
      this.coverage[b] += this.tokensPerSecond[server]
    }
  }

  private markDown(server: number, state: number): void {
    this.state[server] = state
    this.incarnation[server]++
    const position = this.upPosition[server]
    const last = this.upList.pop()!
    if (last !== server) {
      this.upList[position] = last
      this.upPosition[last] = position
    }
    this.upPosition[server] = -1
    for (let b = this.spanStart[server]; b < this.spanEnd[server]; b++) {
      const list = this.byBlock[b]
      list.splice(list.indexOf(server), 1)
      this.coverage[b] -= this.tokensPerSecond[server]
    }
  }

  private latencyMs(regionA: number, regionB: number): number {
    const random = this.linkRandom
    let delay = sampleLatencyMs(random, regionA, regionB, this.parameters.latencyScale)
    while (random.chance(this.parameters.lossProbability)) delay += STREAM_RETRANSMIT_MS
    return delay
  }

  private nextChurnAtMs(): number {
    const ratePerMs = (this.parameters.churnPerHour * Math.max(1, this.upList.length)) / 3_600_000
    return this.now - Math.log(Math.max(1e-12, this.random.float())) / ratePerMs
  }

  private nextArrivalAtMs(): number {
    const ratePerMs = this.parameters.sessionsPerHour / 3_600_000
    return this.now - Math.log(Math.max(1e-12, this.sessionRandom.float())) / ratePerMs
  }

  run(): ChainSimulationResult {
    const p = this.parameters
    const queue = this.queue
    for (let i = 0; i < p.servers; i++) this.markUp(this.createServer())
    if (p.churnPerHour > 0) queue.push(this.nextChurnAtMs(), Kind.churn, 0, 0, undefined)
    if (p.sessionsPerHour > 0) queue.push(this.nextArrivalAtMs(), Kind.arrival, 0, 0, undefined)
    queue.push(0, Kind.sample, 0, 0, undefined)
    const hardEnd = p.durationMs + CHAIN_DRAIN_MS_MAX
    while (queue.size > 0 && queue.peekTime() <= hardEnd) {
      queue.pop()
      this.now = queue.time
      this.events++
      this.handle(queue.kind, queue.argA, queue.argB)
      if (this.now >= p.durationMs && this.running === 0) break
    }
    return this.finish()
  }

  private handle(kind: number, a: number, b: number): void {
    if (kind === Kind.churn) this.churn()
    else if (kind === Kind.restart) this.restart(a)
    else if (kind === Kind.join) this.join()
    else if (kind === Kind.arrival) this.arrival()
    else if (kind === Kind.sample) this.sample()
    else this.sessionEvent(kind, a, b)
  }

  private sessionEvent(kind: number, a: number, b: number): void {
    const session = this.sessions[a]
    if (session.outcome !== 'running' || session.epoch !== b) return
    if (kind === Kind.hopArrives) this.hopArrives(session)
    else if (kind === Kind.hopReturns) this.hopReturns(session)
    else if (kind === Kind.failover) this.failover(session)
    else if (kind === Kind.stepBegins) this.sendToHop(session, this.now)
  }

  private churn(): void {
    const p = this.parameters
    const random = this.random
    if (this.upList.length > 0) {
      const server = this.upList[random.int(this.upList.length)]
      if (random.chance(p.crashShareOfChurn)) {
        this.counters.crashes++
        this.markDown(server, ServerState.crashed)
        const delay = p.restartDelayMsMin + random.float() * (p.restartDelayMsMax - p.restartDelayMsMin)
        this.queue.push(this.now + delay, Kind.restart, server, 0, undefined)
      } else {
        this.counters.leaves++
        this.markDown(server, ServerState.left)
        this.queue.push(this.now + random.float() * p.replacementJoinMsMax, Kind.join, 0, 0, undefined)
      }
    }
    this.queue.push(this.nextChurnAtMs(), Kind.churn, 0, 0, undefined)
  }

  /** A crashed server comes back with the same span and none of its sessions. */
  private restart(server: number): void {
    if (this.state[server] !== ServerState.crashed) return
    this.counters.restarts++
    this.markUp(server)
  }

  private join(): void {
    this.counters.joins++
    this.markUp(this.createServer())
  }

  private sample(): void {
    let coverageMin = Number.POSITIVE_INFINITY
    for (const list of this.byBlock) coverageMin = Math.min(coverageMin, list.length)
    this.samples.push({
      atS: round3(this.now / 1000),
      serversUp: this.upList.length,
      coverageMin,
      sessionsRunning: this.running,
    })
    this.queue.push(this.now + CHAIN_SAMPLE_INTERVAL_MS, Kind.sample, 0, 0, undefined)
  }

  private route(session: Session, from: number, to: number): Hop[] | undefined {
    this.routingClientRegion = session.clientRegion
    this.routingClientUpload = session.clientUploadBytesPerMs
    const hops = planRoute(this.view, from, to)
    return hops?.map((hop) => ({ ...hop, incarnation: this.incarnation[hop.server], replayRows: 0 }))
  }

  /** The worst one-way latency from the client to any of `hops` (sessions open on them at once). */
  private openMs(session: Session, hops: readonly Hop[]): number {
    let worst = 0
    for (const hop of hops)
      worst = Math.max(worst, this.latencyMs(session.clientRegion, this.region[hop.server]))
    return 2 * worst
  }

  private arrival(): void {
    const p = this.parameters
    const random = this.sessionRandom
    if (this.now < p.durationMs) this.queue.push(this.nextArrivalAtMs(), Kind.arrival, 0, 0, undefined)
    else return
    if (this.sessions.length >= CHAIN_SESSIONS_MAX) return
    const session: Session = {
      id: this.sessions.length,
      clientRegion: this.pickRegion(random),
      clientUploadBytesPerMs: this.uploadDraw(random),
      clientUplinkFreeAtMs: 0,
      startedAtMs: this.now,
      firstTokenAtMs: -1,
      lastTokenAtMs: -1,
      chain: [],
      history: 0,
      stepRows: p.promptTokens,
      tokens: 0,
      hop: 0,
      sentAtMs: this.now,
      epoch: 0,
      failovers: 0,
      stalledMs: 0,
      replayedRows: 0,
      outcome: 'running',
    }
    this.sessions.push(session)
    const chain = this.route(session, 0, this.model.blocks)
    if (!chain) {
      session.outcome = 'failed'
      this.counters.failedAtStart++
      this.reportFailure(session, 0, this.model.blocks)
      this.reportEnd(session)
      return
    }
    this.running++
    session.chain = chain
    this.hopValues.push(chain.length)
    // the DHT lookup of the model's servers, then the sessions open on every hop at once
    let lookupMs = 0
    for (let i = 0; i < p.lookupRoundTrips; i++) {
      const other = this.region[this.upList[this.linkRandom.int(this.upList.length)]]
      lookupMs += this.latencyMs(session.clientRegion, other) + this.latencyMs(other, session.clientRegion)
    }
    this.sendToHop(session, this.now + lookupMs + this.openMs(session, chain))
  }

  /** Sends the current step's rows (and a replacement's replay) to the session's current hop. */
  private sendToHop(session: Session, atMs: number): void {
    const hop = session.chain[session.hop]
    const bytes = this.wireBytes(hop.replayRows + session.stepRows)
    const start = Math.max(atMs, session.clientUplinkFreeAtMs)
    const sent = start + bytes / session.clientUploadBytesPerMs
    session.clientUplinkFreeAtMs = sent
    session.sentAtMs = atMs
    const arrives = sent + this.latencyMs(session.clientRegion, this.region[hop.server])
    this.queue.push(arrives, Kind.hopArrives, session.id, session.epoch, undefined)
  }

  private alive(hop: Hop): boolean {
    return this.state[hop.server] === ServerState.up && this.incarnation[hop.server] === hop.incarnation
  }

  /** The session notices its hop's server is gone: at once for a closed stream, after a stall otherwise. */
  private noticeFailure(session: Session, hop: Hop): void {
    const server = hop.server
    const at =
      this.state[server] === ServerState.crashed
        ? Math.max(this.now, session.sentAtMs + this.parameters.stallTimeoutMs)
        : this.now + this.latencyMs(this.region[server], session.clientRegion)
    this.queue.push(at, Kind.failover, session.id, session.epoch, undefined)
  }

  private hopArrives(session: Session): void {
    const hop = session.chain[session.hop]
    if (!this.alive(hop)) {
      this.noticeFailure(session, hop)
      return
    }
    const server = hop.server
    const rows = hop.replayRows + session.stepRows
    const gpu = GPU_CLASSES[this.gpu[server]]
    const begins = Math.max(this.now, this.busyUntilMs[server])
    const done = begins + spanStepMs(this.model, gpu, this.slow[server], hop.end - hop.start, rows)
    this.busyUntilMs[server] = done
    // a replacement followed by another one sends back every row: the next one's replay is its output
    const next = session.chain[session.hop + 1]
    const returnRows =
      hop.replayRows > 0 && next !== undefined && next.replayRows > 0 ? rows : session.stepRows
    const bytes = this.wireBytes(returnRows)
    const sendStart = Math.max(done, this.uplinkFreeAtMs[server])
    const sent = sendStart + bytes / this.uploadBytesPerMs[server]
    this.uplinkFreeAtMs[server] = sent
    const back = sent + this.latencyMs(this.region[server], session.clientRegion)
    this.queue.push(back, Kind.hopReturns, session.id, session.epoch)
  }

  private hopReturns(session: Session): void {
    const hop = session.chain[session.hop]
    // the server went away while computing: its answer never came
    if (!this.alive(hop)) {
      this.noticeFailure(session, hop)
      return
    }
    hop.replayRows = 0
    session.hop++
    if (session.hop < session.chain.length) this.sendToHop(session, this.now)
    else this.tokenDone(session)
  }

  private tokenDone(session: Session): void {
    const p = this.parameters
    session.history += session.stepRows
    session.tokens++
    const at = this.now + this.model.clientStepMs
    if (session.tokens === 1) session.firstTokenAtMs = at
    session.lastTokenAtMs = at
    if (session.tokens >= p.newTokens) {
      session.outcome = 'completed'
      this.running--
      this.counters.completed++
      this.ttftValues.push(session.firstTokenAtMs - session.startedAtMs)
      if (session.tokens > 1)
        this.tokensPerSecondValues.push(
          ((session.tokens - 1) * 1000) / (session.lastTokenAtMs - session.firstTokenAtMs),
        )
      this.failoverValues.push(session.failovers)
      this.reportEnd(session)
      return
    }
    session.stepRows = 1
    session.hop = 0
    this.queue.push(at, Kind.stepBegins, session.id, session.epoch)
  }

  /** Re-routes the failed hop's blocks over live servers and replays the history there, or fails. */
  private failover(session: Session): void {
    const failed = session.chain[session.hop]
    session.failovers++
    this.noticeValues.push(this.now - session.sentAtMs)
    session.stalledMs += this.now - session.sentAtMs
    const replacement = this.route(session, failed.start, failed.end)
    if (!replacement) {
      session.outcome = 'failed'
      this.running--
      this.counters.failedMidway++
      this.failoverValues.push(session.failovers)
      this.reportFailure(session, failed.start, failed.end)
      this.reportEnd(session)
      return
    }
    // every replacement hop must first be given the rows its cache should hold (the failed hop's
    // replay rows too, when it was itself a replacement that never answered)
    const rows = session.history
    for (const hop of replacement) hop.replayRows = rows
    session.replayedRows += rows * replacement.length
    this.replayValues.push(rows * replacement.length)
    session.chain.splice(session.hop, 1, ...replacement)
    session.epoch++
    this.sendToHop(session, this.now + this.openMs(session, replacement))
  }

  private reportEnd(session: Session): void {
    const onEnded = this.hooks.onSessionEnded
    if (!onEnded || session.outcome === 'running') return
    const completed = session.outcome === 'completed'
    onEnded({
      session: session.id,
      outcome: session.outcome,
      tokens: session.tokens,
      timeToFirstTokenMs: completed ? session.firstTokenAtMs - session.startedAtMs : -1,
      tokensPerSecond:
        completed && session.tokens > 1
          ? ((session.tokens - 1) * 1000) / (session.lastTokenAtMs - session.firstTokenAtMs)
          : -1,
      failovers: session.failovers,
    })
  }

  private reportFailure(session: Session, from: number, to: number): void {
    const onFailed = this.hooks.onSessionFailed
    if (!onFailed) return
    const liveSpans: [number, number][] = this.upList.map((server) => [
      this.spanStart[server],
      this.spanEnd[server],
    ])
    onFailed({ session: session.id, atMs: this.now, from, to, liveSpans })
  }

  private finish(): ChainSimulationResult {
    const p = this.parameters
    const c = this.counters
    const failed = c.failedAtStart + c.failedMidway
    const blocks: number[] = []
    for (let server = 0; server < this.state.length; server++)
      blocks.push(this.spanEnd[server] - this.spanStart[server])
    let coverageMin = Number.POSITIVE_INFINITY
    for (const sample of this.samples) coverageMin = Math.min(coverageMin, sample.coverageMin)
    let withFailover = 0
    for (const session of this.sessions)
      if (session.outcome !== 'running' && session.failovers > 0) withFailover++
    return {
      parameters: p,
      events: this.events,
      endedAtS: round3(this.now / 1000),
      sessions: {
        started: this.sessions.length,
        completed: c.completed,
        failedAtStart: c.failedAtStart,
        failedMidway: c.failedMidway,
        unfinished: this.running,
      },
      completedShare: c.completed + failed === 0 ? 0 : round3(c.completed / (c.completed + failed)),
      tokensPerSecond: quantilesOf(this.tokensPerSecondValues),
      timeToFirstTokenMs: quantilesOf(this.ttftValues),
      failoversPerSession: quantilesOf(this.failoverValues),
      sessionsWithFailover: withFailover,
      failoverNoticeMs: quantilesOf(this.noticeValues),
      replayedRowsPerFailover: quantilesOf(this.replayValues),
      chainHops: quantilesOf(this.hopValues),
      servers: {
        initial: p.servers,
        joins: c.joins,
        leaves: c.leaves,
        crashes: c.crashes,
        restarts: c.restarts,
        blocksPerServer: quantilesOf(blocks),
        coverageMin: coverageMin === Number.POSITIVE_INFINITY ? 0 : coverageMin,
      },
      samples: this.samples,
    }
  }
}

/** Runs one chain simulation to its end. */
export function simulateChains(
  options: ChainSimulationOptions,
  hooks?: ChainSimulationHooks,
): ChainSimulationResult {
  return new ChainSimulation(options, hooks).run()
}

/** The human summary of a run. */
export function describeChainResult(result: ChainSimulationResult): string[] {
  const p = result.parameters
  const s = result.sessions
  const tps = result.tokensPerSecond
  const ttft = result.timeToFirstTokenMs
  const failovers = result.failoversPerSession
  const servers = result.servers
  return [
    `seed=${p.seed} chains: ${p.model.name} (${p.model.blocks} blocks), ${p.servers} servers, churn ` +
      `${p.churnPerHour}/h, ${s.started} sessions of ${p.promptTokens}+${p.newTokens} tokens, ` +
      `${result.events} events`,
    `sessions: ${s.completed} completed, ${s.failedAtStart} failed at start, ${s.failedMidway} failed ` +
      `midway (no live server for a block), ${s.unfinished} unfinished; completed share ` +
      `${result.completedShare}`,
    `tokens/s per session: p10 ${tps.p10} p50 ${tps.p50} p90 ${tps.p90}; time to first token p50 ` +
      `${ttft.p50} ms p90 ${ttft.p90} ms; chain hops p50 ${result.chainHops.p50}`,
    `failovers: ${failovers.mean} per session (max ${failovers.max}), ${result.sessionsWithFailover} ` +
      `sessions failed over; noticed after p50 ${result.failoverNoticeMs.p50} ms, replayed rows p50 ` +
      `${result.replayedRowsPerFailover.p50}`,
    `servers: ${servers.leaves} leaves, ${servers.crashes} crashes, ${servers.restarts} restarts, ` +
      `${servers.joins} joins; blocks per server p50 ${servers.blocksPerServer.p50}, fewest servers ` +
      `on a block ${servers.coverageMin}`,
  ]
}

/** The CLI command that replays the run. */
export function chainReplayCommand(p: ChainDerivedParameters): string {
  return (
    `shardnet sim chains --seed ${p.seed} --model ${p.model.name} --servers ${p.servers} ` +
    `--churn ${p.churnPerHour} --sessions ${p.sessionsPerHour} --prompt ${p.promptTokens} ` +
    `--tokens ${p.newTokens} --duration ${p.durationMs}ms --stall-timeout ${p.stallTimeoutMs}ms ` +
    `--loss ${p.lossProbability} --value-bytes ${p.hiddenValueBytes}`
  )
}

/** The run as report JSON: the parameters, the replay command and every figure (no wall-clock time). */
export function chainReportJson(result: ChainSimulationResult): Record<string, unknown> {
  return { seed: result.parameters.seed, replay: chainReplayCommand(result.parameters), ...result }
}
