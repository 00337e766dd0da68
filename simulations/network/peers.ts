// The peer table: one row per virtual peer in typed arrays (no object per peer), so 100,000 peers
// cost a few MB. A row is never reused: a peer that leaves keeps its row (and its counters for
// the report); one that joins gets a new row.
import { assert } from '../../protocols/raft/types.js'

/** Most peer rows one run may create (initial peers plus every join). */
export const PEER_ROWS_MAX = 2_000_000

export const PeerState = { up: 1, crashed: 2, left: 3, notJoined: 0 } as const

/** Backend classes and their share of peers: WebGPU on real hardware, Dawn on lavapipe, plain cpu. */
export const BACKEND_CLASSES = ['webgpu', 'webgpu-software', 'cpu'] as const
export const BACKEND_SHARES = [0.35, 0.15, 0.5] as const

/**
 * The matmul GFLOP/s a peer of each class reports in its capability record (node/executor/
 * capability.ts), which the real assignment ranks claimants by. Measured here (bench/RESULTS.md,
 * kernels): the plain TypeScript loop 0.9-1.1 GFLOP/s, WebGPU on lavapipe 5.7-8.1 GFLOP/s. A WebGPU
 * adapter on real hardware was not measured: 500 is an assumption. Order: BACKEND_CLASSES.
 */
export const CAPABILITY_GFLOPS_BY_BACKEND = [500, 7, 1] as const
/** The backend kind each class claims with (a software WebGPU adapter is still `webgpu`). */
export const CLAIM_BACKEND_BY_CLASS = ['webgpu', 'webgpu', 'cpu'] as const

export class PeerTable {
  readonly capacity: number
  count = 0
  readonly state: Uint8Array
  readonly region: Uint8Array
  readonly backend: Uint8Array
  /** Multiplier of compute time (1 = normal, 2-5 = a slow machine). */
  readonly slowFactor: Float32Array
  /** The matmul GFLOP/s the peer measured for its capability record. */
  readonly gflops: Float32Array
  readonly byzantine: Uint8Array
  /** Upload bandwidth in bytes per ms. */
  readonly uploadBytesPerMs: Float32Array
  /** When this peer's uplink finishes sending what is queued (serialises sends). */
  readonly uplinkFreeAtMs: Float64Array
  /** Gossip heartbeat phase in ms within the heartbeat interval. */
  readonly heartbeatPhaseMs: Float32Array
  /** The training group slot this peer serves, -1 when idle. */
  readonly groupSlot: Int32Array
  readonly joinedAtMs: Float64Array
  readonly messagesSent: Float64Array
  readonly messagesReceived: Float64Array
  readonly bytesSent: Float64Array
  readonly bytesReceived: Float64Array
  /** Partition side during an active partition (0 = side B, 1 = side A). */
  readonly partitionSide: Uint8Array
  /** Churn events (crash or leave) this peer suffered. */
  readonly churnEvents: Uint16Array

  constructor(capacity: number) {
    assert(capacity <= PEER_ROWS_MAX, `more than ${PEER_ROWS_MAX} peer rows`)
    this.capacity = capacity
    this.state = new Uint8Array(capacity)
    this.region = new Uint8Array(capacity)
    this.backend = new Uint8Array(capacity)
    this.slowFactor = new Float32Array(capacity)
    this.gflops = new Float32Array(capacity)
    this.byzantine = new Uint8Array(capacity)
    this.uploadBytesPerMs = new Float32Array(capacity)
    this.uplinkFreeAtMs = new Float64Array(capacity)
    this.heartbeatPhaseMs = new Float32Array(capacity)
    this.groupSlot = new Int32Array(capacity).fill(-1)
    this.joinedAtMs = new Float64Array(capacity)
    this.messagesSent = new Float64Array(capacity)
    this.messagesReceived = new Float64Array(capacity)
    this.bytesSent = new Float64Array(capacity)
    this.bytesReceived = new Float64Array(capacity)
    this.partitionSide = new Uint8Array(capacity)
    this.churnEvents = new Uint16Array(capacity)
  }

  add(): number {
    assert(this.count < this.capacity, `peer table full at ${this.capacity} rows`)
    return this.count++
  }

  isUp(peer: number): boolean {
    return this.state[peer] === PeerState.up
  }

  countSent(from: number, bytes: number): void {
    this.messagesSent[from]++
    this.bytesSent[from] += bytes
  }

  countReceived(to: number, bytes: number): void {
    this.messagesReceived[to]++
    this.bytesReceived[to] += bytes
  }
}
