import { resolve } from 'node:path'
import { type Command, InvalidArgumentError, Option } from 'commander'
import { isModelId } from '../../protocols/wire/validation/index.js'
import type { NodeStatus } from '../api/node-routes.js'
import type { ServeListing } from '../api/serving-routes.js'
import type { ConfigOverrides } from '../config.js'
import type { BackendFigure, NodeCapability } from '../executor/capability.js'
import { generateSwarmKey } from '../host.js'
import type { PeerEntry } from '../peers.js'
import { formatBlockRange } from '../serving/placement.js'
import type { ServeEntry } from '../serving/served-models.js'
import { defaultDataDir } from '../store/data-dir.js'
import { connectToDaemon } from './daemon-client.js'
import { UserError } from './errors.js'
import {
  daemonStatus,
  installService,
  runInForeground,
  type StartOptions,
  startInBackground,
  stopDaemon,
  writeSwarmKey,
} from './node-lifecycle.js'

function integerIn(minimum: number, maximum: number, what: string) {
  return (text: string): number => {
    const value = Number(text)
    if (!Number.isInteger(value) || value < minimum || value > maximum) {
      throw new InvalidArgumentError(`${what} must be an integer from ${minimum} to ${maximum}.`)
    }
    return value
  }
}

function print(json: boolean, value: unknown, text: string): void {
  process.stdout.write(json ? `${JSON.stringify(value, null, 2)}\n` : `${text}\n`)
}

function formatUptime(seconds: number): string {
  const whole = Math.floor(seconds)
  const hours = Math.floor(whole / 3600)
  const minutes = Math.floor((whole % 3600) / 60)
  return hours > 0 ? `${hours}h ${minutes}m` : minutes > 0 ? `${minutes}m ${whole % 60}s` : `${whole}s`
}

function sum(counts: Record<string, number>): number {
  return Object.values(counts).reduce((total, count) => total + count, 0)
}

function backendName(figure: Pick<BackendFigure, 'backend' | 'engine'>): string {
  return figure.engine === undefined ? figure.backend : `${figure.backend}/${figure.engine}`
}

/** One line per backend measured (the one in use starred), then those that did not open, then the probe. */
function formatBackends(c: NodeCapability): string[] {
  const figures = c.backends ?? []
  const width = Math.max(
    0,
    ...figures.map((f) => backendName(f).length),
    ...(c.unavailable ?? []).map((u) => backendName(u).length),
  )
  const lines = figures.map(
    (f) =>
      `${f.inUse ? '*' : ' '} ${backendName(f).padEnd(width)} ` +
      `${f.matmulGflops.toFixed(2).padStart(9)} GFLOP/s  ${f.adapterName}`,
  )
  for (const u of c.unavailable ?? [])
    lines.push(`  ${backendName(u).padEnd(width)} unavailable: ${u.reason}`)
  if (c.probe !== undefined) {
    const chosen = c.chosenBy === 'pinned' ? 'pinned by the config' : 'the fastest measured'
    const when = new Date(c.probe.measuredAtMs).toISOString().replace(/\.\d+Z$/, 'Z')
    const took = `${(c.probe.seconds * 1000).toFixed(0)} ms`
    const load = `load average ${c.probe.loadAverage.toFixed(2)}`
    lines.push(
      c.probe.source === 'cache'
        ? `  (* in use, ${chosen}; figures from the cache, measured ${when} at ${load}, read in ${took})`
        : `  (* in use, ${chosen}; measured at start in ${took} at ${load}, ` +
            `${c.probe.cached ? 'cached' : 'not cached'})`,
    )
  }
  return lines
}

