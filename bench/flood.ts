// The flood benchmark (issue 16's figure): two real daemons, each in its own child process on
// 127.0.0.1, one flooded by strangers and one left alone as the baseline, both sampled every 100 ms
// for resident memory (VmRSS of /proc/PID/status) and control-API latency (an authenticated
// GET /v1/status). The strangers run in a third process: fresh libp2p identities (members of no group,
// holders of no claim) that open as many connections and streams as the daemon takes, on every
// protocol it serves, and on each stream send one of
//   - trickle:   0xff bytes, one every 20 ms (a length prefix that never ends),
//   - oversized: the prefix of a 1 GiB frame, then 64 KiB chunks as fast as the stream takes them,
//   - garbage:   length-prefixed random bytes (bad protobufs) of 1 to 4 KiB, over and over,
//   - idle:      nothing (a stream held open),
// plus raw TCP sockets that never finish a handshake. Goals: RSS growth under 100 MiB and API p99
// under 200 ms throughout. Prints both daemons' figures, what the attackers got through and what the
// flooded daemon refused (its heap and RSS after a full GC: what it retains); never passes or fails.
// Usage: npx tsx bench/flood.ts [--seconds 60] [--strangers 12] [--streams 3] [--sockets 200]
//        [--only /shardnet/raft/1.0.0,sockets]  (a subset of the protocols, and the raw sockets)
import '../node/polyfill.js'
import { type ChildProcess, spawn } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { mkdtemp, readFile } from 'node:fs/promises'
import { type Socket, connect as tcpConnect } from 'node:net'
import { cpus, tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { Connection, Stream } from '@libp2p/interface'
import { noise } from '@libp2p/noise'
import { yamux } from '@libp2p/yamux'
import { multiaddr } from '@multiformats/multiaddr'
import { createLibp2p, type Libp2p } from 'libp2p'
import { resolveNodeConfig } from '../node/config.js'
import { Daemon } from '../node/daemon.js'
import { plainCpuProbe } from '../node/executor/capability.js'
import { inboundRefusals, throttleCounts } from '../node/host.js'
import { dataDirPaths } from '../node/store/data-dir.js'
import { shardnetTcp } from '../node/tcp.js'

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '60' },
    strangers: { type: 'string', default: '12' },
    streams: { type: 'string', default: '3' },
    sockets: { type: 'string', default: '200' },
    /** comma-separated subset of the protocols (and 'sockets' for the raw socket flood); all by default */
    only: { type: 'string', default: '' },
    role: { type: 'string', default: 'bench' },
    target: { type: 'string' },
  },
})
const seconds = Number(values.seconds)
const SAMPLE_MS = 100
const WARMUP_MS = 3000
const RSS_GROWTH_GOAL_MIB = 100
const P99_GOAL_MS = 200

/** Every protocol a daemon may serve; the attackers try each (one the daemon does not serve is refused). */
const PROTOCOLS = [
  '/shardnet/raft/1.0.0',
  '/shardnet/grad/1.0.0',
  '/shardnet/claim/1.0.0',
  '/shardnet/infer/1.0.0',
  '/shardnet/blocks/1.0.0',
  '/shardnet/kad/1.0.0',
  '/meshsub/1.2.0',
  '/meshsub/1.1.0',
  '/ipfs/id/1.0.0',
  '/ipfs/id/push/1.0.0',
  '/ipfs/ping/1.0.0',
]
const ATTACKS = ['trickle', 'oversized', 'garbage', 'idle'] as const
type Attack = (typeof ATTACKS)[number]

interface DaemonInfo {
  pid: number
  peerId: string
  addresses: string[]
  apiUrl: string
  token: string
}

// ---------------------------------------------------------------------------------------------------
// the daemon child: the CLI's composition (node/daemon.ts) on a fresh data dir; prints its address
// line, then a stats line for each "stats" line on stdin

