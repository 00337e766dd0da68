// Proves the real CLI end to end: `node bin/shardnet.js node start/status/peers/stop` run as child
// processes with temp data dirs start background daemons that find each other; a daemon killed with
// SIGKILL restarts with the same PeerId and its store intact; and bad input (config keys, API tokens,
// unsafe API host, stopping a stopped node) gets one clear sentence and a non-zero exit.
import { execFile } from 'node:child_process'
import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, describe, expect, it } from 'vitest'
import { dataDirPaths } from '../../node/store/data-dir.js'
import { isShardnetProcessAlive, readPidFile } from '../../node/store/pid-file.js'
import { tempDataDir, waitUntil } from '../integration/daemon-helpers.js'

const execFileAsync = promisify(execFile)

interface CliResult {
  code: number
  stdout: string
  stderr: string
}

async function shardnet(...args: string[]): Promise<CliResult> {
  const environment = { ...process.env }
  delete environment.SHARDNET_DATA_DIR
  try {
    const { stdout, stderr } = await execFileAsync(process.execPath, ['bin/shardnet.js', ...args], {
      env: environment,
      timeout: 120_000,
    })
    return { code: 0, stdout, stderr }
  } catch (error) {
    const failed = error as { code?: number; stdout?: string; stderr?: string }
    return { code: failed.code ?? -1, stdout: failed.stdout ?? '', stderr: failed.stderr ?? '' }
  }
}

async function json<T>(...args: string[]): Promise<T> {
  const result = await shardnet(...args, '--json')
  if (result.code !== 0)
    throw new Error(`shardnet ${args.join(' ')} failed (${result.code}): ${result.stderr}`)
  return JSON.parse(result.stdout) as T
}

async function apiGet(dataDir: string, path: string, token?: string): Promise<Response> {
  const paths = dataDirPaths(dataDir)
  const endpoint = JSON.parse(await readFile(paths.apiEndpoint, 'utf8')) as { url: string }
  const bearer = token ?? (await readFile(paths.apiToken, 'utf8')).trim()
  return fetch(`${endpoint.url}${path}`, { headers: { authorization: `Bearer ${bearer}` } })
}

interface Started {
  pid: number
  peerId: string
  addresses: string[]
}

