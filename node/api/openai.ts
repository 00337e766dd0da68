// The OpenAI-compatible endpoint on the daemon's API, so that tools written for OpenAI's API work
// against a model served on the network: GET /v1/models, POST /v1/completions and
// POST /v1/chat/completions (stream: true as server-sent events ending with `data: [DONE]`). A client
// uses baseURL = the API's url + '/v1' and the API token as its key (sent as `Authorization: Bearer`).
//
// The models generate bytes, so a token here is a byte: max_tokens counts bytes, and usage counts
// bytes of the prompt and of the completion. The bytes drawn may be invalid UTF-8 (a byte model
// makes no promise): the text is decoded with a streaming UTF-8 decoder, so a character whose bytes
// came in separate pieces comes out whole, and an invalid byte becomes U+FFFD.
//
// Chat template (a byte model has no chat tokens): each message becomes the line
// "<role>: <content>\n", in order, and the prompt ends with "assistant: " for the model to continue.
// Nothing stops the model at the end of its turn but max_tokens and `stop` (e.g. stop: ["\nuser:"]).
//
// Fields: model (a content id, or a name that one model has), prompt (completions: a string, an array
// of one string, or an array of byte values 0-255) or messages (chat), max_tokens (chat also
// max_completion_tokens), temperature (0 to 2), top_p, seed (0 to 2^32-1; a random one when absent),
// stop (a string or up to 4), n (1 only), stream, stream_options.include_usage; top_k and verify
// (the fraction of steps checked on a second server) are shardnet's own. Fields that would change
// the output in ways this endpoint does not do (echo, suffix, logprobs, best_of > 1, penalties,
// logit_bias, tools) are refused rather than ignored; others (user, metadata) are ignored.
//
// Errors have OpenAI's shape, { error: { message, type, param, code } }: 400 invalid_request_error,
// 401 (no or wrong token), 403 (the read-only token), 404 model_not_found, 503 when no chain of
// servers covers the model. An error after the stream started is sent as an event { error: ... }
// (which OpenAI's clients throw) and the stream ends without [DONE].
import { randomBytes, randomInt } from 'node:crypto'
import {
  type NetworkGenerateRequest,
  type NetworkGenerateResult,
  type ServingApi,
  ServingError,
  type ServingModelListing,
} from '../serving/api.js'
import {
  GENERATE_API_LIMITS,
  GENERATION_IDLE_TIMEOUT_MS_DEFAULT,
  GenerateRequestError,
  type GenerationRouteOptions,
  integerField,
  numberField,
  resolveModel,
  SERVING_ERROR_STATUS,
  type StartedGeneration,
  show,
  startGeneration,
  stopField,
  streamError,
} from './generate-routes.js'
import { ApiError, type ApiRequest, type ApiRoute, ApiStream } from './server.js'

/** OpenAI's temperature range */
export const OPENAI_TEMPERATURE_MAX = 2
/** max_tokens of a completion that does not say (OpenAI's default for /v1/completions) */
export const COMPLETION_MAX_TOKENS_DEFAULT = 16
/** max_tokens of a chat completion that does not say */
export const CHAT_MAX_TOKENS_DEFAULT = 256
/** messages of one chat request */
export const CHAT_MESSAGES_MAX = 1000
/** who owns every model in GET /v1/models */
export const OPENAI_OWNED_BY = 'shardnet'

export interface OpenAiErrorBody {
  error: { message: string; type: string; param: string | null; code: string | null }
}

/** OpenAI's error type of each status */
function errorType(status: number): string {
  if (status === 401) return 'authentication_error'
  if (status === 403) return 'permission_error'
  if (status === 404) return 'invalid_request_error'
  if (status === 429) return 'rate_limit_error'
  if (status >= 500) return 'server_error'
  return 'invalid_request_error'
}

export function openAiErrorBody(
  status: number,
  message: string,
  param: string | null = null,
  code: string | null = null,
): OpenAiErrorBody {
  const defaultCode =
    status === 401
      ? 'invalid_api_key'
      : status === 403
        ? 'insufficient_scope'
        : status === 413
          ? 'request_too_large'
          : null
  return { error: { message, type: errorType(status), param, code: code ?? defaultCode } }
}

