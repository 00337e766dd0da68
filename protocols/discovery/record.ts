/**
 * Signed capability records and the well-known capability CIDs: pure functions, no IO.
 *
 * A record lives in the DHT under `/shardnet/cap/<peerId base58>` as an encoded SignedCapabilityRecord.
 * The signature is made by the worker's own key (the one its peer id names) over
 * `"shardnet/capability-record/1" || record bytes`, so nobody can publish a record for someone else.
 * kad-dht picks its validator and selector by the key's first segment (`shardnet`): see
 * {@link shardnetDhtValidators} and {@link shardnetDhtSelectors}, which the host's kadDHT config must use.
 */
import type { PeerId, PrivateKey } from '@libp2p/interface'
import { multiaddr } from '@multiformats/multiaddr'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'
import { fromString as uint8ArrayFromString } from 'uint8arrays/from-string'
import { toString as uint8ArrayToString } from 'uint8arrays/to-string'
import { CapabilityRecord, SignedCapabilityRecord } from '../wire/capability.js'
import {
  type CapabilityRejectReason,
  decodeCapabilityRecord,
  decodeSignedCapabilityRecord,
  peerIdFromBytes,
  validateCapabilityRecord,
} from '../wire/validation/index.js'

/** The compute backends a worker can advertise. */
export type Capability = 'webgpu' | 'cpu'
export const CAPABILITIES: readonly Capability[] = ['webgpu', 'cpu']

/** First segment of every shardnet DHT key: kad-dht chooses validators/selectors by it. */
export const DHT_KEY_NAMESPACE = 'shardnet'
const CAPABILITY_KEY_PREFIX = `/${DHT_KEY_NAMESPACE}/cap/`
const SIGNATURE_DOMAIN = uint8ArrayFromString('shardnet/capability-record/1')

/** One backend's measured matmul throughput, as a worker advertises it. */
export interface AdvertisedBackend {
  backend: Capability
  /** the cpu backend's engine, e.g. "native"; absent on webgpu */
  engine?: string
  adapterName: string
  gflops: number
  /** whether the worker computes on this one */
  inUse: boolean
}

/** A span of a model's transformer blocks [start, end) that a worker serves, as it advertises it. */
export interface AdvertisedSpan {
  /** the model's content id (a CID string) */
  model: string
  start: number
  end: number
  /** the model's block count */
  blocks: number
  /** measured at load: cached steps of this span per second */
  tokensPerSecond: number
}

/** A capability record after decoding and verification, in the shapes callers use. */
export interface VerifiedCapabilityRecord {
  peerId: PeerId
  capability: Capability
  adapterName: string
  maxBufferBytes: number
  gflops: number
  /** every backend the worker measured; empty in records of workers that predate the field */
  backends: AdvertisedBackend[]
  /** the spans of models' blocks the worker serves; empty when it serves none */
  spans: AdvertisedSpan[]
  protocols: string[]
  /** multiaddrs as strings, e.g. /ip4/127.0.0.1/tcp/4001 */
  addresses: string[]
  seq: number
  expiresMs: number
}

/** A record that failed decoding, signature or range checks. `reason` is what metrics count by. */
export class InvalidCapabilityRecordError extends Error {
  static override name = 'InvalidCapabilityRecordError'
  override name = 'InvalidCapabilityRecordError'
  constructor(readonly reason: CapabilityRejectReason) {
    super(`invalid capability record: ${reason}`)
  }
}

/** The DHT key of a peer's capability record. */
export function capabilityKey(peerId: PeerId): Uint8Array {
  return uint8ArrayFromString(`${CAPABILITY_KEY_PREFIX}${peerId.toString()}`)
}

/** The peer id string named by a capability key, or undefined if the key is not one. */
export function peerIdStringFromCapabilityKey(key: Uint8Array): string | undefined {
  const text = uint8ArrayToString(key)
  if (!text.startsWith(CAPABILITY_KEY_PREFIX)) return undefined
  const id = text.slice(CAPABILITY_KEY_PREFIX.length)
  return id.length > 0 && id.length <= 128 ? id : undefined
}

/**
 * The well-known CID whose providers are the workers offering `capability`: CIDv1 raw of
 * sha2-256("shardnet/capability/<capability>/1").
 */
export async function capabilityCid(capability: Capability): Promise<CID> {
  const digest = await sha256.digest(uint8ArrayFromString(`shardnet/capability/${capability}/1`))
  return CID.createV1(raw.code, digest)
}

/**
 * The CID whose providers are the workers serving a span of the model `model` (its content id): CIDv1 raw
 * of sha2-256("shardnet/serving/<model>/1"). Not the model package's own CID, whose providers are the
 * nodes that hold its files.
 */
export async function servingCid(model: string): Promise<CID> {
  const digest = await sha256.digest(uint8ArrayFromString(`shardnet/serving/${model}/1`))
  return CID.createV1(raw.code, digest)
}

function signedBytes(record: Uint8Array): Uint8Array {
  const out = new Uint8Array(SIGNATURE_DOMAIN.byteLength + record.byteLength)
  out.set(SIGNATURE_DOMAIN, 0)
  out.set(record, SIGNATURE_DOMAIN.byteLength)
  return out
}

export function capabilityToWire(capability: Capability): CapabilityRecord.Backend {
  return capability === 'webgpu' ? CapabilityRecord.Backend.WEBGPU : CapabilityRecord.Backend.CPU
}

function capabilityFromWire(backend: CapabilityRecord.Backend): Capability {
  return backend === CapabilityRecord.Backend.WEBGPU ? 'webgpu' : 'cpu'
}

