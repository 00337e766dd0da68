// Proves the control API's two token scopes on a real HTTP server with the daemon's real routes
// (node-routes.ts and tasks.ts, over stand-in services): every route with no token and a wrong
// token is 401, the read token gets the read routes and a 403 with a JSON error on every admin route
// (whose handler then never runs), the admin token gets every route; and the token files.
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { generateRoutes } from '../../../node/api/generate-routes.js'
import { createNodeMetrics, type NodeMetrics } from '../../../node/api/metrics.js'
import { type ApiNode, type NodeStatus, nodeApiRoutes } from '../../../node/api/node-routes.js'
import { openAiRoutes } from '../../../node/api/openai.js'
import { API_ROUTE_SCOPES, type ApiServer, routeScope, startApiServer } from '../../../node/api/server.js'
import { servingRoutes } from '../../../node/api/serving-routes.js'
import { taskApiRoutes } from '../../../node/api/tasks.js'
import {
  API_READ_TOKEN_FILE,
  bearerTokenScope,
  loadOrCreateApiToken,
  loadOrCreateApiTokens,
} from '../../../node/api/token.js'
import type { NetworkGenerateResult, ServingApi } from '../../../node/serving/api.js'
import type { ServedModels } from '../../../node/serving/served-models.js'
import type { TaskService } from '../../../node/tasks/service.js'

const ADMIN = 'a'.repeat(64)
const READ = 'b'.repeat(64)
const WRONG = 'c'.repeat(64)

/** what the stand-in services were asked to do */
const calls: string[] = []

const node: ApiNode = {
  status: () => {
    calls.push('status')
    return { peerId: 'stand-in' } as NodeStatus
  },
  peers: async () => {
    calls.push('peers')
    return []
  },
  blocks: {
    put: async (bytes: Uint8Array) => {
      calls.push('blocks.put')
      return CID.create(1, raw.code, await sha256.digest(bytes))
    },
    get: async () => {
      calls.push('blocks.get')
      return Uint8Array.of(1, 2, 3)
    },
  } as ApiNode['blocks'],
  stop: async () => {
    calls.push('stop')
  },
}

const tasks = {
  coordinator: {
    submit: async () => {
      calls.push('submit')
      return { id: 'task-1' }
    },
    list: () => {
      calls.push('list')
      return []
    },
    get: () => {
      calls.push('get')
      return { id: 'task-1' }
    },
    cancel: () => {
      calls.push('cancel')
      return { id: 'task-1', state: 'cancelled' }
    },
  },
  topicPeers: () => {
    calls.push('topicPeers')
    return []
  },
  worker: {
    assignments: async () => {
      calls.push('assignments')
      return []
    },
  },
  inferWorker: {
    served: 0,
    queued: 0,
    rejected: {},
    budgets: { refused: {} },
    assignedTasks: () => {
      calls.push('inference')
      return []
    },
  },
} as unknown as TaskService

const SERVED_MODEL = 'bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku'

const serving: ServingApi = {
  models: async () => {
    calls.push('models')
    return [
      { model: SERVED_MODEL, name: 'gpt', blocks: 2, context: 8, served: [], chainFound: true, createdMs: 0 },
    ]
  },
  generate: () => {
    calls.push('generate')
    const result: NetworkGenerateResult = {
      tokens: 1,
      promptTokens: 1,
      truncatedBytes: 0,
      finishReason: 'length',
      seconds: 0,
      firstTokenMs: 0,
      chain: [],
      failovers: 0,
      verifiedSteps: 0,
      droppedServers: [],
    }
    return {
      result: Promise.resolve(result),
      async *[Symbol.asyncIterator]() {
        yield Uint8Array.of(0x61)
      },
    }
  },
}

/** the models the node serves: records what it was asked */
const served = {
  serve: async () => {
    calls.push('serve')
    return { model: SERVED_MODEL }
  },
  unserve: async () => {
    calls.push('unserve')
    return { model: SERVED_MODEL }
  },
  list: () => {
    calls.push('serve-list')
    return []
  },
  memoryBytes: 0,
  memoryUsedBytes: () => 0,
} as unknown as ServedModels

const routes = [
  ...nodeApiRoutes(() => node),
  ...servingRoutes(() => served),
  ...taskApiRoutes(() => tasks),
  ...openAiRoutes(() => serving),
  ...generateRoutes(() => serving),
]
/** routes that answer errors in OpenAI's shape, { error: { message, type, param, code } } */
const OPENAI_PATHS = new Set(['/v1/models', '/v1/models/', '/v1/completions', '/v1/chat/completions'])
const errorMessage = (path: string, body: unknown) =>
  OPENAI_PATHS.has(path)
    ? (body as { error: { message: string } }).error.message
    : (body as { error: string }).error

interface Probe {
  method: 'GET' | 'POST'
  path: string
  query?: string
  body?: unknown
  /** the stand-in call the handler makes */
  call: string
}

