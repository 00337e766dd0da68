import { mkdir, readdir, rm, stat } from 'node:fs/promises'
import { homedir } from 'node:os'
import { join, resolve } from 'node:path'

/** Where every durable file of a node lives, relative to its data dir. One place, so nothing drifts. */
export interface DataDirPaths {
  root: string
  /** the Ed25519 private key, protobuf-encoded, mode 0600 */
  identityKey: string
  /** the control API's bearer token, mode 0600 */
  apiToken: string
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
    apiEndpoint: join(absolute, 'api.json'),
    pidFile: join(absolute, 'daemon.pid'),
    logFile: join(absolute, 'daemon.log'),
    datastore: join(absolute, 'datastore'),
    blocks: join(absolute, 'blocks'),
  }
}

/** Creates the data dir (mode 0700: it holds the node's key) and its sub-folders. */
export async function ensureDataDir(paths: DataDirPaths): Promise<void> {
  await mkdir(paths.root, { recursive: true, mode: 0o700 })
  await mkdir(paths.blocks, { recursive: true, mode: 0o700 })
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