/** One line per span this node serves, then its span server's sessions. */
function formatServing(status: NodeStatus): string[] {
  const serving = status.serving
  if (serving === undefined || serving.spans.length === 0) return ['no spans of any model']
  const lines = serving.spans.map(
    (span) =>
      `blocks ${span.start}-${span.end - 1} of ${span.blocks} of ${span.name} ${span.model}, ` +
      `${span.tokensPerSecond.toFixed(0)} tokens/s, ${span.sessions} open sessions`,
  )
  const c = serving.counters
  lines.push(`${c.sessionsOpened} sessions opened, ${c.steps} steps, ${sum(c.refused)} refused`)
  return lines
}

export function formatStatus(status: NodeStatus): string {
  const c = status.capability
  return [
    `peer id    ${status.peerId}`,
    `addresses  ${status.addresses.join('\n           ') || '(none)'}`,
    `backend    ${c.backend}, adapter ${c.adapterName}, ${c.matmulGflops.toFixed(2)} GFLOP/s (matmul ` +
      `${c.matmulSize})`,
    ...formatBackends(c).map((line, index) => `${index === 0 ? 'backends' : '        '}   ${line}`),
    `peers      ${status.peers} connected, ${status.dhtRoutingTablePeers} in the DHT routing table`,
    `network    ${status.privateNetwork ? 'private (swarm key)' : 'open'}`,
    `gossip     ${status.counters.tasks.accepted} announcements accepted, ` +
      `${sum(status.counters.tasks.rejected)} rejected`,
    `blocks     ${status.counters.blocks.served} served, ${status.counters.blocks.fetched} fetched, ` +
      `${sum(status.counters.blocks.rejected)} refused`,
    ...formatServing(status).map((line, index) => `${index === 0 ? 'serving' : '       '}    ${line}`),
    `uptime     ${formatUptime(status.uptimeSeconds)}`,
    `version    ${status.version}`,
    `data dir   ${status.dataDir}`,
    `api        ${status.apiUrl}`,
  ].join('\n')
}

function formatPeers(peers: PeerEntry[]): string {
  if (peers.length === 0) return 'no peers found'
  const lines = peers.map((peer) => {
    const capability =
      peer.capability != null
        ? `${peer.capability.backend.padEnd(6)} ${peer.capability.gflops.toFixed(2).padStart(8)} ` +
          `GFLOP/s  ${peer.capability.adapterName}`
        : '(capability unknown)'
    return `${peer.peerId}  ${peer.connected ? 'connected' : 'known    '}  ${capability}`
  })
  return [`${peers.length} peer${peers.length === 1 ? '' : 's'}`, ...lines].join('\n')
}

function formatBytes(bytes: number): string {
  return bytes >= 1024 ** 3
    ? `${(bytes / 1024 ** 3).toFixed(1)} GiB`
    : bytes >= 1024 ** 2
      ? `${(bytes / 1024 ** 2).toFixed(1)} MiB`
      : `${(bytes / 1024).toFixed(1)} KiB`
}

/** One line for a served model: its state, span, speed, and what was asked. */
export function formatServeEntry(entry: ServeEntry): string {
  const id = entry.modelId ?? '(model id not known yet)'
  const name = entry.name === '' ? '' : ` (${entry.name})`
  const span =
    entry.start !== undefined && entry.end !== undefined
      ? formatBlockRange(entry.start, entry.end, entry.blocks)
      : entry.placed
        ? `blocks chosen by placement, of ${entry.blocks}`
        : `blocks ${entry.blocksRequested} of ${entry.blocks}`
  const speed = entry.tokensPerSecond === undefined ? '' : `, ${entry.tokensPerSecond.toFixed(1)} tokens/s`
  const sessions = entry.sessions === undefined ? '' : `, ${entry.sessions} sessions`
  const from = entry.model === entry.modelId ? '' : `\n    from ${entry.model}`
  const failed = entry.state === 'failed' ? `\n    error: ${entry.error}` : ''
  return `${entry.state.padEnd(10)} ${span} of ${id}${name}${speed}${sessions}${from}${failed}`
}

