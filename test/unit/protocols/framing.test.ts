// The shared bounded framing and per-peer budgets: frames of every size round-trip (checked against an
// independent varint encoder), a trickled 0xff prefix is refused after the largest frame's varint
// length, an oversized frame is refused before its payload arrives, a read past its deadline fails,
// buffered bytes are charged to the peer and refunded, and PeerBudgets enforces streams and bytes per
// peer, stricter for strangers, with refusals counted by reason.
import { streamPair, UnexpectedEOFError } from '@libp2p/utils'
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import {
  BudgetExceededError,
  boundedLpStream,
  FrameLengthError,
  FrameTimeoutError,
  isOversizedFrameError,
  lengthPrefixed,
  PeerBudgets,
  type PeerLimits,
  varintBytes,
} from '../../../protocols/wire/framing.js'

const KNOWN: PeerLimits = { streamsPerPeer: 2, bytesInFlightPerPeer: 1000, readTimeoutMs: 5000 }
const STRANGER: PeerLimits = { streamsPerPeer: 1, bytesInFlightPerPeer: 100, readTimeoutMs: 200 }

function budgets(extra: { strangerStreamsMax?: number; bytesInFlightMax?: number } = {}) {
  return new PeerBudgets({
    known: KNOWN,
    stranger: STRANGER,
    isKnown: (p) => p.startsWith('member'),
    ...extra,
  })
}

/** Unsigned LEB128 the textbook way, with BigInt: the oracle for the prefix encoder. */
function leb128(n: number): number[] {
  const out: number[] = []
  let v = BigInt(n)
  do {
    let byte = Number(v & 0x7fn)
    v >>= 7n
    if (v !== 0n) byte |= 0x80
    out.push(byte)
  } while (v !== 0n)
  return out
}

describe('PeerBudgets', () => {
  it('gives known peers and strangers their own stream budgets and counts refusals by reason', () => {
    const b = budgets()
    const m1 = b.acquire('member-a')
    const m2 = b.acquire('member-a')
    expect(m1?.known).toBe(true)
    expect(m2).toBeDefined()
    expect(b.acquire('member-a')).toBeUndefined()
    expect(b.refused.streams).toBe(1)
    const s1 = b.acquire('stranger-x')
    expect(s1?.known).toBe(false)
    expect(s1?.limits).toBe(STRANGER)
    expect(b.acquire('stranger-x')).toBeUndefined()
    expect(b.refused.stranger).toBe(1)
    // another peer has its own budget
    expect(b.acquire('member-b')).toBeDefined()
    expect(b.streams).toBe(4)
    m1?.release()
    m1?.release()
    expect(b.peerUsage('member-a').streams).toBe(1)
    expect(b.acquire('member-a')).toBeDefined()
  })

  it('refuses strangers outright when their stream budget is 0', () => {
    const b = new PeerBudgets({
      known: KNOWN,
      stranger: { streamsPerPeer: 0, bytesInFlightPerPeer: 0, readTimeoutMs: 0 },
      isKnown: () => false,
    })
    expect(b.acquire('anyone')).toBeUndefined()
    expect(b.refused).toMatchObject({ stranger: 1, streams: 0 })
  })

  it('bounds strangers together', () => {
    const b = budgets({ strangerStreamsMax: 2 })
    const a = b.acquire('s1')
    expect(b.acquire('s2')).toBeDefined()
    expect(b.acquire('s3')).toBeUndefined()
    expect(b.acquire('member-a')).toBeDefined()
    a?.release()
    expect(b.acquire('s3')).toBeDefined()
  })

  it('charges bytes per peer over all its streams and in total, refunds on release', () => {
    const b = budgets({ bytesInFlightMax: 1500 })
    const l1 = b.acquire('member-a')!
    const l2 = b.acquire('member-a')!
    expect(l1.charge(600)).toBe(true)
    expect(l2.charge(400)).toBe(true)
    expect(l2.charge(1)).toBe(false)
    expect(b.refused.bytes).toBe(1)
    expect(b.peerUsage('member-a').bytes).toBe(1000)
    l1.refund(100)
    expect(l2.charge(100)).toBe(true)
    const other = b.acquire('member-b')!
    expect(other.charge(600)).toBe(false) // the node's total of 1500 would be passed
    expect(other.charge(500)).toBe(true)
    expect(b.bytesInFlight).toBe(1500)
    l1.release()
    expect(b.bytesInFlight).toBe(1000)
    expect(l1.charge(1)).toBe(false)
    // refunds never go below what the lease charged
    l2.refund(10_000)
    expect(b.peerUsage('member-a')).toEqual({ streams: 1, bytes: 0 })
    expect(b.bytesInFlight).toBe(500)
    const s = b.acquire('stranger')!
    expect(s.charge(101)).toBe(false)
    expect(s.charge(100)).toBe(true)
  })
})

