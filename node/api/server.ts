import type { IncomingMessage, Server, ServerResponse } from 'node:http'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { logger } from '@libp2p/logger'
import type { NodeMetrics } from './metrics.js'
import { bearerTokenMatches } from './token.js'

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

export interface ApiServerInit {
  /** @default '127.0.0.1' */
  host?: string
  /** 0 picks a free port */
  port: number
  token: string
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
 * The daemon's control API: HTTP, JSON, every request (including /metrics) authenticated with the
 * bearer token from the data dir, and refused from non-loopback clients unless explicitly allowed.
 */
export async function startApiServer(init: ApiServerInit): Promise<ApiServer> {
  const host = init.host ?? API_HOST_DEFAULT
  const bodyBytesMax = init.bodyBytesMax ?? BODY_BYTES_MAX_DEFAULT
  const requestTimeoutMs = init.requestTimeoutMs ?? REQUEST_TIMEOUT_MS_DEFAULT
  const routes = new Map(init.routes.map((route) => [`${route.method} ${route.path}`, route]))

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
    if (!bearerTokenMatches(authorization, init.token)) {
      const reason = authorization == null ? 'no-token' : 'wrong-token'
      init.metrics.apiRefused.inc({ reason })
      response.setHeader('www-authenticate', 'Bearer')
      sendJson(response, 401, {
        error: authorization == null ? 'missing bearer token' : 'wrong bearer token',
      })
      return
    }
    const url = new URL(request.url ?? '/', 'http://localhost')
    if (request.method === 'GET' && url.pathname === '/metrics') {
      const text = await init.metrics.registry.metrics()
      response.writeHead(200, { 'content-type': init.metrics.registry.contentType })
      response.end(text)
      return
    }
    const route = routes.get(`${request.method} ${url.pathname}`)
    if (route == null) {
      sendJson(response, 404, { error: `no route ${request.method} ${url.pathname}` })
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
