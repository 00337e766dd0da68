// Proves capability records are bound to their signer: a record verifies only under its own peer's key
// and DHT key, a tampered, re-signed-by-someone-else or expired record is refused with a named reason, and
// the DHT selector prefers the highest valid seq and never picks an invalid record. Records carry each
// backend's measured figure (bounded and range-checked), and records of workers that predate the
// figures still verify.
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
import { CAPABILITY_BACKENDS_MAX } from '../../../protocols/wire/validation/index.js'

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
    spans: [],
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

  it('carry every backend figure and which one is in use', async () => {
    const backends: CapabilityRecord.BackendFigure[] = [
      {
        backend: CapabilityRecord.Backend.CPU,
        engine: 'native',
        adapterName: 'cpu (OpenBLAS)',
        gflops: 140,
        inUse: true,
      },
      {
        backend: CapabilityRecord.Backend.WEBGPU,
        engine: '',
        adapterName: 'llvmpipe',
        gflops: 11,
        inUse: false,
      },
    ]
    const verified = await verifyCapabilityRecord(await signCapabilityRecord(key, record({ backends })), NOW)
    expect(verified.backends).toEqual([
      { backend: 'cpu', engine: 'native', adapterName: 'cpu (OpenBLAS)', gflops: 140, inUse: true },
      { backend: 'webgpu', adapterName: 'llvmpipe', gflops: 11, inUse: false },
    ])
  })

  it('a record without figures (from a worker that predates them) still verifies', async () => {
    const { backends: _none, ...old } = record()
    // an empty repeated field is not encoded: these are the bytes an older worker signs
    const bytes = CapabilityRecord.encode(old as CapabilityRecord)
    expect(bytes).toEqual(CapabilityRecord.encode(record()))
    const signature = await key.sign(
      new Uint8Array([...new TextEncoder().encode('shardnet/capability-record/1'), ...bytes]),
    )
    const value = SignedCapabilityRecord.encode({
      record: bytes,
      signature: signature as Uint8Array<ArrayBuffer>,
    })
    const verified = await verifyCapabilityRecord(value, NOW)
    expect(verified.backends).toEqual([])
    expect(verified.gflops).toBe(1.5)
  })

  it('refuse bad figures with a named reason', async () => {
    const figure = (overrides: Partial<CapabilityRecord.BackendFigure>): CapabilityRecord.BackendFigure => ({
      backend: CapabilityRecord.Backend.CPU,
      engine: 'native',
      adapterName: 'cpu',
      gflops: 1,
      inUse: false,
      ...overrides,
    })
    const check = async (backends: CapabilityRecord.BackendFigure[]) =>
      reason(verifyCapabilityRecord(await signCapabilityRecord(key, record({ backends })), NOW))
    expect(await check([figure({ inUse: true })])).toBe('accepted')
    expect(await check([figure({ inUse: true }), figure({ inUse: true })])).toBe('bad-backend')
    expect(await check([figure({ backend: CapabilityRecord.Backend.BACKEND_UNSPECIFIED })])).toBe(
      'bad-backend',
    )
    expect(await check([figure({ backend: CapabilityRecord.Backend.WEBGPU })])).toBe('bad-backend')
    expect(await check([figure({ engine: 'Native!' })])).toBe('bad-backend')
    expect(await check([figure({ adapterName: 'x'.repeat(257) })])).toBe('bad-adapter-name')
    expect(await check([figure({ gflops: Number.NaN })])).toBe('bad-numbers')
    expect(await check([figure({ gflops: -1 })])).toBe('bad-numbers')
    expect(await check([figure({ gflops: 1e8 })])).toBe('bad-numbers')
    expect(await check(Array.from({ length: CAPABILITY_BACKENDS_MAX }, () => figure({})))).toBe('accepted')
    expect(await check(Array.from({ length: CAPABILITY_BACKENDS_MAX + 1 }, () => figure({})))).toBe(
      'oversized',
    )
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
