// Proves the wire layer refuses what it must: every decode function turns over-limit, garbage and
// out-of-range input into a reason (never a throw), table tests pin each reason, and property tests feed
// random bytes and random field values to every decoder and validator.
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import fc from 'fast-check'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { identity } from 'multiformats/hashes/identity'
import { sha256 } from 'multiformats/hashes/sha2'
import { describe, expect, it } from 'vitest'
import { BlockChunk, BlockRequest, BlockResponse } from '../../../protocols/wire/blocks.js'
import { CapabilityRecord, SignedCapabilityRecord } from '../../../protocols/wire/capability.js'
import { TaskAnnouncement } from '../../../protocols/wire/tasks.js'
import {
  ANNOUNCEMENT_REJECT_REASONS,
  BLOCK_FRAME_REJECT_REASONS,
  BLOCK_REQUEST_BYTES_MAX,
  CAPABILITY_ADDRESSES_MAX,
  CAPABILITY_PROTOCOLS_MAX,
  CAPABILITY_REJECT_REASONS,
  decodeBlockChunk,
  decodeBlockRequest,
  decodeBlockResponse,
  decodeCapabilityRecord,
  decodeSignedCapabilityRecord,
  decodeTaskAnnouncement,
  TASK_ANNOUNCEMENT_BYTES_MAX,
  validateBlockChunk,
  validateBlockRequest,
  validateBlockResponse,
  validateCapabilityRecord,
  validateTaskAnnouncement,
} from '../../../protocols/wire/validation/index.js'

const NOW = 1_800_000_000_000
const key = await generateKeyPair('Ed25519')
const peerId = peerIdFromPrivateKey(key)
const taskCid = CID.createV1(raw.code, await sha256.digest(new TextEncoder().encode('spec')))

function announcement(overrides: Partial<TaskAnnouncement> = {}): TaskAnnouncement {
  return {
    taskCid: taskCid.bytes as Uint8Array<ArrayBuffer>,
    kind: TaskAnnouncement.Kind.TRAIN,
    requirements: { backend: TaskAnnouncement.Backend.WEBGPU, minMemoryBytes: 1 << 20, minGflops: 2.5 },
    groups: 2,
    groupSize: 3,
    submitter: peerId.toMultihash().bytes as Uint8Array<ArrayBuffer>,
    createdMs: NOW - 1000,
    expiresMs: NOW + 60_000,
    nonce: new Uint8Array(16).fill(7),
    ...overrides,
  }
}

function capability(overrides: Partial<CapabilityRecord> = {}): CapabilityRecord {
  return {
    peerId: peerId.toMultihash().bytes as Uint8Array<ArrayBuffer>,
    backend: CapabilityRecord.Backend.WEBGPU,
    adapterName: 'llvmpipe (LLVM 19.1.7, 256 bits)',
    maxBufferBytes: 2 ** 31,
    gflops: 12.5,
    protocols: ['/shardnet/blocks/1.0.0'],
    addresses: [multiaddr('/ip4/127.0.0.1/tcp/4001').bytes as Uint8Array<ArrayBuffer>],
    seq: 3,
    expiresMs: NOW + 600_000,
    backends: [],
    spans: [],
    ...overrides,
  }
}