describe('boundedLpStream', () => {
  it('round-trips frames of any size; the prefix is the textbook varint', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.integer({ min: 0, max: 70_000 }), { minLength: 1, maxLength: 6 }),
        async (sizes) => {
          const [outbound, inbound] = await streamPair()
          const writer = boundedLpStream(outbound, 70_000)
          const reader = boundedLpStream(inbound, 70_000)
          const frames = sizes.map((n) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + n) & 0xff))
          await writer.writeV(frames.slice(0, -1))
          await writer.write(frames[frames.length - 1])
          for (const frame of frames) {
            expect((await reader.read()).subarray()).toEqual(frame)
          }
          for (const n of sizes) {
            const prefixed = lengthPrefixed(new Uint8Array(n))
            expect([...prefixed.subarray(0, varintBytes(n))]).toEqual(leb128(n))
          }
          await outbound.close()
          await expect(reader.read()).rejects.toBeInstanceOf(UnexpectedEOFError)
        },
      ),
      { numRuns: 15 },
    )
  })

  it('refuses a trickled 0xff prefix after the largest frame varint length, counted', async () => {
    const b = budgets()
    const lease = b.acquire('member-a')!
    const [outbound, inbound] = await streamPair()
    const reader = boundedLpStream(inbound, 16 << 20, { lease })
    const read = reader.read()
    let settled = false
    read.then(
      () => (settled = true),
      () => (settled = true),
    )
    let sent = 0
    while (sent < 64 && !settled && outbound.status === 'open') {
      outbound.send(new Uint8Array([0xff]))
      sent++
      await new Promise((resolve) => setTimeout(resolve, 5))
    }
    await expect(read).rejects.toBeInstanceOf(FrameLengthError)
    expect(sent).toBeLessThanOrEqual(varintBytes(16 << 20))
    expect(isOversizedFrameError(await read.catch((e) => e))).toBe(true)
    expect(b.refused.oversized).toBe(1)
  })

  it('refuses a frame over the limit from its prefix, before the payload arrives', async () => {
    const [outbound, inbound] = await streamPair()
    const reader = boundedLpStream(inbound, 1000)
    outbound.send(Uint8Array.from(leb128(1001)))
    await expect(reader.read()).rejects.toBeInstanceOf(FrameLengthError)
  })

  it('fails a read past the lease deadline and counts it', async () => {
    const b = budgets()
    const lease = b.acquire('stranger')!
    const [outbound, inbound] = await streamPair()
    const reader = boundedLpStream(inbound, 1000, { lease })
    // half a frame, then nothing
    outbound.send(Uint8Array.from([10, 1, 2, 3]))
    const started = Date.now()
    await expect(reader.read()).rejects.toBeInstanceOf(FrameTimeoutError)
    expect(Date.now() - started).toBeGreaterThanOrEqual(STRANGER.readTimeoutMs - 20)
    expect(b.refused.timeout).toBe(1)
  })

  it('charges buffered bytes and the last frame to the lease, refunds them as frames are read', async () => {
    const b = budgets()
    const lease = b.acquire('member-a')!
    const [outbound, inbound] = await streamPair()
    const reader = boundedLpStream(inbound, 500, { lease })
    const writer = boundedLpStream(outbound, 500)
    await writer.writeV([new Uint8Array(300), new Uint8Array(200)])
    const first = await reader.read()
    expect(first.byteLength).toBe(300)
    // both frames arrived: the first is held by the caller, the second is buffered
    await new Promise((resolve) => setTimeout(resolve, 20))
    expect(lease.bytes).toBe(302 + 202)
    const second = await reader.read()
    expect(second.byteLength).toBe(200)
    expect(lease.bytes).toBe(202)
    lease.release()
    expect(b.bytesInFlight).toBe(0)
  })

  it('aborts the stream when its bytes pass the peer budget', async () => {
    const b = budgets()
    const lease = b.acquire('stranger')!
    const [outbound, inbound] = await streamPair()
    const reader = boundedLpStream(inbound, 1000, { lease })
    outbound.send(Uint8Array.from([leb128(900), new Array(150).fill(7)].flat()))
    await expect(reader.read()).rejects.toBeInstanceOf(BudgetExceededError)
    await new Promise((resolve) => setTimeout(resolve, 20))
    expect(inbound.status).not.toBe('open')
    expect(b.refused.bytes).toBe(1)
    lease.release()
    expect(b.bytesInFlight).toBe(0)
  })

  it('reads a request that was written and closed before the reader existed', async () => {
    const [outbound, inbound] = await streamPair()
    await boundedLpStream(outbound, 100).write(Uint8Array.from([1, 2, 3]))
    await outbound.close()
    await new Promise((resolve) => setTimeout(resolve, 20))
    const reader = boundedLpStream(inbound, 100)
    expect((await reader.read()).subarray()).toEqual(Uint8Array.from([1, 2, 3]))
    await expect(reader.read()).rejects.toBeInstanceOf(UnexpectedEOFError)
  })
})
