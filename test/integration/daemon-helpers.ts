// Test helper: real in-process shardnet daemons (node/daemon.ts, the same composition the CLI runs)
// with temp data dirs on 127.0.0.1. Only the loopback settings the notes call for differ from a real
// node: no gossipsub IP-colocation penalty, a fast first DHT self-query, quick capability re-publication.
import { mkdtemp, readFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type ConfigOverrides, resolveNodeConfig } from '../../node/config.js'
import { Daemon, type DaemonInit } from '../../node/daemon.js'
import { dataDirPaths } from '../../node/store/data-dir.js'

export async function tempDataDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'shardnet-daemon-'))
}

export interface TestDaemonInit extends Omit<Partial<DaemonInit>, 'config'> {
  dataDir?: string
  overrides?: ConfigOverrides
}

export async function startTestDaemon(init: TestDaemonInit = {}): Promise<Daemon> {
  const dataDir = init.dataDir ?? (await tempDataDir())
  const { dataDir: _ignored, overrides, ...rest } = init
  return Daemon.start({
    // cpu unless a test asks for webgpu: ten Dawn devices in one test process buy nothing
    config: resolveNodeConfig(dataDir, {}, { backend: 'cpu', cpuEngine: 'native', ...overrides }),
    ipColocationPenalty: false,
    dhtInitialQuerySelfIntervalMs: 100,
    advertiseRetryMs: 500,
    bootstrapRedialIntervalMs: 500,
    // prometheus-metrics keeps one process-wide metric table: only the first node of a test process
    // registers libp2p's metrics
    libp2pMetrics: false,
    ...rest,
  })
}

/**
 * Polls `condition` until it holds or `timeoutMs` passes
 * (then throws naming `what`, read at that moment).
 */
export async function waitUntil(
  condition: () => boolean | Promise<boolean>,
  what: string | (() => string),
  timeoutMs = 60_000,
  intervalMs = 100,
): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await condition())) {
    if (Date.now() > deadline) {
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${typeof what === 'string' ? what : what()}`,
      )
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs))
  }
}

/** GET/POST against a daemon's control API with its token, as the CLI does. */
export async function apiRequest(
  daemon: Daemon,
  path: string,
  init: { method?: string; body?: unknown; token?: string | null } = {},
): Promise<Response> {
  const token =
    init.token === undefined
      ? (await readFile(dataDirPaths(daemon.paths.root).apiToken, 'utf8')).trim()
      : init.token
  const headers: Record<string, string> = {}
  if (token !== null) headers.authorization = `Bearer ${token}`
  if (init.body !== undefined) headers['content-type'] = 'application/json'
  return fetch(`${daemon.api.url}${path}`, {
    method: init.method ?? 'GET',
    headers,
    body: init.body !== undefined ? JSON.stringify(init.body) : undefined,
  })
}
