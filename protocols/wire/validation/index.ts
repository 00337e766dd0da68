/**
 * Decoding with size limits, and semantic validation, for every shardnet wire message.
 *
 * Each `decode...` function takes untrusted bytes and NEVER throws: it returns `{ ok: true, value }` or
 * `{ ok: false, reason }` with a reason from a closed list, so callers drop the message and count it by
 * reason (`..._REJECT_REASONS` lists every reason, for initialising metrics). Each `validate...` function
 * checks one decoded message against ranges and lengths and returns `undefined` (valid) or a reason.
 * Time is an argument (`nowMs`): nothing here reads a clock.
 *
 * Limits (bytes before decoding, repeated-field counts through protons `limits`, ranges after):
 * - TaskAnnouncement: at most {@link TASK_ANNOUNCEMENT_BYTES_MAX} (4 KiB) encoded.
 * - SignedCapabilityRecord: at most {@link SIGNED_CAPABILITY_RECORD_BYTES_MAX} (8 KiB) encoded.
 * - Block frames: request {@link BLOCK_REQUEST_BYTES_MAX}, chunk header {@link BLOCK_CHUNK_HEADER_BYTES_MAX},
 *   chunk data {@link BLOCK_CHUNK_BYTES_MAX}.
 */

import type { PeerId } from '@libp2p/interface'
import { peerIdFromMultihash } from '@libp2p/peer-id'
import { multiaddr } from '@multiformats/multiaddr'
import { CID } from 'multiformats/cid'
import * as Digest from 'multiformats/hashes/digest'
import { sha256 } from 'multiformats/hashes/sha2'
import { MaxLengthError } from 'protons-runtime'
import type { Uint8ArrayList } from 'uint8arraylist'
import { BlockChunk, BlockRequest, BlockResponse } from '../blocks.js'
import { CapabilityRecord, SignedCapabilityRecord } from '../capability.js'
import { TaskAnnouncement } from '../tasks.js'

export type Decoded<T, Reason extends string> = { ok: true; value: T } | { ok: false; reason: Reason }

/** The multicodec of raw blocks (CIDv1 raw). */
export const RAW_CODEC = 0x55
/** Largest TaskAnnouncement accepted, encoded, in bytes (the gossip topic validator's limit). */
export const TASK_ANNOUNCEMENT_BYTES_MAX = 4096
/** Largest SignedCapabilityRecord accepted, encoded, in bytes. */
export const SIGNED_CAPABILITY_RECORD_BYTES_MAX = 8192
/** Largest BlockRequest frame, in bytes. */
export const BLOCK_REQUEST_BYTES_MAX = 256
/** Largest BlockResponse header frame, in bytes. */
export const BLOCK_RESPONSE_BYTES_MAX = 64
/** Largest chunk of block data (the raw frame after a BlockChunk), in bytes (1 MiB). */
export const BLOCK_CHUNK_BYTES_MAX = 1024 * 1024
/** Largest BlockChunk header frame, in bytes. */
export const BLOCK_CHUNK_HEADER_BYTES_MAX = 64
/** Largest block anyone sends or accepts, in bytes (256 MiB). */
export const BLOCK_BYTES_MAX = 256 * 1024 * 1024