describe('TaskAnnouncement', () => {
  it('round-trips and validates a good announcement', () => {
    const decoded = decodeTaskAnnouncement(TaskAnnouncement.encode(announcement()))
    expect(decoded.ok).toBe(true)
    if (!decoded.ok) return
    expect(validateTaskAnnouncement(decoded.value, NOW)).toBeUndefined()
    expect(decoded.value.requirements?.minGflops).toBe(2.5)
  })

  it('refuses input over 4 KiB before decoding it', () => {
    // a syntactically valid announcement padded past the limit with a long nonce
    const bytes = TaskAnnouncement.encode(
      announcement({ nonce: new Uint8Array(TASK_ANNOUNCEMENT_BYTES_MAX) }),
    )
    expect(bytes.byteLength).toBeGreaterThan(TASK_ANNOUNCEMENT_BYTES_MAX)
    expect(decodeTaskAnnouncement(bytes)).toEqual({ ok: false, reason: 'oversized' })
  })

  it('turns garbage into "malformed"', () => {
    expect(decodeTaskAnnouncement(new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff]))).toEqual({
      ok: false,
      reason: 'malformed',
    })
  })

  const otherHashCid = CID.createV1(raw.code, identity.digest(new Uint8Array(4)))
  const cases: Array<[string, Partial<TaskAnnouncement>, string]> = [
    ['a CID that is not sha2-256', { taskCid: otherHashCid.bytes as Uint8Array<ArrayBuffer> }, 'bad-cid'],
    ['bytes that are not a CID', { taskCid: new Uint8Array([1, 2, 3]) }, 'bad-cid'],
    ['no kind', { kind: TaskAnnouncement.Kind.KIND_UNSPECIFIED }, 'bad-kind'],
    ['zero groups', { groups: 0 }, 'bad-groups'],
    ['65 groups', { groups: 65 }, 'bad-groups'],
    ['a group of 16', { groupSize: 16 }, 'bad-groups'],
    [
      'NaN GFLOP/s',
      { requirements: { backend: TaskAnnouncement.Backend.ANY, minMemoryBytes: 0, minGflops: NaN } },
      'bad-requirements',
    ],
    [
      'negative GFLOP/s',
      { requirements: { backend: TaskAnnouncement.Backend.ANY, minMemoryBytes: 0, minGflops: -1 } },
      'bad-requirements',
    ],
    ['a submitter that is no peer id', { submitter: new Uint8Array([9, 9, 9]) }, 'bad-submitter'],
    ['a 4-byte nonce', { nonce: new Uint8Array(4) }, 'bad-nonce'],
    ['expiry before creation', { createdMs: NOW, expiresMs: NOW - 1 }, 'bad-times'],
    ['a two-day lifetime', { createdMs: NOW, expiresMs: NOW + 48 * 3600_000 }, 'bad-times'],
    ['an expired announcement', { createdMs: NOW - 60_000, expiresMs: NOW - 1 }, 'expired'],
    [
      'a creation time a minute ahead',
      { createdMs: NOW + 60_000, expiresMs: NOW + 120_000 },
      'from-the-future',
    ],
  ]
  it.each(cases)('refuses %s', (_, overrides, reason) => {
    // through the encoder and decoder, as a peer would send it
    const decoded = decodeTaskAnnouncement(TaskAnnouncement.encode(announcement(overrides)))
    expect(decoded.ok).toBe(true)
    if (!decoded.ok) return
    expect(validateTaskAnnouncement(decoded.value, NOW)).toBe(reason)
  })

  it('never throws on random bytes, and every refusal has a listed reason', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 5000 }), (bytes) => {
        const decoded = decodeTaskAnnouncement(bytes)
        if (!decoded.ok) return ANNOUNCEMENT_REJECT_REASONS.includes(decoded.reason)
        const reason = validateTaskAnnouncement(decoded.value, NOW)
        return reason === undefined || ANNOUNCEMENT_REJECT_REASONS.includes(reason)
      }),
      { numRuns: 2000 },
    )
  })

  it('never accepts out-of-range field values', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 100 }),
        fc.integer({ min: 0, max: 30 }),
        fc.double(),
        fc.integer({ min: 0, max: 40 }),
        (groups, groupSize, minGflops, nonceBytes) => {
          const a = announcement({
            groups,
            groupSize,
            nonce: new Uint8Array(nonceBytes),
            requirements: { backend: TaskAnnouncement.Backend.CPU, minMemoryBytes: 0, minGflops },
          })
          const decoded = decodeTaskAnnouncement(TaskAnnouncement.encode(a))
          if (!decoded.ok) return true
          const valid = validateTaskAnnouncement(decoded.value, NOW) === undefined
          const inRange =
            groups >= 1 &&
            groups <= 64 &&
            groupSize >= 1 &&
            groupSize <= 15 &&
            Number.isFinite(minGflops) &&
            minGflops >= 0 &&
            minGflops <= 1e7 &&
            nonceBytes >= 8 &&
            nonceBytes <= 32
          return valid === inRange
        },
      ),
      { numRuns: 1000 },
    )
  })
})

