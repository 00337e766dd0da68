import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { logger } from '@libp2p/logger'
import { findStorageFault } from '../store/storage-fault.js'
import type { NodeMetrics } from './metrics.js'
import { type ApiScope, bearerTokenScope } from './token.js'

const log = logger('shardnet:api')

/** An error a route reports to the client with an HTTP status (bad request, not found...). */
export class ApiError extends Error {
  static override name = 'ApiError'
  readonly status: number
  /** the JSON body answered instead of the route's usual error body (e.g. OpenAI's error shape) */
  readonly body: unknown
  constructor(status: number, message: string, body?: unknown) {
    super(message)
    this.name = 'ApiError'
    this.status = status
    this.body = body
  }
}

export interface ApiRequest {
  url: URL
  /** the parsed JSON body (POST), or undefined */
  body: unknown
  /**
   * aborts when the client goes away (reason: an AbortError) or when the route made no progress for
   * the request timeout (reason: a TimeoutError)
   */
  signal: AbortSignal
  /**
   * The route is making progress (e.g. a byte was generated): the request timeout starts again. A
   * route that never calls it has the request timeout from the start of the request.
   */
  progress(): void
}

/**
 * A response written as it is produced: server-sent events, NDJSON. The server pulls the next chunk
 * only once the client has taken the previous one (backpressure). Each chunk written starts the
 * request timeout again, so a live stream runs as long as it produces; a source silent (or a client
 * not reading) for the request timeout has the request's signal aborted, and the source is expected to
 * end then (it may still write a last chunk saying why). When the client goes away the signal aborts
 * and the source is closed (its `finally` runs). A source that throws ends the response abruptly (the
 * client sees a cut stream): report errors inside the stream's own format instead.
 */
export class ApiStream {
  readonly contentType: string
  readonly chunks: AsyncIterable<string | Uint8Array>
  readonly status: number
  constructor(init: { contentType: string; chunks: AsyncIterable<string | Uint8Array>; status?: number }) {
    this.contentType = init.contentType
    this.chunks = init.chunks
    this.status = init.status ?? 200
  }
}

export interface ApiRoute {
  method: 'GET' | 'POST'
  /** exact path, e.g. `/v1/status`; with `prefix`, a path ending in `/` that every longer path matches */
  path: string
  /**
   * the route answers every path that starts with `path` and goes on (e.g. `/v1/models/` for
   * `/v1/models/{id}`; the handler reads the rest from `url`); an exact route of the path wins
   */
  prefix?: true
  /** returns a JSON-serialisable value, or an ApiStream */
  handle(request: ApiRequest): Promise<unknown>
  /**
   * How long this route may go without progress (see ApiRequest.progress) before its signal aborts;
   * the server's request timeout when absent. Generation routes wait longer for their first byte.
   */
  timeoutMs?: number
  /**
   * The body of an error the server itself answers on this route (no or wrong token 401, read token
   * 403, body too large 413, not JSON 400, timeout 503, 500); `{ error: message }` when absent.
   */
  errorBody?(status: number, message: string): unknown
}

/**
 * The scope every route needs, by `METHOD path`: the one table of who may call what. `read` is what a
 * dashboard needs (status, metrics, peers, task listings and results, the models served); `admin` is
 * everything that changes state or spends the network's compute (submit, cancel, stop, publishing
 * blocks, generation). A route missing here needs `admin`.
 */
export const API_ROUTE_SCOPES: Readonly<Record<string, ApiScope>> = Object.freeze({
  'GET /metrics': 'read',
  'GET /v1/status': 'read',
  'GET /v1/peers': 'read',
  // a block by CID: how results and models are fetched
  'GET /v1/blocks': 'read',
  'POST /v1/blocks': 'admin',
  'POST /v1/stop': 'admin',
  'POST /v1/tasks': 'admin',
  'GET /v1/tasks': 'read',
  'GET /v1/task': 'read',
  'POST /v1/task/cancel': 'admin',
  'GET /v1/task-topic': 'read',
  'GET /v1/assignments': 'read',
  'GET /v1/inference': 'read',
  // the models this node can generate with (OpenAI's list): a listing, like status
  'GET /v1/models': 'read',
  // one model of that list, by id: /v1/models/{id}
  'GET /v1/models/': 'read',
  // generation computes on the network's servers: admin
  'POST /v1/completions': 'admin',
  'POST /v1/chat/completions': 'admin',
  'POST /v1/generate': 'admin',
  // the spans this node serves (node/api/serving-routes.ts): listing them is a dashboard's, serving is admin
  'GET /v1/serve': 'read',
  'POST /v1/serve': 'admin',
  'POST /v1/serve/stop': 'admin',
})

