// POST /v1/generate: shardnet's own generation route (what `shardnet generate --network` calls), and
// what it shares with the OpenAI-compatible routes (openai.ts): choosing the model, starting a
// generation on the ServingApi and waiting for its first byte, so that a request that cannot start is
// answered with an HTTP status rather than inside a stream already under way.
//
// Request (JSON): { model: id or name, prompt: text | promptBase64: bytes, maxTokens?, temperature?,
// topP?, topK?, seed?, stop?: text[], stopBase64?: bytes[], verify? }. The response is NDJSON
// (application/x-ndjson), one object a line: { "bytes": base64 } for each piece generated, as it
// is drawn, then one last line, { "result": NetworkGenerateResult & { model } } or, when the
// generation failed after it started, { "error": { message, code } }. Bytes travel as base64: a byte
// model may produce invalid UTF-8, and the CLI writes exactly the bytes drawn.
import { CID } from 'multiformats/cid'
import { GENERATE_DEFAULTS, GENERATE_LIMITS } from '../executor/local-gpt.js'
import {
  type NetworkGenerateRequest,
  type NetworkGenerateResult,
  type ServingApi,
  ServingError,
} from '../serving/api.js'
import { ApiError, type ApiRoute, ApiStream } from './server.js'

/** Limits of a generation request through the API (beyond the local generator's GENERATE_LIMITS). */
export const GENERATE_API_LIMITS = {
  ...GENERATE_LIMITS,
  /** stop sequences per request (OpenAI allows 4) */
  stopMax: 4,
  /** bytes of one stop sequence */
  stopBytesMax: 256,
  seedMax: 0xffff_ffff,
  verifyMax: 1,
}

/**
 * How long a generation route may go without a byte (the first one included: finding a chain and
 * fetching the model's ends can take a while on first use) before it is aborted. The chain notices
 * a stalled server sooner (its step timeout) and replaces it; this is the backstop.
 */
export const GENERATION_IDLE_TIMEOUT_MS_DEFAULT = 120_000

export interface GenerationRouteOptions {
  /** @default GENERATION_IDLE_TIMEOUT_MS_DEFAULT */
  idleTimeoutMs?: number
}

/** the HTTP status of each ServingError code */
export const SERVING_ERROR_STATUS: Readonly<Record<ServingError['code'], number>> = Object.freeze({
  'bad-request': 400,
  'not-found': 404,
  unavailable: 503,
})

/** A generation whose first byte (or its end) has come: the request has started. */
export interface StartedGeneration {
  /** the model's content id */
  model: string
  /** every byte piece, the first one included; closing it (return) aborts nothing by itself */
  pieces: AsyncGenerator<Uint8Array>
  result: Promise<NetworkGenerateResult>
}

/**
 * The model's content id: `model` itself when it is a CID, else the id of the one model this node
 * lists under that name. A name nobody lists, or two models share, is answered 404 or 400.
 */
export async function resolveModel(
  serving: ServingApi,
  model: string,
  signal: AbortSignal,
  refuse: (status: number, message: string) => ApiError,
): Promise<string> {
  try {
    CID.parse(model)
    return model
  } catch {
    // not a content id: a model's name
  }
  const named = (await serving.models({ signal })).filter((listing) => listing.name === model)
  if (named.length === 0)
    throw refuse(
      404,
      `the model "${model}" does not exist: no model this node serves or found has that id or name`,
    )
  if (named.length > 1) {
    const ids = named.map((listing) => listing.model).join(', ')
    throw refuse(400, `${named.length} models are named "${model}" (${ids}): name one by its id`)
  }
  return named[0].model
}

/**
 * Starts a generation and waits for its first byte (or its end), so that a ServingError before the
 * first byte becomes `refuse(status, message, code)`. The request's signal aborts the generation.
 */
export async function startGeneration(
  serving: ServingApi,
  request: NetworkGenerateRequest,
  refuse: (status: number, message: string, code: ServingError['code']) => ApiError,
): Promise<StartedGeneration> {
  let iterator: AsyncIterator<Uint8Array>
  let result: Promise<NetworkGenerateResult>
  let first: IteratorResult<Uint8Array>
  try {
    const generation = serving.generate(request)
    result = generation.result
    // read below, or never when the start fails: its rejection is the one `first` reports
    result.catch(() => {})
    iterator = generation[Symbol.asyncIterator]()
    first = await iterator.next()
  } catch (error) {
    if (error instanceof ServingError)
      throw refuse(SERVING_ERROR_STATUS[error.code], error.message, error.code)
    throw error
  }
  async function* pieces(): AsyncGenerator<Uint8Array> {
    try {
      if (first.done === true) return
      yield first.value
      for (;;) {
        const next = await iterator.next()
        if (next.done === true) return
        yield next.value
      }
    } finally {
      await iterator.return?.()
    }
  }
  return { model: request.model, pieces: pieces(), result }
}

