// Proves capability records carry the spans of models' blocks a worker serves: they round-trip through
// signing and verification, a record with a span outside its model, a model id that is not a CID, a
// throughput that is not a number, or more spans than CAPABILITY_SPANS_MAX is refused with a named reason,
// records of workers that serve nothing verify with no spans, and each model has its own serving CID.
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'
import { describe, expect, it } from 'vitest'
import {
  InvalidCapabilityRecordError,
  servingCid,
  signCapabilityRecord,
  verifyCapabilityRecord,
} from '../../../protocols/discovery/record.js'
import { CapabilityRecord } from '../../../protocols/wire/capability.js'
import {
  CAPABILITY_SPANS_MAX,
  decodeCapabilityRecord,
  isModelId,
  MODEL_BLOCKS_MAX,
  MODEL_ID_LENGTH_MAX,
} from '../../../protocols/wire/validation/index.js'

const NOW = 1_800_000_000_000
const key = await generateKeyPair('Ed25519')
const peerId = peerIdFromPrivateKey(key)

async function modelId(text: string): Promise<string> {
  return CID.createV1(raw.code, await sha256.digest(new TextEncoder().encode(text))).toString()
}
const MODEL = await modelId('model a')
const OTHER = await modelId('model b')

function record(spans: CapabilityRecord.ServedSpan[]): CapabilityRecord {
  return {
    peerId: peerId.toMultihash().bytes as Uint8Array<ArrayBuffer>,
    backend: CapabilityRecord.Backend.CPU,
    adapterName: 'cpu',
    maxBufferBytes: 1 << 28,
    gflops: 10,
    protocols: ['/shardnet/span/1.0.0'],
    addresses: [],
    seq: 1,
    expiresMs: NOW + 60_000,
    backends: [],
    spans,
  }
}

function span(overrides: Partial<CapabilityRecord.ServedSpan> = {}): CapabilityRecord.ServedSpan {
  return { model: MODEL, start: 0, end: 2, blocks: 4, tokensPerSecond: 120.5, ...overrides }
}

async function outcome(spans: CapabilityRecord.ServedSpan[]): Promise<string> {
  try {
    await verifyCapabilityRecord(await signCapabilityRecord(key, record(spans)), NOW)
    return 'accepted'
  } catch (error) {
    expect(error).toBeInstanceOf(InvalidCapabilityRecordError)
    return (error as InvalidCapabilityRecordError).reason
  }
}

describe('served spans in capability records', () => {
  it('round-trip through signing and verification', async () => {
    const spans = [span(), span({ model: OTHER, start: 3, end: 4, blocks: 4, tokensPerSecond: 0 })]
    const verified = await verifyCapabilityRecord(await signCapabilityRecord(key, record(spans)), NOW)
    expect(verified.spans).toEqual([
      { model: MODEL, start: 0, end: 2, blocks: 4, tokensPerSecond: 120.5 },
      { model: OTHER, start: 3, end: 4, blocks: 4, tokensPerSecond: 0 },
    ])
  })

  it('a record without spans verifies with none, and encodes as one from before the field', async () => {
    const verified = await verifyCapabilityRecord(await signCapabilityRecord(key, record([])), NOW)
    expect(verified.spans).toEqual([])
    const { spans: _none, ...old } = record([])
    expect(CapabilityRecord.encode(old as CapabilityRecord)).toEqual(CapabilityRecord.encode(record([])))
  })

  const bad: Array<[string, Partial<CapabilityRecord.ServedSpan>]> = [
    ['an empty span', { start: 2, end: 2 }],
    ['a reversed span', { start: 3, end: 1 }],
    ['a span past the model', { start: 2, end: 5, blocks: 4 }],
    ['a model of no blocks', { start: 0, end: 0, blocks: 0 }],
    ['a model of too many blocks', { start: 0, end: 1, blocks: MODEL_BLOCKS_MAX + 1 }],
    ['a model id that is not a CID', { model: 'my-model' }],
    ['an empty model id', { model: '' }],
    ['a CIDv0 model id', { model: 'QmYwAPJzv5CZsnA625s3Xf2nemtYgPpHdWEz79ojWnPbdG' }],
    ['a NaN throughput', { tokensPerSecond: Number.NaN }],
    ['a negative throughput', { tokensPerSecond: -1 }],
    ['an infinite throughput', { tokensPerSecond: Number.POSITIVE_INFINITY }],
  ]
  it.each(bad)('refuse %s as bad-spans', async (_, overrides) => {
    expect(await outcome([span(), span(overrides)])).toBe('bad-spans')
  })

  it('bound the number of spans and the model id length', async () => {
    const many = Array.from({ length: CAPABILITY_SPANS_MAX }, (_, i) => span({ start: 0, end: 1 + (i % 4) }))
    expect(await outcome(many)).toBe('accepted')
    expect(await outcome([...many, span()])).toBe('oversized')
    const bytes = CapabilityRecord.encode(record([...many, span()]))
    expect(decodeCapabilityRecord(bytes)).toEqual({ ok: false, reason: 'oversized' })
    expect(isModelId(MODEL)).toBe(true)
    expect(isModelId(`${MODEL}${'a'.repeat(MODEL_ID_LENGTH_MAX)}`)).toBe(false)
  })

  it('give each model its own serving CID, apart from the model id itself', async () => {
    const a = await servingCid(MODEL)
    expect(a.equals(await servingCid(MODEL))).toBe(true)
    expect(a.equals(await servingCid(OTHER))).toBe(false)
    expect(a.toString()).not.toBe(MODEL)
    expect(a.version).toBe(1)
    expect(a.multihash.code).toBe(sha256.code)
  })
})
