// Proves a member killed and restarted from its data dir rejoins with what it had committed and
// catches up, through a chunked InstallSnapshot over libp2p when the leader has compacted past its
// log: three nodes with durable stores snapshot every few entries; a follower is killed, the group
// commits and compacts on, and the restarted follower (same identity, same dir) reaches the same
// state machine state as the others.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import type { Entry } from '../../protocols/raft/types.js'
import {
  currentLeader,
  type RaftClusterInit,
  type RaftClusterMember,
  restartRaftMember,
  startRaftCluster,
  stopRaftCluster,
  waitFor,
} from './raft-cluster.js'

const encoder = new TextEncoder()
const directory = mkdtempSync(join(tmpdir(), 'shardnet-raft-restart-'))
const members: RaftClusterMember[] = []
afterAll(async () => {
  await stopRaftCluster(members)
  rmSync(directory, { recursive: true, force: true })
})

describe('raft member restart over libp2p', () => {
  it('a restarted follower catches up through a snapshot after the leader compacted', async () => {
    // every member's state machine: the sum of the numbers it applied
    const sums = new Map<string, number>()
    const decoder = new TextDecoder()
    const init: RaftClusterInit = {
      size: 3,
      directory,
      runner: { tickMs: 20, electionTicks: 25, snapshotEntries: 20, compactionKeepEntries: 5 },
      runnerFor: (id) => ({
        apply: (entries: Entry[]) => {
          let sum = sums.get(id) ?? 0
          for (const entry of entries)
            if (entry.type === 'normal' && entry.data.length > 0) sum += Number(decoder.decode(entry.data))
          sums.set(id, sum)
        },
        snapshotData: () => encoder.encode(String(sums.get(id) ?? 0)),
        restore: (data: Uint8Array) => sums.set(id, Number(decoder.decode(data))),
      }),
    }
    members.push(...(await startRaftCluster(init)))
    const leader = await waitFor(() => currentLeader(members), 20_000, 'a leader')
    for (let i = 1; i <= 10; i++) await leader.runner.propose(encoder.encode(String(i)))
    const follower = members.find((m) => m !== leader)!
    await follower.kill()
    let last = 0
    for (let i = 11; i <= 80; i++) last = (await leader.runner.propose(encoder.encode(String(i)))).index
    expect(leader.storage.firstIndex()).toBeGreaterThan(follower.storage.lastIndex() + 1) // compacted past it
    sums.delete(follower.id) // a restarted process starts with an empty state machine
    const back = await restartRaftMember(follower, members, init)
    members.push(back)
    await waitFor(
      () => back.lastApplied >= last || back.runner.status().applied >= last,
      30_000,
      'the restarted follower to catch up',
    )
    expect(back.storage.snapshot().metadata.index).toBeGreaterThan(10) // it installed a snapshot
    await waitFor(() => sums.get(back.id) === (80 * 81) / 2, 10_000, 'the restarted state machine to match')
    expect(sums.get(leader.id)).toBe((80 * 81) / 2)
  }, 120_000)
})
