// Storage faults on real filesystems: small tmpfs mounts that fill up (ENOSPC) or are remounted
// read-only (EROFS). Proves that a failed WAL write is cut off and fails the store, so nothing after
// it is acknowledged and a reopen holds exactly the acknowledged records; that a Raft member whose
// disk fills stops and reports the fault; and that a full or read-only data dir is one sentence
// from the daemon and the CLI, not a stack. Mounting needs root (these tests run as root).
import { execFileSync } from 'node:child_process'
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { DurableRaftStorage } from '../../node/store/raft-storage.js'
import { StorageFaultError } from '../../node/store/storage-fault.js'
import { RaftRunner } from '../../protocols/raft/runner.js'
import type { Entry } from '../../protocols/raft/types.js'

const mounts: string[] = []

/** A fresh tmpfs of `bytes` mounted on a new folder; unmounted after the test. */
function mountTmpfs(bytes: number): string {
  const folder = mkdtempSync(join(tmpdir(), 'shardnet-hostile-fs-'))
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${bytes},mode=0755`, 'tmpfs', folder])
  mounts.push(folder)
  return folder
}

function remountReadOnly(folder: string): void {
  execFileSync('mount', ['-o', 'remount,ro', folder])
}

afterEach(() => {
  for (const folder of mounts.splice(0)) {
    execFileSync('umount', ['-l', folder])
    rmSync(folder, { recursive: true, force: true })
  }
})

function entry(index: number, bytes: number): Entry {
  const data = new Uint8Array(bytes)
  for (let i = 0; i < bytes; i++) data[i] = (index * 31 + i) & 0xff
  return { term: 1, index, type: 'normal', data }
}

/** Fills all but `leave` bytes of the filesystem at `folder` with one file; returns its path. */
function fill(folder: string, leave: number): string {
  const path = join(folder, 'filler')
  const free = Number(execFileSync('df', ['--output=avail', '-B1', folder]).toString().split('\n')[1])
  writeFileSync(path, new Uint8Array(Math.max(0, free - leave)))
  return path
}

describe('a WAL on a disk that fills up', () => {
  for (const mode of ['saveAsync', 'save'] as const) {
    it(`${mode}: the failed write is cut off, later saves are refused, reopen holds exactly the acknowledged`, async () => {
      const disk = mountTmpfs(4 << 20)
      const directory = join(disk, 'raft')
      const storage = DurableRaftStorage.open(directory)
      storage.bootstrap(['a'])
      const filler = fill(disk, 300_000)
      const acknowledged: Entry[] = []
      let fault: unknown
      for (let index = 2; index < 200 && fault === undefined; index++) {
        const update = {
          entries: [entry(index, 40_000)],
          hardState: { term: 1, vote: 'a', commit: index - 1 },
        }
        try {
          if (mode === 'saveAsync') await storage.saveAsync(update)
          else storage.save(update)
          acknowledged.push(update.entries[0])
        } catch (error) {
          fault = error
        }
      }
      expect(fault).toBeInstanceOf(StorageFaultError)
      expect((fault as StorageFaultError).code).toBe('ENOSPC')
      expect((fault as StorageFaultError).path).toBe(join(directory, 'wal.log'))
      expect((fault as StorageFaultError).message).toContain('is full (ENOSPC)')
      expect(acknowledged.length).toBeGreaterThan(3)
      // the partial record is gone: the file ends with the last acknowledged record
      expect(statSync(join(directory, 'wal.log')).size).toBe(storage.walSizeBytes())
      // with room again, the store still refuses (what it would write next could follow a hole)
      rmSync(filler)
      const next = acknowledged.length + 2
      const later = { entries: [entry(next, 100)], hardState: { term: 1, vote: 'a', commit: next } }
      await expect(storage.saveAsync(later)).rejects.toBe(fault)
      expect(() => storage.save(later)).toThrow(StorageFaultError)
      expect(() => storage.save({ entries: [], hardState: { term: 2, vote: '', commit: 1 } })).toThrow(
        StorageFaultError,
      )
      expect(storage.lastIndex()).toBe(acknowledged.length + 1)
      storage.close()

      const reopened = DurableRaftStorage.open(directory)
      expect(reopened.recovery.tornBytes).toBe(0)
      expect(reopened.lastIndex()).toBe(acknowledged.length + 1)
      const replayed = reopened.entries(2, reopened.lastIndex() + 1)
      expect(replayed.map((e) => e.index)).toEqual(acknowledged.map((e) => e.index))
      for (const [i, e] of replayed.entries())
        expect(Array.from(e.data)).toEqual(Array.from(acknowledged[i].data))
      // and it takes writes again
      await reopened.saveAsync(later)
      expect(reopened.lastIndex()).toBe(next)
      reopened.close()
    })
  }

  it('a snapshot that does not fit leaves the old state and no temp file, and reopens', () => {
    const disk = mountTmpfs(2 << 20)
    const directory = join(disk, 'raft')
    const storage = DurableRaftStorage.open(directory)
    storage.bootstrap(['a'])
    storage.save({ entries: [entry(2, 1000), entry(3, 1000)], hardState: { term: 1, vote: 'a', commit: 3 } })
    fill(disk, 100_000)
    expect(() => storage.createSnapshot(3, { voters: ['a'] }, new Uint8Array(500_000))).toThrow(
      StorageFaultError,
    )
    expect(() => storage.save({ entries: [entry(4, 10)] })).toThrow(StorageFaultError)
    storage.close()
    expect(() => statSync(join(directory, 'snapshot.bin.tmp'))).toThrow(/ENOENT/)
    const reopened = DurableRaftStorage.open(directory)
    expect(reopened.lastIndex()).toBe(3)
    expect(reopened.snapshot().metadata.index).toBe(0)
    reopened.close()
  })

  it('a read-only store opens as a StorageFaultError naming the folder', () => {
    const disk = mountTmpfs(1 << 20)
    const directory = join(disk, 'raft')
    const storage = DurableRaftStorage.open(directory)
    storage.bootstrap(['a'])
    storage.close()
    remountReadOnly(disk)
    let error: unknown
    try {
      DurableRaftStorage.open(directory)
    } catch (caught) {
      error = caught
    }
    expect(error).toBeInstanceOf(StorageFaultError)
    expect((error as StorageFaultError).code).toBe('EROFS')
    expect((error as StorageFaultError).message).toContain(`${directory} is on a read-only filesystem`)
  })
})

describe('a Raft member whose disk fills up', () => {
  it('stops and reports the StorageFaultError through onFatal; its store reopens', async () => {
    const disk = mountTmpfs(4 << 20)
    const directory = join(disk, 'raft')
    const storage = DurableRaftStorage.open(directory)
    storage.bootstrap(['a'])
    const fatal: Error[] = []
    const runner = new RaftRunner({
      group: 'g',
      id: 'a',
      storage,
      transport: { join: () => {}, leave: () => {}, send: () => {} },
      tickMs: 5,
      electionTicks: 4,
      seed: 1,
      onFatal: (error) => fatal.push(error),
    })
    runner.start()
    const deadline = Date.now() + 10_000
    while (!runner.isLeader() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10))
    expect(runner.isLeader()).toBe(true)
    fill(disk, 200_000)
    const committed: number[] = []
    let refused: unknown
    for (let i = 0; i < 100 && fatal.length === 0; i++) {
      try {
        committed.push((await runner.propose(new Uint8Array(30_000).fill(i))).index)
      } catch (error) {
        refused = error
        break
      }
    }
    const until = Date.now() + 5000
    while (fatal.length === 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 10))
    expect(fatal).toHaveLength(1)
    expect(fatal[0]).toBeInstanceOf(StorageFaultError)
    expect((fatal[0] as StorageFaultError).code).toBe('ENOSPC')
    expect(refused ?? fatal[0]).toBeDefined()
    runner.stop()
    storage.close()
    const reopened = DurableRaftStorage.open(directory)
    // every entry the member saw committed is on disk
    for (const index of committed) expect(reopened.entries(index, index + 1)).toHaveLength(1)
    reopened.close()
  })
})
