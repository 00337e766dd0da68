// A STAND-IN ServingApi for the tests of the API routes (node/api/openai.ts, generate-routes.ts):
// it generates on this process with the real local model code (generateBytes of a GPT loaded from a
// model directory on the cpu backend), not through a chain of span servers. It exists so the routes
// can be tested as an OpenAI client uses them without daemons; the tests against real daemons
// serving spans use the daemon's own ServingApi. It does what the ServingApi contract asks of the
// bytes (node/serving/api.ts): stop sequences held back until they cannot start a match and never
// emitted, the prompt cut from the left to the context, ServingError before the first byte.
import { createHash } from 'node:crypto'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { create as createDigest } from 'multiformats/hashes/digest'
import { CpuBackend } from '../../kernels/index.js'
import { generateBytes } from '../../kernels/models/gpt/generate.js'
import { Gpt } from '../../kernels/models/gpt/model.js'
import { loadGpt } from '../../node/executor/model-files.js'
import {
  type NetworkGenerateRequest,
  type NetworkGenerateResult,
  type NetworkGeneration,
  type ServingApi,
  ServingError,
  type ServingModelListing,
} from '../../node/serving/api.js'

/** How each generation the stand-in ran ended. */
export type LocalOutcome = 'length' | 'stop' | 'aborted' | 'failed'

/** Bytes `generated` may release: all but the longest suffix that is a proper prefix of a stop. */
function releasable(generated: number[], stops: Uint8Array[]): number {
  let hold = 0
  for (const stop of stops) {
    for (let length = Math.min(stop.length - 1, generated.length); length > hold; length--) {
      let match = true
      for (let i = 0; i < length && match; i++) match = generated[generated.length - length + i] === stop[i]
      if (match) hold = length
    }
  }
  return generated.length - hold
}

/** whether `generated` ends with `stop` */
function endsWith(generated: number[], stop: Uint8Array): boolean {
  if (generated.length < stop.length) return false
  for (let i = 0; i < stop.length; i++)
    if (generated[generated.length - stop.length + i] !== stop[i]) return false
  return true
}

export class LocalModelServing implements ServingApi {
  /** what the routes asked for, in order (the signal left out) */
  readonly requests: Array<Omit<NetworkGenerateRequest, 'signal'>> = []
  /** how each generation ended, in order */
  readonly outcomes: LocalOutcome[] = []
  /** generations running now */
  active = 0
  /** make the next generations fail after this many bytes (a chain that broke mid-generation) */
  failAfterBytes: number | undefined
  /** no chain: every generation refused with ServingError unavailable */
  unavailable = false

  private constructor(
    readonly modelId: string,
    private readonly gpt: Gpt,
    private readonly backend: CpuBackend,
    private readonly listing: ServingModelListing,
  ) {}

  static async open(directory: string): Promise<LocalModelServing> {
    const loaded = await loadGpt(directory)
    const backend = new CpuBackend()
    const gpt = Gpt.create(backend, loaded.config, loaded.params)
    // the stand-in's id: a CID of the parameters (the real model id is the package's CID)
    const digest = createHash('sha256').update(new Uint8Array(loaded.params.buffer)).digest()
    const modelId = CID.createV1(raw.code, createDigest(0x12, digest)).toString()
    return new LocalModelServing(modelId, gpt, backend, {
      model: modelId,
      name: loaded.manifest.model,
      blocks: loaded.config.layers,
      context: loaded.config.context,
      served: [{ start: 0, end: loaded.config.layers }],
      chainFound: true,
      createdMs: Date.now(),
    })
  }

  async models(): Promise<ServingModelListing[]> {
    return [this.listing]
  }

  generate(request: NetworkGenerateRequest): NetworkGeneration {
    const { signal, ...recorded } = request
    this.requests.push(recorded)
    if (request.model !== this.modelId)
      throw new ServingError('not-found', `no model ${request.model} is served on this network`)
    if (this.unavailable)
      throw new ServingError('unavailable', `no chain of servers covers every block of ${request.model}`)
    let settle!: (result: NetworkGenerateResult) => void
    let fail!: (error: unknown) => void
    const result = new Promise<NetworkGenerateResult>((resolve, reject) => {
      settle = resolve
      fail = reject
    })
    const bytes = this.run(request, settle, fail)
    return { result, [Symbol.asyncIterator]: () => bytes }
  }

  private async *run(
    request: NetworkGenerateRequest,
    settle: (result: NetworkGenerateResult) => void,
    fail: (error: unknown) => void,
  ): AsyncGenerator<Uint8Array> {
    const started = performance.now()
    const context = this.listing.context
    const truncatedBytes = Math.max(0, request.prompt.length - context)
    const generated: number[] = []
    let released = 0
    let firstTokenMs = 0
    let finishReason: NetworkGenerateResult['finishReason'] = 'length'
    let outcome: LocalOutcome = 'failed'
    const failAfter = this.failAfterBytes
    this.active++
    try {
      for await (const byte of generateBytes(this.backend, this.gpt, request.prompt, {
        tokens: request.maxTokens,
        temperature: request.temperature,
        topK: request.topK,
        topP: request.topP,
        seed: request.seed,
      })) {
        // a client that went away: the generation ends here
        request.signal?.throwIfAborted()
        if (failAfter !== undefined && generated.length >= failAfter)
          throw new ServingError('unavailable', 'every server of blocks 0-1 is gone')
        generated.push(byte)
        const stop = request.stop.find((sequence) => endsWith(generated, sequence))
        if (stop !== undefined) {
          generated.length -= stop.length
          finishReason = 'stop'
          break
        }
        const upTo = releasable(generated, request.stop)
        if (upTo > released) {
          if (released === 0) firstTokenMs = performance.now() - started
          yield Uint8Array.from(generated.slice(released, upTo))
          released = upTo
        }
        // what a network step costs at least: the event loop turns (and an abort is seen)
        await new Promise((resolve) => setImmediate(resolve))
      }
      if (generated.length > released) {
        if (released === 0) firstTokenMs = performance.now() - started
        yield Uint8Array.from(generated.slice(released))
        released = generated.length
      }
      outcome = finishReason
      settle({
        tokens: generated.length,
        promptTokens: request.prompt.length - truncatedBytes,
        truncatedBytes,
        finishReason,
        seconds: (performance.now() - started) / 1000,
        firstTokenMs,
        chain: [{ peerId: 'local-stand-in', start: 0, end: this.listing.blocks, local: true }],
        failovers: 0,
        verifiedSteps: 0,
        droppedServers: [],
      })
    } catch (error) {
      outcome = request.signal?.aborted === true ? 'aborted' : 'failed'
      fail(error)
      throw error
    } finally {
      // a consumer that stopped iterating (return) without an abort
      if (outcome === 'failed' && request.signal?.aborted === true) outcome = 'aborted'
      this.outcomes.push(outcome)
      this.active--
    }
  }

  close(): void {
    this.gpt.dispose()
    this.backend.destroy()
  }
}