describe('CapabilityRecord', () => {
  it('round-trips and validates a good record', () => {
    const decoded = decodeCapabilityRecord(CapabilityRecord.encode(capability()))
    expect(decoded.ok).toBe(true)
    if (decoded.ok) expect(validateCapabilityRecord(decoded.value, NOW)).toBeUndefined()
  })

  it('refuses more repeated entries than the protons limits allow', () => {
    const tooManyProtocols = capability({
      protocols: Array.from({ length: CAPABILITY_PROTOCOLS_MAX + 1 }, (_, i) => `/p/${i}`),
    })
    expect(decodeCapabilityRecord(CapabilityRecord.encode(tooManyProtocols))).toEqual({
      ok: false,
      reason: 'oversized',
    })
    const address = multiaddr('/ip4/127.0.0.1/tcp/1').bytes as Uint8Array<ArrayBuffer>
    const tooManyAddresses = capability({ addresses: Array(CAPABILITY_ADDRESSES_MAX + 1).fill(address) })
    expect(decodeCapabilityRecord(CapabilityRecord.encode(tooManyAddresses))).toEqual({
      ok: false,
      reason: 'oversized',
    })
  })

  it('refuses a signed record over 8 KiB and a missing signature', () => {
    const big = SignedCapabilityRecord.encode({ record: new Uint8Array(9000), signature: new Uint8Array(64) })
    expect(decodeSignedCapabilityRecord(big)).toEqual({ ok: false, reason: 'oversized' })
    const unsigned = SignedCapabilityRecord.encode({
      record: CapabilityRecord.encode(capability()),
      signature: new Uint8Array(0),
    })
    expect(decodeSignedCapabilityRecord(unsigned)).toEqual({ ok: false, reason: 'bad-signature' })
  })

  const cases: Array<[string, Partial<CapabilityRecord>, string]> = [
    ['no backend', { backend: CapabilityRecord.Backend.BACKEND_UNSPECIFIED }, 'bad-backend'],
    ['a 300-character adapter name', { adapterName: 'x'.repeat(300) }, 'bad-adapter-name'],
    ['infinite GFLOP/s', { gflops: Number.POSITIVE_INFINITY }, 'bad-numbers'],
    ['a protocol id without a slash', { protocols: ['shardnet'] }, 'bad-protocols'],
    [
      'an address that is not a multiaddr',
      { addresses: [new Uint8Array([0xff, 0xff, 0xff])] },
      'bad-addresses',
    ],
    ['an expired record', { expiresMs: NOW - 1 }, 'expired'],
    ['an expiry a month away', { expiresMs: NOW + 30 * 24 * 3600_000 }, 'bad-expiry'],
    ['a peer id that is not one', { peerId: new Uint8Array([1, 2]) }, 'bad-peer-id'],
  ]
  it.each(cases)('refuses %s', (_, overrides, reason) => {
    const decoded = decodeCapabilityRecord(CapabilityRecord.encode(capability(overrides)))
    expect(decoded.ok).toBe(true)
    if (decoded.ok) expect(validateCapabilityRecord(decoded.value, NOW)).toBe(reason)
  })

  it('never throws on random bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 9000 }), (bytes) => {
        for (const decoded of [decodeSignedCapabilityRecord(bytes), decodeCapabilityRecord(bytes)]) {
          if (!decoded.ok) {
            if (!CAPABILITY_REJECT_REASONS.includes(decoded.reason)) return false
          } else if ('backend' in decoded.value) {
            const reason = validateCapabilityRecord(decoded.value, NOW)
            if (reason !== undefined && !CAPABILITY_REJECT_REASONS.includes(reason)) return false
          }
        }
        return true
      }),
      { numRuns: 2000 },
    )
  })
})