describe('shardnet node (the real CLI and background daemons)', () => {
  const dataDirs: string[] = []

  afterAll(async () => {
    // whatever a failed test left running is killed by its pid, never by name
    for (const dataDir of dataDirs) {
      const pid = await readPidFile(dataDirPaths(dataDir).pidFile)
      if (pid !== undefined && isShardnetProcessAlive(pid)) process.kill(pid, 'SIGKILL')
    }
  })

  it('starts three daemons that find each other, survives SIGKILL, and stops', async () => {
    const [a, b, c] = await Promise.all([tempDataDir(), tempDataDir(), tempDataDir()])
    dataDirs.push(a, b, c)
    const first = await json<Started>('node', 'start', '--data-dir', a)
    expect(first.peerId).toMatch(/^12D3KooW/)
    expect(first.addresses[0]).toMatch(/^\/ip4\/127\.0\.0\.1\/tcp\/\d+\/p2p\/12D3KooW/)
    // a node started without --backend computes on the backend its probe measured fastest; the other
    // two pin that kind, so a probe taken under another load cannot split the workers by kind
    interface Figure {
      backend: string
      inUse: boolean
    }
    const { capability } = await json<{
      capability: { backend: string; adapterName: string; backends: Figure[] }
    }>('node', 'status', '--data-dir', a)
    const kind = capability.backend
    expect(capability.backends.find((figure) => figure.inUse)?.backend).toBe(kind)
    const [second, third] = await Promise.all([
      json<Started>('node', 'start', '--data-dir', b, '--backend', kind, '--bootstrap', first.addresses[0]),
      json<Started>('node', 'start', '--data-dir', c, '--backend', kind, '--bootstrap', first.addresses[0]),
    ])

    expect(new Set([first.peerId, second.peerId, third.peerId]).size).toBe(3)

    // status, as text and JSON
    const text = await shardnet('node', 'status', '--data-dir', a)
    expect(text.code).toBe(0)
    expect(text.stdout).toContain(`peer id    ${first.peerId}`)
    expect(text.stdout).toContain(`backend    ${kind}, adapter ${capability.adapterName}, `)
    expect(text.stdout).toMatch(/\n(backends) +\S/)
    // polls go straight to the API (each CLI run spends a second starting up); assertions use the CLI
    await waitUntil(
      async () => ((await (await apiGet(a, '/v1/status')).json()) as { peers: number }).peers >= 2,
      'the first node to have 2 peers',
    )
    const status = await json<{ peerId: string; version: string; uptimeSeconds: number }>(
      'node',
      'status',
      '--data-dir',
      b,
    )
    expect(status.peerId).toBe(second.peerId)
    expect(status.version).toMatch(/^\d+\.\d+\.\d+$/)

    // the third node lists the other two as workers of that backend, found through their DHT records
    await waitUntil(
      async () => {
        const response = await apiGet(c, `/v1/peers?capability=${kind}`)
        const { peers } = (await response.json()) as { peers: unknown[] }
        return peers.length === 2
      },
      `the third node to find both ${kind} workers`,
      90_000,
      1_000,
    )
    const peers = await json<Array<{ peerId: string; source: string; capability: { backend: string } }>>(
      'node',
      'peers',
      '--data-dir',
      c,
      '--capability',
      kind,
    )
    expect(peers.map((peer) => peer.peerId).sort()).toEqual([first.peerId, second.peerId].sort())
    expect(
      peers.every((peer) => peer.source === 'capability-record' && peer.capability.backend === kind),
    ).toBe(true)
    const peersText = await shardnet('node', 'peers', '--data-dir', c)
    expect(peersText.code).toBe(0)
    expect(peersText.stdout).toMatch(/^2 peers\n/)
    expect(peersText.stdout).toContain(`${first.peerId}  connected  ${kind}`)

    // a block stored on b, then b is killed without warning
    const paths = dataDirPaths(b)
    const token = (await readFile(paths.apiToken, 'utf8')).trim()
    const endpoint = JSON.parse(await readFile(paths.apiEndpoint, 'utf8')) as { url: string }
    const put = await fetch(`${endpoint.url}/v1/blocks`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ data: Buffer.from('survives a SIGKILL').toString('base64') }),
    })
    const { cid } = (await put.json()) as { cid: string }
    process.kill(second.pid, 'SIGKILL')
    await waitUntil(() => !isShardnetProcessAlive(second.pid), 'the killed daemon to be gone')
    const down = await shardnet('node', 'status', '--data-dir', b)
    expect(down.code).toBe(1)
    expect(down.stderr).toContain('no shardnet daemon is running on data dir')

    // restart over the stale pid file and api.json, without --bootstrap: same PeerId, same block, and
    // back in the network through the peers it remembers (the peer store survived in LevelDB)
    const restarted = await json<Started>('node', 'start', '--data-dir', b)
    expect(restarted.peerId).toBe(second.peerId)
    expect(restarted.pid).not.toBe(second.pid)
    const block = await apiGet(b, `/v1/blocks?cid=${cid}`)
    expect(block.status).toBe(200)
    expect(Buffer.from(((await block.json()) as { data: string }).data, 'base64').toString()).toBe(
      'survives a SIGKILL',
    )
    await waitUntil(
      async () => ((await (await apiGet(b, '/v1/status')).json()) as { peers: number }).peers >= 1,
      'the restarted node to reconnect to the peers it remembers',
    )

    // starting a running node again is refused
    const again = await shardnet('node', 'start', '--data-dir', b)
    expect(again.code).toBe(1)
    expect(again.stderr).toContain('already running')

    // a wrong token is refused by the daemon's API
    expect((await apiGet(a, '/v1/status', 'f'.repeat(64))).status).toBe(401)

    for (const dataDir of [a, b, c]) {
      const stopped = await shardnet('node', 'stop', '--data-dir', dataDir)
      expect(stopped.code).toBe(0)
      expect(stopped.stdout).toContain('stopped')
    }
    const stopStopped = await shardnet('node', 'stop', '--data-dir', a)
    expect(stopStopped.code).toBe(1)
    expect(stopStopped.stderr).toContain('no shardnet daemon is running')
    // a graceful stop leaves no pid file or api.json behind
    expect(await readPidFile(dataDirPaths(a).pidFile)).toBeUndefined()
    const log = await readFile(dataDirPaths(a).logFile, 'utf8')
    expect(log).toContain('shardnet:daemon stopped')
  }, 300_000)

  it('refuses bad config keys, an unsafe API host and bad flags with one clear sentence', async () => {
    const dataDir = await tempDataDir()
    dataDirs.push(dataDir)
    const config = join(dataDir, 'config.json')
    await writeFile(config, JSON.stringify({ listen: ['/ip4/127.0.0.1/tcp/0'], apiPrt: 5001 }))
    const unknown = await shardnet('node', 'start', '--data-dir', dataDir, '--config', config)
    expect(unknown.code).toBe(1)
    expect(unknown.stderr).toMatch(/^error: config file .*config\.json: unknown key "apiPrt"/)
    await writeFile(config, JSON.stringify({ maxConnections: 'many' }))
    const wrongType = await shardnet('node', 'start', '--data-dir', dataDir, '--config', config)
    expect(wrongType.code).toBe(1)
    expect(wrongType.stderr).toContain('key "maxConnections" expected number')
    const unsafe = await shardnet('node', 'start', '--data-dir', dataDir, '--api-host', '0.0.0.0')
    expect(unsafe.code).toBe(1)
    expect(unsafe.stderr).toContain('--allow-remote-api')
    const badPort = await shardnet('node', 'start', '--data-dir', dataDir, '--api-port', '99999')
    expect(badPort.code).not.toBe(0)
    expect(badPort.stderr).toContain('--api-port must be an integer from 0 to 65535')
    // nothing was started
    expect(await readPidFile(dataDirPaths(dataDir).pidFile)).toBeUndefined()
  }, 120_000)

  it('installs a service unit that runs the node in the foreground', async () => {
    const dataDir = await tempDataDir()
    const unitDir = join(dataDir, 'units')
    const result = await json<{ unitPath: string; systemd: boolean; enabled: boolean }>(
      'node',
      'install',
      '--data-dir',
      dataDir,
      '--unit-dir',
      unitDir,
      '--no-enable',
      '--listen',
      '/ip4/0.0.0.0/tcp/4001',
    )
    expect(result.enabled).toBe(false)
    const unit = await readFile(result.unitPath, 'utf8')
    const execStart = unit.split('\n').find((line) => line.startsWith('ExecStart='))
    expect(execStart).toMatch(
      /bin\/shardnet\.js node start --foreground --data-dir \S+ --listen \/ip4\/0\.0\.0\.0\/tcp\/4001$/,
    )
    expect(unit).toContain('WantedBy=default.target')
  })
})
