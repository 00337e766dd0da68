// Proves capability records are bound to their signer: a record verifies only under its own peer's key
// and DHT key, a tampered, re-signed-by-someone-else or expired record is refused with a named reason, and
// the DHT selector prefers the highest valid seq and never picks an invalid record.
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { describe, expect, it } from 'vitest'
import {
  capabilityCid,
  capabilityKey,
  InvalidCapabilityRecordError,
  shardnetRecordSelector,
  shardnetRecordValidator,
  signCapabilityRecord,
  verifyCapabilityRecord,
} from '../../../protocols/discovery/record.js'
import { CapabilityRecord, SignedCapabilityRecord } from '../../../protocols/wire/capability.js'

const NOW = 1_800_000_000_000
const key = await generateKeyPair('Ed25519')
const peerId = peerIdFromPrivateKey(key)
const otherKey = await generateKeyPair('Ed25519')
const otherPeerId = peerIdFromPrivateKey(otherKey)

function record(overrides: Partial<CapabilityRecord> = {}): CapabilityRecord {
  return {
    peerId: peerId.toMultihash().bytes as Uint8Array<ArrayBuffer>,
    backend: CapabilityRecord.Backend.CPU,
    adapterName: 'reference',
    maxBufferBytes: 1 << 28,
    gflops: 1.5,
    protocols: ['/shardnet/blocks/1.0.0'],
    addresses: [multiaddr('/ip4/127.0.0.1/tcp/4001').bytes as Uint8Array<ArrayBuffer>],
    seq: 1,
    expiresMs: NOW + 60_000,
    backends: [],
    ...overrides,
  }
}

async function reason(promise: Promise<unknown>): Promise<string> {
  try {
    await promise
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidCapabilityRecordError)
    expect((err as Error).name).toBe('InvalidCapabilityRecordError')
    return (err as InvalidCapabilityRecordError).reason
  }
  return 'accepted'
}

describe('capability records', () => {
  it('verify under the signer key and carry the measured values', async () => {
    const value = await signCapabilityRecord(key, record())
    const verified = await verifyCapabilityRecord(value, NOW, peerId.toString())
    expect(verified.peerId.equals(peerId)).toBe(true)
    expect(verified.capability).toBe('cpu')
    expect(verified.gflops).toBe(1.5)
    expect(verified.addresses).toEqual(['/ip4/127.0.0.1/tcp/4001'])
  })

  it('refuse a record signed by another key', async () => {
    // the other peer signs a record that claims to be ours
    const forged = await signCapabilityRecord(otherKey, record())
    expect(await reason(verifyCapabilityRecord(forged, NOW))).toBe('bad-signature')
  })

  it('refuse a tampered record', async () => {
    const value = await signCapabilityRecord(key, record())
    const signed = SignedCapabilityRecord.decode(value)
    const tampered = CapabilityRecord.encode(record({ gflops: 9999 }))
    const bytes = SignedCapabilityRecord.encode({ record: tampered, signature: signed.signature })
    expect(await reason(verifyCapabilityRecord(bytes, NOW))).toBe('bad-signature')
  })

  it('refuse a valid record stored under another peer key, and an expired one', async () => {
    const value = await signCapabilityRecord(key, record())
    const validate = shardnetRecordValidator(() => NOW)
    await expect(validate(capabilityKey(peerId), value)).resolves.toBeUndefined()
    expect(await reason(validate(capabilityKey(otherPeerId), value))).toBe('wrong-peer')
    expect(await reason(verifyCapabilityRecord(value, NOW + 60_001))).toBe('expired')
    expect(await reason(validate(new TextEncoder().encode('/shardnet/other/x'), value))).toBe('wrong-peer')
  })

  it('the selector picks the highest valid seq and never an invalid record', async () => {
    const select = shardnetRecordSelector(() => NOW)
    const low = await signCapabilityRecord(key, record({ seq: 1 }))
    const high = await signCapabilityRecord(key, record({ seq: 5 }))
    const forgedHigher = await signCapabilityRecord(otherKey, record({ seq: 9 }))
    expect(await select(capabilityKey(peerId), [low, high, forgedHigher])).toBe(1)
    expect(await select(capabilityKey(peerId), [forgedHigher, low])).toBe(1)
  })

  it('capability CIDs are fixed, distinct and sha2-256 raw CIDv1', async () => {
    const webgpu = await capabilityCid('webgpu')
    const cpu = await capabilityCid('cpu')
    expect(webgpu.equals(cpu)).toBe(false)
    expect((await capabilityCid('webgpu')).equals(webgpu)).toBe(true)
    expect(webgpu.version).toBe(1)
    expect(webgpu.multihash.code).toBe(0x12)
  })
})