function formatServeListing(listing: ServeListing): string {
  const head =
    `serving ${listing.entries.length} model${listing.entries.length === 1 ? '' : 's'}, ` +
    `${formatBytes(listing.memoryUsedBytes)} of the ${formatBytes(listing.memoryBytes)} serve memory budget`
  return [head, ...listing.entries.map(formatServeEntry)].join('\n')
}

/** How often `node serve` asks the daemon how its request is going. */
const SERVE_POLL_MS = 250

function dataDirOption(): Option {
  return new Option('--data-dir <dir>', 'the node data dir (env SHARDNET_DATA_DIR)').default(
    defaultDataDir(),
    '~/.shardnet',
  )
}

function jsonOption(): Option {
  return new Option('--json', 'machine-readable output on stdout')
}

interface StartFlags {
  dataDir: string
  json?: boolean
  foreground?: boolean
  verbose?: boolean
  config?: string
  listen?: string[]
  announce?: string[]
  bootstrap?: string[]
  swarmKey?: string
  apiHost?: string
  apiPort?: number
  allowRemoteApi?: boolean
  backend?: 'auto' | 'webgpu' | 'cpu'
  cpuEngine?: 'native' | 'wasm' | 'reference'
  maxConnections?: number
  waitSeconds: number
}

function startOptionsOf(flags: StartFlags): StartOptions {
  const overrides: ConfigOverrides = {
    listen: flags.listen,
    announce: flags.announce,
    bootstrap: flags.bootstrap,
    swarmKeyFile: flags.swarmKey != null ? resolve(flags.swarmKey) : undefined,
    apiHost: flags.apiHost,
    apiPort: flags.apiPort,
    allowRemoteApi: flags.allowRemoteApi,
    backend: flags.backend,
    cpuEngine: flags.cpuEngine,
    maxConnections: flags.maxConnections,
  }
  // absolute, so a background child or a systemd unit finds the same files whatever its cwd
  return {
    verbose: flags.verbose === true,
    dataDir: resolve(flags.dataDir),
    configFile: flags.config != null ? resolve(flags.config) : undefined,
    overrides,
  }
}

/** The daemon's own flags, shared by `node start` and `node install`. */
function addDaemonFlags(command: Command): Command {
  return command
    .option('--config <file>', 'JSON config file (flags override it; unknown keys are an error)')
    .option(
      '--listen <multiaddr...>',
      'addresses to listen on (default /ip4/127.0.0.1/tcp/0: loopback only, for safety; ' +
        'use /ip4/0.0.0.0/tcp/4001 to join other machines)',
    )
    .option('--announce <multiaddr...>', 'addresses to advertise instead of the listen addresses')
    .option('--bootstrap <multiaddr...>', 'peers to join the network through (each ending in /p2p/<peer id>)')
    .option('--swarm-key <file>', 'private network: only nodes with this swarm key can connect')
    .option('--api-host <host>', 'control API address (default 127.0.0.1)')
    .option(
      '--api-port <port>',
      'control API port (default: any free port)',
      integerIn(0, 65535, '--api-port'),
    )
    .option('--allow-remote-api', 'allow binding the control API to a non-loopback address')
    .addOption(
      new Option(
        '--backend <backend>',
        'compute backend: auto (default) takes the fastest measured at start; webgpu or cpu pins one',
      ).choices(['auto', 'webgpu', 'cpu']),
    )
    .addOption(
      new Option(
        '--cpu-engine <engine>',
        "pin the cpu backend's engine (default: the fastest that loads)",
      ).choices(['native', 'wasm', 'reference']),
    )
    .option(
      '--max-connections <n>',
      'most simultaneous connections',
      integerIn(1, 10_000, '--max-connections'),
    )
}