function openAiError(
  status: number,
  message: string,
  param: string | null = null,
  code: string | null = null,
) {
  return new ApiError(status, message, openAiErrorBody(status, message, param, code))
}

/** OpenAI's code of a refusal by the ServingApi (ServingError codes) */
const SERVING_CODES: Record<string, { param: string | null; code: string }> = {
  'bad-request': { param: null, code: 'invalid_value' },
  'not-found': { param: 'model', code: 'model_not_found' },
  unavailable: { param: null, code: 'model_unavailable' },
}

/** Fields refused unless at their default: this endpoint cannot honour them. */
const REFUSED_FIELDS: ReadonlyArray<[string, (value: unknown) => boolean]> = [
  ['echo', (value) => value === false],
  ['suffix', (value) => value === ''],
  ['logprobs', (value) => value === false || value === 0],
  ['top_logprobs', (value) => value === 0],
  ['best_of', (value) => value === 1],
  ['presence_penalty', (value) => value === 0],
  ['frequency_penalty', (value) => value === 0],
  ['logit_bias', (value) => typeof value === 'object' && value !== null && Object.keys(value).length === 0],
  ['tools', (value) => Array.isArray(value) && value.length === 0],
  ['functions', (value) => Array.isArray(value) && value.length === 0],
  ['response_format', (value) => (value as { type?: unknown })?.type === 'text'],
]

type Fields = Record<string, unknown>

function bodyFields(body: unknown): Fields {
  if (typeof body !== 'object' || body === null || Array.isArray(body))
    throw new GenerateRequestError('', 'the request body must be a JSON object')
  return body as Fields
}

/** The settings shared by both completion routes; the prompt is each route's own. */
function parseSettings(fields: Fields, maxTokensDefault: number, maxTokensField: unknown) {
  if (typeof fields.model !== 'string' || fields.model.length === 0 || fields.model.length > 200)
    throw new GenerateRequestError('model', "you must provide a model: a model's content id or name")
  integerField('n', fields.n, 1, 1, 1)
  for (const [param, isDefault] of REFUSED_FIELDS) {
    if (fields[param] != null && !isDefault(fields[param]))
      throw new GenerateRequestError(
        param,
        `'${param}' is not supported by this endpoint (got ${show(fields[param])})`,
      )
  }
  if (fields.stream != null && typeof fields.stream !== 'boolean')
    throw new GenerateRequestError('stream', `'stream' must be a boolean, got ${show(fields.stream)}`)
  const options = fields.stream_options
  if (options != null && (typeof options !== 'object' || Array.isArray(options)))
    throw new GenerateRequestError('stream_options', "'stream_options' must be an object")
  const limits = GENERATE_API_LIMITS
  return {
    model: fields.model,
    maxTokens: integerField('max_tokens', maxTokensField, 1, limits.tokensMax, maxTokensDefault),
    temperature: numberField('temperature', fields.temperature, { min: 0, max: OPENAI_TEMPERATURE_MAX }, 1),
    topP: numberField('top_p', fields.top_p, { min: 0, max: 1, exclusiveMin: true }, 1),
    topK: integerField('top_k', fields.top_k, 0, limits.topKMax, 0),
    // OpenAI's seed is optional and the output varies without one
    seed: integerField('seed', fields.seed, 0, limits.seedMax, randomInt(0, limits.seedMax + 1)),
    stop: stopField('stop', fields.stop),
    verify: numberField('verify', fields.verify, { min: 0, max: limits.verifyMax }, 0),
    stream: fields.stream === true,
    includeUsage: (options as { include_usage?: unknown } | null)?.include_usage === true,
  }
}

