// Proves the durable Raft store recovers exactly what was acknowledged: a truncated or corrupted
// final WAL record is detected (length/CRC) and discarded while earlier records survive, a leader's
// snapshot replaces the log across reopen, a commit-only hard state is not written (Raft needs only
// term, vote and log durable), a damaged snapshot is refused by name, saveAsync's writev writes the
// very bytes save writes, the WAL is written in segments opened for durable writes (O_DSYNC),
// compaction deletes only the oldest fully compacted ones, a damaged older segment is refused, and
// random operation sequences leave it identical to the reference MemoryStorage after every reopen.
import {
  appendFileSync,
  constants,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  truncateSync,
  writeFileSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import fc from 'fast-check'
import { afterEach, describe, expect, it } from 'vitest'
import { DurableRaftStorage, StoreCorruptedError } from '../../../node/store/raft-storage.js'
import { MemoryStorage, type RaftStorage } from '../../../protocols/raft/storage.js'
import type { Entry } from '../../../protocols/raft/types.js'

const directories: string[] = []
function freshDirectory(): string {
  const directory = mkdtempSync(join(tmpdir(), 'shardnet-raft-store-'))
  directories.push(directory)
  return directory
}
afterEach(() => {
  for (const directory of directories.splice(0)) rmSync(directory, { recursive: true, force: true })
})

const encoder = new TextEncoder()
function entries(from: number, to: number, term: number): Entry[] {
  const out: Entry[] = []
  for (let index = from; index <= to; index++)
    out.push({ term, index, type: 'normal', data: encoder.encode(`e${index}t${term}`) })
  return out
}

function snapshotOf(storage: RaftStorage): unknown {
  const first = storage.firstIndex()
  const last = storage.lastIndex()
  return {
    first,
    last,
    state: storage.initialState(),
    snapshot: { ...storage.snapshot().metadata, data: Array.from(storage.snapshot().data) },
    entries:
      first <= last ? storage.entries(first, last + 1).map((e) => ({ ...e, data: Array.from(e.data) })) : [],
  }
}

describe('durable raft storage', () => {
  it('discards a truncated final record and keeps the ones before it', () => {
    const directory = freshDirectory()
    const storage = DurableRaftStorage.open(directory)
    storage.save({ entries: entries(1, 5, 1), hardState: { term: 1, vote: '1', commit: 3 } })
    storage.save({ entries: entries(6, 9, 1), hardState: { term: 1, vote: '1', commit: 5 } })
    storage.close()
    const wal = join(directory, 'wal.log')
    truncateSync(wal, statSync(wal).size - 7) // a crash in the middle of the second write
    const reopened = DurableRaftStorage.open(directory)
    expect(reopened.recovery.tornBytes).toBeGreaterThan(0)
    expect(reopened.recovery.records).toBe(1)
    expect(reopened.lastIndex()).toBe(5)
    expect(reopened.initialState().hardState).toEqual({ term: 1, vote: '1', commit: 3 })
    // the torn bytes are gone from disk, so new appends follow the good record
    reopened.save({ entries: entries(6, 7, 2) })
    reopened.close()
    const again = DurableRaftStorage.open(directory)
    expect(again.recovery.tornBytes).toBe(0)
    expect(again.entries(6, 8).map((e) => e.term)).toEqual([2, 2])
    again.close()
  })

  it('discards a final record whose checksum fails', () => {
    const directory = freshDirectory()
    const storage = DurableRaftStorage.open(directory)
    storage.save({ entries: entries(1, 3, 1) })
    storage.save({ entries: entries(4, 6, 1) })
    storage.close()
    const wal = join(directory, 'wal.log')
    const bytes = readFileSync(wal)
    bytes[bytes.length - 2] ^= 0xff // flip a byte of the last record's payload
    writeFileSync(wal, bytes)
    const reopened = DurableRaftStorage.open(directory)
    expect(reopened.lastIndex()).toBe(3)
    expect(reopened.recovery.records).toBe(1)
    reopened.close()
  })

  it('refuses to start when a record in the middle is damaged (not a torn tail)', () => {
    const directory = freshDirectory()
    const storage = DurableRaftStorage.open(directory)
    storage.save({ entries: entries(1, 3, 1) })
    storage.save({ entries: entries(4, 6, 1) })
    storage.close()
    const wal = join(directory, 'wal.log')
    const bytes = readFileSync(wal)
    bytes[20] ^= 0xff // inside the first record's payload; the second record is intact
    writeFileSync(wal, bytes)
    expect(() => DurableRaftStorage.open(directory)).toThrowError(
      expect.objectContaining({ name: 'StoreCorruptedError' }),
    )
  })

  it('treats garbage after the last record as a torn tail', () => {
    const directory = freshDirectory()
    const storage = DurableRaftStorage.open(directory)
    storage.save({ entries: entries(1, 2, 1) })
    storage.close()
    appendFileSync(join(directory, 'wal.log'), Buffer.from([0xff, 0xff, 0xff, 0x7f, 1, 2, 3]))
    const reopened = DurableRaftStorage.open(directory)
    expect(reopened.lastIndex()).toBe(2)
    expect(reopened.recovery.tornBytes).toBe(7)
    reopened.close()
  })

  it('writes the same WAL bytes from saveAsync (entries in place, one writev) as from save', async () => {
    const updates = [
      { entries: entries(1, 3, 1), hardState: { term: 1, vote: '12D3KooWfirst', commit: 1 } },
      { entries: [{ term: 1, index: 4, type: 'normal' as const, data: new Uint8Array(70_000).fill(7) }] },
      { entries: [], hardState: { term: 2, vote: '', commit: 4 } },
      {
        entries: [
          ...entries(5, 6, 2),
          { term: 2, index: 7, type: 'conf' as const, data: new Uint8Array(0) },
          // empty data over an empty ArrayBuffer (as a decoded empty entry is): Node's crc32 of it is 0
          { term: 2, index: 8, type: 'normal' as const, data: new Uint8Array(new ArrayBuffer(0)) },
        ],
      },
    ]
    const [sync, async] = [freshDirectory(), freshDirectory()]
    const a = DurableRaftStorage.open(sync)
    const b = DurableRaftStorage.open(async)
    for (const update of updates) {
      a.save(update)
      await b.saveAsync(update)
    }
    a.close()
    b.close()
    const wal = readFileSync(join(async, 'wal.log'))
    expect(wal.length).toBeGreaterThan(70_000)
    expect(wal.equals(readFileSync(join(sync, 'wal.log')))).toBe(true)
    const reopened = DurableRaftStorage.open(async)
    const reference = DurableRaftStorage.open(sync)
    expect(reopened.recovery.records).toBe(updates.length)
    expect(snapshotOf(reopened)).toEqual(snapshotOf(reference))
    reopened.close()
    reference.close()
  })

  it('opens its WAL segments for durable writes (O_DSYNC) when it fsyncs, and not when it does not', () => {
    // the open file's flags as the kernel holds them (Linux: /proc/self/fdinfo, octal)
    const walFlags = (directory: string, name = 'wal.log'): number => {
      const wal = join(directory, name)
      const fds = readdirSync('/proc/self/fd').filter((fd) => {
        try {
          return readlinkSync(`/proc/self/fd/${fd}`) === wal
        } catch {
          return false // the directory's own fd, closed by now
        }
      })
      expect(fds).toHaveLength(1)
      const info = readFileSync(`/proc/self/fdinfo/${fds[0]}`, 'utf8')
      return Number.parseInt(/^flags:\s+([0-7]+)$/m.exec(info)![1], 8)
    }
    const durable = freshDirectory()
    const storage = DurableRaftStorage.open(durable, { walSegmentBytes: 1 })
    expect(walFlags(durable) & constants.O_DSYNC).toBe(constants.O_DSYNC)
    storage.save({ entries: entries(1, 6, 1), hardState: { term: 1, vote: '1', commit: 6 } })
    // wal.log is full: the next record starts wal.1.log
    storage.save({ entries: entries(7, 7, 1), hardState: { term: 1, vote: '1', commit: 7 } })
    expect(walFlags(durable, 'wal.1.log') & constants.O_DSYNC).toBe(constants.O_DSYNC)
    storage.close()
    const reopened = DurableRaftStorage.open(durable)
    expect(reopened.lastIndex()).toBe(7)
    expect(reopened.recovery.segments).toBe(2)
    reopened.close()
    const unsynced = freshDirectory()
    const simulated = DurableRaftStorage.open(unsynced, { fsync: false })
    expect(walFlags(unsynced) & constants.O_DSYNC).toBe(0)
    simulated.close()
  })

  it('starts a new WAL segment when one is full and deletes the oldest ones once compacted', async () => {
    const directory = freshDirectory()
    const walFiles = () =>
      readdirSync(directory)
        .filter((name) => name.startsWith('wal'))
        .sort((a, b) => (Number(a.split('.')[1]) || 0) - (Number(b.split('.')[1]) || 0))
    // segments of 1 byte: every record after a segment's first starts a new one
    const storage = DurableRaftStorage.open(directory, { walSegmentBytes: 1 })
    for (let from = 1; from <= 28; from += 3) {
      const update = { entries: entries(from, from + 2, 2), hardState: { term: 2, vote: 'b', commit: from } }
      if (from % 2 === 0) await storage.saveAsync(update)
      else storage.save(update)
    }
    // wal.log holds entries 1-3, wal.N.log the current hard state and entries 3N+1 to 3N+3
    expect(walFiles()).toEqual(['wal.log', ...Array.from({ length: 9 }, (_, n) => `wal.${n + 1}.log`)])
    // a new vote (wal.10.log, no entries), then only the commit index (kept in memory, not written)
    storage.save({ entries: [], hardState: { term: 3, vote: 'c', commit: 20 } })
    storage.save({ entries: [], hardState: { term: 3, vote: 'c', commit: 25 } })
    expect(walFiles()).toHaveLength(11)
    storage.createSnapshot(24, { voters: ['b', 'c'] }, encoder.encode('state at 24'))
    // compacted to 13: the segments whose entries all are (up to 3, 6, 9, 12) go
    storage.compact(13)
    expect(walFiles()[0]).toBe('wal.4.log')
    // compacted to 24: up to wal.7.log; wal.10.log (no entries) stays, as wal.8.log (up to 27) does
    storage.compact(24)
    expect(walFiles()).toEqual(['wal.8.log', 'wal.9.log', 'wal.10.log'])
    await storage.saveAsync({ entries: entries(31, 33, 3), hardState: { term: 3, vote: 'c', commit: 30 } })
    const expected = snapshotOf(storage)
    storage.close()
    const reopened = DurableRaftStorage.open(directory, { walSegmentBytes: 1 })
    expect(reopened.recovery.segments).toBe(4)
    expect(snapshotOf(reopened)).toEqual(expected)
    expect(reopened.firstIndex()).toBe(25)
    expect(reopened.lastIndex()).toBe(33)
    expect(reopened.initialState().hardState).toEqual({ term: 3, vote: 'c', commit: 30 })
    // compacting past everything keeps the segment being written, whose first record is the hard state
    reopened.createSnapshot(33, { voters: ['b', 'c'] }, encoder.encode('state at 33'))
    reopened.compact(33)
    expect(walFiles()).toEqual(['wal.11.log'])
    reopened.close()
    const last = DurableRaftStorage.open(directory)
    expect(last.initialState().hardState).toEqual({ term: 3, vote: 'c', commit: 30 })
    expect(last.lastIndex()).toBe(33)
    last.close()
  })

  it('refuses to start when an older WAL segment ends in a damaged record', () => {
    const directory = freshDirectory()
    const storage = DurableRaftStorage.open(directory, { walSegmentBytes: 100 })
    for (let from = 1; from <= 10; from += 3)
      storage.save({ entries: entries(from, from + 2, 1), hardState: { term: 1, vote: 'a', commit: from } })
    storage.close()
    expect(readdirSync(directory).filter((name) => name.startsWith('wal')).length).toBeGreaterThan(2)
    // the same damage at the end of the newest segment is a torn write, cut off
    const older = join(directory, 'wal.1.log')
    truncateSync(older, statSync(older).size - 3)
    expect(() => DurableRaftStorage.open(directory)).toThrow(StoreCorruptedError)
    expect(() => DurableRaftStorage.open(directory)).toThrow(/wal\.1\.log ends in a damaged record/)
  })

  it('keeps a commit-only hard state in memory, and writes term and vote changes', async () => {
    const directory = freshDirectory()
    const storage = DurableRaftStorage.open(directory)
    storage.save({ entries: entries(1, 5, 1), hardState: { term: 1, vote: '1', commit: 3 } })
    const wal = join(directory, 'wal.log')
    const written = statSync(wal).size
    // only the commit index moves: nothing is written (no fdatasync), reads see it at once
    storage.save({ entries: [], hardState: { term: 1, vote: '1', commit: 4 } })
    await storage.saveAsync({ entries: [], hardState: { term: 1, vote: '1', commit: 5 } })
    expect(statSync(wal).size).toBe(written)
    expect(storage.initialState().hardState).toEqual({ term: 1, vote: '1', commit: 5 })
    storage.close()
    // after a crash the commit index is the last written one (the leader tells it again); the
    // term, the vote and every entry are intact
    const reopened = DurableRaftStorage.open(directory)
    expect(reopened.initialState().hardState).toEqual({ term: 1, vote: '1', commit: 3 })
    expect(reopened.lastIndex()).toBe(5)
    // a new term or a new vote is written, with the commit index it carries
    await reopened.saveAsync({ entries: [], hardState: { term: 2, vote: '', commit: 5 } })
    reopened.save({ entries: [], hardState: { term: 2, vote: '3', commit: 5 } })
    expect(statSync(wal).size).toBeGreaterThan(written)
    reopened.close()
    const again = DurableRaftStorage.open(directory)
    expect(again.initialState().hardState).toEqual({ term: 2, vote: '3', commit: 5 })
    again.close()
  })

  it("replaces the log with a leader's snapshot across reopen", () => {
    const directory = freshDirectory()
    const storage = DurableRaftStorage.open(directory)
    storage.save({ entries: entries(1, 30, 1), hardState: { term: 1, vote: '', commit: 2 } })
    const snapshot = {
      metadata: { index: 20, term: 3, confState: { voters: ['a', 'b', 'c'] } },
      data: encoder.encode('state'),
    }
    storage.save({ snapshot, entries: [], hardState: { term: 3, vote: '', commit: 20 } })
    storage.close()
    const reopened = DurableRaftStorage.open(directory)
    expect(reopened.firstIndex()).toBe(21)
    expect(reopened.lastIndex()).toBe(20) // the stale entries 21..30 of term 1 are gone
    expect(reopened.snapshot().metadata).toEqual(snapshot.metadata)
    expect(reopened.initialState().confState.voters).toEqual(['a', 'b', 'c'])
    reopened.close()
  })

  it('refuses a damaged snapshot file with StoreCorruptedError', () => {
    const directory = freshDirectory()
    const storage = DurableRaftStorage.open(directory)
    storage.save({ entries: entries(1, 10, 1) })
    storage.createSnapshot(5, { voters: ['1'] }, encoder.encode('five'))
    storage.close()
    const path = join(directory, 'snapshot.bin')
    const bytes = readFileSync(path)
    bytes[bytes.length - 1] ^= 1
    writeFileSync(path, bytes)
    expect(() => DurableRaftStorage.open(directory)).toThrowError(
      expect.objectContaining({ name: 'StoreCorruptedError' }),
    )
  })

  it('keeps an overwritten suffix overwritten across reopen once a snapshot covers the overwrite', () => {
    // fast-check's counterexample: entries 1-2, then a leader's entry 1 replaces them (the log ends
    // at 1), then a snapshot at 1. Replay loads the snapshot first, so the second record's entries
    // are all compacted; its overwrite of entry 2 must still hold.
    const directory = freshDirectory()
    const storage = DurableRaftStorage.open(directory, { walSegmentBytes: 300 })
    const reference = new MemoryStorage()
    for (const store of [storage, reference]) {
      store.save({ entries: entries(1, 2, 1), hardState: { term: 1, vote: 'x', commit: 0 } })
      store.save({ entries: entries(1, 1, 2), hardState: { term: 2, vote: 'x', commit: 0 } })
      store.createSnapshot(1, { voters: ['x'] }, encoder.encode('s1'))
      store.compact(1)
    }
    storage.close()
    const reopened = DurableRaftStorage.open(directory)
    expect(reopened.lastIndex()).toBe(1)
    expect(snapshotOf(reopened)).toEqual(snapshotOf(reference))
    reopened.close()
  })

  it('matches MemoryStorage after any sequence of operations (save and saveAsync) and reopens', async () => {
    const operation = fc.oneof(
      fc.record({
        kind: fc.constant('append' as const),
        back: fc.nat(5),
        count: fc.integer({ min: 1, max: 8 }),
        bump: fc.boolean(),
        async: fc.boolean(),
      }),
      fc.record({ kind: fc.constant('snapshot' as const), back: fc.nat(6) }),
      fc.record({ kind: fc.constant('leader-snapshot' as const), ahead: fc.integer({ min: 1, max: 10 }) }),
      fc.record({ kind: fc.constant('reopen' as const) }),
    )
    await fc.assert(
      fc.asyncProperty(fc.array(operation, { maxLength: 30 }), async (operations) => {
        const directory = freshDirectory()
        let durable = DurableRaftStorage.open(directory, { walSegmentBytes: 300 })
        const memory = new MemoryStorage()
        let term = 1
        try {
          for (const op of operations) {
            if (op.kind === 'append') {
              if (op.bump) term++
              const from = Math.max(memory.firstIndex(), memory.lastIndex() + 1 - op.back)
              const update = {
                entries: entries(from, from + op.count - 1, term),
                hardState: { term, vote: 'x', commit: from - 1 },
              }
              if (op.async) await durable.saveAsync(update)
              else durable.save(update)
              memory.save(update)
            } else if (op.kind === 'snapshot') {
              const index = memory.lastIndex() - op.back
              if (index <= memory.snapshot().metadata.index) continue
              const data = encoder.encode(`s${index}`)
              durable.createSnapshot(index, { voters: ['x'] }, data)
              memory.createSnapshot(index, { voters: ['x'] }, data)
              durable.compact(index)
              memory.compact(index)
            } else if (op.kind === 'leader-snapshot') {
              term++
              const index = memory.lastIndex() + op.ahead
              const update = {
                snapshot: {
                  metadata: { index, term, confState: { voters: ['y'] } },
                  data: encoder.encode('leader'),
                },
                entries: [],
                hardState: { term, vote: '', commit: index },
              }
              durable.save(update)
              memory.save(update)
            } else {
              durable.close()
              durable = DurableRaftStorage.open(directory, { walSegmentBytes: 300 })
            }
            expect(snapshotOf(durable)).toEqual(snapshotOf(memory))
          }
          durable.close()
          const reopened = DurableRaftStorage.open(directory)
          expect(snapshotOf(reopened)).toEqual(snapshotOf(memory))
          reopened.close()
        } finally {
          durable.close()
        }
      }),
      { numRuns: 60 },
    )
  })
})
