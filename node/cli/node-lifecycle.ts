import { spawn, spawnSync } from 'node:child_process'
import { closeSync, existsSync, openSync } from 'node:fs'
import { mkdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises'
import { homedir } from 'node:os'
import { delimiter, dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { enable } from '@libp2p/logger'
import type { NodeStatus } from '../api/node-routes.js'
import type { ConfigOverrides, NodeConfig } from '../config.js'
import { ConfigError, readConfigFile, resolveNodeConfig } from '../config.js'
import { Daemon } from '../daemon.js'
import { BackendUnavailableError } from '../executor/backend-probe.js'
import { tuneHeapForTraining } from '../heap.js'
import { SwarmKeyFormatError } from '../host.js'
import { writeFileAtomic } from '../store/atomic-file.js'
import { dataDirPaths, ensureDataDir } from '../store/data-dir.js'
import { DataDirInUseError } from '../store/datastore.js'
import { IdentityFileError } from '../store/identity.js'
import {
  acquirePidFile,
  DaemonAlreadyRunningError,
  isShardnetProcessAlive,
  readPidFile,
  releasePidFile,
} from '../store/pid-file.js'
import { connectToDaemon } from './daemon-client.js'
import { UserError } from './errors.js'

/** What `node start` needs, as flags gave it (before the config file is merged in). */
export interface StartOptions {
  dataDir: string
  configFile?: string
  overrides: ConfigOverrides
  /** libp2p's logs too (foreground logs, or the background daemon's log file) */
  verbose?: boolean
}

/** Reads the config file and merges flags; bad keys become one clear sentence. */
export async function loadNodeConfig(options: StartOptions): Promise<NodeConfig> {
  try {
    const file = options.configFile != null ? await readConfigFile(options.configFile) : {}
    // a path in a config file means a path next to that file, whatever the daemon's cwd
    if (file.swarmKeyFile != null && options.configFile != null) {
      file.swarmKeyFile = resolve(dirname(options.configFile), file.swarmKeyFile)
    }
    return resolveNodeConfig(options.dataDir, file, options.overrides)
  } catch (error) {
    if (error instanceof ConfigError) throw new UserError(error.message)
    throw error
  }
}

/** The flags that make a child daemon use exactly this configuration. */
function flagsOf(options: StartOptions): string[] {
  const flags = ['--data-dir', options.dataDir]
  if (options.verbose === true) flags.push('--verbose')
  const o = options.overrides
  if (options.configFile != null) flags.push('--config', options.configFile)
  if (o.listen != null) flags.push('--listen', ...o.listen)
  if (o.announce != null) flags.push('--announce', ...o.announce)
  if (o.bootstrap != null) flags.push('--bootstrap', ...o.bootstrap)
  if (o.swarmKeyFile != null) flags.push('--swarm-key', o.swarmKeyFile)
  if (o.apiHost != null) flags.push('--api-host', o.apiHost)
  if (o.apiPort != null) flags.push('--api-port', String(o.apiPort))
  if (o.allowRemoteApi === true) flags.push('--allow-remote-api')
  if (o.backend != null) flags.push('--backend', o.backend)
  if (o.cpuEngine != null) flags.push('--cpu-engine', o.cpuEngine)
  if (o.maxConnections != null) flags.push('--max-connections', String(o.maxConnections))
  return flags
}

function shardnetExecutable(): string {
  return fileURLToPath(new URL('../../bin/shardnet.js', import.meta.url))
}

/** the log is kept below this size: at start, a bigger one becomes daemon.log.1 (one generation) */
const LOG_BYTES_MAX = 16 * 1024 * 1024

async function rotateLog(path: string): Promise<void> {
  try {
    if ((await stat(path)).size > LOG_BYTES_MAX) await rename(path, `${path}.1`)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error
  }
}

async function logTail(path: string, lines = 15): Promise<string> {
  try {
    return (await readFile(path, 'utf8')).trimEnd().split('\n').slice(-lines).join('\n')
  } catch {
    return '(no log)'
  }
}

async function runningPid(dataDir: string): Promise<number | undefined> {
  const pid = await readPidFile(dataDirPaths(dataDir).pidFile)
  return pid !== undefined && isShardnetProcessAlive(pid) ? pid : undefined
}

export interface StartedDaemon {
  pid: number
  peerId: string
  addresses: string[]
  apiUrl: string
  logFile: string
}

/**
 * Starts a daemon in the background: a detached child running `node start --foreground` with its
 * output appended to daemon.log in the data dir; returns once its API answers.
 */
export async function startInBackground(
  options: StartOptions,
  waitMs: number,
  onProgress: (line: string) => void,
): Promise<StartedDaemon> {
  await loadNodeConfig(options) // refuse a bad config here, where the user sees the error
  const paths = dataDirPaths(options.dataDir)
  await ensureDataDir(paths)
  const existing = await runningPid(options.dataDir)
  if (existing !== undefined) {
    throw new UserError(
      `a shardnet daemon is already running on ${paths.root} (pid ${existing}); ` +
        `stop it with \`shardnet node stop\``,
    )
  }
  // api.json of a daemon that was killed would point the wait below at a dead port
  await rm(paths.apiEndpoint, { force: true })
  await rotateLog(paths.logFile)
  const logFd = openSync(paths.logFile, 'a', 0o600)
  const child = spawn(
    process.execPath,
    [shardnetExecutable(), 'node', 'start', '--foreground', ...flagsOf(options)],
    {
      detached: true,
      stdio: ['ignore', logFd, logFd],
      env: process.env,
    },
  )
  closeSync(logFd)
  let exited: number | null | undefined
  child.once('exit', (code, signal) => {
    exited = code ?? (signal != null ? 128 : 1)
  })
  child.unref()
  onProgress(`starting the daemon (pid ${child.pid}), log: ${paths.logFile}`)
  const deadline = Date.now() + waitMs
  while (Date.now() < deadline) {
    if (exited !== undefined) {
      throw new UserError(
        `the daemon exited during start-up (code ${exited}); last lines of ` +
          `${paths.logFile}:\n${await logTail(paths.logFile)}`,
      )
    }
    try {
      const client = await connectToDaemon(options.dataDir)
      if (client.pid === child.pid) {
        const status = await client.get<NodeStatus>('/v1/status')
        return {
          pid: child.pid,
          peerId: status.peerId,
          addresses: status.addresses,
          apiUrl: client.url,
          logFile: paths.logFile,
        }
      }
    } catch {
      // not up yet
    }
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
  throw new UserError(
    `the daemon (pid ${child.pid}) did not answer within ${Math.round(waitMs / 1000)} s; ` +
      `see ${paths.logFile}`,
  )
}

/** Runs a daemon in this process until SIGTERM/SIGINT or an API stop request. */
export async function runInForeground(
  options: StartOptions,
  onStarted: (daemon: Daemon) => void,
): Promise<void> {
  const config = await loadNodeConfig(options)
  // DEBUG, when set, is the user's own choice of log namespaces and wins
  if (process.env.DEBUG == null || process.env.DEBUG === '') {
    enable(options.verbose === true ? 'shardnet:*,libp2p:*,-libp2p:*:trace' : 'shardnet:*')
  }
  const paths = dataDirPaths(config.dataDir)
  await ensureDataDir(paths)
  try {
    await acquirePidFile(paths.pidFile)
  } catch (error) {
    if (error instanceof DaemonAlreadyRunningError) throw new UserError(error.message)
    throw error
  }
  // this process is the daemon: it may train (node/heap.ts)
  tuneHeapForTraining()
  let daemon: Daemon
  try {
    daemon = await Daemon.start({ config })
  } catch (error) {
    await releasePidFile(paths.pidFile)
    if (
      error instanceof DataDirInUseError ||
      error instanceof BackendUnavailableError ||
      error instanceof IdentityFileError ||
      error instanceof SwarmKeyFormatError
    ) {
      throw new UserError(error.message)
    }
    const code = (error as NodeJS.ErrnoException).code
    if (code === 'EADDRINUSE')
      throw new UserError(`an address is already in use (${(error as Error).message})`)
    if (code === 'ENOENT' && config.swarmKeyFile != null) {
      throw new UserError(`the swarm key file ${config.swarmKeyFile} does not exist`)
    }
    throw error
  }
  onStarted(daemon)
  const stopOnSignal = (): void => void daemon.stop()
  process.once('SIGTERM', stopOnSignal)
  process.once('SIGINT', stopOnSignal)
  await daemon.stopped
  process.off('SIGTERM', stopOnSignal)
  process.off('SIGINT', stopOnSignal)
  await releasePidFile(paths.pidFile)
}

export interface StopResult {
  pid: number
  /** how long the daemon took to exit, in ms */
  tookMs: number
  forced: boolean
}

/** Stops the data dir's daemon: SIGTERM, then wait for it to exit (SIGKILL after the wait if `force`). */
export async function stopDaemon(dataDir: string, waitMs: number, force: boolean): Promise<StopResult> {
  const paths = dataDirPaths(dataDir)
  const started = Date.now()
  const pid = await runningPid(dataDir)
  if (pid === undefined) {
    // a stale pid file or api.json left by a killed daemon is cleaned up on the way
    await rm(paths.pidFile, { force: true })
    throw new UserError(`no shardnet daemon is running on data dir ${paths.root}`)
  }
  process.kill(pid, 'SIGTERM')
  const deadline = Date.now() + waitMs
  while (Date.now() < deadline) {
    if (!isShardnetProcessAlive(pid)) return { pid, tookMs: Date.now() - started, forced: false }
    await new Promise((resolve) => setTimeout(resolve, 100))
  }
  if (!force) {
    throw new UserError(
      `the daemon (pid ${pid}) did not stop within ${Math.round(waitMs / 1000)} s; ` +
        `run \`shardnet node stop --force\` to kill it`,
    )
  }
  process.kill(pid, 'SIGKILL')
  return { pid, tookMs: Date.now() - started, forced: true }
}

/** Status of the data dir's daemon through its API. */
export async function daemonStatus(dataDir: string): Promise<NodeStatus> {
  const client = await connectToDaemon(dataDir)
  return client.get<NodeStatus>('/v1/status')
}

export interface InstallOptions {
  dataDir: string
  /** where the unit goes; defaults to ~/.config/systemd/user */
  unitDir?: string
  /** run `systemctl --user enable` when systemd is present */
  enable: boolean
  startFlags: string[]
}

export interface InstallResult {
  unitPath: string
  systemd: boolean
  enabled: boolean
  nextSteps: string[]
}

function onPath(command: string): boolean {
  return (process.env.PATH ?? '').split(delimiter).some((folder) => existsSync(join(folder, command)))
}

/** systemd's quoting for one ExecStart argument */
function systemdQuote(argument: string): string {
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(argument)) return argument
  return `"${argument.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`
}

/** The text of the systemd user unit that runs this node in the foreground under systemd. */
export function systemdUnit(dataDir: string, startFlags: string[]): string {
  const command = [
    process.execPath,
    shardnetExecutable(),
    'node',
    'start',
    '--foreground',
    '--data-dir',
    dataDir,
    ...startFlags,
  ]
  return [
    '[Unit]',
    'Description=shardnet node (peer-to-peer compute network)',
    'After=network-online.target',
    'Wants=network-online.target',
    '',
    '[Service]',
    'Type=simple',
    `ExecStart=${command.map(systemdQuote).join(' ')}`,
    // SIGTERM stops the daemon gracefully; it has 30 s before systemd kills it
    'KillSignal=SIGTERM',
    'TimeoutStopSec=30',
    'Restart=on-failure',
    'RestartSec=5',
    '',
    '[Install]',
    'WantedBy=default.target',
    '',
  ].join('\n')
}

/** Creates the data dir, writes the unit, and enables it where systemd runs. */
export async function installService(options: InstallOptions): Promise<InstallResult> {
  const paths = dataDirPaths(options.dataDir)
  await ensureDataDir(paths)
  const unitDir = options.unitDir ?? join(homedir(), '.config', 'systemd', 'user')
  await mkdir(unitDir, { recursive: true })
  const unitPath = join(unitDir, 'shardnet.service')
  await writeFileAtomic(unitPath, systemdUnit(paths.root, options.startFlags), 0o644)
  const systemd = existsSync('/run/systemd/system') && onPath('systemctl')
  if (!systemd) {
    return {
      unitPath,
      systemd: false,
      enabled: false,
      nextSteps: [
        `systemd is not running on this machine, so the unit at ${unitPath} was written but not enabled.`,
        `Start the node by hand with \`shardnet node start --data-dir ${paths.root}\`, ` +
          `or have your init system run:`,
        `  ${process.execPath} ${shardnetExecutable()} node start --foreground --data-dir ${paths.root}`,
      ],
    }
  }
  if (!options.enable) {
    return {
      unitPath,
      systemd: true,
      enabled: false,
      nextSteps: [
        'enable it with `systemctl --user daemon-reload && systemctl --user enable --now shardnet`',
      ],
    }
  }
  for (const args of [
    ['--user', 'daemon-reload'],
    ['--user', 'enable', 'shardnet.service'],
  ]) {
    const result = spawnSync('systemctl', args, { encoding: 'utf8' })
    if (result.status !== 0) {
      throw new UserError(
        `\`systemctl ${args.join(' ')}\` failed: ${(result.stderr || result.stdout).trim()}`,
      )
    }
  }
  return {
    unitPath,
    systemd: true,
    enabled: true,
    nextSteps: [
      'start it now with `systemctl --user start shardnet`',
      'to keep it running while you are logged out: `loginctl enable-linger $USER`',
    ],
  }
}

/** Writes a new swarm key (mode 0600); refuses to overwrite one. */
export async function writeSwarmKey(path: string, contents: string): Promise<void> {
  if (existsSync(path)) throw new UserError(`${path} already exists; a swarm key is never overwritten`)
  await writeFile(path, contents, { mode: 0o600, flag: 'wx' })
}
