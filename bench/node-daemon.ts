// Node daemon benchmarks (in this one process unless noted, real libp2p over 127.0.0.1 TCP, real data
// dirs in /tmp):
// 1. start-up: a daemon on a fresh data dir (key generation, LevelDB, capability probe, libp2p, API)
//    and on an existing one, against a bare libp2p host with the same services (the baseline);
// 2. control API: GET /v1/status round trip against a bare node:http server on loopback (baseline);
// 3. the CLI: `shardnet node start` (background child until its API answers) and `node status`;
// 4. join-to-discoverable: a new daemon joins a network of N, until another node's capability query
//    lists it.
// Prints figures and ratios; never passes or fails on time.
// Usage: npx tsx bench/node-daemon.ts [--repeats 5] [--requests 200] [--network 10]
import '../node/polyfill.js'
import { execFile } from 'node:child_process'
import { mkdtemp, readFile } from 'node:fs/promises'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { parseArgs, promisify } from 'node:util'
import { generateKeyPair } from '@libp2p/crypto/keys'
import { resolveNodeConfig } from '../node/config.js'
import { Daemon, type DaemonInit } from '../node/daemon.js'
import { plainCpuProbe } from '../node/executor/capability.js'
import { createHost } from '../node/host.js'
import { dataDirPaths } from '../node/store/data-dir.js'

const { values } = parseArgs({
  options: {
    repeats: { type: 'string', default: '5' },
    requests: { type: 'string', default: '200' },
    network: { type: 'string', default: '10' },
  },
})
const repeats = Number(values.repeats)
const requests = Number(values.requests)
const networkSize = Number(values.network)
const run = promisify(execFile)

const testSettings: Omit<DaemonInit, 'config'> = {
  ipColocationPenalty: false,
  dhtInitialQuerySelfIntervalMs: 100,
  advertiseRetryMs: 500,
  bootstrapRedialIntervalMs: 500,
  libp2pMetrics: false,
}

function median(samples: number[]): number {
  const sorted = [...samples].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)]
}

function percentile(samples: number[], fraction: number): number {
  const sorted = [...samples].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor(fraction * sorted.length))]
}

const ms = (value: number) => `${value.toFixed(1)} ms`

async function tempDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'shardnet-bench-'))
}

async function startDaemon(dataDir: string, bootstrap: string[] = []): Promise<Daemon> {
  return Daemon.start({ config: resolveNodeConfig(dataDir, {}, { bootstrap }), ...testSettings })
}

async function benchStartup(): Promise<void> {
  const bare: number[] = []
  const fresh: number[] = []
  const existing: number[] = []
  for (let repeat = 0; repeat < repeats; repeat++) {
    let start = performance.now()
    const host = await createHost({
      privateKey: await generateKeyPair('Ed25519'),
      listen: ['/ip4/127.0.0.1/tcp/0'],
    })
    await host.start()
    bare.push(performance.now() - start)
    await host.stop()

    const dataDir = await tempDir()
    start = performance.now()
    let daemon = await startDaemon(dataDir)
    fresh.push(performance.now() - start)
    await daemon.stop()
    start = performance.now()
    daemon = await startDaemon(dataDir)
    existing.push(performance.now() - start)
    await daemon.stop()
  }
  const probe = performance.now()
  const capability = await plainCpuProbe().measure()
  const probeMs = performance.now() - probe
  console.log(`start-up (median of ${repeats})`)
  console.log(`  bare libp2p host (baseline)      ${ms(median(bare))}`)
  console.log(
    `  daemon, fresh data dir           ${ms(median(fresh))}  ` +
      `(${(median(fresh) / median(bare)).toFixed(2)}x baseline)`,
  )
  console.log(
    `  daemon, existing data dir        ${ms(median(existing))}  ` +
      `(${(median(existing) / median(bare)).toFixed(2)}x baseline)`,
  )
  console.log(
    `  of which the cpu probe           ${ms(probeMs)}  (${capability.matmulGflops.toFixed(2)} ` +
      `GFLOP/s, matmul 128)`,
  )
}

