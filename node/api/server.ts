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
  constructor(status: number, message: string) {
    super(message)
    this.name = 'ApiError'
    this.status = status
  }
}

export interface ApiRequest {
  url: URL
  /** the parsed JSON body (POST), or undefined */
  body: unknown
  signal: AbortSignal
}

export interface ApiRoute {
  method: 'GET' | 'POST'
  /** exact path, e.g. `/v1/status` */
  path: string
  /** returns a JSON-serialisable value */
  handle(request: ApiRequest): Promise<unknown>
}

/**
 * The scope every route needs, by `METHOD path`: the one table of who may call what. `read` is what a
 * dashboard needs (status, metrics, peers, task listings and results); `admin` is everything that
 * changes state (submit, cancel, stop, publishing blocks). A route missing here needs `admin`.
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
  for (const key of routes.keys()) {
    if (!Object.hasOwn(API_ROUTE_SCOPES, key))
      log('route %s is not in API_ROUTE_SCOPES: admin token only', key)
  }

  const handle = async (
    request: IncomingMessage,
    response: ServerResponse,
    signal: AbortSignal,
  ): Promise<void> => {
    if (init.allowRemoteClients !== true && !isLoopbackAddress(request.socket.remoteAddress)) {
      init.metrics.apiRefused.inc({ reason: 'non-loopback' })
      sendJson(response, 403, { error: 'the control API only answers clients on this machine' })
      return
    }
    const authorization = request.headers.authorization
    const scope = bearerTokenScope(authorization, { admin: init.token, read: init.readToken })
    if (scope === undefined) {
      const reason = authorization == null ? 'no-token' : 'wrong-token'
      init.metrics.apiRefused.inc({ reason })
      response.setHeader('www-authenticate', 'Bearer')
      sendJson(response, 401, {
        error: authorization == null ? 'missing bearer token' : 'wrong bearer token',
      })
      return
    }
    const url = new URL(request.url ?? '/', 'http://localhost')
    // GET /metrics answers Prometheus text, not JSON: it is served here rather than as a route
    const isMetrics = request.method === 'GET' && url.pathname === '/metrics'
    const route = isMetrics ? undefined : routes.get(`${request.method} ${url.pathname}`)
    if (route === undefined && !isMetrics) {
      sendJson(response, 404, { error: `no route ${request.method} ${url.pathname}` })
      return
    }
    const needed = routeScope(request.method ?? '', url.pathname)
    if (needed === 'admin' && scope !== 'admin') {
      init.metrics.apiRefused.inc({ reason: 'read-only-token' })
      response.setHeader('www-authenticate', 'Bearer error="insufficient_scope", scope="admin"')
      sendJson(response, 403, {
        error:
          `${request.method} ${url.pathname} needs the admin token (api-token); ` +
          'the read-only token was presented',
        scope: needed,
      })
      return
    }
    if (route === undefined) {
      const text = await init.metrics.registry.metrics()
      response.writeHead(200, { 'content-type': init.metrics.registry.contentType })
      response.end(text)
      return
    }
    const body = request.method === 'POST' ? await readBody(request, bodyBytesMax) : undefined
    const result = await route.handle({ url, body, signal })
    sendJson(response, 200, result ?? {})
  }

  const server: Server = createServer((request, response) => {
    const signal = AbortSignal.timeout(requestTimeoutMs)
    handle(request, response, signal).catch((error: unknown) => {
      if (error instanceof ApiError) {
        if (!response.headersSent) sendJson(response, error.status, { error: error.message })
        return
      }
      // the route ran past the request's deadline: whatever it threw on the way out (the signal's
      // TimeoutError, or a library's own abort error) is that timeout
      const timedOut = signal.aborted
      // a disk that refused a write (full, read-only): the one sentence, and 507 Insufficient Storage
      const fault = timedOut ? undefined : findStorageFault(error)
      if (fault) {
        log.error('API request %s %s: %s', request.method, request.url, fault.message)
        if (!response.headersSent) sendJson(response, 507, { error: fault.message })
        return
      }
      if (!timedOut) log.error('API request %s %s failed: %e', request.method, request.url, error)
      if (!response.headersSent) {
        sendJson(response, timedOut ? 503 : 500, { error: timedOut ? 'request timed out' : String(error) })
      }
    })
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
