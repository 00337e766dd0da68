// Table tests of the Raft core, each citing the section of the Raft paper (Ongaro & Ousterhout,
// USENIX ATC 2014) or of Ongaro's dissertation it checks, driven on real RaftNodes in memory.
import { describe, expect, it } from 'vitest'
import { Raft } from '../../../protocols/raft/raft.js'
import { SeededRandom } from '../../../protocols/raft/random.js'
import { MemoryStorage } from '../../../protocols/raft/storage.js'
import { type Entry, type Message, message } from '../../../protocols/raft/types.js'
import { decode, encode, TestNetwork } from './network.js'

function entry(index: number, term: number, data = ''): Entry {
  return { index, term, type: 'normal', data: encode(data) }
}

/** A follower whose log holds entries with the given terms at indexes 1.. (after bootstrap at 0). */
function followerWithLog(terms: number[], currentTerm: number): Raft {
  const storage = new MemoryStorage()
  storage.save({
    entries: terms.map((term, i) => entry(i + 1, term)),
    hardState: { term: currentTerm, vote: '', commit: 0 },
  })
  // config lives in a snapshot here: the bootstrap entries would shift the indexes of the tables
  const raft = new Raft({ id: '1', storage, random: new SeededRandom(1), preVote: false, checkQuorum: false })
  for (const id of ['1', '2', '3']) raft.applyConfChange({ type: 'add', member: id })
  return raft
}

function sent(raft: Raft): Message[] {
  const out = raft.messages
  raft.messages = []
  return out
}

describe('5.2 leader election', () => {
  it.each([
    { size: 1, down: [], state: 'leader' },
    { size: 3, down: [], state: 'leader' },
    { size: 3, down: ['3'], state: 'leader' },
    { size: 3, down: ['2', '3'], state: 'candidate' },
    { size: 5, down: ['4', '5'], state: 'leader' },
    { size: 5, down: ['3', '4', '5'], state: 'candidate' },
  ])('a candidate in a group of $size with $down down becomes $state', ({ size, down, state }) => {
    const ids = Array.from({ length: size }, (_, i) => String(i + 1))
    const network = new TestNetwork(ids)
    for (const id of down) network.crash(id)
    network.elect('1')
    expect(network.node('1').state).toBe(state)
    expect(network.node('1').term).toBe(1)
  })

  it('grants at most one vote per term, on a first-come basis', () => {
    const raft = followerWithLog([], 1)
    raft.step(message({ type: 'MsgVote', from: '2', to: '1', term: 2 }))
    raft.step(message({ type: 'MsgVote', from: '3', to: '1', term: 2 }))
    raft.step(message({ type: 'MsgVote', from: '2', to: '1', term: 2 })) // a retransmission
    expect(sent(raft).map((m) => [m.to, m.reject])).toEqual([
      ['2', false],
      ['3', true],
      ['2', false],
    ])
    expect(raft.vote).toBe('2')
  })

  it('randomizes election timeouts within [electionTicks, 2 * electionTicks)', () => {
    const seen = new Set<number>()
    for (let seed = 0; seed < 200; seed++) {
      const raft = new Raft({
        id: '1',
        storage: new MemoryStorage(),
        random: new SeededRandom(seed),
        electionTicks: 10,
      })
      expect(raft.randomizedElectionTimeout).toBeGreaterThanOrEqual(10)
      expect(raft.randomizedElectionTimeout).toBeLessThan(20)
      seen.add(raft.randomizedElectionTimeout)
    }
    expect(seen.size).toBe(10)
  })

  it('a candidate that hears from a leader of its term steps down', () => {
    const raft = followerWithLog([1, 1], 1)
    raft.becomeCandidate() // term 2
    raft.step(message({ type: 'MsgApp', from: '2', to: '1', term: 2, index: 2, logTerm: 1 }))
    expect(raft.state).toBe('follower')
    expect(raft.lead).toBe('2')
  })
})

describe('5.4.1 election restriction', () => {
  // the voter's log: terms [1, 1, 2] (last index 3, last term 2)
  it.each([
    { lastIndex: 3, lastTerm: 2, granted: true, why: 'same last entry' },
    { lastIndex: 4, lastTerm: 2, granted: true, why: 'longer log, same last term' },
    { lastIndex: 2, lastTerm: 2, granted: false, why: 'shorter log, same last term' },
    { lastIndex: 9, lastTerm: 1, granted: false, why: 'longer log, older last term' },
    { lastIndex: 1, lastTerm: 3, granted: true, why: 'shorter log, newer last term' },
  ])(
    'a vote for a log ending at $lastTerm/$lastIndex is granted=$granted ($why)',
    ({ lastIndex, lastTerm, granted }) => {
      const raft = followerWithLog([1, 1, 2], 2)
      raft.step(
        message({ type: 'MsgVote', from: '2', to: '1', term: 3, index: lastIndex, logTerm: lastTerm }),
      )
      const [response] = sent(raft)
      expect(response.type).toBe('MsgVoteResp')
      expect(!response.reject).toBe(granted)
    },
  )
})