async function benchApi(): Promise<void> {
  const daemon = await startDaemon(await tempDir())
  const token = (await readFile(dataDirPaths(daemon.paths.root).apiToken, 'utf8')).trim()
  const bareServer = createServer((_request, response) => {
    response.writeHead(200, { 'content-type': 'application/json' })
    response.end('{"ok":true}')
  })
  await new Promise<void>((resolve) => bareServer.listen(0, '127.0.0.1', resolve))
  const bareUrl = `http://127.0.0.1:${(bareServer.address() as AddressInfo).port}/`
  const time = async (url: string, headers: Record<string, string>): Promise<number[]> => {
    const samples: number[] = []
    for (let index = 0; index < requests; index++) {
      const start = performance.now()
      const response = await fetch(url, { headers })
      await response.text()
      samples.push(performance.now() - start)
    }
    return samples
  }
  await time(bareUrl, {})
  const bare = await time(bareUrl, {})
  const status = await time(`${daemon.api.url}/v1/status`, { authorization: `Bearer ${token}` })
  const metrics = await time(`${daemon.api.url}/metrics`, { authorization: `Bearer ${token}` })
  console.log(`control API (${requests} sequential requests)`)
  console.log(
    `  bare node:http on loopback (baseline)  p50 ${ms(median(bare))}  p99 ${ms(percentile(bare, 0.99))}`,
  )
  console.log(
    `  GET /v1/status                         p50 ${ms(median(status))}  p99 ` +
      `${ms(percentile(status, 0.99))}  (${(median(status) / median(bare)).toFixed(2)}x)`,
  )
  console.log(
    `  GET /metrics                           p50 ${ms(median(metrics))}  p99 ` +
      `${ms(percentile(metrics, 0.99))}  (${(median(metrics) / median(bare)).toFixed(2)}x)`,
  )
  bareServer.close()
  await daemon.stop()
}

async function benchCli(): Promise<void> {
  const dataDir = await tempDir()
  const cli = (...args: string[]) => run(process.execPath, ['bin/shardnet.js', ...args], { timeout: 120_000 })
  let start = performance.now()
  await cli('--version')
  const version = performance.now() - start
  start = performance.now()
  await cli('node', 'start', '--data-dir', dataDir)
  const startMs = performance.now() - start
  const statusSamples: number[] = []
  for (let index = 0; index < 3; index++) {
    start = performance.now()
    await cli('node', 'status', '--data-dir', dataDir)
    statusSamples.push(performance.now() - start)
  }
  start = performance.now()
  await cli('node', 'stop', '--data-dir', dataDir)
  const stopMs = performance.now() - start
  console.log('the CLI (child processes)')
  console.log(`  shardnet --version (baseline: CLI start-up)  ${ms(version)}`)
  console.log(`  node start, until the API answers            ${ms(startMs)}`)
  console.log(`  node status (median of 3)                    ${ms(median(statusSamples))}`)
  console.log(`  node stop, until the process is gone          ${ms(stopMs)}`)
}

async function benchJoin(): Promise<void> {
  const daemons: Daemon[] = [await startDaemon(await tempDir())]
  const bootstrap = daemons[0].addresses()
  daemons.push(
    ...(await Promise.all(
      Array.from({ length: networkSize - 1 }, async () => startDaemon(await tempDir(), bootstrap)),
    )),
  )
  const waitFor = async (condition: () => Promise<boolean>) => {
    while (!(await condition())) await new Promise((resolve) => setTimeout(resolve, 100))
  }
  await waitFor(async () => daemons.every((daemon) => daemon.host.services.discovery.current() !== undefined))
  const start = performance.now()
  const newcomer = await startDaemon(await tempDir(), bootstrap)
  const started = performance.now() - start
  const seeker = daemons[networkSize - 1]
  await waitFor(async () => newcomer.host.services.discovery.counters().published > 0)
  const published = performance.now() - start
  await waitFor(async () =>
    (await seeker.peers({ capability: 'cpu', signal: AbortSignal.timeout(20_000) })).some(
      (peer) => peer.peerId === newcomer.peerId.toString(),
    ),
  )
  const discoverable = performance.now() - start
  const lookupStart = performance.now()
  const found = await seeker.peers({ capability: 'cpu' })
  const lookup = performance.now() - lookupStart
  console.log(`join a network of ${networkSize} daemons`)
  console.log(`  newcomer started                         ${ms(started)}`)
  console.log(`  its capability record and provider entry published  ${ms(published)} after its start`)
  console.log(`  listed by another node's capability query ${ms(discoverable)} after its start`)
  console.log(`  one capability query (${found.length} workers)        ${ms(lookup)}`)
  await Promise.all([...daemons, newcomer].map((daemon) => daemon.stop()))
}

console.log(`node daemon benchmarks: ${process.version}, ${process.platform}/${process.arch}`)
await benchStartup()
await benchApi()
await benchCli()
await benchJoin()
