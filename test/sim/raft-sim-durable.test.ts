// Proves the durable store's file formats and replay hold up under the simulator's chaos: the same
// seeded runs, but every member's disk is node/store's DurableRaftStorage in a temp dir (fsync off,
// the page cache standing in for the disk), closed at each crash and reopened from its files at
// each restart, with every safety checker and the liveness phase as usual.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { DurableRaftStorage } from '../../node/store/raft-storage.js'
import { simulateRaft } from '../../simulations/raft/simulator.js'

const root = mkdtempSync(join(tmpdir(), 'shardnet-sim-durable-'))
afterAll(() => rmSync(root, { recursive: true, force: true }))

describe('raft simulator on the durable store', () => {
  it('20 seeds with 5 members keep every property with stores reopened from files', () => {
    let crashes = 0
    let snapshots = 0
    for (let seed = 300; seed < 320; seed++) {
      const directory = join(root, String(seed))
      const result = simulateRaft({
        seed,
        members: 5,
        // small WAL segments: new segments, and deletions of old ones at compaction, happen often
        openDisk: (member) =>
          DurableRaftStorage.open(join(directory, member), { fsync: false, walSegmentBytes: 16 << 10 }),
      })
      expect(result.failure, `seed=${seed}: ${JSON.stringify(result.failure)}`).toBeUndefined()
      crashes += result.stats.crashes
      snapshots += result.stats.snapshotsInstalled
      rmSync(directory, { recursive: true, force: true })
    }
    expect(crashes).toBeGreaterThan(30)
    expect(snapshots).toBeGreaterThan(3)
  }, 180_000)
})
