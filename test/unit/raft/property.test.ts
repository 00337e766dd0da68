// A fast-check property test of the Raft core against a naive model of what consensus must look
// like from outside: one append-only sequence of proposals. Random schedules of ticks, deliveries
// out of order, drops, duplicates, proposals, crashes, restarts and compactions are run on a real
// in-memory group; every member's applied entries must always be a prefix of that one sequence,
// hold only proposed values, each at most once, and after healing every member converges to it.
// With distrust injected (RaftNode.distrust) the same must hold; with a lying member whose 'LIE'
// proposals the others refuse as the runner's guard does (appendCheck), no member may ever apply a
// lie and no honest member's log may ever hold one.
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { appendCheck } from '../../../protocols/raft/runner.js'
import { type Message, ProposalDroppedError } from '../../../protocols/raft/types.js'
import { decode, encode, TestNetwork } from './network.js'

type Command =
  | { kind: 'tick'; member: number; times: number }
  | { kind: 'deliver'; pick: number }
  | { kind: 'deliver-all' }
  | { kind: 'drop'; pick: number }
  | { kind: 'duplicate'; pick: number }
  | { kind: 'propose'; member: number }
  | { kind: 'crash'; member: number }
  | { kind: 'restart'; member: number }
  | { kind: 'compact'; member: number }
  | { kind: 'distrust'; member: number; peer: number }
  | { kind: 'lie' }

const member = fc.nat(4)
const baseCommands = [
  {
    weight: 4,
    arbitrary: fc.record({
      kind: fc.constant('tick' as const),
      member,
      times: fc.integer({ min: 1, max: 15 }),
    }),
  },
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('deliver' as const), pick: fc.nat() }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('deliver-all' as const) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('drop' as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('duplicate' as const), pick: fc.nat() }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('propose' as const), member }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('crash' as const), member }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('restart' as const), member }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('compact' as const), member }) },
] as const
const command: fc.Arbitrary<Command> = fc.oneof(...baseCommands)
const distrustCommand = fc.record({ kind: fc.constant('distrust' as const), member, peer: member })
/** Distrust between any two members, at random. */
const commandWithDistrust: fc.Arbitrary<Command> = fc.oneof(...baseCommands, {
  weight: 1,
  arbitrary: distrustCommand,
})
/** A liar (member 1) that proposes lies, and honest members that may distrust it without evidence. */
const commandWithLiar: fc.Arbitrary<Command> = fc.oneof(
  ...baseCommands,
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('lie' as const) }) },
  { weight: 1, arbitrary: distrustCommand },
)

interface RunOptions {
  preVote: boolean
  checkQuorum: boolean
  /** 'random': distrust commands between any members; 'liar': member 1 lies and is distrusted. */
  distrust?: 'random' | 'liar'
}

const LIAR = '1'
const isLie = (text: string) => text.startsWith('LIE')

