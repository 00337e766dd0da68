// A lying leader over real libp2p: five members (TCP on 127.0.0.1, noise, yamux, durable stores in
// temp dirs) whose runners refuse entries starting with 'LIE' (the validate hook). The first leader
// proposes a lie: no member applies it, every other member distrusts the liar, another leads. Then
// the next leaders are killed one by one, each once the liar holds its log: with the liar and two
// honest members left (logs equal, so without distrust the liar would win) no one leads; a killed
// member restarted from its store (it trusts the liar again: distrust lives as long as the process)
// makes a quorum that elects an honest leader, which commits; the liar never leads again.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { ProposalLostError } from '../../protocols/raft/runner.js'
import { type Entry, ProposalDroppedError } from '../../protocols/raft/types.js'
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
const decoder = new TextDecoder()
const directory = mkdtempSync(join(tmpdir(), 'shardnet-raft-guard-'))
let members: RaftClusterMember[] = []
afterAll(async () => {
  await stopRaftCluster(members)
  rmSync(directory, { recursive: true, force: true })
})

const TICK_MS = 20
const ELECTION_TICKS = 15
/** The longest randomized election timeout. */
const ELECTION_MS = 2 * ELECTION_TICKS * TICK_MS

/** Proposes on the current leader until it commits (a leader may change under a loaded machine). */
async function commit(group: RaftClusterMember[], text: string): Promise<number> {
  const deadline = Date.now() + 30 * ELECTION_MS
  for (;;) {
    const leader = await waitFor(() => currentLeader(group), 30 * ELECTION_MS, `a leader for ${text}`)
    try {
      return (await leader.runner.propose(encoder.encode(text))).index
    } catch (error) {
      if (!(error instanceof ProposalLostError || error instanceof ProposalDroppedError)) throw error
    }
    if (Date.now() > deadline) throw new Error(`${text} never committed`)
    await new Promise((resolve) => setTimeout(resolve, TICK_MS))
  }
}

describe('raft over libp2p with a lying leader', () => {
  it('the lie never commits, the group goes on under another, the liar never leads again', async () => {
    const applied = new Map<string, string[]>()
    /** Every leadership a member reported: who, at which term. */
    const reigns: { id: string; term: number }[] = []
    const init: RaftClusterInit = {
      size: 5,
      directory,
      group: 'guard-group',
      runner: { tickMs: TICK_MS, electionTicks: ELECTION_TICKS },
      runnerFor: (id) => ({
        apply: (entries: Entry[]) => {
          const list = applied.get(id) ?? []
          applied.set(id, list)
          for (const entry of entries) list.push(decoder.decode(entry.data))
        },
        validate: async (entries: Entry[]) => {
          const lie = entries
            .map((entry) => decoder.decode(entry.data))
            .find((text) => text.startsWith('LIE'))
          return lie ? { ok: false, reason: `${lie} is a lie` } : { ok: true }
        },
        onLeaderChange: (_lead: string, state: string) => {
          const member = members.find((m) => m.id === id && m.alive)
          if (state === 'leader' && member) reigns.push({ id, term: member.runner.status().term })
        },
      }),
    }
    members = await startRaftCluster(init)
    const liar = await waitFor(() => currentLeader(members), 30 * ELECTION_MS, 'a first leader')
    const first = await liar.runner.propose(encoder.encode('honest before'))
    await waitFor(() => members.every((m) => m.lastApplied >= first.index), 20_000, 'every member to apply')

    const lieTerm = liar.runner.status().term
    const lieAt = Date.now()
    liar.runner.propose(encoder.encode('LIE: the parameters are all zero')).catch(() => {})
    const honest = members.filter((m) => m !== liar)
    await waitFor(
      () => honest.every((m) => m.runner.distrusted().has(liar.id)),
      20_000,
      'every honest member to distrust the liar',
    )
    const second = await waitFor(
      () => currentLeader(honest),
      20 * ELECTION_MS,
      'an honest leader after the lie',
    )
    console.log(`lying leader: an honest leader ${Date.now() - lieAt} ms after the lie`)
    expect(second.runner.status().term).toBeGreaterThan(lieTerm)
    const survivors = () => honest.filter((m) => m.alive)

    // the next leaders are killed once the liar holds their log: it is never behind, so only its
    // distrust by the others keeps it out
    const killLeader = async (): Promise<RaftClusterMember> => {
      const leader = await waitFor(() => currentLeader(survivors()), 30 * ELECTION_MS, 'an honest leader')
      await waitFor(
        () => liar.runner.status().lastIndex === leader.runner.status().lastIndex,
        20_000,
        'the liar to hold the leader log',
      )
      await leader.kill()
      return leader
    }
    const killedSecond = await killLeader()
    const third = await killLeader()
    // the liar and two honest members left, with the same log: nobody may lead
    const left = survivors()
    expect(left.length).toBe(2)
    for (const m of left) expect(m.runner.status().lastIndex).toBe(liar.runner.status().lastIndex)
    const highest = Math.max(...reigns.map((reign) => reign.term))
    await new Promise((resolve) => setTimeout(resolve, 5 * ELECTION_MS))
    expect(currentLeader([liar, ...left])).toBeUndefined()
    expect(reigns.filter((reign) => reign.term > highest)).toEqual([])

    // a killed member restarts from its store: it trusts the liar again, the two others do not
    const index = members.indexOf(killedSecond)
    members[index] = await restartRaftMember(killedSecond, members, init)
    const back = [members[index], ...left]
    const after = await commit(back, 'honest after')
    await waitFor(() => back.every((m) => m.lastApplied >= after), 20_000, 'the group to apply')
    for (const m of back) expect(applied.get(m.id)).toContain('honest after')
    expect(third.alive).toBe(false)

    for (const list of applied.values()) expect(list.some((text) => text.startsWith('LIE'))).toBe(false)
    expect(reigns.filter((reign) => reign.id === liar.id && reign.term > lieTerm)).toEqual([])
  }, 120_000)
})