export function register(program: Command): void {
  const node = program.command('node').description('run and inspect this machine’s shardnet node')

  addDaemonFlags(
    node
      .command('start')
      .description('start the node daemon in the background (or --foreground with logs on stderr)')
      .addOption(dataDirOption())
      .addOption(jsonOption())
      .option('--foreground', 'stay attached and log to stderr; stop with Ctrl-C')
      .option('--verbose', 'log libp2p too, not only shardnet (or choose with DEBUG=namespaces)')
      .option(
        '--wait-seconds <s>',
        'how long to wait for the daemon to answer',
        integerIn(1, 3600, '--wait-seconds'),
        60,
      ),
  ).action(async (flags: StartFlags) => {
    const options = startOptionsOf(flags)
    if (flags.foreground === true) {
      await runInForeground(options, (daemon) => {
        const status = daemon.status()
        print(
          flags.json === true,
          status,
          `shardnet node ${status.peerId} running\n${status.addresses.join('\n')}`,
        )
      })
      return
    }
    const started = await startInBackground(options, flags.waitSeconds * 1000, (line) => {
      if (flags.json !== true) process.stderr.write(`${line}\n`)
    })
    print(
      flags.json === true,
      started,
      `shardnet node ${started.peerId} started (pid ${started.pid})\n${started.addresses.join('\n')}`,
    )
  })

  node
    .command('stop')
    .description('stop the node daemon gracefully (SIGTERM, then wait for it to exit)')
    .addOption(dataDirOption())
    .addOption(jsonOption())
    .option('--wait-seconds <s>', 'how long to wait for it to exit', integerIn(1, 3600, '--wait-seconds'), 30)
    .option('--force', 'kill it (SIGKILL) if it has not exited after the wait')
    .action(async (flags: { dataDir: string; json?: boolean; waitSeconds: number; force?: boolean }) => {
      const result = await stopDaemon(flags.dataDir, flags.waitSeconds * 1000, flags.force === true)
      print(
        flags.json === true,
        result,
        result.forced
          ? `shardnet node (pid ${result.pid}) killed after ${Math.round(result.tookMs / 1000)} s`
          : `shardnet node (pid ${result.pid}) stopped`,
      )
    })

  node
    .command('status')
    .description(
      'peer id, addresses, the backend in use and every backend measured, peers, uptime and version of ' +
        'the running node',
    )
    .addOption(dataDirOption())
    .addOption(jsonOption())
    .action(async (flags: { dataDir: string; json?: boolean }) => {
      const status = await daemonStatus(flags.dataDir)
      print(flags.json === true, status, formatStatus(status))
    })

  node
    .command('peers')
    .description(
      'peers this node knows, with their capabilities (found through the DHT, not only connections)',
    )
    .addOption(dataDirOption())
    .addOption(jsonOption())
    .addOption(
      new Option('--capability <backend>', 'only workers offering this backend').choices(['webgpu', 'cpu']),
    )
    .action(async (flags: { dataDir: string; json?: boolean; capability?: string }) => {
      const client = await connectToDaemon(flags.dataDir)
      const query = flags.capability != null ? `?capability=${flags.capability}` : ''
      const { peers } = await client.get<{ peers: PeerEntry[] }>(`/v1/peers${query}`)
      print(flags.json === true, peers, formatPeers(peers))
    })

  node
    .command('serve')
    .description(
      'serve a span of a model’s blocks to the network: MODEL is a model directory (published over the ' +
        'blocks protocol) or a model id (fetched and verified); without MODEL, list what this node serves',
    )
    .argument('[model]', 'a GPT model directory, or a model id (a CID)')
    .option(
      '--blocks <A-B>',
      'serve blocks A through B (inclusive, from 0); default: as many as the memory budget holds, where ' +
        'the network covers the model thinnest',
    )
    .option('--stop', 'stop serving MODEL (a config entry is served again at the next start)')
    .option(
      '--wait-seconds <s>',
      'how long to wait for the span to be served (0: return once the daemon took the request)',
      integerIn(0, 3600, '--wait-seconds'),
      600,
    )
    .addOption(dataDirOption())
    .addOption(jsonOption())
    .action(
      async (
        model: string | undefined,
        flags: { blocks?: string; stop?: boolean; waitSeconds: number; dataDir: string; json?: boolean },
      ) => {
        const client = await connectToDaemon(flags.dataDir)
        if (flags.stop === true) {
          if (model === undefined) throw new UserError('--stop needs the MODEL to stop serving')
          const named = isModelId(model) ? model : resolve(model)
          const { entry } = await client.post<{ entry: ServeEntry }>('/v1/serve/stop', { model: named })
          print(flags.json === true, entry, `stopped serving ${entry.modelId ?? entry.model}`)
          return
        }
        if (model === undefined) {
          const listing = await client.get<ServeListing>('/v1/serve')
          print(flags.json === true, listing, formatServeListing(listing))
          return
        }
        // a directory goes to the daemon as an absolute path: it may run with another working folder
        const requested = isModelId(model) ? model : resolve(model)
        const { entry } = await client.post<{ entry: ServeEntry }>('/v1/serve', {
          model: requested,
          ...(flags.blocks === undefined ? {} : { blocks: flags.blocks }),
        })
        let current = entry
        const deadline = Date.now() + flags.waitSeconds * 1000
        while (current.state !== 'serving' && current.state !== 'failed' && Date.now() < deadline) {
          await new Promise((done) => setTimeout(done, SERVE_POLL_MS))
          const listing = await client.get<ServeListing>('/v1/serve')
          current = listing.entries.find((e) => e.model === requested) ?? current
        }
        if (current.state === 'failed') {
          throw new UserError(`serving ${requested} failed: ${current.error ?? 'no reason given'}`)
        }
        print(flags.json === true, current, formatServeEntry(current))
      },
    )

  addDaemonFlags(
    node
      .command('install')
      .description('write a systemd user unit (and the data dir) so the node runs at login and after reboots')
      .addOption(dataDirOption())
      .addOption(jsonOption())
      .option('--unit-dir <dir>', 'where to write shardnet.service (default ~/.config/systemd/user)')
      .option('--no-enable', 'write the unit but do not enable it'),
  ).action(async (flags: StartFlags & { unitDir?: string; enable: boolean }) => {
    const options = startOptionsOf(flags)
    const startFlags: string[] = []
    if (options.configFile != null) startFlags.push('--config', options.configFile)
    for (const [flag, values] of [
      ['--listen', flags.listen],
      ['--announce', flags.announce],
      ['--bootstrap', flags.bootstrap],
    ] as const) {
      if (values != null) startFlags.push(flag, ...values)
    }
    if (options.overrides.swarmKeyFile != null) startFlags.push('--swarm-key', options.overrides.swarmKeyFile)
    if (flags.apiHost != null) startFlags.push('--api-host', flags.apiHost)
    if (flags.apiPort != null) startFlags.push('--api-port', String(flags.apiPort))
    if (flags.allowRemoteApi === true) startFlags.push('--allow-remote-api')
    if (flags.backend != null) startFlags.push('--backend', flags.backend)
    if (flags.cpuEngine != null) startFlags.push('--cpu-engine', flags.cpuEngine)
    if (flags.maxConnections != null) startFlags.push('--max-connections', String(flags.maxConnections))
    const result = await installService({
      dataDir: options.dataDir,
      unitDir: flags.unitDir,
      enable: flags.enable,
      startFlags,
    })
    print(flags.json === true, result, [`wrote ${result.unitPath}`, ...result.nextSteps].join('\n'))
  })

  node
    .command('swarm-key')
    .description('create a swarm key file for a private network (give the same file to every node)')
    .requiredOption('--out <file>', 'where to write the key (mode 0600; never overwritten)')
    .addOption(jsonOption())
    .action(async (flags: { out: string; json?: boolean }) => {
      await writeSwarmKey(flags.out, generateSwarmKey())
      print(
        flags.json === true,
        { swarmKey: flags.out },
        `wrote ${flags.out}; start every node with --swarm-key ${flags.out}`,
      )
    })
}
