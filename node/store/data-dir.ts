import { mkdir, open, readdir, rm, stat } from 'node:fs/promises'
import { homedir } from 'node:os'
import { join, resolve } from 'node:path'
import { asStorageFault } from './storage-fault.js'

/** Where every durable file of a node lives, relative to its data dir. One place, so nothing drifts. */
export interface DataDirPaths {
  root: string
  /** the Ed25519 private key, protobuf-encoded, mode 0600 */
  identityKey: string
  /** the control API's admin bearer token, mode 0600 */
  apiToken: string
  /** the control API's read-only token (status, metrics, listings: dashboards), mode 0600 */
  apiReadToken: string
  /** written by a running daemon: where its API listens (JSON, mode 0600) */
  apiEndpoint: string
  /** the pid of the daemon process that owns this data dir */
  pidFile: string
  /** the background daemon's log */
  logFile: string
  /** LevelDB: peer store, DHT records and providers */
  datastore: string
  /** content-addressed blocks, one file per CID */
  blocks: string
}

/** The data dir used when neither `--data-dir` nor SHARDNET_DATA_DIR is given. */
export function defaultDataDir(environment: NodeJS.ProcessEnv = process.env): string {
  const fromEnvironment = environment.SHARDNET_DATA_DIR
  if (fromEnvironment != null && fromEnvironment !== '') return resolve(fromEnvironment)
  return join(homedir(), '.shardnet')
}

export function dataDirPaths(root: string): DataDirPaths {
  const absolute = resolve(root)
  return {
    root: absolute,
    identityKey: join(absolute, 'identity.key'),
    apiToken: join(absolute, 'api-token'),
    apiReadToken: join(absolute, 'api-read-token'),
    apiEndpoint: join(absolute, 'api.json'),
    pidFile: join(absolute, 'daemon.pid'),
    logFile: join(absolute, 'daemon.log'),
    datastore: join(absolute, 'datastore'),
    blocks: join(absolute, 'blocks'),
  }
}

/**
 * Creates the data dir (mode 0700: it holds the node's key) and its sub-folders, and checks that it
 * takes a durable write: a read-only, full or forbidden data dir is refused here, before anything
 * starts, as a StorageFaultError (one sentence: which path, what to do).
 */
export async function ensureDataDir(paths: DataDirPaths): Promise<void> {
  try {
    await mkdir(paths.root, { recursive: true, mode: 0o700 })
    await mkdir(paths.blocks, { recursive: true, mode: 0o700 })
    await probeWrite(paths.root)
  } catch (error) {
    throw asStorageFault(error, paths.root) ?? error
  }
}

/** Writes, fsyncs and removes a small file in `folder` (named as a temp file, so a crash's is cleared). */
async function probeWrite(folder: string): Promise<void> {
  const path = join(folder, `.write-probe.${process.pid}.tmp`)
  const handle = await open(path, 'w', 0o600)
  try {
    await handle.write('shardnet write probe\n')
    await handle.sync()
  } finally {
    await handle.close()
    await rm(path, { force: true })
  }
}

/** Removes temp files a crash left behind from atomic writes (`.name.xxxx.tmp`). */
export async function removeStaleTemporaryFiles(folder: string): Promise<number> {
  let removed = 0
  let names: string[]
  try {
    names = await readdir(folder)
  } catch {
    return 0
  }
  for (const name of names) {
    if (name.startsWith('.') && name.endsWith('.tmp')) {
      const path = join(folder, name)
      if ((await stat(path)).isFile()) {
        await rm(path, { force: true })
        removed++
      }
    }
  }
  return removed
}
