// In-process span servers for the chain tests: each holds a real GptSpan and opens sessions on it as
// SpanHost's local sessions do (no libp2p), with the adversaries a test asks for: a server that dies
// (its stream ends), one that stalls (never answers), one that lies (perturbs its outputs).
import type { Backend } from '../../../kernels/backend.js'
import { SeededRandom } from '../../../kernels/data/random.js'
import { type GptConfig, initializeGpt } from '../../../kernels/models/gpt/config.js'
import { GptSpan } from '../../../kernels/models/gpt/span.js'
import type { ReputationBook } from '../../../node/reputation.js'
import type { ChainNetwork, ChainSpanSession } from '../../../node/serving/chain.js'
import type { RouteCandidate } from '../../../node/serving/route.js'
import { SpanProtocolError, SpanStreamClosedError } from '../../../protocols/serving/index.js'

export const TEST_CONFIG: GptConfig = {
  vocabSize: 256,
  context: 64,
  width: 32,
  layers: 4,
  heads: 2,
  layerNormEpsilon: 1e-5,
}

/** initial weights with a seeded perturbation, so the logits are far from uniform and the text varies */
export function testParameters(config: GptConfig, seed: number): Float32Array {
  const params = initializeGpt(config, seed)
  const random = SeededRandom.stream(seed, 'test:perturb')
  for (let i = 0; i < params.length; i++) params[i] += 0.08 * random.normal()
  return params
}

export interface Misbehaviour {
  /** after this many steps answered (over all its sessions), the server's streams end */
  dieAfterSteps?: number
  /** after this many steps answered, it stops answering */
  stallAfterSteps?: number
  /**
   * perturbs every output value by up to this much (from the first step), in a pattern that is not
   * a constant per row (the next LayerNorm would remove that)
   */
  lieBy?: number
}

export interface TestServer {
  peerId: string
  start: number
  end: number
  tokensPerSecond: number
  latencyMs?: number
  misbehaviour?: Misbehaviour
  /** steps answered */
  steps: number
  /** sessions opened and not closed */
  open: number
}

export class InProcessServers implements ChainNetwork {
  readonly servers: TestServer[] = []
  readonly #spans = new Map<string, GptSpan>()
  readonly #backend: Backend
  readonly #config: GptConfig
  readonly #params: Float32Array
  readonly #book: ReputationBook | undefined
  readonly self: string
  lookups = 0

  constructor(backend: Backend, config: GptConfig, params: Float32Array, book?: ReputationBook, self = 'me') {
    this.#backend = backend
    this.#config = config
    this.#params = params
    this.#book = book
    this.self = self
  }

  add(peerId: string, start: number, end: number, tokensPerSecond: number, misbehaviour?: Misbehaviour) {
    const key = `${start}-${end}`
    if (!this.#spans.has(key))
      this.#spans.set(key, GptSpan.fromParameters(this.#backend, this.#config, this.#params, start, end))
    const server: TestServer = { peerId, start, end, tokensPerSecond, misbehaviour, steps: 0, open: 0 }
    this.servers.push(server)
    return server
  }

  async candidates(): Promise<RouteCandidate[]> {
    this.lookups++
    return this.servers.map((s) => ({
      peerId: s.peerId,
      start: s.start,
      end: s.end,
      tokensPerSecond: s.tokensPerSecond,
      latencyMs: 1,
      reputation: this.#book?.score(s.peerId) ?? 0.5,
    }))
  }

  isLocal(peerId: string): boolean {
    return peerId === this.self
  }

  async open(
    hop: { peerId: string; start: number; end: number },
    maxLength: number,
  ): Promise<ChainSpanSession> {
    const server = this.servers.find((s) => s.peerId === hop.peerId)
    if (server === undefined) throw new SpanStreamClosedError(`no peer ${hop.peerId}`)
    if (hop.start < server.start || hop.end > server.end)
      throw new SpanProtocolError('outside-model', 'not served here')
    if (server.misbehaviour?.dieAfterSteps !== undefined && server.steps >= server.misbehaviour.dieAfterSteps)
      throw new SpanStreamClosedError('connection refused')
    // a sub-span of a served span: its own GptSpan of those blocks (same weights)
    const key = `${hop.start}-${hop.end}`
    let span = this.#spans.get(key)
    if (span === undefined) {
      span = GptSpan.fromParameters(this.#backend, this.#config, this.#params, hop.start, hop.end)
      this.#spans.set(key, span)
    }
    const session = span.session(maxLength)
    server.open++
    let closed = false
    const m = server.misbehaviour ?? {}
    return {
      step: async (offset, rows, hidden) => {
        if (closed) throw new SpanStreamClosedError('the span session is closed')
        if (m.dieAfterSteps !== undefined && server.steps >= m.dieAfterSteps)
          throw new SpanStreamClosedError('the span stream ended: reset')
        if (m.stallAfterSteps !== undefined && server.steps >= m.stallAfterSteps)
          return new Promise<never>(() => {})
        const out = await session.forward(hidden, rows, offset)
        server.steps++
        if (m.lieBy !== undefined)
          for (let i = 0; i < out.length; i++) out[i] += (m.lieBy * (((i * 7919) % 13) - 6)) / 6
        return { hidden: out }
      },
      close: async () => {
        if (closed) return
        closed = true
        server.open--
        session.dispose()
      },
    }
  }

  dispose(): void {
    for (const span of this.#spans.values()) span.dispose()
  }
}