describe('5.3 log replication', () => {
  // the follower's log: terms [1, 1, 1, 4, 4, 5, 5, 6, 6, 6] (Figure 7, follower a's ancestry)
  const followerTerms = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6]
  it.each([
    { prevIndex: 10, prevTerm: 6, accepted: true, last: 11 },
    { prevIndex: 9, prevTerm: 6, accepted: true, last: 11 }, // truncates the conflicting 10th and appends
    { prevIndex: 11, prevTerm: 6, accepted: false, last: 10 }, // a gap
    { prevIndex: 7, prevTerm: 4, accepted: false, last: 10 }, // term mismatch at 7
    { prevIndex: 0, prevTerm: 0, accepted: true, last: 10 },
  ])(
    'an append after $prevTerm/$prevIndex is accepted=$accepted',
    ({ prevIndex, prevTerm, accepted, last }) => {
      const raft = followerWithLog(followerTerms, 7)
      const entries = prevIndex === 0 ? [] : [entry(prevIndex + 1, 7, 'x')]
      raft.step(
        message({
          type: 'MsgApp',
          from: '2',
          to: '1',
          term: 7,
          index: prevIndex,
          logTerm: prevTerm,
          entries,
        }),
      )
      const [response] = sent(raft)
      expect(response.reject).toBe(!accepted)
      expect(raft.log.lastIndex()).toBe(prevIndex === 9 ? 10 : last)
    },
  )

  it.each([
    // leader probes at index, term -> follower's hint (largest index <= probe whose term <= probe term)
    { probeIndex: 12, probeTerm: 8, hintIndex: 10, hintTerm: 6 },
    { probeIndex: 10, probeTerm: 5, hintIndex: 7, hintTerm: 5 },
    { probeIndex: 9, probeTerm: 3, hintIndex: 3, hintTerm: 1 },
  ])(
    'a rejected probe at $probeTerm/$probeIndex hints $hintTerm/$hintIndex (fast backtracking)',
    ({ probeIndex, probeTerm, hintIndex, hintTerm }) => {
      const raft = followerWithLog(followerTerms, 8)
      raft.step(
        message({ type: 'MsgApp', from: '2', to: '1', term: 8, index: probeIndex, logTerm: probeTerm }),
      )
      const [response] = sent(raft)
      expect(response.reject).toBe(true)
      expect([response.rejectHint, response.logTerm]).toEqual([hintIndex, hintTerm])
    },
  )

  it('a leader repairs a divergent follower in one round trip per term, not per entry', () => {
    const network = new TestNetwork(['1', '2', '3'])
    network.elect('1')
    network.isolate('1')
    for (let i = 0; i < 20; i++) network.node('1').propose(encode(`stale${i}`)) // 20 entries only 1 has
    network.stabilize()
    network.heal()
    network.elect('2')
    for (let i = 0; i < 5; i++) network.node('2').propose(encode(`new${i}`))
    network.stabilize()
    let rejections = 0
    network.filter = (m) => {
      if (m.type === 'MsgAppResp' && m.reject && m.from === '1') rejections++
      return true
    }
    network.tick('2', network.heartbeatTicks)
    network.stabilize()
    expect(rejections).toBeLessThanOrEqual(2)
    const log1 = network.member('1').storage
    const log2 = network.member('2').storage
    expect(log1.entries(1, log1.lastIndex() + 1).map((e) => decode(e.data))).toEqual(
      log2.entries(1, log2.lastIndex() + 1).map((e) => decode(e.data)),
    )
  })

  it('pipelines at most inflightMessagesMax appends to a follower before it answers', () => {
    const network = new TestNetwork(['1', '2', '3'], { inflightMessagesMax: 3, messageBytesMax: 1 })
    network.elect('1')
    network.mailbox = []
    for (let i = 0; i < 10; i++) network.node('1').propose(encode(`e${i}`))
    network.process('1')
    const appends = network.mailbox.filter((m) => m.type === 'MsgApp' && m.to === '2')
    expect(appends.length).toBe(3)
    expect(appends.every((m) => m.entries.length === 1)).toBe(true) // messageBytesMax 1: one entry each
    network.stabilize()
    expect(
      network
        .member('2')
        .applied.map((e) => decode(e.data))
        .filter((d) => d.startsWith('e')),
    ).toHaveLength(10)
  })

  it('batches many proposals into one append per follower when the window allows', () => {
    const network = new TestNetwork(['1', '2', '3'])
    network.elect('1')
    network.mailbox = []
    for (let i = 0; i < 100; i++) network.node('1').propose(encode(`e${i}`))
    network.process('1')
    // each proposal tries to send, but the ready batches everything proposed so far
    const entriesTo2 = network.mailbox
      .filter((m) => m.type === 'MsgApp' && m.to === '2')
      .reduce((n, m) => n + m.entries.length, 0)
    expect(entriesTo2).toBe(100)
  })
})