async function runDaemon(): Promise<void> {
  const dataDir = await mkdtemp(join(tmpdir(), 'shardnet-flood-'))
  const daemon = await Daemon.start({
    config: resolveNodeConfig(dataDir, {}, { backend: 'cpu', listen: ['/ip4/127.0.0.1/tcp/0'], apiPort: 0 }),
    // a quick probe: the capability figure plays no part here
    capabilityProbe: plainCpuProbe({ size: 32, repeats: 1 }),
  })
  const token = (await readFile(dataDirPaths(daemon.paths.root).apiToken, 'utf8')).trim()
  const info: DaemonInfo = {
    pid: process.pid,
    peerId: daemon.peerId.toString(),
    addresses: daemon.host.getMultiaddrs().map((address) => address.toString()),
    apiUrl: daemon.api.url,
    token,
  }
  process.stdout.write(`${JSON.stringify(info)}\n`)
  const lines = createInterface({ input: process.stdin })
  for await (const line of lines) {
    if (line.trim() !== 'stats') continue
    // what is retained rather than not yet collected (the child runs with --expose-gc)
    ;(globalThis as { gc?: () => void }).gc?.()
    const raft = daemon.host.services.raft
    const stats = {
      connections: daemon.host.getConnections().length,
      streams: daemon.host.getConnections().reduce((n, c) => n + c.streams.length, 0),
      protocols: daemon.host.getProtocols(),
      inboundGate: inboundRefusals(daemon.host),
      throttled: throttleCounts,
      raft: { ...raft.stats, budgets: { ...raft.budgets.refused } },
      blocks: daemon.blocks.counters(),
      /** bytes the process read from any descriptor (sockets, mostly) since it started */
      readMiB: Math.round(
        Number(/rchar: (\d+)/.exec(readFileSync('/proc/self/io', 'utf8'))?.[1] ?? 0) / 2 ** 20,
      ),
      memoryMiB: Object.fromEntries(
        Object.entries(process.memoryUsage()).map(([key, bytes]) => [key, Math.round(bytes / 2 ** 20)]),
      ),
    }
    process.stdout.write(`${JSON.stringify(stats)}\n`)
  }
  await daemon.stop()
}

// ---------------------------------------------------------------------------------------------------
// the attacker child

interface AttackCounters {
  connections: number
  connectionsRefused: number
  streamsOpened: number
  streamsRefused: number
  /** streams the daemon closed or reset while the attacker was still sending */
  streamsCutOff: number
  bytesSent: number
  /** bytes sent on each cut-off stream before it was cut off, summed */
  bytesBeforeCutOff: number
  byProtocol: Record<string, { opened: number; refused: number; cutOff: number; bytes: number }>
  sockets: { opened: number; closedByTarget: number; refused: number }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** Sends `data`, waiting for the stream to drain; false once the stream is no longer writable. */
async function send(stream: Stream, data: Uint8Array): Promise<boolean> {
  if (stream.status !== 'open' || stream.writeStatus !== 'writable') return false
  try {
    // stream.onDrain() can hand back an already settled promise: wait for the events themselves
    if (!stream.send(data)) await drained(stream, 10_000)
    return stream.status === 'open'
  } catch {
    return false
  }
}

function drained(stream: Stream, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = (error?: Error) => {
      clearTimeout(timer)
      stream.removeEventListener('drain', onDrain)
      stream.removeEventListener('close', onClose)
      if (error === undefined) resolve()
      else reject(error)
    }
    const onDrain = () => done()
    const onClose = () => done(new Error('closed'))
    const timer = setTimeout(() => done(new Error('no drain')), timeoutMs)
    stream.addEventListener('drain', onDrain)
    stream.addEventListener('close', onClose)
  })
}

function varint(n: number): Uint8Array {
  const out: number[] = []
  while (n >= 0x80) {
    out.push((n & 0x7f) | 0x80)
    n = Math.floor(n / 128)
  }
  out.push(n)
  return Uint8Array.from(out)
}

async function attackStream(stream: Stream, attack: Attack, deadline: number): Promise<number> {
  let sent = 0
  const write = async (data: Uint8Array) => {
    if (!(await send(stream, data))) return false
    sent += data.byteLength
    return true
  }
  switch (attack) {
    case 'trickle':
      while (Date.now() < deadline && (await write(Uint8Array.of(0xff)))) await sleep(20)
      break
    case 'oversized': {
      const chunk = new Uint8Array(64 << 10).fill(0x42)
      if (await write(varint(1 << 30))) while (Date.now() < deadline && (await write(chunk))) {}
      break
    }
    case 'garbage':
      while (Date.now() < deadline) {
        const body = crypto.getRandomValues(new Uint8Array(1024 + Math.floor(Math.random() * 3072)))
        if (!(await write(varint(body.byteLength))) || !(await write(body))) break
        await sleep(5)
      }
      break
    case 'idle':
      while (Date.now() < deadline && stream.status === 'open') await sleep(200)
      break
  }
  return sent
}