/** prompt: a string, an array of one string, or an array of byte values (a byte model's tokens) */
function completionPrompt(value: unknown, nested = false): Uint8Array {
  let prompt: Uint8Array | undefined
  if (typeof value === 'string') prompt = new Uint8Array(Buffer.from(value, 'utf8'))
  else if (Array.isArray(value)) {
    if (value.length === 1 && typeof value[0] === 'string')
      prompt = new Uint8Array(Buffer.from(value[0], 'utf8'))
    // one array of tokens inside the array of prompts; no deeper (each level would be a stack frame)
    else if (value.length === 1 && Array.isArray(value[0]) && !nested) return completionPrompt(value[0], true)
    else if (value.every((byte) => Number.isInteger(byte) && byte >= 0 && byte <= 255))
      prompt = Uint8Array.from(value as number[])
    else if (value.length > 1 && value.every((entry) => typeof entry === 'string' || Array.isArray(entry)))
      throw new GenerateRequestError(
        'prompt',
        'one prompt per request: an array of several prompts is not supported',
      )
  }
  if (prompt === undefined)
    throw new GenerateRequestError('prompt', "'prompt' must be a string or an array of byte values 0 to 255")
  if (prompt.length === 0) throw new GenerateRequestError('prompt', "'prompt' must hold at least one byte")
  return prompt
}

/** The chat template of the module comment. */
export function chatPrompt(messages: unknown): Uint8Array {
  if (!Array.isArray(messages) || messages.length === 0)
    throw new GenerateRequestError('messages', "'messages' must be a non-empty array")
  if (messages.length > CHAT_MESSAGES_MAX)
    throw new GenerateRequestError('messages', `'messages' holds more than ${CHAT_MESSAGES_MAX} messages`)
  let text = ''
  messages.forEach((message: unknown, index) => {
    const param = `messages[${index}]`
    const { role, content } = (message ?? {}) as { role?: unknown; content?: unknown }
    if (typeof role !== 'string' || !/^[a-z_]{1,32}$/.test(role))
      throw new GenerateRequestError(`${param}.role`, `${param}.role must be a role such as "user"`)
    let body: string
    if (typeof content === 'string') body = content
    else if (Array.isArray(content)) {
      body = content
        .map((part: unknown, partIndex) => {
          const { type, text: partText } = (part ?? {}) as { type?: unknown; text?: unknown }
          if (type !== 'text' || typeof partText !== 'string')
            throw new GenerateRequestError(
              `${param}.content[${partIndex}]`,
              `${param}.content[${partIndex}]: only text parts are supported`,
            )
          return partText
        })
        .join('')
    } else
      throw new GenerateRequestError(`${param}.content`, `${param}.content must be a string or text parts`)
    text += `${role}: ${body}\n`
  })
  return new Uint8Array(Buffer.from(`${text}assistant: `, 'utf8'))
}

interface Usage {
  prompt_tokens: number
  completion_tokens: number
  total_tokens: number
}

function usageOf(result: NetworkGenerateResult): Usage {
  return {
    prompt_tokens: result.promptTokens,
    completion_tokens: result.tokens,
    total_tokens: result.promptTokens + result.tokens,
  }
}

/** shardnet's own account of a generation, beside OpenAI's fields */
function shardnetOf(result: NetworkGenerateResult) {
  return {
    chain: result.chain,
    failovers: result.failovers,
    verified_steps: result.verifiedSteps,
    dropped_servers: result.droppedServers,
    truncated_bytes: result.truncatedBytes,
    seconds: result.seconds,
    first_token_ms: result.firstTokenMs,
  }
}

/** The text of byte pieces as they come, each character whole; '' while one is incomplete. */
async function* textPieces(pieces: AsyncIterable<Uint8Array>): AsyncGenerator<string> {
  const decoder = new TextDecoder('utf-8')
  for await (const piece of pieces) {
    const text = decoder.decode(piece, { stream: true })
    if (text !== '') yield text
  }
  const rest = decoder.decode()
  if (rest !== '') yield rest
}

const sse = (value: unknown) => `data: ${JSON.stringify(value)}\n\n`

type Kind = 'completion' | 'chat'

interface Shape {
  id: string
  created: number
  model: string
}

