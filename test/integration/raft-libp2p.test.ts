// Proves a Raft group runs over real libp2p: three nodes (TCP on 127.0.0.1, noise, yamux) with
// durable stores in temp dirs elect a leader and commit; after the leader's node is killed the
// other two elect a new leader that commits; a non-member's messages and oversized or garbage
// frames are refused and counted without disturbing the group; each member hears of the entries it
// appends once their write has started (not yet durable), then once they are durable, the leader and
// a follower before they apply (a hook that throws changes nothing).
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { lpStream } from '@libp2p/utils'
import { afterAll, describe, expect, it } from 'vitest'
import { toWire } from '../../protocols/raft/transport.js'
import { type Entry, message } from '../../protocols/raft/types.js'
import { RaftFrame } from '../../protocols/wire/raft.js'
import {
  createRaftNode,
  currentLeader,
  type RaftClusterMember,
  startRaftCluster,
  stopRaftCluster,
  waitFor,
} from './raft-cluster.js'

const encoder = new TextEncoder()
const directory = mkdtempSync(join(tmpdir(), 'shardnet-raft-libp2p-'))
let members: RaftClusterMember[] = []
afterAll(async () => {
  await stopRaftCluster(members)
  rmSync(directory, { recursive: true, force: true })
})

describe('raft over libp2p', () => {
  it('elects, commits, survives the loss of its leader, and refuses outsiders', async () => {
    members = await startRaftCluster({ size: 3, directory, runner: { tickMs: 20, electionTicks: 25 } })
    const leader = await waitFor(() => currentLeader(members), 20_000, 'a first leader')
    const first = await leader.runner.propose(encoder.encode('first'))
    expect(first.index).toBeGreaterThan(3)
    await waitFor(
      () => members.every((member) => member.lastApplied >= first.index),
      20_000,
      'every member to apply',
    )

    // an outsider with a valid libp2p identity but not a member of the group: its stream is aborted
    // before the transport reads a byte of it
    const outsider = await createRaftNode()
    try {
      await outsider.dial(leader.libp2p.getMultiaddrs())
      const stream = await outsider.dialProtocol(leader.libp2p.getMultiaddrs(), '/shardnet/raft/1.0.0')
      const forged = toWire(
        message({
          type: 'MsgVote',
          from: outsider.peerId.toString(),
          to: leader.id,
          term: 99,
          index: 1000,
          logTerm: 99,
        }),
      )
      await lpStream(stream)
        .write(RaftFrame.encode({ group: 'test-group', messages: [forged] }))
        .catch(() => {})
      await waitFor(() => leader.transport.stats.refusedStranger >= 1, 10_000, 'the outsider to be refused')
    } finally {
      await outsider.stop()
    }
    // a member's frame for a group it is not in, a message it sends in another member's name, a
    // garbage frame and an oversized one: each dropped and counted
    const member = members.find((other) => other !== leader)!
    const third = members.find((other) => other !== leader && other !== member)!
    const stream = await member.libp2p.dialProtocol(leader.libp2p.getMultiaddrs(), '/shardnet/raft/1.0.0')
    const writer = lpStream(stream)
    const elsewhere = toWire(
      message({ type: 'MsgVote', from: member.id, to: leader.id, term: 99, index: 1000, logTerm: 99 }),
    )
    await writer.write(RaftFrame.encode({ group: 'other-group', messages: [elsewhere] }))
    const spoofed = toWire(message({ type: 'MsgHeartbeat', from: third.id, to: leader.id, term: 99 }))
    await writer.write(RaftFrame.encode({ group: 'test-group', messages: [spoofed] }))
    await writer.write(new Uint8Array([0xff, 0xff, 0xff])) // garbage frame
    await waitFor(
      () =>
        leader.transport.stats.refusedNonMember >= 1 &&
        leader.transport.stats.refusedInvalid >= 1 &&
        leader.transport.stats.refusedMalformed >= 1,
      10_000,
      'refusals to be counted',
    )
    // an oversized frame ends the stream
    const big = await member.libp2p.dialProtocol(leader.libp2p.getMultiaddrs(), '/shardnet/raft/1.0.0')
    await lpStream(big, { maxDataLength: 64 << 20 })
      .write(new Uint8Array(17 << 20))
      .catch(() => {})
    await waitFor(
      () => leader.transport.stats.refusedMalformed >= 2,
      10_000,
      'the oversized frame to be refused',
    )
    // the vote requests for term 99 did not disturb the group
    expect(leader.runner.isLeader()).toBe(true)
    expect(leader.runner.status().term).toBeLessThan(99)

    await leader.kill()
    const started = Date.now()
    const next = await waitFor(() => currentLeader(members), 20_000, 'a new leader')
    expect(next.id).not.toBe(leader.id)
    const after = await next.runner.propose(encoder.encode('after failover'))
    console.log(`failover: new leader committed ${Date.now() - started} ms after the kill`)
    const survivors = members.filter((member) => member.alive)
    await waitFor(
      () => survivors.every((member) => member.lastApplied >= after.index),
      20_000,
      'the survivors to apply',
    )
    // committed entries from before the failover are still there, at the same index
    for (const member of survivors) {
      const [entry] = member.storage.entries(first.index, first.index + 1)
      expect(new TextDecoder().decode(entry.data)).toBe('first')
    }
  }, 90_000)

  it('tells each member of the entries it appends as the write starts and once they are durable, ' +
    'before they commit', async () => {
    // per member and hook: the entries the runner announced, with what was durable and applied then
    type Heard = { index: number; text: string; durable: boolean; applied: number; order: number }
    const heard = new Map<string, Array<Heard>>()
    let order = 0
    const hook = (hookName: 'appending' | 'appended', id: string) => (entries: Entry[]) => {
      const member = group.find((other) => other.id === id)!
      const key = `${hookName} ${id}`
      const list = heard.get(key) ?? []
      heard.set(key, list)
      for (const entry of entries) {
        // the durable store's reads serve only what is on disk
        const [stored] =
          entry.index <= member.storage.lastIndex()
            ? member.storage.entries(entry.index, entry.index + 1)
            : []
        list.push({
          index: entry.index,
          text: new TextDecoder().decode(entry.data),
          durable: stored !== undefined && stored.data === entry.data,
          applied: member.lastApplied,
          order: order++,
        })
      }
      // a hook that throws is logged; the member goes on
      if (member === group[2]) throw new Error(`a faulty ${hookName} hook`)
    }
    const group: RaftClusterMember[] = await startRaftCluster({
      size: 3,
      directory: join(directory, 'appended'),
      group: 'appended-group',
      runner: { tickMs: 20, electionTicks: 25 },
      runnerFor: (id) => ({ appending: hook('appending', id), appended: hook('appended', id) }),
    })
    members.push(...group)
    const leader = await waitFor(() => currentLeader(group), 20_000, 'a leader')
    const proposed = await leader.runner.propose(encoder.encode('ahead'))
    await waitFor(() => group.every((member) => member.lastApplied >= proposed.index), 20_000, 'every member')
    const heardOf = (hookName: string, member: RaftClusterMember) =>
      heard.get(`${hookName} ${member.id}`)?.find((entry) => entry.index === proposed.index)
    const seen = group.map((member) => heardOf('appended', member))
    for (const entry of seen) expect(entry).toMatchObject({ text: 'ahead', durable: true })
    // every member heard of the write first, before the entry was durable there
    for (const [position, member] of group.entries()) {
      const starting = heardOf('appending', member)
      expect(starting).toMatchObject({ text: 'ahead', durable: false })
      expect(starting!.order).toBeLessThan(seen[position]!.order)
    }
    // the leader hears of its proposal before it can commit; so does the follower whose
    // acknowledgement commits it (a follower that gets the entry together with its commit, e.g. one
    // the leader was still probing, applies it in the same Ready, before the hook)
    expect(seen[group.indexOf(leader)]!.applied).toBeLessThan(proposed.index)
    expect(seen.filter((entry) => entry!.applied < proposed.index).length).toBeGreaterThanOrEqual(2)
    expect(group.every((member) => member.runner.status().term === leader.runner.status().term)).toBe(true)
    const again = await leader.runner.propose(encoder.encode('after a faulty hook'))
    await waitFor(
      () => group.every((member) => member.lastApplied >= again.index),
      20_000,
      'every member again',
    )
  }, 60_000)
})
