import { LevelDatastore } from 'datastore-level'
import { findStorageFault, StorageFaultError } from './storage-fault.js'

/** LevelDB reports a failed system call as text (LEVEL_IO_ERROR); the errno each text means. */
const LEVEL_IO_CODES: ReadonlyArray<[RegExp, string]> = [
  [/No space left on device/i, 'ENOSPC'],
  [/Disk quota exceeded/i, 'EDQUOT'],
  [/Read-only file system/i, 'EROFS'],
  [/Permission denied/i, 'EACCES'],
  [/Input\/output error/i, 'EIO'],
]

/** Another process holds this data dir's datastore (LevelDB allows one opener at a time). */
export class DataDirInUseError extends Error {
  static override name = 'DataDirInUseError'
  constructor(path: string) {
    super(
      `the datastore ${path} is in use by another process (is a daemon already running on this data dir?)`,
    )
    this.name = 'DataDirInUseError'
  }
}

/**
 * Opens the node's durable key-value store (LevelDB through datastore-level). libp2p keeps its peer
 * store and kad-dht keeps its records and provider entries here, so a restarted node remembers the
 * peers it knew and the records it held. LevelDB's write-ahead log makes a SIGKILL safe: on reopen
 * the log is replayed, and the OS drops the lock of a killed process.
 */
export async function openDatastore(path: string): Promise<LevelDatastore> {
  const datastore = new LevelDatastore(path)
  try {
    // open the Level instance ourselves: LevelDatastore.open() flattens the cause into a string,
    // and the cause is what tells a locked database from a damaged one
    await datastore.db.open({ createIfMissing: true, compression: false })
  } catch (error) {
    const cause = (error as { cause?: { code?: string; message?: string } }).cause
    if (cause?.code === 'LEVEL_LOCKED') throw new DataDirInUseError(path)
    if (cause?.code === 'LEVEL_IO_ERROR') {
      const match = LEVEL_IO_CODES.find(([text]) => text.test(cause.message ?? ''))
      if (match !== undefined) throw new StorageFaultError(match[1], path, error)
    }
    throw findStorageFault(error) ?? error
  }
  return datastore
}