/** a piece of text, or the end, as a streamed chunk of each kind */
function chunkOf(kind: Kind, shape: Shape, text: string | undefined, finish: string | null, first: boolean) {
  if (kind === 'completion') {
    return {
      ...shape,
      object: 'text_completion',
      choices: [{ text: text ?? '', index: 0, logprobs: null, finish_reason: finish }],
    }
  }
  const delta: Record<string, string> = {}
  if (first) delta.role = 'assistant'
  if (text !== undefined) delta.content = text
  return {
    ...shape,
    object: 'chat.completion.chunk',
    choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }],
  }
}

async function* eventStream(
  kind: Kind,
  shape: Shape,
  started: StartedGeneration,
  includeUsage: boolean,
  signal: AbortSignal,
): AsyncGenerator<string> {
  try {
    let first = true
    if (kind === 'chat') {
      // OpenAI's first chat chunk carries the role and no text
      yield sse(chunkOf(kind, shape, '', null, true))
      first = false
    }
    for await (const text of textPieces(started.pieces)) {
      yield sse(chunkOf(kind, shape, text, null, first))
      first = false
    }
    const result = await started.result
    yield sse({
      ...chunkOf(kind, shape, undefined, result.finishReason, first),
      shardnet: shardnetOf(result),
    })
    if (includeUsage)
      yield sse({ ...chunkOf(kind, shape, undefined, null, false), choices: [], usage: usageOf(result) })
    yield 'data: [DONE]\n\n'
  } catch (error) {
    const { message, code } = streamError(error, signal)
    // a ServingError (the chain lost mid-stream) with the status and code it has before the stream
    const serving = error instanceof ServingError && code === error.code ? error.code : undefined
    const status = serving !== undefined ? SERVING_ERROR_STATUS[serving] : code === 'timeout' ? 503 : 500
    yield sse(
      openAiErrorBody(status, message, null, serving !== undefined ? SERVING_CODES[serving].code : code),
    )
  }
}

/** The whole completion at once; each byte restarts the request's timeout. */
async function wholeResponse(kind: Kind, shape: Shape, started: StartedGeneration, request: ApiRequest) {
  const decoder = new TextDecoder('utf-8')
  let text = ''
  for await (const piece of started.pieces) {
    text += decoder.decode(piece, { stream: true })
    request.progress()
  }
  text += decoder.decode()
  const result = await started.result
  const usage = usageOf(result)
  const shardnet = shardnetOf(result)
  if (kind === 'completion') {
    return {
      ...shape,
      object: 'text_completion',
      choices: [{ text, index: 0, logprobs: null, finish_reason: result.finishReason }],
      usage,
      shardnet,
    }
  }
  return {
    ...shape,
    object: 'chat.completion',
    choices: [
      {
        index: 0,
        message: { role: 'assistant', content: text, refusal: null },
        logprobs: null,
        finish_reason: result.finishReason,
      },
    ],
    usage,
    shardnet,
  }
}

