// Proves the WAL's fault handling with faults injected at the file-system call layer (no mount
// needed; test/integration/hostile-storage.test.ts fills real filesystems): a write that fails
// half-way (EIO, ENOSPC), by the synchronous or the asynchronous path, is cut off the segment, fails
// the store with a StorageFaultError naming the segment, and every later save is refused; even when
// the cut fails too, a reopen discards the partial record and holds exactly the acknowledged ones.
import type * as Fs from 'node:fs'
import { mkdtempSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it, vi } from 'vitest'

/** The next WAL write fails with this code after writing half its bytes; the cut fails too if set. */
const faults: { write?: string; truncate?: string } = {}

function errnoError(code: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: injected`), { code })
}

vi.mock('node:fs', async (importOriginal) => {
  const actual = await importOriginal<typeof Fs>()
  const writeSync = ((
    fd: number,
    buffer: Uint8Array,
    offset?: number,
    length?: number,
    position?: number,
  ) => {
    if (faults.write === undefined || typeof buffer === 'string')
      return (actual.writeSync as (...args: unknown[]) => number)(fd, buffer, offset, length, position)
    const code = faults.write
    faults.write = undefined
    const half = Math.max(1, Math.floor((length ?? buffer.length) / 2))
    actual.writeSync(fd, buffer, offset ?? 0, half, position ?? null)
    throw errnoError(code)
  }) as typeof actual.writeSync
  const writev = ((
    fd: number,
    pieces: Uint8Array[],
    position: number,
    callback: (error: Error | null, bytes: number) => void,
  ) => {
    if (faults.write === undefined) return actual.writev(fd, pieces, position, callback)
    const code = faults.write
    faults.write = undefined
    const record = Buffer.concat(pieces)
    actual.writeSync(fd, record, 0, Math.floor(record.length / 2), position)
    setImmediate(() => callback(errnoError(code), 0))
  }) as typeof actual.writev
  const ftruncateSync = ((fd: number, length?: number) => {
    if (faults.truncate !== undefined) throw errnoError(faults.truncate)
    return actual.ftruncateSync(fd, length)
  }) as typeof actual.ftruncateSync
  const mocked = { ...actual, writeSync, writev, ftruncateSync }
  return { ...mocked, default: mocked }
})

const { DurableRaftStorage } = await import('../../../node/store/raft-storage.js')
const { StorageFaultError } = await import('../../../node/store/storage-fault.js')

afterEach(() => {
  faults.write = undefined
  faults.truncate = undefined
})

const encoder = new TextEncoder()
function update(index: number) {
  return {
    entries: [
      { term: 1, index, type: 'normal' as const, data: encoder.encode(`entry ${index} `.repeat(50)) },
    ],
    hardState: { term: 1, vote: 'a', commit: index - 1 },
  }
}

describe('a WAL write that fails half-way', () => {
  for (const mode of ['save', 'saveAsync'] as const)
    for (const code of ['EIO', 'ENOSPC'])
      for (const cutFails of [false, true])
        it(`${mode}, ${code}${cutFails ? ', the cut failing too' : ''}`, async () => {
          const directory = mkdtempSync(join(tmpdir(), 'shardnet-wal-fault-'))
          const storage = DurableRaftStorage.open(directory)
          storage.bootstrap(['a'])
          const write = (index: number) =>
            mode === 'save' ? (async () => storage.save(update(index)))() : storage.saveAsync(update(index))
          for (let index = 2; index <= 5; index++) await write(index)
          const sizeBefore = statSync(join(directory, 'wal.log')).size
          faults.write = code
          if (cutFails) faults.truncate = 'EIO'
          const error = await write(6).catch((caught: unknown) => caught)
          expect(error).toBeInstanceOf(StorageFaultError)
          expect((error as InstanceType<typeof StorageFaultError>).code).toBe(code)
          expect((error as InstanceType<typeof StorageFaultError>).path).toBe(join(directory, 'wal.log'))
          expect(storage.failure).toBe(error)
          // cut back to the last good record, unless the cut itself failed (then half a record is left)
          const sizeAfter = statSync(join(directory, 'wal.log')).size
          if (cutFails) expect(sizeAfter).toBeGreaterThan(sizeBefore)
          else expect(sizeAfter).toBe(sizeBefore)
          faults.truncate = undefined
          await expect(write(6)).rejects.toBe(error)
          expect(() => storage.createSnapshot(3, { voters: ['a'] }, new Uint8Array(4))).toThrow(
            StorageFaultError,
          )
          expect(storage.lastIndex()).toBe(5)
          storage.close()
          const reopened = DurableRaftStorage.open(directory)
          expect(reopened.recovery.tornBytes > 0).toBe(cutFails)
          expect(reopened.lastIndex()).toBe(5)
          expect(reopened.entries(2, 6).map((e) => e.index)).toEqual([2, 3, 4, 5])
          expect(statSync(join(directory, 'wal.log')).size).toBe(sizeBefore)
          reopened.close()
        })
})
