// A fast-check property test of the Raft core against a naive model of what consensus must look
// like from outside: one append-only sequence of proposals. Random schedules of ticks, deliveries
// out of order, drops, duplicates, proposals, crashes, restarts and compactions are run on a real
// in-memory group; every member's applied entries must always be a prefix of that one sequence,
// hold only proposed values, each at most once, and after healing every member converges to it.
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { ProposalDroppedError } from '../../../protocols/raft/types.js'
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

const member = fc.nat(4)
const command: fc.Arbitrary<Command> = fc.oneof(
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
)

function run(size: number, commands: Command[], options: { preVote: boolean; checkQuorum: boolean }): void {
  const ids = Array.from({ length: size }, (_, i) => String(i + 1))
  const network = new TestNetwork(ids, {
    ...options,
    messageBytesMax: 64,
    inflightMessagesMax: 4,
    snapshotChunkBytes: 8,
  })
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
          expect(proposed.has(value), `applied value ${value} was proposed`).toBe(true)
          expect(seen.has(value), `value ${value} applied once`).toBe(false)
          seen.add(value)
        }
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
          if (target) {
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

  // liveness in the model's terms: heal everything; all members converge on one sequence
  for (const id of ids) restart(id)
  network.heal()
  const final = `final${++counter}`
  for (let round = 0; round < 400; round++) {
    for (const id of ids) network.tick(id)
    network.stabilize(20)
    const leader = network
      .leaders()
      .find((id) => network.node(id).term === Math.max(...ids.map((i) => network.node(i).term)))
    if (leader && !proposed.has(final)) {
      try {
        network.node(leader).propose(encode(final))
        proposed.add(final)
      } catch (error) {
        if (!(error instanceof ProposalDroppedError)) throw error
      }
    }
    check()
    const done = ids.every((i) => network.member(i).applied.some((entry) => decode(entry.data) === final))
    if (done) break
  }
  for (const id of ids) {
    expect(
      network.member(id).applied.some((entry) => decode(entry.data) === final),
      `member ${id} applied the final value`,
    ).toBe(true)
  }
  const lengths = ids.map((id) => network.node(id).log.applied)
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
