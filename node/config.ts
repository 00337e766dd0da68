import { readFile } from 'node:fs/promises'
import { totalmem } from 'node:os'
import { isAbsolute } from 'node:path'
import { peerIdFromString } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { z } from 'zod'
import { CPU_ENGINE_NAMES, type CpuEngineName } from '../kernels/cpu/engine.js'
import { CAPABILITY_SPANS_MAX, isModelId } from '../protocols/wire/validation/index.js'
import { API_HOST_DEFAULT } from './api/server.js'
import { MAX_CONNECTIONS_DEFAULT } from './host.js'
import { parseBlockRange } from './serving/placement.js'

/**
 * The listen address when none is configured. Loopback, on purpose: a node that a user starts to
 * try shardnet should not open a port to the network until they ask for it with `--listen`.
 */
export const LISTEN_DEFAULT = ['/ip4/127.0.0.1/tcp/0']

/** A config file (or flag) value that is unknown, of the wrong type or out of range. */
export class ConfigError extends Error {
  static override name = 'ConfigError'
  constructor(message: string) {
    super(message)
    this.name = 'ConfigError'
  }
}

const multiaddrString = z.string().refine(
  (text) => {
    try {
      multiaddr(text)
      return true
    } catch {
      return false
    }
  },
  { message: 'is not a valid multiaddr' },
)

/** Peer ids an allow-list holds at most. */
export const ALLOW_LIST_MAX = 10_000
/** The claim staffing timeout's bounds (node/tasks/worker.ts CLAIM_STAFFING_TIMEOUT_MS_DEFAULT is 30 s). */
export const CLAIM_TIMEOUT_MS_MIN = 1_000
export const CLAIM_TIMEOUT_MS_MAX = 3_600_000

const peerIdString = z.string().refine(
  (text) => {
    try {
      peerIdFromString(text)
      return true
    } catch {
      return false
    }
  },
  { message: 'is not a valid peer id (expected e.g. 12D3KooW... or Qm...)' },
)

/** Models one node serves at most (each is one span in its capability record). */
export const SERVE_ENTRIES_MAX = CAPABILITY_SPANS_MAX
/** The smallest serve memory budget accepted (1 MiB); the placement refuses a block that needs more. */
export const SERVE_MEMORY_BYTES_MIN = 1024 * 1024

/** The memory a node spends on the spans it serves when the config does not say: half the machine's. */
export function serveMemoryBytesDefault(): number {
  return Math.floor(totalmem() / 2)
}

/** One model this node serves: a model directory (an absolute path) or a model id, and which blocks. */
export const serveEntrySchema = z.strictObject({
  model: z
    .string()
    .min(1)
    .max(4096)
    .refine((text) => isModelId(text) || isAbsolute(text), {
      message: 'must be a model id (a CIDv1 string) or the absolute path of a model directory',
    }),
  /** "A-B": blocks A through B (counted from 0); absent: the node chooses where coverage is thinnest */
  blocks: z
    .string()
    .refine(
      (text) => {
        try {
          parseBlockRange(text)
          return true
        } catch {
          return false
        }
      },
      { message: 'must be A-B, the first and last block served (inclusive, counted from 0), e.g. 0-5' },
    )
    .optional(),
})

export type ServeEntry = z.infer<typeof serveEntrySchema>

const bootstrapAddress = multiaddrString.refine((text) => /\/p2p\/[^/]+$/.test(text), {
  message: 'must end with /p2p/<peer id>',
})

/** The config file: JSON, every key optional, unknown keys refused. Flags override it. */
export const configFileSchema = z.strictObject({
  listen: z.array(multiaddrString).min(1).optional(),
  announce: z.array(multiaddrString).optional(),
  bootstrap: z.array(bootstrapAddress).optional(),
  apiHost: z.string().min(1).optional(),
  apiPort: z.number().int().min(0).max(65535).optional(),
  /** binding the API to a non-loopback address must be asked for explicitly */
  allowRemoteApi: z.boolean().optional(),
  swarmKeyFile: z.string().min(1).optional(),
  /** 'auto' computes on the backend the start-up probe measured fastest; 'webgpu' or 'cpu' pins one */
  backend: z.enum(['auto', 'webgpu', 'cpu']).optional(),
  /** pins the cpu backend's engine; absent: the fastest that loads */
  cpuEngine: z.enum(CPU_ENGINE_NAMES).optional(),
  maxConnections: z.number().int().min(1).max(10_000).optional(),
  /** peer ids of the workers this node staffs its tasks with; empty or absent: anyone */
  allowedWorkers: z.array(peerIdString).max(ALLOW_LIST_MAX).optional(),
  /** peer ids of the submitters whose tasks this node claims; empty or absent: anyone's */
  allowedSubmitters: z.array(peerIdString).max(ALLOW_LIST_MAX).optional(),
  /** how long a claim holds a worker's slot when the submitter does not assign, in ms */
  claimTimeoutMs: z.number().int().min(CLAIM_TIMEOUT_MS_MIN).max(CLAIM_TIMEOUT_MS_MAX).optional(),
  /** models whose blocks this node serves from start-up (beside those `shardnet node serve` added) */
  serve: z.array(serveEntrySchema).max(SERVE_ENTRIES_MAX).optional(),
  /** bytes the served spans may take (weights and session caches); default half the machine's memory */
  serveMemoryBytes: z.number().int().min(SERVE_MEMORY_BYTES_MIN).max(Number.MAX_SAFE_INTEGER).optional(),
})

export type ConfigFile = z.infer<typeof configFileSchema>