async function runAttacker(): Promise<void> {
  const target = multiaddr(values.target!)
  const deadline = Date.now() + seconds * 1000
  const counters: AttackCounters = {
    connections: 0,
    connectionsRefused: 0,
    streamsOpened: 0,
    streamsRefused: 0,
    streamsCutOff: 0,
    bytesSent: 0,
    bytesBeforeCutOff: 0,
    byProtocol: Object.fromEntries(PROTOCOLS.map((p) => [p, { opened: 0, refused: 0, cutOff: 0, bytes: 0 }])),
    sockets: { opened: 0, closedByTarget: 0, refused: 0 },
  }
  const strangers: Libp2p[] = []
  for (let i = 0; i < Number(values.strangers); i++) {
    strangers.push(
      await createLibp2p({
        privateKey: await generateKeyPair('Ed25519'),
        transports: [shardnetTcp()],
        connectionEncrypters: [noise()],
        streamMuxers: [yamux()],
        connectionManager: { maxConnections: 1000 },
      }),
    )
  }
  await Promise.all(strangers.map((s) => s.start()))

  async function connection(stranger: Libp2p): Promise<Connection | undefined> {
    const open = stranger.getConnections().find((c) => c.status === 'open')
    if (open !== undefined) return open
    try {
      const c = await stranger.dial(target, { signal: AbortSignal.timeout(5000) })
      counters.connections++
      return c
    } catch {
      counters.connectionsRefused++
      await sleep(100)
      return undefined
    }
  }

  async function worker(stranger: Libp2p, protocol: string, attack: Attack): Promise<void> {
    const tally = counters.byProtocol[protocol]
    while (Date.now() < deadline) {
      const c = await connection(stranger)
      if (c === undefined) continue
      let stream: Stream
      try {
        stream = await c.newStream(protocol, { signal: AbortSignal.timeout(5000) })
      } catch {
        counters.streamsRefused++
        tally.refused++
        await sleep(50)
        continue
      }
      counters.streamsOpened++
      tally.opened++
      const sent = await attackStream(stream, attack, deadline)
      counters.bytesSent += sent
      tally.bytes += sent
      if (Date.now() < deadline) {
        counters.streamsCutOff++
        counters.bytesBeforeCutOff += sent
        tally.cutOff++
      }
      stream.abort(new Error('done'))
    }
  }

  // raw sockets that connect and never finish a handshake: a pending-connection flood
  const sockets: Socket[] = []
  async function socketFlood(): Promise<void> {
    const host = target.getComponents().find((c) => c.name === 'ip4')!.value!
    const port = Number(target.getComponents().find((c) => c.name === 'tcp')!.value)
    while (Date.now() < deadline) {
      if (sockets.length >= Number(values.sockets)) {
        await sleep(100)
        continue
      }
      const socket = tcpConnect({ host, port })
      sockets.push(socket)
      counters.sockets.opened++
      socket.on('error', () => {})
      socket.on('close', () => {
        sockets.splice(sockets.indexOf(socket), 1)
        if (Date.now() < deadline) counters.sockets.closedByTarget++
      })
      // the first bytes of multistream-select, then nothing
      socket.write(Uint8Array.of(0x13, 0x2f, 0x6d))
      await sleep(20)
    }
  }

  const only = values.only === '' ? undefined : new Set(values.only!.split(','))
  const jobs: Promise<void>[] = only === undefined || only.has('sockets') ? [socketFlood()] : []
  for (const stranger of strangers) {
    for (const protocol of PROTOCOLS.filter((p) => only === undefined || only.has(p))) {
      for (let i = 0; i < Number(values.streams); i++) {
        jobs.push(worker(stranger, protocol, ATTACKS[(i + strangers.indexOf(stranger)) % ATTACKS.length]))
      }
    }
  }
  await Promise.all(jobs)
  for (const socket of sockets.splice(0)) socket.destroy()
  await Promise.allSettled(strangers.map((s) => s.stop()))
  process.stdout.write(`${JSON.stringify(counters)}\n`)
}

// ---------------------------------------------------------------------------------------------------
// the bench

const self = fileURLToPath(import.meta.url)

