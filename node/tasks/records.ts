// Durable task records under the data dir: one JSON file per task, written atomically (temp file,
// fsync, rename), so a daemon killed at any moment restarts with every task and its last recorded
// progress. Submitted tasks live in tasks/submitted/, a worker's assignments in tasks/assigned/.
import { readdir, readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { logger } from '@libp2p/logger'
import { ensureDurableFolder, writeFileAtomic } from '../store/atomic-file.js'
import { asStorageFault, StorageFaultError } from '../store/storage-fault.js'

const log = logger('shardnet:tasks:records')

/** A task id is a CID in base32: letters and digits only, so it is safe as a file name. */
const SAFE_ID = /^[a-z0-9]{1,128}$/

export function taskFolders(dataDir: string) {
  const root = join(dataDir, 'tasks')
  return {
    root,
    submitted: join(root, 'submitted'),
    assigned: join(root, 'assigned'),
    results: join(root, 'results'),
    raft: join(root, 'raft'),
  }
}

/** One folder of JSON records keyed by id, each written atomically. */
export class RecordFolder<T> {
  constructor(readonly folder: string) {}

  private pathOf(id: string): string {
    if (!SAFE_ID.test(id)) throw new RangeError(`unsafe record id ${JSON.stringify(id)}`)
    return join(this.folder, `${id}.json`)
  }

  /** Writes the record durably (file and folders fsynced); a full or read-only disk: StorageFaultError. */
  async save(id: string, value: T): Promise<void> {
    const path = this.pathOf(id)
    try {
      await ensureDurableFolder(this.folder, 0o700)
      await writeFileAtomic(path, `${JSON.stringify(value)}\n`, 0o600)
    } catch (error) {
      throw asStorageFault(error, path) ?? error
    }
  }

  async load(id: string): Promise<T | undefined> {
    try {
      return JSON.parse(await readFile(this.pathOf(id), 'utf8')) as T
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined
      throw error
    }
  }

  /**
   * Every readable record; a file that does not parse (never written by us: atomic writes)
   * is skipped and logged.
   */
  async loadAll(): Promise<Array<{ id: string; value: T }>> {
    let names: string[]
    try {
      names = await readdir(this.folder)
    } catch {
      return []
    }
    const records: Array<{ id: string; value: T }> = []
    for (const name of names.sort()) {
      if (!name.endsWith('.json') || name.startsWith('.')) continue
      const id = name.slice(0, -'.json'.length)
      try {
        const value = await this.load(id)
        if (value !== undefined) records.push({ id, value })
      } catch (error) {
        log.error('skipping unreadable task record %s: %e', name, error)
      }
    }
    return records
  }
}

/**
 * Serialises the writes of one record so a slow fsync never lets an older state land after a newer
 * one, and coalesces bursts: while a write is in flight only the latest pending value is kept.
 */
export class CoalescingWriter<T> {
  private pending: T | undefined
  private writing: Promise<void> | undefined

  constructor(private readonly write: (value: T) => Promise<void>) {}

  schedule(value: T): Promise<void> {
    this.pending = value
    this.writing ??= this.drain()
    return this.writing
  }

  private async drain(): Promise<void> {
    try {
      while (this.pending !== undefined) {
        const value = this.pending
        this.pending = undefined
        try {
          await this.write(value)
        } catch (error) {
          // a full or read-only disk is one sentence (which path, what to do), anything else a stack
          if (error instanceof StorageFaultError) log.error('writing a task record failed: %s', error.message)
          else log.error('writing a task record failed: %e', error)
        }
      }
    } finally {
      this.writing = undefined
    }
  }

  async flush(): Promise<void> {
    while (this.writing !== undefined) await this.writing
  }
}