/** A field of a JSON request body that is wrong: the status is 400 and `param` names the field. */
export class GenerateRequestError extends Error {
  static override name = 'GenerateRequestError'
  readonly param: string
  constructor(param: string, message: string) {
    super(message)
    this.name = 'GenerateRequestError'
    this.param = param
  }
}

/** `value` when an integer in [min, max], `fallback` when absent (undefined or null); else throws. */
export function integerField(
  param: string,
  value: unknown,
  min: number,
  max: number,
  fallback: number,
): number {
  if (value == null) return fallback
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max)
    throw new GenerateRequestError(
      param,
      `'${param}' must be an integer from ${min} to ${max}, got ${show(value)}`,
    )
  return value
}

/** `value` when a number in [min, max] (above min when `exclusiveMin`), `fallback` when absent. */
export function numberField(
  param: string,
  value: unknown,
  range: { min: number; max: number; exclusiveMin?: boolean },
  fallback: number,
): number {
  if (value == null) return fallback
  const low = range.exclusiveMin === true ? `above ${range.min}` : `from ${range.min}`
  if (
    typeof value !== 'number' ||
    !Number.isFinite(value) ||
    value < range.min ||
    (range.exclusiveMin === true && value === range.min) ||
    value > range.max
  )
    throw new GenerateRequestError(
      param,
      `'${param}' must be a number ${low} to ${range.max}, got ${show(value)}`,
    )
  return value
}

/** Stop sequences: a string or an array of strings (each non-empty), as UTF-8 bytes. */
export function stopField(param: string, value: unknown): Uint8Array[] {
  if (value == null) return []
  const list = typeof value === 'string' ? [value] : value
  if (!Array.isArray(list) || list.some((entry) => typeof entry !== 'string'))
    throw new GenerateRequestError(param, `'${param}' must be a string or an array of strings`)
  if (list.length > GENERATE_API_LIMITS.stopMax)
    throw new GenerateRequestError(
      param,
      `'${param}' holds ${list.length} sequences; at most ${GENERATE_API_LIMITS.stopMax} are allowed`,
    )
  return list.map((entry: string) => stopBytes(param, new Uint8Array(Buffer.from(entry, 'utf8'))))
}

function stopBytes(param: string, bytes: Uint8Array): Uint8Array {
  if (bytes.length === 0 || bytes.length > GENERATE_API_LIMITS.stopBytesMax)
    throw new GenerateRequestError(
      param,
      `each of '${param}' must hold 1 to ${GENERATE_API_LIMITS.stopBytesMax} bytes, got ${bytes.length}`,
    )
  return bytes
}

/** a value shown in an error message, cut short */
export function show(value: unknown): string {
  const text = JSON.stringify(value) ?? String(value)
  return text.length > 40 ? `${text.slice(0, 40)}...` : text
}

function base64Field(param: string, value: unknown): Uint8Array {
  if (typeof value !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(value) || value.length % 4 !== 0)
    throw new GenerateRequestError(param, `'${param}' must be base64`)
  return new Uint8Array(Buffer.from(value, 'base64'))
}

