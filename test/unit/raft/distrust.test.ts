// Table tests of distrust in the Raft core (RaftNode.distrust), on real RaftNodes in memory: a
// distrusted peer gets no vote and no pre-vote, nothing it sends is heard, a follower that distrusts
// its leader campaigns once its election timer runs out, and a distrusted ex-leader never wins again.
// Each case has a control (the same schedule without distrust) so the assertion can fail.
import { describe, expect, it } from 'vitest'
import { NONE } from '../../../protocols/raft/types.js'
import { decode, encode, TestNetwork } from './network.js'

const guarded = { preVote: true, checkQuorum: true }

/** Ticks every live member once per round and delivers everything, `rounds` times. */
function run(network: TestNetwork, rounds: number): void {
  for (let round = 0; round < rounds; round++) {
    for (const m of network.members.values()) if (m.node) network.tick(m.id)
    network.stabilize(20)
  }
}

function holds(network: TestNetwork, id: string, text: string): boolean {
  const storage = network.member(id).storage
  return storage.entries(storage.firstIndex(), storage.lastIndex() + 1).some((e) => decode(e.data) === text)
}

function applied(network: TestNetwork, id: string, text: string): boolean {
  return network.member(id).applied.some((e) => decode(e.data) === text)
}

/** Every message `from` sent to `to` since the member started. */
function sentTo(network: TestNetwork, from: string, to: string) {
  return network
    .member(from)
    .sent.flatMap((s) => s.messages)
    .filter((m) => m.to === to)
}

describe('a distrusted candidate gets no vote', () => {
  it.each([
    { preVote: false, request: 'MsgVote' },
    { preVote: true, request: 'MsgPreVote' },
  ])('no $request answer, no term change (pre-vote $preVote)', ({ preVote }) => {
    for (const distrusting of [[], ['2', '3']]) {
      const network = new TestNetwork(['1', '2', '3'], { preVote, checkQuorum: preVote })
      for (const id of distrusting) expect(network.node(id).distrust('1')).toBe(true)
      network.elect('1')
      if (distrusting.length === 0) {
        expect(network.leaders()).toEqual(['1']) // control: the same logs win without distrust
        continue
      }
      expect(network.node('1').state).not.toBe('leader')
      for (const id of distrusting) {
        expect(sentTo(network, id, '1')).toEqual([])
        expect(network.node(id).term).toBe(0) // a distrusted candidate's term is not adopted
        expect(network.node(id).status().distrustedDropped).toBeGreaterThan(0)
        expect(network.node(id).status().distrusted).toEqual(['1'])
      }
    }
  })

  it("one member's distrust costs the candidate only that member's vote", () => {
    const network = new TestNetwork(['1', '2', '3'])
    network.node('2').distrust('1')
    network.elect('1')
    expect(network.leaders()).toEqual(['1']) // 3's vote is a quorum with its own
    expect(sentTo(network, '2', '1').filter((m) => m.type === 'MsgVoteResp')).toEqual([])
    expect(network.node('2').status().vote).toBe(NONE)
  })

  it('a vote cast stays cast: distrust never frees it for a second candidate of the same term', () => {
    const network = new TestNetwork(['1', '2', '3'])
    network.node('1').campaign()
    network.processAll()
    const requests = network.mailbox.filter((m) => m.type === 'MsgVote' && m.to === '3')
    network.mailbox = []
    network.node('3').step(requests[0]) // 3 votes for 1 at term 1
    network.processAll()
    expect(network.node('3').status().vote).toBe('1')
    network.node('3').distrust('1')
    network.mailbox = []
    // 2 asks for 3's vote in the same term: refused, 3 voted already
    network.node('3').step({ ...requests[0], from: '2' })
    network.processAll()
    expect(network.node('3').status().vote).toBe('1')
    const answers = network.mailbox.filter((m) => m.type === 'MsgVoteResp' && m.to === '2')
    expect(answers.map((m) => m.reject)).toEqual([true])
  })

  it('a vote already counted from a peer stops counting once the candidate distrusts it', () => {
    const network = new TestNetwork(['1', '2', '3', '4', '5'])
    network.node('1').campaign()
    network.processAll()
    network.deliverAll() // the vote requests reach 2..5
    // 1 hears 2's grant, then distrusts 2 before the others' grants arrive; 3 and 4 stay silent
    const grants = network.mailbox.filter((m) => m.type === 'MsgVoteResp' && m.to === '1')
    network.mailbox = []
    network.node('1').step(grants.find((m) => m.from === '2')!)
    network.node('1').distrust('2')
    network.node('1').step(grants.find((m) => m.from === '5')!)
    // 1 (self) + 5 = 2 of 5: not a quorum; with 2's vote it would have been 3
    expect(network.node('1').state).toBe('candidate')
    network.node('1').step(grants.find((m) => m.from === '3')!)
    expect(network.node('1').state).toBe('leader')
  })
})