function child(args: string[]): ChildProcess {
  return spawn(process.execPath, ['--expose-gc', '--import', 'tsx', self, ...args], {
    stdio: ['pipe', 'pipe', 'inherit'],
    env: { ...process.env, DEBUG: '' },
  })
}

/** The next stdout line of `proc`, parsed as JSON. */
function nextLine<T>(proc: ChildProcess): Promise<T> {
  return new Promise((resolve, reject) => {
    let buffer = ''
    const onData = (chunk: Buffer) => {
      buffer += chunk.toString('utf8')
      const newline = buffer.indexOf('\n')
      if (newline < 0) return
      proc.stdout!.off('data', onData)
      proc.off('exit', onExit)
      try {
        resolve(JSON.parse(buffer.slice(0, newline)) as T)
      } catch (error) {
        reject(error)
      }
    }
    const onExit = (code: number | null) => reject(new Error(`child exited (${code}) before answering`))
    proc.stdout!.on('data', onData)
    proc.once('exit', onExit)
  })
}

function rssMiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? Number.NaN)
  return kb / 1024
}

interface Sample {
  t: number
  rss: number
  apiMs: number
}

/** Samples `daemon` every 100 ms until `stop` resolves; each API call is timed on its own. */
async function sample(daemon: DaemonInfo, startedAt: number, stopAt: () => boolean): Promise<Sample[]> {
  const samples: Sample[] = []
  while (!stopAt()) {
    const began = performance.now()
    let apiMs: number
    try {
      const response = await fetch(`${daemon.apiUrl}/v1/status`, {
        headers: { authorization: `Bearer ${daemon.token}` },
        signal: AbortSignal.timeout(30_000),
      })
      await response.arrayBuffer()
      apiMs = response.ok ? performance.now() - began : Number.POSITIVE_INFINITY
    } catch {
      apiMs = Number.POSITIVE_INFINITY
    }
    samples.push({ t: Date.now() - startedAt, rss: rssMiB(daemon.pid), apiMs })
    const spent = performance.now() - began
    if (spent < SAMPLE_MS) await sleep(SAMPLE_MS - spent)
  }
  return samples
}

function percentile(sorted: number[], fraction: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(fraction * sorted.length))]
}

function summary(name: string, samples: Sample[], floodFrom: number, floodTo: number) {
  const before = samples.filter((s) => s.t < floodFrom)
  const during = samples.filter((s) => s.t >= floodFrom && s.t <= floodTo)
  const start = before.length > 0 ? before[before.length - 1].rss : during[0].rss
  const peak = Math.max(...during.map((s) => s.rss))
  const end = during[during.length - 1].rss
  const api = during.map((s) => s.apiMs).sort((a, b) => a - b)
  // the worst p99 over any 10 s window of the flood ("throughout")
  let worstWindowP99 = 0
  for (let from = floodFrom; from + 10_000 <= floodTo + SAMPLE_MS; from += 1000) {
    const window = during
      .filter((s) => s.t >= from && s.t < from + 10_000)
      .map((s) => s.apiMs)
      .sort((a, b) => a - b)
    if (window.length > 0) worstWindowP99 = Math.max(worstWindowP99, percentile(window, 0.99))
  }
  return {
    name,
    samples: during.length,
    rssStartMiB: start,
    rssPeakMiB: peak,
    rssEndMiB: end,
    rssGrowthMiB: peak - start,
    apiP50Ms: percentile(api, 0.5),
    apiP99Ms: percentile(api, 0.99),
    apiMaxMs: api[api.length - 1],
    worstWindowP99Ms: worstWindowP99,
  }
}