const cid = CID.create(1, raw.code, await sha256.digest(Uint8Array.of(1, 2, 3))).toString()
/** one request per route of the daemon, shaped so that its handler succeeds */
const probes = (): Probe[] => [
  { method: 'GET', path: '/metrics', call: '' },
  { method: 'GET', path: '/v1/status', call: 'status' },
  { method: 'GET', path: '/v1/peers', call: 'peers' },
  { method: 'GET', path: '/v1/blocks', query: `?cid=${cid}`, call: 'blocks.get' },
  { method: 'POST', path: '/v1/blocks', body: { data: 'AQID' }, call: 'blocks.put' },
  { method: 'POST', path: '/v1/stop', call: 'stop' },
  { method: 'POST', path: '/v1/tasks', body: {}, call: '' },
  { method: 'GET', path: '/v1/tasks', call: 'list' },
  { method: 'GET', path: '/v1/task', query: '?id=task-1', call: 'get' },
  { method: 'POST', path: '/v1/task/cancel', body: { id: 'task-1' }, call: 'cancel' },
  { method: 'GET', path: '/v1/task-topic', call: 'topicPeers' },
  { method: 'GET', path: '/v1/assignments', call: 'assignments' },
  { method: 'GET', path: '/v1/inference', call: 'inference' },
  { method: 'GET', path: '/v1/models', call: 'models' },
  { method: 'GET', path: '/v1/models/', query: SERVED_MODEL, call: 'models' },
  { method: 'GET', path: '/v1/serve', call: 'serve-list' },
  { method: 'POST', path: '/v1/serve', body: { model: '/models/tiny' }, call: 'serve' },
  { method: 'POST', path: '/v1/serve/stop', body: { model: '/models/tiny' }, call: 'unserve' },
  {
    method: 'POST',
    path: '/v1/completions',
    body: { model: SERVED_MODEL, prompt: 'x', max_tokens: 1 },
    call: 'generate',
  },
  {
    method: 'POST',
    path: '/v1/chat/completions',
    body: { model: SERVED_MODEL, messages: [{ role: 'user', content: 'x' }], max_tokens: 1 },
    call: 'generate',
  },
  {
    method: 'POST',
    path: '/v1/generate',
    body: { model: SERVED_MODEL, prompt: 'x', maxTokens: 1 },
    call: 'generate',
  },
]

let server: ApiServer
let metrics: NodeMetrics

beforeAll(async () => {
  metrics = createNodeMetrics({
    startedAtMs: Date.now(),
    peerCount: () => 0,
    dhtRoutingTableSize: () => 0,
    backend: () => undefined,
  })
  server = await startApiServer({ port: 0, token: ADMIN, readToken: READ, metrics, routes })
})
afterAll(async () => {
  await server.close()
})

async function send(probe: Probe, token: string | undefined): Promise<Response> {
  const headers: Record<string, string> = token === undefined ? {} : { authorization: `Bearer ${token}` }
  if (probe.body !== undefined) headers['content-type'] = 'application/json'
  return fetch(`${server.url}${probe.path}${probe.query ?? ''}`, {
    method: probe.method,
    headers,
    body: probe.body === undefined ? undefined : JSON.stringify(probe.body),
  })
}

/** waits past the stop route's delay, so a stop the handler scheduled would have been called */
const settle = () => new Promise((resolve) => setTimeout(resolve, 120))