describe('block frames', () => {
  it('accepts a good request, header and chunk', () => {
    const request = decodeBlockRequest(
      BlockRequest.encode({ cid: taskCid.bytes as Uint8Array<ArrayBuffer>, offset: 0 }),
    )
    expect(request.ok && validateBlockRequest(request.value)).toBeUndefined()
    const header = decodeBlockResponse(
      BlockResponse.encode({ status: BlockResponse.Status.OK, size: 10, chunkBytes: 4 }),
    )
    expect(header.ok && validateBlockResponse(header.value)).toBeUndefined()
    const chunk = decodeBlockChunk(BlockChunk.encode({ index: 1, offset: 4, length: 4 }))
    expect(
      chunk.ok && validateBlockChunk(chunk.value, { index: 1, offset: 4, chunkBytes: 4, size: 10 }),
    ).toBeUndefined()
  })

  it('refuses over-limit frames before decoding them', () => {
    expect(decodeBlockRequest(new Uint8Array(BLOCK_REQUEST_BYTES_MAX + 1))).toEqual({
      ok: false,
      reason: 'oversized',
    })
    expect(decodeBlockResponse(new Uint8Array(65))).toEqual({ ok: false, reason: 'oversized' })
    // a chunk header padded with an unknown field past 64 bytes
    const bigHeader = new Uint8Array([
      ...BlockChunk.encode({ index: 0, offset: 0, length: 1 }),
      0x22,
      70,
      ...new Uint8Array(70),
    ])
    expect(decodeBlockChunk(bigHeader)).toEqual({ ok: false, reason: 'oversized' })
  })

  it('refuses a header announcing more than the limit, and chunks out of order or past the end', () => {
    const header = { status: BlockResponse.Status.OK, size: 2 ** 30, chunkBytes: 1024 }
    expect(validateBlockResponse(header)).toBe('too-large')
    expect(validateBlockResponse({ ...header, size: 100 }, 50)).toBe('too-large')
    expect(validateBlockResponse({ ...header, size: 100, chunkBytes: 0 })).toBe('bad-chunk')
    const expected = { index: 2, offset: 8, chunkBytes: 4, size: 10 }
    expect(validateBlockChunk({ index: 3, offset: 8, length: 2 }, expected)).toBe('bad-chunk')
    expect(validateBlockChunk({ index: 2, offset: 4, length: 2 }, expected)).toBe('bad-chunk')
    expect(validateBlockChunk({ index: 2, offset: 8, length: 3 }, expected)).toBe('bad-chunk')
    expect(validateBlockChunk({ index: 2, offset: 8, length: 0 }, expected)).toBe('bad-chunk')
    expect(validateBlockChunk({ index: 2, offset: 8, length: 5 }, { ...expected, size: 100 })).toBe(
      'bad-chunk',
    )
    expect(validateBlockChunk({ index: 2, offset: 8, length: 2 }, expected)).toBeUndefined()
  })

  it('refuses a request for a CID it could not verify', () => {
    const other = CID.createV1(raw.code, identity.digest(new Uint8Array(8)))
    const request = decodeBlockRequest(
      BlockRequest.encode({ cid: other.bytes as Uint8Array<ArrayBuffer>, offset: 0 }),
    )
    expect(request.ok && validateBlockRequest(request.value)).toBe('bad-cid')
  })

  it('never throws on random bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 400 }), (bytes) => {
        const results = [decodeBlockRequest(bytes), decodeBlockResponse(bytes), decodeBlockChunk(bytes)]
        return results.every((r) => r.ok || BLOCK_FRAME_REJECT_REASONS.includes(r.reason))
      }),
      { numRuns: 2000 },
    )
  })
})
