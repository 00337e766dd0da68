// Proves the Raft wire codec is faithful and strict: every message kind survives toWire -> protobuf
// -> fromWire unchanged (property test), fields out of range or inconsistent are refused at the
// edge, and decoding with the transport's limits refuses frames with too many messages or entries.
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { fromWire, toWire } from '../../../protocols/raft/transport.js'
import { type Message, type MessageType, message } from '../../../protocols/raft/types.js'
import { RaftFrame, RaftMessage } from '../../../protocols/wire/raft.js'

const wireTypes: MessageType[] = [
  'MsgApp',
  'MsgAppResp',
  'MsgVote',
  'MsgVoteResp',
  'MsgPreVote',
  'MsgPreVoteResp',
  'MsgSnap',
  'MsgSnapResp',
  'MsgHeartbeat',
  'MsgHeartbeatResp',
  'MsgTimeoutNow',
]

const index = fc.integer({ min: 0, max: 2 ** 40 })
const arbitraryMessage: fc.Arbitrary<Message> = fc
  .record({
    type: fc.constantFrom(...wireTypes),
    term: fc.integer({ min: 1, max: 2 ** 40 }),
    logTerm: index,
    index,
    commit: index,
    reject: fc.boolean(),
    rejectHint: index,
    transfer: fc.boolean(),
    entryData: fc.array(fc.uint8Array({ maxLength: 16 }), { maxLength: 4 }),
    snapshotData: fc.uint8Array({ maxLength: 16 }),
    voters: fc.array(fc.string({ minLength: 1, maxLength: 8 }), { maxLength: 4 }),
  })
  .map((r) => {
    const entries =
      r.type === 'MsgApp'
        ? r.entryData.map((data, i) => ({
            term: r.term,
            index: r.index + 1 + i,
            type: i % 2 ? ('conf' as const) : ('normal' as const),
            data,
          }))
        : []
    const snapshot =
      r.type === 'MsgSnap'
        ? {
            metadata: { index: r.index + 1, term: r.logTerm, confState: { voters: r.voters } },
            offset: 0,
            totalBytes: r.snapshotData.length,
            data: r.snapshotData,
          }
        : undefined
    const { entryData: _entryData, snapshotData: _snapshotData, voters: _voters, ...fields } = r
    return message({ ...fields, from: 'a', to: 'b', entries, snapshot })
  })

function roundTrip(m: Message): Message | undefined {
  return fromWire(RaftFrame.decode(RaftFrame.encode({ group: 'g', messages: [toWire(m)] })).messages[0])
}

describe('raft wire codec', () => {
  it('round-trips every message kind', () => {
    fc.assert(
      fc.property(arbitraryMessage, (m) => {
        const back = roundTrip(m)
        expect(back).toEqual({ ...m, snapshot: m.snapshot })
      }),
      { numRuns: 300 },
    )
  })

  it.each([
    ['a zero term', message({ type: 'MsgHeartbeat', from: 'a', to: 'b', term: 0 })],
    [
      'entries that do not follow the append index',
      message({
        type: 'MsgApp',
        from: 'a',
        to: 'b',
        term: 2,
        index: 5,
        entries: [{ term: 2, index: 7, type: 'normal', data: new Uint8Array() }],
      }),
    ],
    [
      'an entry of a term above the message term',
      message({
        type: 'MsgApp',
        from: 'a',
        to: 'b',
        term: 2,
        index: 5,
        entries: [{ term: 3, index: 6, type: 'normal', data: new Uint8Array() }],
      }),
    ],
    [
      'entries on a message that is not an append',
      message({
        type: 'MsgHeartbeat',
        from: 'a',
        to: 'b',
        term: 2,
        index: 5,
        entries: [{ term: 2, index: 6, type: 'normal', data: new Uint8Array() }],
      }),
    ],
    ['a snapshot message without a snapshot', message({ type: 'MsgSnap', from: 'a', to: 'b', term: 2 })],
    [
      'a snapshot chunk past its total size',
      message({
        type: 'MsgSnap',
        from: 'a',
        to: 'b',
        term: 2,
        snapshot: {
          metadata: { index: 4, term: 1, confState: { voters: [] } },
          offset: 3,
          totalBytes: 4,
          data: new Uint8Array(2),
        },
      }),
    ],
  ])('refuses %s', (_, m) => {
    expect(roundTrip(m)).toBeUndefined()
  })

  it('refuses local message types and unknown types', () => {
    expect(
      fromWire({
        ...toWire(message({ type: 'MsgApp', from: 'a', to: 'b', term: 1 })),
        type: RaftMessage.Type.UNKNOWN,
      }),
    ).toBeUndefined()
    expect(() => toWire(message({ type: 'MsgHup', from: 'a', to: 'b' }))).toThrow()
    expect(
      fromWire({ ...toWire(message({ type: 'MsgApp', from: 'a', to: 'b', term: 1 })), index: 2 ** 60 }),
    ).toBeUndefined()
  })

  it('decoding with limits refuses too many messages or entries', () => {
    const heartbeat = toWire(message({ type: 'MsgHeartbeat', from: 'a', to: 'b', term: 1 }))
    const frame = RaftFrame.encode({ group: 'g', messages: Array.from({ length: 5 }, () => heartbeat) })
    expect(() => RaftFrame.decode(frame, { limits: { messages: 4 } })).toThrowError(
      expect.objectContaining({ name: 'MaxLengthError' }),
    )
    expect(RaftFrame.decode(frame, { limits: { messages: 5 } }).messages).toHaveLength(5)
    const entries = Array.from({ length: 3 }, (_, i) => ({
      term: 1,
      index: i + 1,
      type: 'normal' as const,
      data: new Uint8Array(),
    }))
    const append = RaftFrame.encode({
      group: 'g',
      messages: [toWire(message({ type: 'MsgApp', from: 'a', to: 'b', term: 1, entries }))],
    })
    expect(() => RaftFrame.decode(append, { limits: { messages$: { entries: 2 } } })).toThrowError(
      expect.objectContaining({ name: 'MaxLengthError' }),
    )
  })
})
