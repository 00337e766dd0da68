// Proves a group replaces a dead member over real libp2p: three nodes with durable stores commit,
// one follower's node is killed, a fresh node with an empty store is added (it catches up by
// replaying the log, founding configuration included), the dead member is removed, and the new
// three-member configuration commits with the newcomer counted in it.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import {
  addRaftMember,
  currentLeader,
  type RaftClusterMember,
  startRaftCluster,
  stopRaftCluster,
  waitFor,
} from './raft-cluster.js'

const encoder = new TextEncoder()
const directory = mkdtempSync(join(tmpdir(), 'shardnet-raft-membership-'))
const members: RaftClusterMember[] = []
afterAll(async () => {
  await stopRaftCluster(members)
  rmSync(directory, { recursive: true, force: true })
})

describe('raft membership over libp2p', () => {
  it('replaces a dead member with a new node', async () => {
    const init = { size: 3, directory, runner: { tickMs: 20, electionTicks: 25 } }
    members.push(...(await startRaftCluster(init)))
    const leader = await waitFor(() => currentLeader(members), 20_000, 'a leader')
    await leader.runner.propose(encoder.encode('before'))
    const dead = members.find((member) => member !== leader)!
    await dead.kill()

    const newcomer = await addRaftMember(members, init)
    members.push(newcomer)
    await leader.runner.proposeConfChange({ type: 'add', member: newcomer.id })
    await waitFor(
      () => newcomer.runner.status().voters.includes(newcomer.id),
      20_000,
      'the newcomer to apply its addition',
    )
    expect(newcomer.runner.status().voters).toHaveLength(4)

    await leader.runner.proposeConfChange({ type: 'remove', member: dead.id })
    const voters = [leader.id, ...members.filter((m) => m.alive && m !== leader).map((m) => m.id)].sort()
    await waitFor(
      () => members.every((m) => !m.alive || m.runner.status().voters.join() === voters.join()),
      20_000,
      'the new configuration everywhere',
    )

    // with the old member gone for good, a commit needs the newcomer: stop the third original
    const third = members.find((m) => m.alive && m !== leader && m !== newcomer)!
    await third.kill()
    const last = await leader.runner.propose(encoder.encode('needs the newcomer'))
    await waitFor(() => newcomer.lastApplied >= last.index, 20_000, 'the newcomer to apply')
    const [entry] = newcomer.storage.entries(last.index, last.index + 1)
    expect(new TextDecoder().decode(entry.data)).toBe('needs the newcomer')
  }, 90_000)
})