async function complete(kind: Kind, serving: ServingApi, request: ApiRequest) {
  let settings: ReturnType<typeof parseSettings>
  let prompt: Uint8Array
  try {
    const fields = bodyFields(request.body)
    const maxTokens =
      kind === 'chat' ? (fields.max_completion_tokens ?? fields.max_tokens) : fields.max_tokens
    settings = parseSettings(
      fields,
      kind === 'chat' ? CHAT_MAX_TOKENS_DEFAULT : COMPLETION_MAX_TOKENS_DEFAULT,
      maxTokens,
    )
    prompt = kind === 'chat' ? chatPrompt(fields.messages) : completionPrompt(fields.prompt)
  } catch (error) {
    if (error instanceof GenerateRequestError) throw openAiError(400, error.message, error.param || null)
    throw error
  }
  const model = await resolveModel(serving, settings.model, request.signal, (status, message) =>
    openAiError(status, message, 'model', status === 404 ? 'model_not_found' : null),
  )
  const generateRequest: NetworkGenerateRequest = {
    model,
    prompt,
    maxTokens: settings.maxTokens,
    temperature: settings.temperature,
    topP: settings.topP,
    topK: settings.topK,
    seed: settings.seed,
    stop: settings.stop,
    verify: settings.verify,
    signal: request.signal,
  }
  const started = await startGeneration(serving, generateRequest, (status, message, code) =>
    openAiError(status, message, SERVING_CODES[code].param, SERVING_CODES[code].code),
  )
  const shape: Shape = {
    id: `${kind === 'chat' ? 'chatcmpl' : 'cmpl'}-${randomBytes(12).toString('hex')}`,
    created: Math.floor(Date.now() / 1000),
    model,
  }
  if (!settings.stream) {
    try {
      return await wholeResponse(kind, shape, started, request)
    } catch (error) {
      // the chain lost after the first bytes: the same status as had it been lost before them
      if (error instanceof ServingError)
        throw openAiError(
          SERVING_ERROR_STATUS[error.code],
          error.message,
          SERVING_CODES[error.code].param,
          SERVING_CODES[error.code].code,
        )
      throw error
    }
  }
  return new ApiStream({
    contentType: 'text/event-stream; charset=utf-8',
    chunks: eventStream(kind, shape, started, settings.includeUsage, request.signal),
  })
}

/** GET /v1/models/{id} */
const MODEL_PATH_PREFIX = '/v1/models/'

/** One model in OpenAI's shape, with shardnet's fields: what the id is and how this node can serve it. */
function modelObject(listing: ServingModelListing) {
  return {
    id: listing.model,
    object: 'model',
    created: Math.floor(listing.createdMs / 1000),
    owned_by: OPENAI_OWNED_BY,
    name: listing.name,
    blocks: listing.blocks,
    context: listing.context,
    served: listing.served,
    chain_found: listing.chainFound,
  }
}

/** an ApiError without OpenAI's body (e.g. the daemon's 503 while starting) given that body */
async function inOpenAiShape<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work()
  } catch (error) {
    if (error instanceof ApiError && error.body === undefined) throw openAiError(error.status, error.message)
    throw error
  }
}

/**
 * GET /v1/models, POST /v1/completions, POST /v1/chat/completions over the node's ServingApi;
 * `servingOf` throws ApiError 503 while there is none (the daemon starting). A completion is aborted
 * after `idleTimeoutMs` without a byte.
 */
export function openAiRoutes(servingOf: () => ServingApi, options: GenerationRouteOptions = {}): ApiRoute[] {
  const errorBody = (status: number, message: string) => openAiErrorBody(status, message)
  const timeoutMs = options.idleTimeoutMs ?? GENERATION_IDLE_TIMEOUT_MS_DEFAULT
  return [
    {
      method: 'GET',
      path: '/v1/models',
      errorBody,
      handle: ({ signal }) =>
        inOpenAiShape(async () => ({
          object: 'list',
          data: (await servingOf().models({ signal })).map(modelObject),
        })),
    },
    {
      method: 'GET',
      path: MODEL_PATH_PREFIX,
      prefix: true,
      errorBody,
      handle: ({ url, signal }) =>
        inOpenAiShape(async () => {
          let id: string
          try {
            id = decodeURIComponent(url.pathname.slice(MODEL_PATH_PREFIX.length))
          } catch {
            // malformed percent-encoding: no model has that id
            id = url.pathname.slice(MODEL_PATH_PREFIX.length)
          }
          const listing = (await servingOf().models({ signal })).find((entry) => entry.model === id)
          if (listing === undefined)
            throw openAiError(
              404,
              `the model ${id.slice(0, 200)} is not served or known here`,
              'model',
              'model_not_found',
            )
          return modelObject(listing)
        }),
    },
    {
      method: 'POST',
      path: '/v1/completions',
      errorBody,
      timeoutMs,
      handle: (request) => inOpenAiShape(() => complete('completion', servingOf(), request)),
    },
    {
      method: 'POST',
      path: '/v1/chat/completions',
      errorBody,
      timeoutMs,
      handle: (request) => inOpenAiShape(() => complete('chat', servingOf(), request)),
    },
  ]
}