function run(size: number, commands: Command[], options: RunOptions): void {
  const ids = Array.from({ length: size }, (_, i) => String(i + 1))
  const network = new TestNetwork(ids, {
    preVote: options.preVote,
    checkQuorum: options.checkQuorum,
    messageBytesMax: 64,
    inflightMessagesMax: 4,
    snapshotChunkBytes: 8,
  })
  const liar = options.distrust === 'liar'
  const honest = ids.filter((id) => !liar || id !== LIAR)
  /**
   * An honest member's guard, as the runner's: an append that would step lies into its log is
   * dropped and its sender distrusted (the delivery filter).
   */
  const guard = (m: Message): boolean => {
    if (!liar || m.to === LIAR) return true
    const node = network.member(m.to).node
    if (!node) return true
    const check = appendCheck(node, m)
    if (check.action === 'validate' && check.entries.some((entry) => isLie(decode(entry.data)))) {
      node.distrust(m.from)
      return false
    }
    return true
  }
  network.filter = guard
  const proposed = new Set<string>()
  /** The naive model: the one sequence every member must agree on, index -> value. */
  const sequence = new Map<number, string>()
  let counter = 0

  const check = () => {
    for (const m of network.members.values()) {
      const seen = new Set<string>()
      let previous = 0
      for (const entry of m.applied) {
        expect(entry.index, `member ${m.id} applies in index order`).toBeGreaterThan(previous)
        previous = entry.index
        const value = entry.type === 'conf' ? `conf:${decode(entry.data)}` : decode(entry.data)
        const known = sequence.get(entry.index)
        if (known === undefined) sequence.set(entry.index, value)
        else expect(value, `member ${m.id} index ${entry.index}`).toBe(known)
        if (entry.type === 'normal' && value !== '') {
          expect(isLie(value), `member ${m.id} applied the lie ${value}`).toBe(false)
          expect(proposed.has(value), `applied value ${value} was proposed`).toBe(true)
          expect(seen.has(value), `value ${value} applied once`).toBe(false)
          seen.add(value)
        }
      }
    }
    if (!liar) return
    for (const id of honest) {
      const node = network.member(id).node
      if (!node) continue
      const log = node.log
      if (log.firstIndex() > log.lastIndex()) continue
      for (const entry of log.slice(log.firstIndex(), log.lastIndex() + 1)) {
        expect(isLie(decode(entry.data)), `honest member ${id} holds a lie at ${entry.index}`).toBe(false)
      }
    }
  }

  const restart = (id: string) => {
    const m = network.member(id)
    if (m.node) return
    const snapshotIndex = m.storage.snapshot().metadata.index
    m.applied = m.applied.filter((entry) => entry.index <= snapshotIndex)
    network.start(id, snapshotIndex)
  }

  for (const c of commands) {
    const id = ids[('member' in c ? c.member : 0) % size]
    switch (c.kind) {
      case 'tick':
        if (network.member(id).node) network.tick(id, c.times)
        break
      case 'deliver':
      case 'drop':
      case 'duplicate': {
        if (network.mailbox.length === 0) break
        const index = c.pick % network.mailbox.length
        const [m] = c.kind === 'duplicate' ? [network.mailbox[index]] : network.mailbox.splice(index, 1)
        if (c.kind === 'duplicate') network.mailbox.push(m)
        if (c.kind === 'deliver') {
          const target = network.member(m.to).node
          if (target && guard(m)) {
            target.step(m)
            network.process(m.to)
          }
        }
        break
      }
      case 'deliver-all':
        network.deliverAll()
        break
      case 'propose': {
        const node = network.member(id).node
        if (!node) break
        const value = `v${++counter}`
        try {
          node.propose(encode(value))
          proposed.add(value)
          network.process(id)
        } catch (error) {
          if (!(error instanceof ProposalDroppedError)) throw error
        }
        break
      }
      case 'crash':
        network.crash(id)
        break
      case 'restart':
        restart(id)
        break
      case 'distrust': {
        const node = network.member(id).node
        const peer = ids[c.peer % size]
        // in the liar schedule honest members distrust only the liar (without evidence, as a driver may)
        if (node && (!liar || (id !== LIAR && peer === LIAR))) node.distrust(peer)
        break
      }
      case 'lie': {
        // the liar proposes a lie when it leads, and otherwise campaigns and runs the election
        const node = network.member(LIAR).node
        if (!node) break
        if (node.state === 'leader') {
          node.propose(encode(`LIE${++counter}`))
          network.process(LIAR)
        } else {
          node.campaign()
          network.stabilize(6)
        }
        break
      }
      case 'compact': {
        const m = network.member(id)
        if (!m.node) break
        const applied = m.node.log.applied
        if (applied > m.storage.snapshot().metadata.index) {
          m.storage.createSnapshot(applied, m.node.confState(), encode(`s${applied}`))
          m.storage.compact(applied)
        }
        break
      }
    }
    check()
  }

  // liveness in the model's terms: heal everything; all members converge on one sequence. Random
  // distrust can leave no quorum that trusts itself, so there every member restarts (a restart
  // trusts again); a liar stays distrusted by every honest member, which converge without it.
  for (const id of ids) restart(id)
  if (options.distrust === 'random') {
    for (const id of ids) {
      network.crash(id)
      restart(id)
    }
  }
  if (liar) for (const id of honest) network.node(id).distrust(LIAR)
  network.heal()
  network.filter = guard
  const final = `final${++counter}`
  for (let round = 0; round < 400; round++) {
    for (const id of ids) network.tick(id)
    network.stabilize(20)
    // never the liar: the honest members drop its appends, so its proposal would be lost
    const leader = network
      .leaders()
      .find(
        (id) =>
          honest.includes(id) &&
          network.node(id).term === Math.max(...honest.map((i) => network.node(i).term)),
      )
    if (leader && !proposed.has(final)) {
      try {
        network.node(leader).propose(encode(final))
        proposed.add(final)
      } catch (error) {
        if (!(error instanceof ProposalDroppedError)) throw error
      }
    }
    check()
    const done = honest.every((i) => network.member(i).applied.some((entry) => decode(entry.data) === final))
    if (done) break
  }
  for (const id of honest) {
    expect(
      network.member(id).applied.some((entry) => decode(entry.data) === final),
      `member ${id} applied the final value`,
    ).toBe(true)
  }
  const lengths = honest.map((id) => network.node(id).log.applied)
  expect(new Set(lengths).size, 'every member applied the same prefix').toBe(1)
}

describe('raft against a naive single-sequence model', () => {
  it('three members, pre-vote and check-quorum on', () => {
    fc.assert(
      fc.property(fc.array(command, { maxLength: 120 }), (commands) =>
        run(3, commands, { preVote: true, checkQuorum: true }),
      ),
      {
        numRuns: 150,
      },
    )
  })

  it('five members, pre-vote and check-quorum off', () => {
    fc.assert(
      fc.property(fc.array(command, { maxLength: 120 }), (commands) =>
        run(5, commands, { preVote: false, checkQuorum: false }),
      ),
      {
        numRuns: 100,
      },
    )
  })

  it('three and five members with distrust injected between any two: safety holds', () => {
    for (const [size, preVote] of [
      [3, true],
      [5, false],
    ] as const) {
      fc.assert(
        fc.property(fc.array(commandWithDistrust, { minLength: 30, maxLength: 120 }), (commands) =>
          run(size, commands, { preVote, checkQuorum: preVote, distrust: 'random' }),
        ),
        { numRuns: 60 },
      )
    }
  })

  it('a lying member: its lies are never applied nor held by an honest member; the honest converge', () => {
    for (const [size, preVote] of [
      [3, true],
      [5, true],
      [5, false],
    ] as const) {
      fc.assert(
        fc.property(fc.array(commandWithLiar, { minLength: 30, maxLength: 120 }), (commands) =>
          run(size, commands, { preVote, checkQuorum: preVote, distrust: 'liar' }),
        ),
        { numRuns: 50 },
      )
    }
  })

  it('one member: every accepted proposal is applied, in proposal order', () => {
    fc.assert(
      fc.property(fc.array(fc.string({ minLength: 1, maxLength: 8 }), { maxLength: 50 }), (values) => {
        const network = new TestNetwork(['1'])
        network.elect('1')
        for (const value of values) network.node('1').propose(encode(value))
        network.stabilize()
        const applied = network
          .member('1')
          .applied.filter((e) => e.type === 'normal' && e.data.length > 0)
          .map((e) => decode(e.data))
        expect(applied).toEqual(values)
      }),
      { numRuns: 100 },
    )
  })
})