/** the scope a route needs: its entry in API_ROUTE_SCOPES, else admin (unlisted routes fail closed) */
export function routeScope(method: string, path: string): ApiScope {
  return Object.hasOwn(API_ROUTE_SCOPES, `${method} ${path}`)
    ? API_ROUTE_SCOPES[`${method} ${path}`]
    : 'admin'
}

export interface ApiServerInit {
  /** @default '127.0.0.1' */
  host?: string
  /** 0 picks a free port */
  port: number
  /** the admin token: every route */
  token: string
  /** the read-only token: only routes whose scope is `read`; none when undefined */
  readToken?: string
  /**
   * accept clients from other machines (with the token); off unless the user asked for it
   * @default false
   */
  allowRemoteClients?: boolean
  routes: ApiRoute[]
  metrics: NodeMetrics
  /**
   * largest request body accepted
   * @default BODY_BYTES_MAX_DEFAULT
   */
  bodyBytesMax?: number
  /**
   * a request that takes longer is answered 503
   * @default REQUEST_TIMEOUT_MS_DEFAULT
   */
  requestTimeoutMs?: number
}

export const API_HOST_DEFAULT = '127.0.0.1'
/** Largest request body the API reads (a task request, a block to publish). */
export const BODY_BYTES_MAX_DEFAULT = 1024 * 1024
/** How long a route may take before the request is answered 503. */
export const REQUEST_TIMEOUT_MS_DEFAULT = 30_000
/** How long a client may take to send its request headers. */
const HEADERS_TIMEOUT_MS = 10_000
/** How long a stream's source may take to end after the request's signal aborted (on the timeout). */
const STREAM_ABORT_GRACE_MS = 5_000

export interface ApiServer {
  host: string
  port: number
  /** e.g. http://127.0.0.1:41234 */
  url: string
  close(): Promise<void>
}

/** True for 127.0.0.0/8, ::1 and IPv4-mapped loopback (::ffff:127.x.y.z). */
export function isLoopbackAddress(address: string | undefined): boolean {
  if (address == null) return false
  const bare = address.startsWith('::ffff:') ? address.slice('::ffff:'.length) : address
  return bare === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(bare)
}

function errorBodyOf(route: ApiRoute | undefined, status: number, message: string): unknown {
  return route?.errorBody?.(status, message) ?? { error: message }
}

function sendJson(response: ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value)
  response.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
  })
  response.end(body)
}

async function readBody(request: IncomingMessage, bytesMax: number): Promise<unknown> {
  const chunks: Buffer[] = []
  let total = 0
  for await (const chunk of request) {
    total += (chunk as Buffer).length
    if (total > bytesMax) throw new ApiError(413, `request body exceeds ${bytesMax} bytes`)
    chunks.push(chunk as Buffer)
  }
  if (total === 0) return undefined
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'))
  } catch {
    throw new ApiError(400, 'request body is not valid JSON')
  }
}

/** One request's deadline and cancellation: see ApiRequest.signal and ApiRequest.progress. */
interface RequestState {
  controller: AbortController
  route: ApiRoute | undefined
  timedOut: boolean
  /** the connection closed before the response was complete */
  clientGone: boolean
  progress(): void
  /** how long the request may go without progress from now on (the route's own timeout) */
  setTimeout(ms: number): void
  finish(): void
}