/** An announcement may come from a clock this far ahead of ours. */
export const CLOCK_SKEW_MS_MAX = 30_000
/** An announcement lives at most this long (expires - created). */
export const ANNOUNCEMENT_LIFETIME_MS_MAX = 24 * 3600_000
/** A capability record expires at most this far in the future. */
export const CAPABILITY_RECORD_LIFETIME_MS_MAX = 7 * 24 * 3600_000
export const GROUPS_MAX = 64
export const GROUP_SIZE_MAX = 15
export const NONCE_BYTES_MIN = 8
export const NONCE_BYTES_MAX = 32
export const ADAPTER_NAME_LENGTH_MAX = 256
export const CAPABILITY_PROTOCOLS_MAX = 32
export const PROTOCOL_ID_LENGTH_MAX = 128
export const CAPABILITY_ADDRESSES_MAX = 16
/** Backend figures one capability record carries at most (a node has 4 today: 3 cpu engines, webgpu). */
export const CAPABILITY_BACKENDS_MAX = 8
/** A backend figure's engine name: lowercase letters, digits and dashes, at most this long. */
export const ENGINE_NAME_LENGTH_MAX = 32
export const ADDRESS_BYTES_MAX = 256
/** Served spans one capability record carries at most. */
export const CAPABILITY_SPANS_MAX = 16
/** A served span's model id: a CIDv1 (sha2-256) string at most this long. */
export const MODEL_ID_LENGTH_MAX = 128
/** Transformer blocks a served model has at most (a span's `blocks`). */
export const MODEL_BLOCKS_MAX = 4096
/** A span's advertised throughput, in cached steps per second, at most (far above any device). */
export const TOKENS_PER_SECOND_MAX = 1e7
export const SIGNATURE_BYTES_MAX = 1024
/** Above any device measured so far by orders of magnitude; a larger claim is a lie or a bug. */
export const GFLOPS_MAX = 1e7
const PEER_ID_BYTES_MAX = 128
const CID_BYTES_MAX = 128

export const ANNOUNCEMENT_REJECT_REASONS = [
  'oversized',
  'malformed',
  'bad-cid',
  'bad-kind',
  'bad-requirements',
  'bad-groups',
  'bad-submitter',
  'bad-nonce',
  'bad-times',
  'expired',
  'from-the-future',
] as const
export type AnnouncementRejectReason = (typeof ANNOUNCEMENT_REJECT_REASONS)[number]

export const CAPABILITY_REJECT_REASONS = [
  'oversized',
  'malformed',
  'bad-peer-id',
  'bad-backend',
  'bad-adapter-name',
  'bad-numbers',
  'bad-protocols',
  'bad-addresses',
  'bad-spans',
  'bad-signature',
  'expired',
  'bad-expiry',
  'wrong-peer',
] as const
export type CapabilityRejectReason = (typeof CAPABILITY_REJECT_REASONS)[number]

export const BLOCK_FRAME_REJECT_REASONS = [
  'oversized',
  'malformed',
  'bad-cid',
  'bad-offset',
  'bad-status',
  'too-large',
  'bad-chunk',
] as const
export type BlockFrameRejectReason = (typeof BLOCK_FRAME_REJECT_REASONS)[number]

function byteLength(buf: Uint8Array | Uint8ArrayList): number {
  return buf.byteLength
}

function isNonNegativeInteger(n: number, max = Number.MAX_SAFE_INTEGER): boolean {
  return Number.isSafeInteger(n) && n >= 0 && n <= max
}

/** Decodes a binary peer id (multihash) or returns undefined. */
export function peerIdFromBytes(bytes: Uint8Array): PeerId | undefined {
  if (bytes.byteLength === 0 || bytes.byteLength > PEER_ID_BYTES_MAX) return undefined
  try {
    return peerIdFromMultihash(Digest.decode(bytes))
  } catch {
    return undefined
  }
}

/** Decodes a binary CID and checks it names a sha2-256 CIDv1 (any codec), or returns undefined. */
export function cidFromBytes(bytes: Uint8Array): CID | undefined {
  if (bytes.byteLength === 0 || bytes.byteLength > CID_BYTES_MAX) return undefined
  try {
    const cid = CID.decode(bytes)
    if (cid.version !== 1 || cid.multihash.code !== sha256.code || cid.multihash.size !== 32) return undefined
    return cid
  } catch {
    return undefined
  }
}

// ---------------------------------------------------------------------------------------------------------
// TaskAnnouncement