describe('5.4.2 committing entries from previous terms (Figure 8)', () => {
  it('a leader does not commit an old-term entry by counting replicas, only via a current-term entry', () => {
    // messageBytesMax 1: every append carries one entry, so the old entry can travel alone
    const network = new TestNetwork(['1', '2', '3'], { messageBytesMax: 1 })
    network.elect('1') // term 1; entries 1..3 bootstrap, 4 the leader's empty entry
    network.node('1').propose(encode('old'))
    network.processAll()
    network.filter = (m) => m.type === 'MsgApp' && m.to === '2' && m.entries.length > 0
    network.deliverAll() // only 2 gets entry 5 ...
    network.filter = () => false
    network.deliverAll() // ... and its acknowledgement is lost
    const oldIndex = network.member('2').storage.lastIndex()
    expect(oldIndex).toBe(5)
    expect(network.node('1').log.committed).toBeLessThan(oldIndex)
    // 2 becomes leader of term 2 with 3's vote; its probe of 3 is rejected, it backs up and sends
    // entry 5 alone, which 3 acknowledges; every append carrying the term-2 entry is then lost
    let probes = 0
    network.filter = (m) => {
      if (m.from === '1' || m.to === '1') return false
      if (m.type === 'MsgApp' && m.entries.some((e) => e.term === 2)) return probes++ === 0
      return true
    }
    network.elect('2')
    const leader = network.node('2')
    expect(leader.state).toBe('leader')
    expect(leader.status().progress['3'].match).toBe(oldIndex) // a majority (2 and 3) holds entry 5 ...
    expect(leader.log.committed).toBeLessThan(oldIndex) // ... but it is of term 1: not committed
    // once its own term-2 entry is on a majority, everything up to it commits
    network.heal()
    network.tick('2', network.heartbeatTicks)
    network.stabilize()
    expect(network.node('2').log.committed).toBeGreaterThan(oldIndex)
    expect(network.member('3').applied.some((e) => decode(e.data) === 'old')).toBe(true)
  })
})

describe('persistence before acknowledging (5.1, Figure 2 "Persistent state")', () => {
  /** A group that elected 1 and replicated 20 entries through it. */
  function replicated(): TestNetwork {
    const network = new TestNetwork(['1', '2', '3'])
    network.elect('1')
    for (let i = 0; i < 20; i++) network.node('1').propose(encode(`e${i}`))
    network.stabilize()
    return network
  }

  it('every acknowledgement leaves in the same Ready as the state it acknowledges, or later', () => {
    const network = replicated()
    for (const member of network.members.values()) {
      let persistedLast = 0
      let persistedVote = ''
      let persistedTerm = 0
      for (const ready of member.readies) {
        if (ready.entries.length > 0) persistedLast = ready.entries[ready.entries.length - 1].index
        if (ready.hardState) {
          persistedVote = ready.hardState.vote
          persistedTerm = ready.hardState.term
        }
        for (const m of ready.messages) {
          if (m.type === 'MsgAppResp' && !m.reject)
            expect(m.index).toBeLessThanOrEqual(Math.max(persistedLast, 3))
          if (m.type === 'MsgVoteResp' && !m.reject) {
            expect(persistedVote).toBe(m.to)
            expect(persistedTerm).toBe(m.term)
          }
        }
      }
    }
  })

  // the Ready order (protocols/raft/ready.ts), seen from what is on disk as each message leaves
  it("acknowledgements and votes leave after what they promise is stored; a leader's appends before", () => {
    const network = replicated()
    let acknowledgements = 0
    let votes = 0
    let appendsAheadOfDisk = 0
    for (const member of network.members.values()) {
      for (const { messages, storedLastIndex, storedHardState } of member.sent) {
        for (const m of messages) {
          if (m.type === 'MsgAppResp' && !m.reject) {
            acknowledgements++
            expect(m.index).toBeLessThanOrEqual(storedLastIndex)
          }
          if (m.type === 'MsgVoteResp' && !m.reject) {
            votes++
            expect(storedHardState).toMatchObject({ term: m.term, vote: m.to })
          }
          if (m.type === 'MsgApp' && m.entries.some((entry) => entry.index > storedLastIndex))
            appendsAheadOfDisk++
        }
      }
    }
    expect(acknowledgements).toBeGreaterThan(0)
    expect(votes).toBe(2)
    // the leader's own write does not hold up its appends
    expect(appendsAheadOfDisk).toBeGreaterThan(0)
  })
})