/** The wire form of advertised backend figures (an empty engine stands for none). */
export function backendsToWire(backends: readonly AdvertisedBackend[]): CapabilityRecord.BackendFigure[] {
  return backends.map((b) => ({
    backend: capabilityToWire(b.backend),
    engine: b.engine ?? '',
    adapterName: b.adapterName,
    gflops: b.gflops,
    inUse: b.inUse,
  }))
}

/** The wire form of advertised spans. */
export function spansToWire(spans: readonly AdvertisedSpan[]): CapabilityRecord.ServedSpan[] {
  return spans.map((s) => ({
    model: s.model,
    start: s.start,
    end: s.end,
    blocks: s.blocks,
    tokensPerSecond: s.tokensPerSecond,
  }))
}

/** Encodes and signs a record with the worker's private key; returns the DHT value. */
export async function signCapabilityRecord(
  privateKey: PrivateKey,
  record: CapabilityRecord,
): Promise<Uint8Array> {
  const recordBytes = CapabilityRecord.encode(record)
  const signature = await privateKey.sign(signedBytes(recordBytes))
  return SignedCapabilityRecord.encode({
    record: recordBytes,
    signature: signature as Uint8Array<ArrayBuffer>,
  })
}

/**
 * Decodes, range-checks and verifies a DHT value at `nowMs`. When `expectedPeerId` is given (the peer
 * named by the DHT key), the record must be that peer's. Throws InvalidCapabilityRecordError.
 */
export async function verifyCapabilityRecord(
  value: Uint8Array,
  nowMs: number,
  expectedPeerId?: string,
): Promise<VerifiedCapabilityRecord> {
  const signed = decodeSignedCapabilityRecord(value)
  if (!signed.ok) throw new InvalidCapabilityRecordError(signed.reason)
  const decoded = decodeCapabilityRecord(signed.value.record)
  if (!decoded.ok) throw new InvalidCapabilityRecordError(decoded.reason)
  const record = decoded.value
  const reason = validateCapabilityRecord(record, nowMs)
  if (reason !== undefined) throw new InvalidCapabilityRecordError(reason)
  const peerId = peerIdFromBytes(record.peerId)
  if (peerId === undefined) throw new InvalidCapabilityRecordError('bad-peer-id')
  if (expectedPeerId !== undefined && peerId.toString() !== expectedPeerId) {
    throw new InvalidCapabilityRecordError('wrong-peer')
  }
  // Ed25519 and secp256k1 peer ids embed their public key; an RSA peer id does not, and is not accepted
  const publicKey = peerId.publicKey
  if (publicKey === undefined) throw new InvalidCapabilityRecordError('bad-peer-id')
  let valid = false
  try {
    valid = await publicKey.verify(signedBytes(signed.value.record), signed.value.signature)
  } catch {
    valid = false
  }
  if (!valid) throw new InvalidCapabilityRecordError('bad-signature')
  return {
    peerId,
    capability: capabilityFromWire(record.backend),
    adapterName: record.adapterName,
    maxBufferBytes: record.maxBufferBytes,
    gflops: record.gflops,
    backends: record.backends.map((b) => ({
      backend: capabilityFromWire(b.backend),
      ...(b.engine === '' ? {} : { engine: b.engine }),
      adapterName: b.adapterName,
      gflops: b.gflops,
      inUse: b.inUse,
    })),
    spans: record.spans.map((s) => ({
      model: s.model,
      start: s.start,
      end: s.end,
      blocks: s.blocks,
      tokensPerSecond: s.tokensPerSecond,
    })),
    protocols: record.protocols,
    addresses: record.addresses.map((a) => multiaddrToString(a)),
    seq: record.seq,
    expiresMs: record.expiresMs,
  }
}

// validateCapabilityRecord already checked that every address decodes
function multiaddrToString(bytes: Uint8Array): string {
  return multiaddr(bytes).toString()
}

/**
 * kad-dht validator for `/shardnet/...` keys: capability records must be signed by the peer the key names
 * and unexpired. Any other `/shardnet/` key is refused (we store nothing else in the DHT yet).
 * `now` is injectable for tests.
 */
export function shardnetRecordValidator(now: () => number = Date.now) {
  return async (key: Uint8Array, value: Uint8Array): Promise<void> => {
    const peerId = peerIdStringFromCapabilityKey(key)
    if (peerId === undefined) throw new InvalidCapabilityRecordError('wrong-peer')
    await verifyCapabilityRecord(value, now(), peerId)
  }
}

/**
 * kad-dht selector for `/shardnet/...` keys: the valid record with the highest seq (then the latest
 * expiry) wins; invalid ones never win.
 */
export function shardnetRecordSelector(now: () => number = Date.now) {
  return async (key: Uint8Array, values: Uint8Array[]): Promise<number> => {
    const peerId = peerIdStringFromCapabilityKey(key)
    let best = 0
    let bestSeq = -1
    let bestExpiry = -1
    for (let i = 0; i < values.length; i++) {
      try {
        const r = await verifyCapabilityRecord(values[i], now(), peerId)
        if (r.seq > bestSeq || (r.seq === bestSeq && r.expiresMs > bestExpiry)) {
          best = i
          bestSeq = r.seq
          bestExpiry = r.expiresMs
        }
      } catch {
        // an invalid record is never selected
      }
    }
    return best
  }
}

/** `validators` for kadDHT({ validators }): `{ shardnet: shardnetRecordValidator() }`. */
export function shardnetDhtValidators(now: () => number = Date.now) {
  return { [DHT_KEY_NAMESPACE]: shardnetRecordValidator(now) }
}

/** `selectors` for kadDHT({ selectors }): `{ shardnet: shardnetRecordSelector() }`. */
export function shardnetDhtSelectors(now: () => number = Date.now) {
  return { [DHT_KEY_NAMESPACE]: shardnetRecordSelector(now) }
}