export function decodeTaskAnnouncement(
  buf: Uint8Array | Uint8ArrayList,
): Decoded<TaskAnnouncement, AnnouncementRejectReason> {
  if (byteLength(buf) > TASK_ANNOUNCEMENT_BYTES_MAX) return { ok: false, reason: 'oversized' }
  try {
    return { ok: true, value: TaskAnnouncement.decode(buf) }
  } catch {
    return { ok: false, reason: 'malformed' }
  }
}

/** Checks ranges and lengths of an announcement received at `nowMs`; returns undefined when valid. */
export function validateTaskAnnouncement(
  a: TaskAnnouncement,
  nowMs: number,
): AnnouncementRejectReason | undefined {
  if (cidFromBytes(a.taskCid) === undefined) return 'bad-cid'
  if (a.kind !== TaskAnnouncement.Kind.TRAIN && a.kind !== TaskAnnouncement.Kind.INFER) return 'bad-kind'
  const r = a.requirements
  if (r !== undefined) {
    const backends: unknown[] = [
      TaskAnnouncement.Backend.ANY,
      TaskAnnouncement.Backend.WEBGPU,
      TaskAnnouncement.Backend.CPU,
    ]
    if (!backends.includes(r.backend)) return 'bad-requirements'
    if (!isNonNegativeInteger(r.minMemoryBytes)) return 'bad-requirements'
    if (!Number.isFinite(r.minGflops) || r.minGflops < 0 || r.minGflops > GFLOPS_MAX)
      return 'bad-requirements'
  }
  if (!Number.isInteger(a.groups) || a.groups < 1 || a.groups > GROUPS_MAX) return 'bad-groups'
  if (!Number.isInteger(a.groupSize) || a.groupSize < 1 || a.groupSize > GROUP_SIZE_MAX) return 'bad-groups'
  if (peerIdFromBytes(a.submitter) === undefined) return 'bad-submitter'
  if (a.nonce.byteLength < NONCE_BYTES_MIN || a.nonce.byteLength > NONCE_BYTES_MAX) return 'bad-nonce'
  if (!isNonNegativeInteger(a.createdMs) || !isNonNegativeInteger(a.expiresMs)) return 'bad-times'
  if (a.expiresMs <= a.createdMs || a.expiresMs - a.createdMs > ANNOUNCEMENT_LIFETIME_MS_MAX)
    return 'bad-times'
  if (a.expiresMs <= nowMs) return 'expired'
  if (a.createdMs > nowMs + CLOCK_SKEW_MS_MAX) return 'from-the-future'
  return undefined
}

// ---------------------------------------------------------------------------------------------------------
// CapabilityRecord

export function decodeSignedCapabilityRecord(
  buf: Uint8Array | Uint8ArrayList,
): Decoded<SignedCapabilityRecord, CapabilityRejectReason> {
  if (byteLength(buf) > SIGNED_CAPABILITY_RECORD_BYTES_MAX) return { ok: false, reason: 'oversized' }
  try {
    const signed = SignedCapabilityRecord.decode(buf)
    if (signed.signature.byteLength === 0 || signed.signature.byteLength > SIGNATURE_BYTES_MAX) {
      return { ok: false, reason: 'bad-signature' }
    }
    return { ok: true, value: signed }
  } catch {
    return { ok: false, reason: 'malformed' }
  }
}

export function decodeCapabilityRecord(
  buf: Uint8Array | Uint8ArrayList,
): Decoded<CapabilityRecord, CapabilityRejectReason> {
  if (byteLength(buf) > SIGNED_CAPABILITY_RECORD_BYTES_MAX) return { ok: false, reason: 'oversized' }
  try {
    const value = CapabilityRecord.decode(buf, {
      limits: {
        protocols: CAPABILITY_PROTOCOLS_MAX,
        addresses: CAPABILITY_ADDRESSES_MAX,
        backends: CAPABILITY_BACKENDS_MAX,
        spans: CAPABILITY_SPANS_MAX,
      },
    })
    return { ok: true, value }
  } catch (err) {
    // protons throws MaxLengthError when a repeated field is over its limit
    return { ok: false, reason: err instanceof MaxLengthError ? 'oversized' : 'malformed' }
  }
}