async function runBench(): Promise<void> {
  console.log(
    `flood benchmark: ${seconds} s, ${values.strangers} strangers x ${PROTOCOLS.length} protocols x ` +
      `${values.streams} stream loops, ${values.sockets} raw sockets; ${new Date().toISOString()}, ` +
      `${cpus().length} x ${cpus()[0]?.model}, node ${process.version}`,
  )
  const flooded = child(['--role', 'daemon'])
  const baseline = child(['--role', 'daemon'])
  const procs = [flooded, baseline]
  try {
    const [target, quiet] = await Promise.all([nextLine<DaemonInfo>(flooded), nextLine<DaemonInfo>(baseline)])
    console.log(
      `flooded daemon ${target.peerId} (pid ${target.pid}); baseline ${quiet.peerId} (pid ${quiet.pid})`,
    )
    const startedAt = Date.now()
    let done = false
    const sampling = Promise.all([
      sample(target, startedAt, () => done),
      sample(quiet, startedAt, () => done),
    ])
    await sleep(WARMUP_MS)
    const floodFrom = Date.now() - startedAt
    const address = `${target.addresses[0]}`
    const attacker = child(['--role', 'attacker', '--target', address, ...forwarded()])
    procs.push(attacker)
    const attackResult = nextLine<AttackCounters>(attacker)
    await sleep(seconds * 1000)
    const floodTo = Date.now() - startedAt
    flooded.stdin!.write('stats\n')
    const daemonStats = await nextLine<Record<string, unknown>>(flooded)
    done = true
    const [floodedSamples, quietSamples] = await sampling
    const attack = await attackResult
    const rows = [
      summary('flooded', floodedSamples, floodFrom, floodTo),
      summary('baseline', quietSamples, floodFrom, floodTo),
    ]
    const f = (n: number) => (Number.isFinite(n) ? n.toFixed(1) : 'timeout')
    console.log(
      '\ndaemon    RSS start  peak   end    growth (MiB) | API p50  p99    max    worst-10s-p99 (ms)',
    )
    for (const r of rows) {
      console.log(
        `${r.name.padEnd(9)} ${f(r.rssStartMiB).padStart(6)} ${f(r.rssPeakMiB).padStart(6)} ` +
          `${f(r.rssEndMiB).padStart(6)} ${f(r.rssGrowthMiB).padStart(7)}      | ` +
          `${f(r.apiP50Ms).padStart(6)} ` +
          `${f(r.apiP99Ms).padStart(6)} ${f(r.apiMaxMs).padStart(6)} ${f(r.worstWindowP99Ms).padStart(8)}`,
      )
    }
    const flood = rows[0]
    console.log(
      `\ngoals (flooded daemon): RSS growth ${f(flood.rssGrowthMiB)} MiB < ${RSS_GROWTH_GOAL_MIB}: ` +
        `${flood.rssGrowthMiB < RSS_GROWTH_GOAL_MIB ? 'met' : 'NOT met'}; API p99 ${f(flood.apiP99Ms)} ms ` +
        `(worst 10 s window ${f(flood.worstWindowP99Ms)}) < ${P99_GOAL_MS}: ` +
        `${flood.worstWindowP99Ms < P99_GOAL_MS ? 'met' : 'NOT met'}`,
    )
    const cutOffAverage =
      attack.streamsCutOff > 0 ? (attack.bytesBeforeCutOff / attack.streamsCutOff).toFixed(0) : 0
    console.log('\nattackers:')
    console.log(
      `  connections ${attack.connections} opened, ${attack.connectionsRefused} refused; streams ` +
        `${attack.streamsOpened} opened, ${attack.streamsRefused} refused, ${attack.streamsCutOff} cut off ` +
        `after ${cutOffAverage} ` +
        `bytes on average; ${(attack.bytesSent / 2 ** 20).toFixed(1)} MiB sent`,
    )
    console.log(
      `  raw sockets ${attack.sockets.opened} opened, ${attack.sockets.closedByTarget} closed by the daemon`,
    )
    for (const [protocol, t] of Object.entries(attack.byProtocol)) {
      console.log(
        `  ${protocol.padEnd(24)} opened ${String(t.opened).padStart(6)} ` +
          `refused ${String(t.refused).padStart(6)} ` +
          `cut off ${String(t.cutOff).padStart(6)}  ${(t.bytes / 2 ** 20).toFixed(2)} MiB sent`,
      )
    }
    console.log('\nflooded daemon at the end of the flood (memory after a full GC):')
    const { protocols, ...rest } = daemonStats as { protocols: string[] }
    console.log(`  serves ${protocols.join(' ')}`)
    console.log(`  ${JSON.stringify(rest)}`)
  } finally {
    for (const proc of procs) proc.kill('SIGTERM')
  }
}

function forwarded(): string[] {
  return [
    '--seconds',
    String(seconds),
    '--strangers',
    values.strangers!,
    '--streams',
    values.streams!,
    '--sockets',
    values.sockets!,
    '--only',
    values.only!,
  ]
}

if (values.role === 'daemon') await runDaemon()
else if (values.role === 'attacker') await runAttacker()
else await runBench()