describe("a distrusted leader's messages are dropped", () => {
  it('its appends and heartbeats are ignored; the others commit without the distrusting member', () => {
    const network = new TestNetwork(['1', '2', '3'])
    network.elect('1')
    network.node('1').propose(encode('before'))
    network.stabilize()
    expect(applied(network, '2', 'before')).toBe(true)
    const dropped = network.node('2').status().distrustedDropped
    network.node('2').distrust('1')
    expect(network.node('2').lead).toBe(NONE)
    const sentBefore = sentTo(network, '2', '1').length
    network.node('1').propose(encode('after'))
    network.stabilize()
    network.tick('1', network.heartbeatTicks) // a heartbeat with the new commit index
    network.stabilize()
    expect(holds(network, '3', 'after')).toBe(true)
    expect(applied(network, '1', 'after')).toBe(true) // 1 and 3 are a quorum
    expect(holds(network, '2', 'after')).toBe(false)
    expect(network.node('2').lead).toBe(NONE) // a heartbeat does not make it the leader again
    expect(sentTo(network, '2', '1').length).toBe(sentBefore) // no acknowledgement, no heartbeat answer
    expect(network.node('2').status().distrustedDropped).toBeGreaterThan(dropped + 1)
  })

  it('a follower that distrusts its leader campaigns after its election timeout; the others elect it', () => {
    const network = new TestNetwork(['1', '2', '3'], guarded)
    network.elect('1')
    const term = network.node('1').term
    for (const id of ['2', '3']) network.node(id).distrust('1')
    // 1 keeps sending heartbeats; within two election timeouts (the randomized maximum) 2 or 3 wins
    run(network, 2 * network.electionTicks)
    const leader = network.leaders().find((id) => network.node(id).term > term)
    expect(leader === '2' || leader === '3').toBe(true)
    // the old leader learned of the new term (it does not distrust anyone) and follows
    expect(network.node('1').state).toBe('follower')
    expect(network.node('1').lead).toBe(leader)
    network.node(leader!).propose(encode('new'))
    network.stabilize()
    for (const id of ['2', '3']) expect(applied(network, id, 'new')).toBe(true)
  })

  it('check-quorum: the leader nobody answers steps down by itself', () => {
    for (const distrust of [false, true]) {
      const network = new TestNetwork(['1', '2', '3'], guarded)
      network.elect('1')
      if (distrust) for (const id of ['2', '3']) network.node(id).distrust('1')
      // only 1 ticks (2 and 3 never campaign): its heartbeats reach them, their answers decide
      for (let i = 0; i < 2 * network.electionTicks; i++) {
        network.tick('1')
        network.stabilize()
      }
      expect(network.node('1').state === 'leader').toBe(!distrust)
    }
  })

  it('snapshot chunks and MsgTimeoutNow from a distrusted peer are dropped', () => {
    const network = new TestNetwork(['1', '2', '3'], { snapshotChunkBytes: 4 })
    network.elect('1')
    network.node('1').propose(encode('a'))
    network.stabilize()
    // 1 compacts past what 3 holds, so 3 needs a snapshot
    network.crash('3')
    network.node('1').propose(encode('b'))
    network.stabilize()
    const applied1 = network.node('1').log.applied
    network.member('1').storage.createSnapshot(applied1, network.node('1').confState(), encode('snap'))
    network.member('1').storage.compact(applied1)
    network.start('3')
    network.node('3').distrust('1')
    network.tick('1', network.heartbeatTicks)
    network.stabilize()
    expect(network.member('3').storage.snapshot().metadata.index).toBe(0)
    // a transfer to 2: 2 distrusts 1, so its MsgTimeoutNow is dropped and 2 stays a follower
    network.node('2').distrust('1')
    network.node('1').transferLeadership('2')
    network.stabilize()
    expect(network.node('2').state).toBe('follower')
    expect(network.node('2').term).toBe(network.node('1').term)
  })
})