/** Checks ranges and lengths of a capability record at `nowMs`; returns undefined when valid. */
export function validateCapabilityRecord(
  r: CapabilityRecord,
  nowMs: number,
): CapabilityRejectReason | undefined {
  if (peerIdFromBytes(r.peerId) === undefined) return 'bad-peer-id'
  if (r.backend !== CapabilityRecord.Backend.WEBGPU && r.backend !== CapabilityRecord.Backend.CPU) {
    return 'bad-backend'
  }
  if (r.adapterName.length > ADAPTER_NAME_LENGTH_MAX) return 'bad-adapter-name'
  if (!isNonNegativeInteger(r.maxBufferBytes) || !isNonNegativeInteger(r.seq)) return 'bad-numbers'
  if (!Number.isFinite(r.gflops) || r.gflops < 0 || r.gflops > GFLOPS_MAX) return 'bad-numbers'
  if (r.protocols.length > CAPABILITY_PROTOCOLS_MAX) return 'bad-protocols'
  for (const p of r.protocols) {
    if (p.length === 0 || p.length > PROTOCOL_ID_LENGTH_MAX || !p.startsWith('/')) return 'bad-protocols'
  }
  if (r.addresses.length > CAPABILITY_ADDRESSES_MAX) return 'bad-addresses'
  for (const a of r.addresses) {
    if (a.byteLength === 0 || a.byteLength > ADDRESS_BYTES_MAX) return 'bad-addresses'
    try {
      multiaddr(a)
    } catch {
      return 'bad-addresses'
    }
  }
  const figures = validateBackendFigures(r.backends)
  if (figures !== undefined) return figures
  if (!r.spans.every(isValidServedSpan)) return 'bad-spans'
  if (!isNonNegativeInteger(r.expiresMs)) return 'bad-expiry'
  if (r.expiresMs <= nowMs) return 'expired'
  if (r.expiresMs > nowMs + CAPABILITY_RECORD_LIFETIME_MS_MAX) return 'bad-expiry'
  return undefined
}

/** The per-backend figures: known backends, an engine name only on cpu, at most one in use. */
function validateBackendFigures(
  figures: CapabilityRecord.BackendFigure[],
): CapabilityRejectReason | undefined {
  if (figures.length > CAPABILITY_BACKENDS_MAX) return 'oversized'
  let inUse = 0
  for (const f of figures) {
    if (f.backend !== CapabilityRecord.Backend.WEBGPU && f.backend !== CapabilityRecord.Backend.CPU) {
      return 'bad-backend'
    }
    if (f.engine.length > ENGINE_NAME_LENGTH_MAX || !/^[a-z0-9-]*$/.test(f.engine)) return 'bad-backend'
    if (f.backend === CapabilityRecord.Backend.WEBGPU && f.engine !== '') return 'bad-backend'
    if (f.adapterName.length > ADAPTER_NAME_LENGTH_MAX) return 'bad-adapter-name'
    if (!Number.isFinite(f.gflops) || f.gflops < 0 || f.gflops > GFLOPS_MAX) return 'bad-numbers'
    if (f.inUse) inUse++
  }
  return inUse > 1 ? 'bad-backend' : undefined
}

/** Whether `text` is a model id: a CIDv1 string (sha2-256, any codec) of at most MODEL_ID_LENGTH_MAX. */
export function isModelId(text: string): boolean {
  if (text.length === 0 || text.length > MODEL_ID_LENGTH_MAX) return false
  try {
    return cidFromBytes(CID.parse(text).bytes) !== undefined
  } catch {
    return false
  }
}