/** The body of POST /v1/generate, checked: see the module comment. */
export function parseGenerateBody(body: unknown): Omit<NetworkGenerateRequest, 'signal'> {
  if (typeof body !== 'object' || body === null || Array.isArray(body))
    throw new GenerateRequestError('', 'the request body must be a JSON object')
  const fields = body as Record<string, unknown>
  if (typeof fields.model !== 'string' || fields.model.length === 0 || fields.model.length > 200)
    throw new GenerateRequestError('model', "'model' must be a model's content id or name")
  let prompt: Uint8Array
  if (fields.promptBase64 != null) {
    if (fields.prompt != null)
      throw new GenerateRequestError('prompt', "give either 'prompt' or 'promptBase64', not both")
    prompt = base64Field('promptBase64', fields.promptBase64)
  } else {
    if (typeof fields.prompt !== 'string')
      throw new GenerateRequestError('prompt', "'prompt' must be a string (or 'promptBase64' bytes)")
    prompt = new Uint8Array(Buffer.from(fields.prompt, 'utf8'))
  }
  if (prompt.length === 0) throw new GenerateRequestError('prompt', 'the prompt must hold at least one byte')
  const stop = stopField('stop', fields.stop)
  if (fields.stopBase64 != null) {
    if (!Array.isArray(fields.stopBase64))
      throw new GenerateRequestError('stopBase64', "'stopBase64' must be an array of base64 strings")
    for (const entry of fields.stopBase64)
      stop.push(stopBytes('stopBase64', base64Field('stopBase64', entry)))
    if (stop.length > GENERATE_API_LIMITS.stopMax)
      throw new GenerateRequestError(
        'stop',
        `${stop.length} stop sequences; at most ${GENERATE_API_LIMITS.stopMax} are allowed`,
      )
  }
  const limits = GENERATE_API_LIMITS
  return {
    model: fields.model,
    prompt,
    maxTokens: integerField('maxTokens', fields.maxTokens, 1, limits.tokensMax, GENERATE_DEFAULTS.tokens),
    temperature: numberField(
      'temperature',
      fields.temperature,
      { min: 0, max: limits.temperatureMax },
      GENERATE_DEFAULTS.temperature,
    ),
    topP: numberField('topP', fields.topP, { min: 0, max: 1, exclusiveMin: true }, 1),
    topK: integerField('topK', fields.topK, 0, limits.topKMax, GENERATE_DEFAULTS.topK),
    seed: integerField('seed', fields.seed, 0, limits.seedMax, GENERATE_DEFAULTS.seed),
    stop,
    verify: numberField('verify', fields.verify, { min: 0, max: limits.verifyMax }, 0),
  }
}

/** The lines of POST /v1/generate's response: see the module comment. */
export type GenerateStreamLine =
  | { bytes: string }
  | { result: NetworkGenerateResult & { model: string } }
  | { error: { message: string; code: string } }

/** NDJSON of a started generation: its pieces as they come, then its result or its error. */
async function* generateLines(started: StartedGeneration, signal: AbortSignal): AsyncGenerator<string> {
  const line = (value: GenerateStreamLine) => `${JSON.stringify(value)}\n`
  try {
    for await (const piece of started.pieces) yield line({ bytes: Buffer.from(piece).toString('base64') })
    yield line({ result: { ...(await started.result), model: started.model } })
  } catch (error) {
    yield line({ error: streamError(error, signal) })
  }
}

/** What to tell a client whose generation failed after it started. */
export function streamError(error: unknown, signal: AbortSignal): { message: string; code: string } {
  if (signal.aborted && (signal.reason as Error | undefined)?.name === 'TimeoutError')
    return { message: 'the generation made no progress for the request timeout', code: 'timeout' }
  if (error instanceof ServingError) return { message: error.message, code: error.code }
  return { message: `the generation failed: ${(error as Error)?.message ?? String(error)}`, code: 'internal' }
}

/** An ApiError of /v1/generate: { error: message, code, param? }. */
function generateError(status: number, message: string, code?: string, param?: string): ApiError {
  return new ApiError(status, message, {
    error: message,
    ...(code ? { code } : {}),
    ...(param ? { param } : {}),
  })
}

/**
 * The route `shardnet generate --network` calls; `servingOf` throws ApiError 503 while there is none.
 * Aborted after `idleTimeoutMs` without a byte.
 */
export function generateRoutes(
  servingOf: () => ServingApi,
  options: GenerationRouteOptions = {},
): ApiRoute[] {
  return [
    {
      method: 'POST',
      path: '/v1/generate',
      timeoutMs: options.idleTimeoutMs ?? GENERATION_IDLE_TIMEOUT_MS_DEFAULT,
      handle: async ({ body, signal }) => {
        let parsed: Omit<NetworkGenerateRequest, 'signal'>
        try {
          parsed = parseGenerateBody(body)
        } catch (error) {
          if (error instanceof GenerateRequestError)
            throw generateError(400, error.message, 'bad-request', error.param || undefined)
          throw error
        }
        const serving = servingOf()
        const model = await resolveModel(serving, parsed.model, signal, (status, message) =>
          generateError(status, message, status === 404 ? 'not-found' : 'bad-request', 'model'),
        )
        const started = await startGeneration(
          serving,
          { ...parsed, model, signal },
          (status, message, code) => generateError(status, message, code),
        )
        return new ApiStream({ contentType: 'application/x-ndjson', chunks: generateLines(started, signal) })
      },
    },
  ]
}