describe('a lying follower that distrusts an honest leader', () => {
  it('cannot disrupt the group with pre-vote and check-quorum; without them it deposes the leader', () => {
    for (const guards of [true, false]) {
      const network = new TestNetwork(['1', '2', '3'], { preVote: guards, checkQuorum: guards })
      network.elect('1')
      const term = network.node('1').term
      network.node('2').distrust('1')
      run(network, 6 * network.electionTicks)
      if (guards) {
        expect(network.leaders()).toEqual(['1'])
        expect(network.node('1').term).toBe(term)
        expect(network.node('3').term).toBe(term)
        expect(network.node('3').lead).toBe('1')
      } else {
        expect(network.node('3').term).toBeGreaterThan(term) // 2's elections moved the group's term
      }
    }
  })
})

describe('a distrusted ex-leader never leads again', () => {
  it('with the new leader down, the liar cannot win; the group goes on once the leader is back', () => {
    const network = new TestNetwork(['1', '2', '3'], guarded)
    network.elect('1')
    for (const id of ['2', '3']) network.node(id).distrust('1')
    run(network, 2 * network.electionTicks)
    const leader = network.leaders().find((id) => id !== '1')!
    const other = leader === '2' ? '3' : '2'
    // 1's log is as up to date as the others' (nothing proposed since the new leader's empty entry)
    expect(network.node('1').log.lastIndex()).toBe(network.node(other).log.lastIndex())
    network.crash(leader)
    for (let round = 0; round < 10 * network.electionTicks; round++) {
      for (const id of ['1', other]) network.tick(id)
      network.stabilize(20)
      expect(network.node('1').state).not.toBe('leader')
      expect(network.node(other).state).not.toBe('leader') // it needs 1's vote, which it does not hear
    }
    expect(network.node('1').state).toBe('pre-candidate') // it tried
    network.start(leader) // a restart trusts again, but the others still distrust 1
    run(network, 4 * network.electionTicks)
    expect(network.leaders().length).toBe(1)
    expect(network.leaders()[0]).not.toBe('1')
  })

  it('control: without distrust the same schedule elects the up-to-date ex-leader', () => {
    const network = new TestNetwork(['1', '2', '3'], guarded)
    network.elect('1')
    network.isolate('2', '3') // instead of distrust, 2 and 3 stop hearing 1
    run(network, 2 * network.electionTicks)
    const leader = network.leaders().find((id) => id !== '1' && network.node(id).term > 1)!
    network.heal()
    run(network, 1) // 1 learns of the new term and follows
    const other = leader === '2' ? '3' : '2'
    network.crash(leader)
    let won = false
    for (let round = 0; round < 10 * network.electionTicks && !won; round++) {
      for (const id of ['1', other]) network.tick(id)
      network.stabilize(20)
      won = network.leaders().length > 0
    }
    expect(won).toBe(true)
  })
})

describe('a leader that distrusts a follower', () => {
  it("no longer counts its acknowledgements: an entry it alone would have committed doesn't", () => {
    for (const distrust of [false, true]) {
      const network = new TestNetwork(['1', '2', '3'])
      network.elect('1')
      if (distrust) network.node('1').distrust('3')
      if (distrust) expect(network.node('1').status().progress['3'].match).toBe(0)
      network.crash('2')
      network.node('1').propose(encode('x'))
      network.stabilize()
      expect(holds(network, '3', 'x')).toBe(true)
      expect(applied(network, '1', 'x')).toBe(!distrust)
    }
  })

  it('refuses to transfer leadership to it', () => {
    const network = new TestNetwork(['1', '2', '3'])
    network.elect('1')
    network.node('1').distrust('2')
    network.node('1').transferLeadership('2')
    network.stabilize()
    expect(network.node('1').status().leadTransferee).toBe(NONE)
    expect(network.leaders()).toEqual(['1'])
  })
})

describe('edge cases', () => {
  it('a member never distrusts itself; distrusting twice or a stranger is harmless', () => {
    const network = new TestNetwork(['1', '2', '3'])
    network.elect('1')
    expect(network.node('1').distrust('1')).toBe(false)
    expect(network.node('1').distrust('')).toBe(false)
    expect(network.node('1').distrust('9')).toBe(true)
    expect(network.node('1').distrust('9')).toBe(false)
    expect(network.node('1').status().distrusted).toEqual(['9'])
    network.node('1').propose(encode('x'))
    network.stabilize()
    expect(network.leaders()).toEqual(['1'])
    for (const id of ['1', '2', '3']) expect(applied(network, id, 'x')).toBe(true)
  })
})