describe('6 cluster membership changes (single-server, dissertation 4.1)', () => {
  it('adds a member that catches up from the log and then counts toward the quorum', () => {
    const network = new TestNetwork(['1', '2', '3'])
    network.elect('1')
    network.addEmpty('4')
    network.node('1').proposeConfChange({ type: 'add', member: '4' })
    network.stabilize()
    network.tick('1', network.heartbeatTicks)
    network.stabilize()
    expect(network.node('1').voters()).toEqual(['1', '2', '3', '4'])
    expect(network.node('4').voters()).toEqual(['1', '2', '3', '4'])
    // with 2 and 3 down, 1 and 4 are not a majority of 4: nothing commits
    network.crash('2')
    network.crash('3')
    const before = network.node('1').log.committed
    network.node('1').propose(encode('needs three'))
    network.stabilize()
    expect(network.node('1').log.committed).toBe(before)
  })

  it('refuses a second change while one is pending', () => {
    const network = new TestNetwork(['1', '2', '3'])
    network.elect('1')
    network.node('1').proposeConfChange({ type: 'remove', member: '3' })
    expect(() => network.node('1').proposeConfChange({ type: 'remove', member: '2' })).toThrowError(
      expect.objectContaining({ name: 'ProposalDroppedError', reason: 'conf-change-pending' }),
    )
  })

  it('a new leader may not change membership before its first entry commits', () => {
    const network = new TestNetwork(['1', '2', '3'])
    network.node('1').campaign()
    network.processAll()
    network.deliverAll() // votes out
    network.deliverAll() // votes in: 1 is leader, its empty entry not yet committed
    expect(network.node('1').state).toBe('leader')
    expect(() => network.node('1').proposeConfChange({ type: 'add', member: '4' })).toThrowError(
      expect.objectContaining({ reason: 'conf-change-pending' }),
    )
  })

  it('a leader that removes itself steps down and the rest elect a successor', () => {
    const network = new TestNetwork(['1', '2', '3'])
    network.elect('1')
    network.node('1').proposeConfChange({ type: 'remove', member: '1' })
    network.stabilize()
    expect(network.node('1').state).toBe('follower')
    expect(network.node('1').voters()).not.toContain('1') // it may no longer campaign
    network.timeout('2')
    network.stabilize()
    expect(network.leaders()).toEqual(['2'])
    expect(network.node('2').voters()).toEqual(['2', '3'])
  })

  it('leader transfer hands leadership to a caught-up member', () => {
    const network = new TestNetwork(['1', '2', '3'], { preVote: true, checkQuorum: true })
    network.elect('1')
    network.node('1').transferLeadership('3')
    network.stabilize()
    expect(network.leaders()).toEqual(['3'])
  })
})