/** A served span: a model id, 0 <= start < end <= blocks <= MODEL_BLOCKS_MAX, a finite throughput. */
function isValidServedSpan(s: CapabilityRecord.ServedSpan): boolean {
  if (!isModelId(s.model)) return false
  if (!Number.isInteger(s.blocks) || s.blocks < 1 || s.blocks > MODEL_BLOCKS_MAX) return false
  if (!Number.isInteger(s.start) || !Number.isInteger(s.end)) return false
  if (s.start < 0 || s.start >= s.end || s.end > s.blocks) return false
  return (
    Number.isFinite(s.tokensPerSecond) && s.tokensPerSecond >= 0 && s.tokensPerSecond <= TOKENS_PER_SECOND_MAX
  )
}

// ---------------------------------------------------------------------------------------------------------
// Block frames

export function decodeBlockRequest(
  buf: Uint8Array | Uint8ArrayList,
): Decoded<BlockRequest, BlockFrameRejectReason> {
  if (byteLength(buf) > BLOCK_REQUEST_BYTES_MAX) return { ok: false, reason: 'oversized' }
  try {
    return { ok: true, value: BlockRequest.decode(buf) }
  } catch {
    return { ok: false, reason: 'malformed' }
  }
}

export function validateBlockRequest(r: BlockRequest): BlockFrameRejectReason | undefined {
  if (cidFromBytes(r.cid) === undefined) return 'bad-cid'
  if (!isNonNegativeInteger(r.offset, BLOCK_BYTES_MAX)) return 'bad-offset'
  return undefined
}

export function decodeBlockResponse(
  buf: Uint8Array | Uint8ArrayList,
): Decoded<BlockResponse, BlockFrameRejectReason> {
  if (byteLength(buf) > BLOCK_RESPONSE_BYTES_MAX) return { ok: false, reason: 'oversized' }
  try {
    return { ok: true, value: BlockResponse.decode(buf) }
  } catch {
    return { ok: false, reason: 'malformed' }
  }
}

/** Checks a response header; `sizeMax` is the requester's own limit (at most BLOCK_BYTES_MAX). */
export function validateBlockResponse(
  r: BlockResponse,
  sizeMax = BLOCK_BYTES_MAX,
): BlockFrameRejectReason | undefined {
  const statuses: unknown[] = [
    BlockResponse.Status.OK,
    BlockResponse.Status.NOT_FOUND,
    BlockResponse.Status.TOO_LARGE,
    BlockResponse.Status.BAD_REQUEST,
  ]
  if (!statuses.includes(r.status)) return 'bad-status'
  if (r.status !== BlockResponse.Status.OK) return undefined
  if (!isNonNegativeInteger(r.size)) return 'malformed'
  if (r.size > Math.min(sizeMax, BLOCK_BYTES_MAX)) return 'too-large'
  if (!Number.isInteger(r.chunkBytes) || r.chunkBytes < 1 || r.chunkBytes > BLOCK_CHUNK_BYTES_MAX)
    return 'bad-chunk'
  return undefined
}

export function decodeBlockChunk(
  buf: Uint8Array | Uint8ArrayList,
): Decoded<BlockChunk, BlockFrameRejectReason> {
  if (byteLength(buf) > BLOCK_CHUNK_HEADER_BYTES_MAX) return { ok: false, reason: 'oversized' }
  try {
    return { ok: true, value: BlockChunk.decode(buf) }
  } catch {
    return { ok: false, reason: 'malformed' }
  }
}

/**
 * Checks a chunk header against what the receiver expects next: chunk `index` at byte `offset`, 1 to
 * `chunkBytes` bytes of data and never past the end of the block. The raw data frame that follows must
 * then hold exactly `length` bytes.
 */
export function validateBlockChunk(
  c: BlockChunk,
  expected: { index: number; offset: number; chunkBytes: number; size: number },
): BlockFrameRejectReason | undefined {
  if (c.index !== expected.index || c.offset !== expected.offset) return 'bad-chunk'
  if (!Number.isInteger(c.length) || c.length < 1 || c.length > expected.chunkBytes) return 'bad-chunk'
  if (c.offset + c.length > expected.size) return 'bad-chunk'
  return undefined
}