describe('API token scopes', () => {
  it('the scope table names every route of the daemon, and nothing else', () => {
    const keys = routes.map((route) => `${route.method} ${route.path}`)
    expect(new Set(keys).size).toBe(keys.length)
    expect([...keys, 'GET /metrics'].sort()).toEqual(Object.keys(API_ROUTE_SCOPES).sort())
    expect(
      probes()
        .map((probe) => `${probe.method} ${probe.path}`)
        .sort(),
    ).toEqual(Object.keys(API_ROUTE_SCOPES).sort())
    // a route someone adds without a scope needs the admin token
    expect(routeScope('GET', '/v1/not-listed')).toBe('admin')
    expect(routeScope('GET', 'constructor')).toBe('admin')
  })

  it('read routes: status, metrics, peers, blocks by CID, task listings and results', () => {
    const read = Object.entries(API_ROUTE_SCOPES)
      .filter(([, scope]) => scope === 'read')
      .map(([key]) => key)
      .sort()
    expect(read).toEqual([
      'GET /metrics',
      'GET /v1/assignments',
      'GET /v1/blocks',
      'GET /v1/inference',
      'GET /v1/models',
      'GET /v1/models/',
      'GET /v1/peers',
      'GET /v1/serve',
      'GET /v1/status',
      'GET /v1/task',
      'GET /v1/task-topic',
      'GET /v1/tasks',
    ])
  })

  for (const probe of probes()) {
    const key = `${probe.method} ${probe.path}`
    it(`${key}: 401 without a token or with a wrong one, and the handler never runs`, async () => {
      calls.length = 0
      for (const token of [undefined, WRONG, READ.slice(1), `${ADMIN}0`]) {
        const response = await send(probe, token)
        expect(response.status, String(token)).toBe(401)
        expect(errorMessage(probe.path, await response.json())).toMatch(/bearer token/)
      }
      await settle()
      expect(calls).toEqual([])
    })

    it(`${key}: the read token gets ${API_ROUTE_SCOPES[key] === 'read' ? '200' : '403'}`, async () => {
      calls.length = 0
      const response = await send(probe, READ)
      if (API_ROUTE_SCOPES[key] === 'read') {
        expect(response.status).toBe(200)
        if (probe.call !== '') expect(calls).toContain(probe.call)
      } else {
        expect(response.status).toBe(403)
        expect(response.headers.get('www-authenticate')).toContain('insufficient_scope')
        const message = `${key} needs the admin token (api-token); the read-only token was presented`
        expect(await response.json()).toEqual(
          OPENAI_PATHS.has(probe.path)
            ? { error: { message, type: 'permission_error', param: null, code: 'insufficient_scope' } }
            : { error: message, scope: 'admin' },
        )
        await settle()
        expect(calls).toEqual([])
      }
    })

    it(`${key}: the admin token gets through to the handler`, async () => {
      calls.length = 0
      const response = await send(probe, ADMIN)
      if (probe.path === '/v1/tasks' && probe.method === 'POST') {
        // the stand-in body is no task: the handler ran and refused it
        expect(response.status).toBe(400)
        expect(errorMessage(probe.path, await response.json())).not.toMatch(/token/)
      } else {
        expect(response.status).toBe(200)
      }
      await settle()
      if (probe.call !== '') expect(calls).toContain(probe.call)
    })
  }

  it('counts read-token refusals in /metrics', async () => {
    await send({ method: 'POST', path: '/v1/stop', call: 'stop' }, READ)
    const text = await (await send({ method: 'GET', path: '/metrics', call: '' }, READ)).text()
    expect(text).toMatch(/shardnet_api_refused_total\{reason="read-only-token"\} [1-9]/)
  })

  it('a server given no read token refuses any other token with 401', async () => {
    const adminOnly = await startApiServer({ port: 0, token: ADMIN, metrics, routes })
    try {
      const status = await fetch(`${adminOnly.url}/v1/status`, {
        headers: { authorization: `Bearer ${READ}` },
      })
      expect(status.status).toBe(401)
      const ok = await fetch(`${adminOnly.url}/v1/status`, { headers: { authorization: `Bearer ${ADMIN}` } })
      expect(ok.status).toBe(200)
    } finally {
      await adminOnly.close()
    }
  })
})

describe('API token files and comparison', () => {
  let dir = ''
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'shardnet-tokens-'))
  })
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  it('creates the read token beside the admin token, mode 0600, distinct, stable across starts', async () => {
    const adminPath = join(dir, 'api-token')
    const readPath = join(dir, API_READ_TOKEN_FILE)
    const existingAdmin = await loadOrCreateApiToken(adminPath)
    const tokens = await loadOrCreateApiTokens(adminPath, readPath)
    expect(tokens.admin).toBe(existingAdmin)
    expect(tokens.read).toMatch(/^[0-9a-f]{64}$/)
    expect(tokens.read).not.toBe(tokens.admin)
    expect((await stat(readPath)).mode & 0o777).toBe(0o600)
    expect((await readFile(readPath, 'utf8')).trim()).toBe(tokens.read)
    expect(await loadOrCreateApiTokens(adminPath, readPath)).toEqual(tokens)
  })

  it('replaces a read token that is a copy of the admin token', async () => {
    const adminPath = join(dir, 'copy-admin')
    const readPath = join(dir, 'copy-read')
    const admin = await loadOrCreateApiToken(adminPath)
    await writeFile(readPath, `${admin}\n`, { mode: 0o600 })
    const tokens = await loadOrCreateApiTokens(adminPath, readPath)
    expect(tokens.admin).toBe(admin)
    expect(tokens.read).not.toBe(admin)
    expect((await readFile(readPath, 'utf8')).trim()).toBe(tokens.read)
  })

  it('gives each token its scope and refuses malformed headers', () => {
    const tokens = { admin: ADMIN, read: READ }
    expect(bearerTokenScope(`Bearer ${ADMIN}`, tokens)).toBe('admin')
    expect(bearerTokenScope(`Bearer ${READ}`, tokens)).toBe('read')
    expect(bearerTokenScope(`Bearer ${READ}`, { admin: ADMIN })).toBeUndefined()
    for (const header of [
      undefined,
      '',
      ADMIN,
      `Basic ${ADMIN}`,
      `Bearer ${ADMIN} x`,
      'Bearer x',
      `Bearer ${'a'.repeat(65)}`,
    ]) {
      expect(bearerTokenScope(header, tokens), String(header)).toBeUndefined()
    }
  })
})