function requestState(response: ServerResponse, initialTimeoutMs: number): RequestState {
  let timer: NodeJS.Timeout | undefined
  let timeoutMs = initialTimeoutMs
  const state: RequestState = {
    controller: new AbortController(),
    route: undefined,
    timedOut: false,
    clientGone: false,
    progress: () => {
      if (state.controller.signal.aborted) return
      clearTimeout(timer)
      timer = setTimeout(() => {
        state.timedOut = true
        state.controller.abort(new DOMException('request timed out', 'TimeoutError'))
      }, timeoutMs)
    },
    setTimeout: (ms: number) => {
      timeoutMs = ms
      state.progress()
    },
    finish: () => clearTimeout(timer),
  }
  response.once('close', () => {
    clearTimeout(timer)
    if (response.writableFinished) return
    state.clientGone = true
    state.controller.abort(new DOMException('the client closed the connection', 'AbortError'))
  })
  state.progress()
  return state
}

/** Writes a stream's chunks as the client takes them: see ApiStream. */
async function writeStream(response: ServerResponse, stream: ApiStream, state: RequestState): Promise<void> {
  const signal = state.controller.signal
  // settles when the server stops waiting on the source: the client left, or the source outlived
  // the grace after a timeout
  let graceTimer: NodeJS.Timeout | undefined
  const stop = new Promise<'stop'>((resolve) => {
    const onAbort = () => {
      if (state.clientGone) resolve('stop')
      else graceTimer = setTimeout(() => resolve('stop'), STREAM_ABORT_GRACE_MS)
    }
    if (signal.aborted) onAbort()
    else signal.addEventListener('abort', onAbort, { once: true })
    // a client that leaves during the grace after a timeout: nobody is left to write to
    response.once('close', () => resolve('stop'))
  })
  response.writeHead(stream.status, {
    'content-type': stream.contentType,
    'cache-control': 'no-cache',
    // proxies (nginx) would otherwise hold the events back
    'x-accel-buffering': 'no',
  })
  response.flushHeaders()
  const iterator = stream.chunks[Symbol.asyncIterator]()
  let ended = false
  try {
    for (;;) {
      const pending = iterator.next()
      // what it settles with once nobody waits is of no interest (the client left)
      pending.catch(() => {})
      const next = await Promise.race([pending, stop])
      if (next === 'stop') break
      if (next.done === true) {
        ended = true
        break
      }
      if (!response.write(next.value)) {
        const drained = await Promise.race([
          new Promise<'drained'>((resolve) => response.once('drain', () => resolve('drained'))),
          stop,
        ])
        if (drained === 'stop') break
      }
      state.progress()
    }
  } finally {
    clearTimeout(graceTimer)
    if (!ended) iterator.return?.().catch(() => {})
  }
  if (ended) response.end()
  else response.destroy()
}

/**
 * The daemon's control API: HTTP, JSON, every request (including /metrics) authenticated with a
 * bearer token from the data dir (401 without a valid one), a read-only token refused with 403 on a
 * route whose scope is admin (API_ROUTE_SCOPES), and refused from non-loopback clients unless
 * explicitly allowed.
 */