/** Everything a daemon needs to know, after defaults, the config file and flags are merged. */
export interface NodeConfig {
  dataDir: string
  listen: string[]
  announce: string[]
  bootstrap: string[]
  apiHost: string
  /** 0 picks a free port; the daemon writes the one it got to api.json in the data dir */
  apiPort: number
  allowRemoteApi: boolean
  swarmKeyFile?: string
  /**
   * 'auto': the backend the start-up probe measured fastest (node/executor/backend-probe.ts); 'webgpu'
   * or 'cpu' pins one even where it is slower (a pinned webgpu falls back to cpu when no adapter opens)
   */
  backend: 'auto' | 'webgpu' | 'cpu'
  /** the cpu backend's engine, pinned; undefined: the fastest that loads */
  cpuEngine?: CpuEngineName
  maxConnections: number
  /** peer ids of the workers this node staffs its tasks with; empty: anyone */
  allowedWorkers: string[]
  /** peer ids of the submitters whose tasks this node claims; empty: anyone's */
  allowedSubmitters: string[]
  /** how long a claim holds a worker's slot unassigned; undefined: the worker's default */
  claimTimeoutMs?: number
  /** models whose blocks this node serves from start-up */
  serve: ServeEntry[]
  /** bytes the served spans may take, weights and session caches together */
  serveMemoryBytes: number
}

/** Flags as the CLI parsed them; undefined means "not given". */
export type ConfigOverrides = Partial<Omit<NodeConfig, 'dataDir'>>

function describeIssue(issue: z.core.$ZodIssue, source: string): string {
  const path = issue.path.map(String).join('.')
  if (issue.code === 'unrecognized_keys') {
    const where = path === '' ? '' : ` in "${path}"`
    const keys = issue.keys.map((key) => `"${key}"`).join(', ')
    return (
      `${source}: unknown key ${keys}${where} (known keys: ` +
      `${Object.keys(configFileSchema.shape).join(', ')})`
    )
  }
  return `${source}: key "${path}" ${issue.message.replace(/^Invalid input: /, '')}`
}

/** Checks a parsed config object; the error names the first bad key and where it came from. */
export function parseConfigFile(value: unknown, source = 'config'): ConfigFile {
  const result = configFileSchema.safeParse(value)
  if (!result.success) throw new ConfigError(describeIssue(result.error.issues[0], source))
  return result.data
}

export async function readConfigFile(path: string): Promise<ConfigFile> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (error) {
    throw new ConfigError(`config file ${path} cannot be read (${(error as NodeJS.ErrnoException).code})`)
  }
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (error) {
    throw new ConfigError(`config file ${path} is not valid JSON (${(error as Error).message})`)
  }
  return parseConfigFile(value, `config file ${path}`)
}

const loopbackHosts = new Set(['127.0.0.1', '::1', 'localhost'])

export function isLoopbackHost(host: string): boolean {
  return loopbackHosts.has(host) || /^127\.\d+\.\d+\.\d+$/.test(host)
}

/** Merges defaults < config file < flags and checks the result as a whole. */
export function resolveNodeConfig(dataDir: string, file: ConfigFile, overrides: ConfigOverrides): NodeConfig {
  const pick = <K extends keyof ConfigOverrides>(key: K): ConfigOverrides[K] =>
    overrides[key] !== undefined ? overrides[key] : (file[key as keyof ConfigFile] as ConfigOverrides[K])
  // flags go through the same checks as the file, so `--listen garbage` names the flag's key
  const flagged = Object.fromEntries(
    Object.entries({
      listen: overrides.listen,
      announce: overrides.announce,
      bootstrap: overrides.bootstrap,
      apiHost: overrides.apiHost,
      apiPort: overrides.apiPort,
      allowRemoteApi: overrides.allowRemoteApi,
      swarmKeyFile: overrides.swarmKeyFile,
      backend: overrides.backend,
      cpuEngine: overrides.cpuEngine,
      maxConnections: overrides.maxConnections,
      allowedWorkers: overrides.allowedWorkers,
      allowedSubmitters: overrides.allowedSubmitters,
      claimTimeoutMs: overrides.claimTimeoutMs,
      serve: overrides.serve,
      serveMemoryBytes: overrides.serveMemoryBytes,
    }).filter(([, value]) => value !== undefined),
  )
  parseConfigFile(flagged, 'flags')
  const config: NodeConfig = {
    dataDir,
    listen: pick('listen') ?? LISTEN_DEFAULT,
    announce: pick('announce') ?? [],
    bootstrap: pick('bootstrap') ?? [],
    apiHost: pick('apiHost') ?? API_HOST_DEFAULT,
    apiPort: pick('apiPort') ?? 0,
    allowRemoteApi: pick('allowRemoteApi') ?? false,
    backend: pick('backend') ?? 'auto',
    maxConnections: pick('maxConnections') ?? MAX_CONNECTIONS_DEFAULT,
    allowedWorkers: pick('allowedWorkers') ?? [],
    allowedSubmitters: pick('allowedSubmitters') ?? [],
    serve: pick('serve') ?? [],
    serveMemoryBytes: pick('serveMemoryBytes') ?? serveMemoryBytesDefault(),
  }
  const claimTimeoutMs = pick('claimTimeoutMs')
  if (claimTimeoutMs !== undefined) config.claimTimeoutMs = claimTimeoutMs
  const cpuEngine = pick('cpuEngine')
  if (cpuEngine !== undefined) config.cpuEngine = cpuEngine
  const swarmKeyFile = pick('swarmKeyFile')
  if (swarmKeyFile !== undefined) config.swarmKeyFile = swarmKeyFile
  if (!isLoopbackHost(config.apiHost) && !config.allowRemoteApi) {
    throw new ConfigError(
      `the control API host "${config.apiHost}" is not a loopback address; ` +
        `pass --allow-remote-api (or set "allowRemoteApi": true) if you really mean to expose it`,
    )
  }
  return config
}