describe('7 log compaction and InstallSnapshot', () => {
  it.each([
    { chunkBytes: 1, dataBytes: 10, chunks: 10 },
    { chunkBytes: 4, dataBytes: 10, chunks: 3 },
    { chunkBytes: 64, dataBytes: 10, chunks: 1 },
    { chunkBytes: 4, dataBytes: 0, chunks: 1 },
  ])(
    'a follower behind a compacted log gets $dataBytes bytes in $chunks chunk(s) of $chunkBytes',
    ({ chunkBytes, dataBytes, chunks }) => {
      const network = new TestNetwork(['1', '2', '3'], { snapshotChunkBytes: chunkBytes })
      network.elect('1')
      network.crash('3')
      for (let i = 0; i < 5; i++) network.node('1').propose(encode(`e${i}`))
      network.stabilize()
      const leaderStorage = network.member('1').storage
      const applied = network.node('1').log.applied
      leaderStorage.createSnapshot(applied, network.node('1').confState(), new Uint8Array(dataBytes).fill(7))
      leaderStorage.compact(applied)
      network.start('3', network.member('3').storage.snapshot().metadata.index)
      let snapMessages = 0
      network.filter = (m) => {
        if (m.type === 'MsgSnap') snapMessages++
        return true
      }
      network.tick('1', network.heartbeatTicks)
      network.stabilize()
      expect(snapMessages).toBe(chunks)
      expect(network.member('3').storage.snapshot().metadata.index).toBe(applied)
      expect(network.member('3').storage.snapshot().data).toEqual(new Uint8Array(dataBytes).fill(7))
      expect(network.node('1').status().progress['3'].state).toBe('replicate')
    },
  )

  it('resends a lost chunk after the next heartbeat response', () => {
    const network = new TestNetwork(['1', '2', '3'], { snapshotChunkBytes: 2 })
    network.elect('1')
    network.crash('3')
    network.node('1').propose(encode('x'))
    network.stabilize()
    const applied = network.node('1').log.applied
    network.member('1').storage.createSnapshot(applied, network.node('1').confState(), encode('abcdef'))
    network.member('1').storage.compact(applied)
    network.start('3', 0)
    let dropped = false
    network.filter = (m) => {
      if (m.type === 'MsgSnap' && m.snapshot?.offset === 2 && !dropped) {
        dropped = true
        return false
      }
      return true
    }
    network.tick('1', network.heartbeatTicks)
    network.stabilize()
    expect(dropped).toBe(true)
    expect(network.member('3').storage.snapshot().metadata.index).toBe(0) // stuck on the lost chunk
    network.tick('1', network.heartbeatTicks)
    network.stabilize()
    expect(decode(network.member('3').storage.snapshot().data)).toBe('abcdef')
  })
})

describe('9.6 pre-vote and check-quorum (dissertation)', () => {
  it.each([
    { preVote: true, termAfter: 1, leaderKept: true },
    { preVote: false, termAfter: 4, leaderKept: false },
  ])(
    'a rejoining partitioned member with preVote=$preVote: term $termAfter, leader kept $leaderKept',
    ({ preVote, termAfter, leaderKept }) => {
      const network = new TestNetwork(['1', '2', '3'], { preVote, checkQuorum: false })
      network.elect('1')
      network.isolate('3')
      network.node('1').propose(encode('while 3 is away')) // 3's log falls behind
      network.stabilize()
      network.timeout('3')
      network.stabilize()
      network.timeout('3')
      network.stabilize()
      expect(network.node('3').term).toBe(preVote ? 1 : 3)
      network.heal()
      // 3 campaigns again, now connected
      network.timeout('3')
      network.stabilize()
      expect(network.node('1').term).toBe(termAfter)
      expect(network.node('1').state === 'leader').toBe(leaderKept)
    },
  )

  it('a leader that loses its quorum steps down after an election timeout (check-quorum)', () => {
    const network = new TestNetwork(['1', '2', '3'], { checkQuorum: true })
    network.elect('1')
    network.isolate('1')
    network.tick('1', network.electionTicks)
    expect(network.node('1').state).toBe('leader') // active in the last period
    network.tick('1', network.electionTicks)
    expect(network.node('1').state).toBe('follower')
  })

  it('a member that hears from its leader ignores a vote request (leader lease)', () => {
    const network = new TestNetwork(['1', '2', '3'], { checkQuorum: true })
    network.elect('1')
    const node = network.node('2')
    node.step(message({ type: 'MsgVote', from: '3', to: '2', term: 5, index: 100, logTerm: 5 }))
    expect(node.term).toBe(1)
    expect(node.status().vote).toBe('1')
  })
})

describe('illegal transitions are assertion failures', () => {
  it.each([
    { name: 'follower -> leader', act: (raft: Raft) => raft.becomeLeader() },
    {
      name: 'leader -> candidate',
      act: (raft: Raft) => {
        raft.becomeCandidate()
        raft.becomeLeader()
        raft.becomeCandidate()
      },
    },
    {
      name: 'leader -> pre-candidate',
      act: (raft: Raft) => {
        raft.becomeCandidate()
        raft.becomeLeader()
        raft.becomePreCandidate()
      },
    },
  ])('$name throws RaftAssertionError', ({ act }) => {
    const raft = followerWithLog([], 0)
    expect(() => act(raft)).toThrowError(expect.objectContaining({ name: 'RaftAssertionError' }))
  })

  it('feeding a local message type to step() throws', () => {
    const network = new TestNetwork(['1'])
    expect(() => network.node('1').step(message({ type: 'MsgHup', from: '1', to: '1' }))).toThrowError(
      expect.objectContaining({ name: 'RaftAssertionError' }),
    )
  })
})