export async function startApiServer(init: ApiServerInit): Promise<ApiServer> {
  const host = init.host ?? API_HOST_DEFAULT
  const bodyBytesMax = init.bodyBytesMax ?? BODY_BYTES_MAX_DEFAULT
  const requestTimeoutMs = init.requestTimeoutMs ?? REQUEST_TIMEOUT_MS_DEFAULT
  const routes = new Map(init.routes.map((route) => [`${route.method} ${route.path}`, route]))
  const prefixRoutes = init.routes.filter((route) => route.prefix === true)
  /** the exact route of the path, else the prefix route it extends */
  const routeOf = (method: string | undefined, path: string): ApiRoute | undefined =>
    routes.get(`${method} ${path}`) ??
    prefixRoutes.find(
      (route) => route.method === method && path.startsWith(route.path) && path.length > route.path.length,
    )
  for (const key of routes.keys()) {
    if (!Object.hasOwn(API_ROUTE_SCOPES, key))
      log('route %s is not in API_ROUTE_SCOPES: admin token only', key)
  }

  const handle = async (
    request: IncomingMessage,
    response: ServerResponse,
    state: RequestState,
  ): Promise<void> => {
    const url = new URL(request.url ?? '/', 'http://localhost')
    // GET /metrics answers Prometheus text, not JSON: it is served here rather than as a route
    const isMetrics = request.method === 'GET' && url.pathname === '/metrics'
    // known before the token is checked only to shape the errors (OpenAI clients read their own shape)
    const route = isMetrics ? undefined : routeOf(request.method, url.pathname)
    state.route = route
    if (init.allowRemoteClients !== true && !isLoopbackAddress(request.socket.remoteAddress)) {
      init.metrics.apiRefused.inc({ reason: 'non-loopback' })
      sendJson(response, 403, errorBodyOf(route, 403, 'the control API only answers clients on this machine'))
      return
    }
    const authorization = request.headers.authorization
    const scope = bearerTokenScope(authorization, { admin: init.token, read: init.readToken })
    if (scope === undefined) {
      const reason = authorization == null ? 'no-token' : 'wrong-token'
      init.metrics.apiRefused.inc({ reason })
      response.setHeader('www-authenticate', 'Bearer')
      const message = authorization == null ? 'missing bearer token' : 'wrong bearer token'
      sendJson(response, 401, errorBodyOf(route, 401, message))
      return
    }
    if (route === undefined && !isMetrics) {
      sendJson(response, 404, { error: `no route ${request.method} ${url.pathname}` })
      return
    }
    const needed = routeScope(request.method ?? '', route?.path ?? url.pathname)
    if (needed === 'admin' && scope !== 'admin') {
      init.metrics.apiRefused.inc({ reason: 'read-only-token' })
      response.setHeader('www-authenticate', 'Bearer error="insufficient_scope", scope="admin"')
      const message =
        `${request.method} ${url.pathname} needs the admin token (api-token); ` +
        'the read-only token was presented'
      sendJson(response, 403, route?.errorBody?.(403, message) ?? { error: message, scope: needed })
      return
    }
    if (route === undefined) {
      const text = await init.metrics.registry.metrics()
      response.writeHead(200, { 'content-type': init.metrics.registry.contentType })
      response.end(text)
      return
    }
    if (route.timeoutMs !== undefined) state.setTimeout(route.timeoutMs)
    const body = request.method === 'POST' ? await readBody(request, bodyBytesMax) : undefined
    const result = await route.handle({
      url,
      body,
      signal: state.controller.signal,
      progress: state.progress,
    })
    if (result instanceof ApiStream) await writeStream(response, result, state)
    else sendJson(response, 200, result ?? {})
  }

  const server: Server = createServer((request, response) => {
    const state = requestState(response, requestTimeoutMs)
    handle(request, response, state)
      .catch((error: unknown) => {
        const route = state.route
        if (response.headersSent) {
          // a stream whose source failed: the client sees the stream cut, not a clean end
          if (!state.clientGone) log.error('API stream %s %s failed: %e', request.method, request.url, error)
          response.destroy()
          return
        }
        if (error instanceof ApiError) {
          sendJson(response, error.status, error.body ?? errorBodyOf(route, error.status, error.message))
          return
        }
        if (state.clientGone) return
        // the route ran past the request's deadline: whatever it threw on the way out (the signal's
        // TimeoutError, or a library's own abort error) is that timeout
        const timedOut = state.timedOut
        // a disk that refused a write (full, read-only): the one sentence, and 507 Insufficient Storage
        const fault = timedOut ? undefined : findStorageFault(error)
        if (fault) {
          log.error('API request %s %s: %s', request.method, request.url, fault.message)
          sendJson(response, 507, errorBodyOf(route, 507, fault.message))
          return
        }
        if (!timedOut) log.error('API request %s %s failed: %e', request.method, request.url, error)
        const status = timedOut ? 503 : 500
        sendJson(response, status, errorBodyOf(route, status, timedOut ? 'request timed out' : String(error)))
      })
      .finally(() => state.finish())
  })
  server.headersTimeout = HEADERS_TIMEOUT_MS
  server.requestTimeout = requestTimeoutMs + 5_000
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(init.port, host, () => {
      server.off('error', reject)
      resolve()
    })
  })
  const address = server.address() as AddressInfo
  const urlHost = address.family === 'IPv6' ? `[${address.address}]` : address.address
  return {
    host: address.address,
    port: address.port,
    url: `http://${urlHost}:${address.port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      }),
  }
}
