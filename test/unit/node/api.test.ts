// Proves the control API's gate on a real HTTP server: no token, a wrong token and a non-loopback
// client are refused (and counted in /metrics), the right token gets through, bad bodies get 4xx, and
// a route that runs past the request's deadline gets 503 whatever error it ends with (an error that
// only calls itself a TimeoutError, thrown in time, is a 500).
import { networkInterfaces } from 'node:os'
import { afterEach, describe, expect, it } from 'vitest'
import { createNodeMetrics } from '../../../node/api/metrics.js'
import { ApiError, type ApiServer, isLoopbackAddress, startApiServer } from '../../../node/api/server.js'

const token = 'a'.repeat(64)
const servers: ApiServer[] = []

function metrics() {
  return createNodeMetrics({
    startedAtMs: Date.now(),
    peerCount: () => 3,
    dhtRoutingTableSize: () => 2,
    backend: () => ({ backend: 'cpu', adapterName: 'test cpu', matmulGflops: 1.5 }),
  })
}

/** An error a library might throw when its signal aborts: neither a DOMException nor named after it. */
class LibraryAbortError extends Error {
  static override name = 'AbortError'
  override name = 'AbortError'
}

async function serve(host = '127.0.0.1', allowRemoteClients = false) {
  const nodeMetrics = metrics()
  const server = await startApiServer({
    host,
    port: 0,
    token,
    allowRemoteClients,
    metrics: nodeMetrics,
    bodyBytesMax: 1024,
    requestTimeoutMs: 200,
    routes: [
      {
        method: 'GET',
        path: '/v1/slow',
        handle: ({ signal }) =>
          new Promise((_, reject) => {
            signal.addEventListener('abort', () => reject(new LibraryAbortError('the operation was aborted')))
          }),
      },
      {
        method: 'GET',
        path: '/v1/named-timeout',
        handle: async () => {
          const error = new Error('not the request deadline')
          error.name = 'TimeoutError'
          throw error
        },
      },
      { method: 'GET', path: '/v1/hello', handle: async () => ({ hello: 'world' }) },
      { method: 'POST', path: '/v1/echo', handle: async ({ body }) => ({ body }) },
      {
        method: 'GET',
        path: '/v1/bad',
        handle: async () => {
          throw new ApiError(400, 'bad request here')
        },
      },
    ],
  })
  servers.push(server)
  return { server, nodeMetrics }
}

afterEach(async () => {
  await Promise.all(servers.splice(0).map((server) => server.close()))
})

const auth = { authorization: `Bearer ${token}` }

describe('control API', () => {
  it('refuses a request without a token and one with a wrong token', async () => {
    const { server } = await serve()
    const none = await fetch(`${server.url}/v1/hello`)
    expect(none.status).toBe(401)
    expect(((await none.json()) as { error: string }).error).toBe('missing bearer token')
    const wrong = await fetch(`${server.url}/v1/hello`, {
      headers: { authorization: `Bearer ${'b'.repeat(64)}` },
    })
    expect(wrong.status).toBe(401)
    const metricsRefused = await fetch(`${server.url}/metrics`)
    expect(metricsRefused.status).toBe(401)
  })

  it('answers with the right token and counts refusals by reason', async () => {
    const { server } = await serve()
    await fetch(`${server.url}/v1/hello`)
    await fetch(`${server.url}/v1/hello`, { headers: { authorization: 'Bearer nope' } })
    const ok = await fetch(`${server.url}/v1/hello`, { headers: auth })
    expect(ok.status).toBe(200)
    expect(await ok.json()).toEqual({ hello: 'world' })
    const text = await (await fetch(`${server.url}/metrics`, { headers: auth })).text()
    expect(text).toContain('shardnet_api_refused_total{reason="no-token"} 1')
    expect(text).toContain('shardnet_api_refused_total{reason="wrong-token"} 1')
    expect(text).toContain('shardnet_peers 3')
    expect(text).toContain('shardnet_dht_routing_table_peers 2')
    expect(text).toContain('shardnet_backend_info{backend="cpu",adapter="test cpu"} 1')
  })

  it('answers 404, 400, 413 for unknown routes, bad JSON and oversized bodies', async () => {
    const { server } = await serve()
    expect((await fetch(`${server.url}/v1/nothing`, { headers: auth })).status).toBe(404)
    expect((await fetch(`${server.url}/v1/bad`, { headers: auth })).status).toBe(400)
    const badJson = await fetch(`${server.url}/v1/echo`, { method: 'POST', headers: auth, body: '{oops' })
    expect(badJson.status).toBe(400)
    const big = await fetch(`${server.url}/v1/echo`, {
      method: 'POST',
      headers: auth,
      body: JSON.stringify('x'.repeat(2000)),
    })
    expect(big.status).toBe(413)
    const echo = await fetch(`${server.url}/v1/echo`, { method: 'POST', headers: auth, body: '{"a":1}' })
    expect(await echo.json()).toEqual({ body: { a: 1 } })
  })

  it('answers 503 when a route runs past the deadline, 500 for an error that is only named so', async () => {
    const { server } = await serve()
    const slow = await fetch(`${server.url}/v1/slow`, { headers: auth })
    expect(slow.status).toBe(503)
    expect(await slow.json()).toEqual({ error: 'request timed out' })
    const named = await fetch(`${server.url}/v1/named-timeout`, { headers: auth })
    expect(named.status).toBe(500)
  })

  it('tells loopback addresses from others', () => {
    for (const address of ['127.0.0.1', '127.3.2.1', '::1', '::ffff:127.0.0.1']) {
      expect(isLoopbackAddress(address)).toBe(true)
    }
    for (const address of ['192.0.2.2', '10.0.0.1', '::ffff:10.0.0.1', 'fe80::1', '', undefined]) {
      expect(isLoopbackAddress(address)).toBe(false)
    }
  })

  it('refuses a client that is not on loopback, even with the token', async () => {
    // a server bound to every interface, reached through this machine's own non-loopback address:
    // the connection's source address is then that non-loopback address
    const external = Object.values(networkInterfaces())
      .flat()
      .find((info) => info != null && info.family === 'IPv4' && !info.internal)
    expect(external, 'this test needs one non-loopback IPv4 interface').toBeDefined()
    const { server, nodeMetrics } = await serve('0.0.0.0')
    const response = await fetch(`http://${external!.address}:${server.port}/v1/hello`, { headers: auth })
    expect(response.status).toBe(403)
    const fromLoopback = await fetch(`http://127.0.0.1:${server.port}/v1/hello`, { headers: auth })
    expect(fromLoopback.status).toBe(200)
    expect(await nodeMetrics.registry.getSingleMetricAsString('shardnet_api_refused_total')).toContain(
      'reason="non-loopback"} 1',
    )
  })

  it('accepts a remote client with the token when remote clients were explicitly allowed', async () => {
    const external = Object.values(networkInterfaces())
      .flat()
      .find((info) => info != null && info.family === 'IPv4' && !info.internal)
    const { server } = await serve('0.0.0.0', true)
    const response = await fetch(`http://${external!.address}:${server.port}/v1/hello`, { headers: auth })
    expect(response.status).toBe(200)
    const noToken = await fetch(`http://${external!.address}:${server.port}/v1/hello`)
    expect(noToken.status).toBe(401)
  })
})
