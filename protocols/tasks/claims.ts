/**
 * `/shardnet/claim/1.0.0`: the direct conversation between a task's submitter and its workers (claims,
 * assignments, progress, outer-step parameters, cancellation). Gossip carries only the announcement;
 * everything addressed to one peer goes over this protocol: broadcasting everything over gossipsub
 * does not scale and cannot target one node (Bacalhau's experience, which moved it off gossipsub).
 *
 * Wire: the opener writes ONE length-prefixed ClaimRequest, the other side answers ONE ClaimResponse,
 * both close. Frames are at most {@link CLAIM_FRAME_BYTES_MAX}; every stream has a deadline; a request
 * that fails to decode or validate is answered BAD_REQUEST and counted, never thrown into the node.
 *
 * ```ts
 * const claims = new ClaimsProtocol({ host, handler: async (from, request) => ({ status: OK }) })
 * await claims.start()
 * const response = await claims.send(peerId, { claim: { taskCid, eligible: true, capability } })
 * ```
 */
import type { Connection, PeerId, Stream } from '@libp2p/interface'
import { logger } from '@libp2p/logger'
import {
  type Assignment,
  type Cancel,
  type Capability,
  type Challenge,
  type Claim,
  ClaimRequest,
  ClaimResponse,
  type GroupProgress,
  type OuterUpdate,
} from '../wire/claims.js'
import {
  BudgetExceededError,
  boundedLpStream,
  isOversizedFrameError,
  PeerBudgets,
  type PeerLimits,
} from '../wire/framing.js'
import {
  cidFromBytes,
  GFLOPS_MAX,
  GROUP_SIZE_MAX,
  GROUPS_MAX,
  peerIdFromBytes,
} from '../wire/validation/index.js'

import { CHALLENGE_SEED_BYTES, challengeShapeProblem } from './challenge.js'
import type { TerminalState } from './lifecycle.js'

export { ClaimRequest, ClaimResponse }

export const CLAIM_PROTOCOL = '/shardnet/claim/1.0.0'
export const CLAIM_FRAME_BYTES_MAX = 64 * 1024
export const REASON_LENGTH_MAX = 1024
/** How long one request (dial, write, answer) may take. */
export const CLAIM_TIMEOUT_MS_DEFAULT = 15_000
/** Claim streams open at once, each way. */
export const CLAIM_STREAMS_MAX_DEFAULT = 64
/**
 * Per-peer budgets of the serving side: a peer this node shares a task with (isKnown) may have 8 requests
 * served at once, any other peer 2 (a new worker's claim needs one), with a shorter read deadline; all
 * strangers together CLAIM_STRANGER_STREAMS_MAX. A request over budget is refused before any byte is read
 * (counted 'busy').
 */
export const CLAIM_KNOWN_LIMITS_DEFAULT: PeerLimits = {
  streamsPerPeer: 8,
  bytesInFlightPerPeer: 8 * (CLAIM_FRAME_BYTES_MAX + 8),
  readTimeoutMs: CLAIM_TIMEOUT_MS_DEFAULT,
}
export const CLAIM_STRANGER_LIMITS_DEFAULT: PeerLimits = {
  streamsPerPeer: 2,
  bytesInFlightPerPeer: 2 * (CLAIM_FRAME_BYTES_MAX + 8),
  readTimeoutMs: 5_000,
}
export const CLAIM_STRANGER_STREAMS_MAX = 64
export const CLAIM_REJECT_REASONS = [
  'busy',
  'oversized',
  'malformed',
  'invalid',
  'stream-error',
  'handler-error',
] as const
export type ClaimRejectReason = (typeof CLAIM_REJECT_REASONS)[number]

const log = logger('shardnet:claims')

/** The few libp2p calls the protocol needs (a libp2p node satisfies it). */
export interface ClaimsHost {
  handle(
    protocol: string,
    handler: (stream: Stream, connection: Connection) => void | Promise<void>,
    options?: { maxInboundStreams?: number; maxOutboundStreams?: number },
  ): Promise<void>
  unhandle(protocol: string): Promise<void>
  dialProtocol(peer: PeerId, protocol: string, options?: { signal?: AbortSignal }): Promise<Stream>
}

/** What a handler answers: a ClaimResponse whose optional fields may be left out. */
export type ClaimReply = Pick<ClaimResponse, 'status' | 'reason'> & Partial<ClaimResponse>
export type ClaimHandler = (from: PeerId, request: ClaimPart) => Promise<ClaimReply>

export interface ClaimsProtocolInit {
  host: ClaimsHost
  handler: ClaimHandler
  /** @default CLAIM_TIMEOUT_MS_DEFAULT */
  timeoutMs?: number
  /** @default CLAIM_STREAMS_MAX_DEFAULT */
  maxInboundStreams?: number
  /** @default CLAIM_STREAMS_MAX_DEFAULT */
  maxOutboundStreams?: number
  /** whether this node shares a task with `peer` (it gets CLAIM_KNOWN_LIMITS_DEFAULT). @default none */
  isKnown?: (peer: string) => boolean
}

/** The peer answered, but not OK. */
export class ClaimRefusedError extends Error {
  static override name = 'ClaimRefusedError'
  override name = 'ClaimRefusedError'
  constructor(
    readonly status: ClaimResponse.Status,
    readonly reason: string,
  ) {
    super(`refused (${ClaimResponse.Status[status] ?? status}): ${reason}`)
  }
}

/**
 * Why a submitter refuses a member's progress report for good. The submitter writes the reason with
 * {@link progressRefusal} and the member reads it back with {@link finalRefusal}, so both sides of
 * the sentence live here: a member told its task ended, or that its group went on without it, stops.
 */
export const progressRefusal = {
  ended: (state: TerminalState) => `the task is ${state}`,
  notMember: 'you are not a member of that group',
  reformed: (incarnation: number) =>
    `you are not a member of that group: it was re-formed (incarnation ${incarnation})`,
} as const

/**
 * What a refused progress report tells the member: its task completed (its part ends as done), its
 * task ended otherwise or its group went on without it (its part is cancelled), or nothing final.
 */
export function finalRefusal(error: unknown): 'completed' | 'ended' | undefined {
  if (!(error instanceof ClaimRefusedError)) return undefined
  if (error.reason === progressRefusal.ended('completed')) return 'completed'
  if (
    error.reason === progressRefusal.ended('failed') ||
    error.reason === progressRefusal.ended('cancelled') ||
    error.reason.startsWith(progressRefusal.notMember)
  )
    return 'ended'
  return undefined
}

function validString(text: string): boolean {
  return text.length <= REASON_LENGTH_MAX
}

function validPeers(list: Uint8Array[]): boolean {
  return list.length <= GROUP_SIZE_MAX && list.every((p) => peerIdFromBytes(p) !== undefined)
}

/** The backends a worker can have (a claim's capability names one). */
export type WorkerBackend = 'webgpu' | 'cpu'

/**
 * A request that passed the checks, as the one part it carries: a handler switches on `type` and
 * reads that part (a claim with its capability) without assertions.
 */
export type ClaimPart =
  | { type: 'claim'; claim: Claim & { capability: Capability & { backend: WorkerBackend } } }
  | { type: 'assignment'; assignment: Assignment }
  | { type: 'progress'; progress: GroupProgress }
  | { type: 'outer'; outer: OuterUpdate }
  | { type: 'cancel'; cancel: Cancel }
  | { type: 'challenge'; challenge: Challenge }

/** undefined when valid, else what is wrong. Exactly one of the request's parts must be set. */
export function validateClaimRequest(r: ClaimRequest): string | undefined {
  const parsed = parseClaimRequest(r)
  return typeof parsed === 'string' ? parsed : undefined
}

/** The one part a valid request carries, or what is wrong (the field's path). */
export function parseClaimRequest(r: ClaimRequest): ClaimPart | string {
  const parts = [r.claim, r.assignment, r.progress, r.outer, r.cancel, r.challenge].filter(
    (p) => p !== undefined,
  )
  if (parts.length !== 1) return 'a request carries exactly one part'
  if (r.claim !== undefined) {
    const c = r.claim
    if (cidFromBytes(c.taskCid) === undefined) return 'claim.taskCid'
    if (!validString(c.reason)) return 'claim.reason'
    const cap = c.capability
    if (cap === undefined) return 'claim.capability'
    if (cap.backend !== 'webgpu' && cap.backend !== 'cpu') return 'claim.capability.backend'
    if (!(Number.isFinite(cap.gflops) && cap.gflops >= 0 && cap.gflops <= GFLOPS_MAX))
      return 'claim.capability.gflops'
    if (!Number.isSafeInteger(cap.maxBufferBytes) || cap.maxBufferBytes < 0)
      return 'claim.capability.maxBufferBytes'
    if (!Number.isSafeInteger(cap.memoryBytes) || cap.memoryBytes < 0) return 'claim.capability.memoryBytes'
    return { type: 'claim', claim: { ...c, capability: { ...cap, backend: cap.backend } } }
  }
  if (r.assignment !== undefined) {
    const a = r.assignment
    if (cidFromBytes(a.taskCid) === undefined) return 'assignment.taskCid'
    if (a.group >= GROUPS_MAX) return 'assignment.group'
    if (a.members.length < 1 || !validPeers(a.members)) return 'assignment.members'
    if (cidFromBytes(a.shardCid) === undefined) return 'assignment.shardCid'
    // a re-formed group (incarnation > 0) starts from a state block; the first one from the seed
    if (a.incarnation > 0 !== a.stateCid.byteLength > 0) return 'assignment.stateCid'
    if (a.stateCid.byteLength > 0 && cidFromBytes(a.stateCid) === undefined) return 'assignment.stateCid'
    return { type: 'assignment', assignment: a }
  }
  if (r.progress !== undefined) {
    const p = r.progress
    if (cidFromBytes(p.taskCid) === undefined) return 'progress.taskCid'
    if (p.group >= GROUPS_MAX) return 'progress.group'
    if (p.leader.byteLength > 0 && peerIdFromBytes(p.leader) === undefined) return 'progress.leader'
    if (!validPeers(p.members)) return 'progress.members'
    if (p.paramsCid.byteLength > 0 && cidFromBytes(p.paramsCid) === undefined) return 'progress.paramsCid'
    if (p.stateCid.byteLength > 0 && cidFromBytes(p.stateCid) === undefined) return 'progress.stateCid'
    if (!(Number.isFinite(p.samplesPerSecond) && p.samplesPerSecond >= 0)) return 'progress.samplesPerSecond'
    if (!validString(p.error)) return 'progress.error'
    if (p.reports.length > GROUP_SIZE_MAX) return 'progress.reports'
    for (const report of p.reports)
      if (peerIdFromBytes(report.member) === undefined) return 'progress.reports.member'
    return { type: 'progress', progress: p }
  }
  if (r.outer !== undefined) {
    const o = r.outer
    if (cidFromBytes(o.taskCid) === undefined) return 'outer.taskCid'
    if (cidFromBytes(o.paramsCid) === undefined) return 'outer.paramsCid'
    if (o.round < 1) return 'outer.round'
    return { type: 'outer', outer: o }
  }
  if (r.challenge !== undefined) {
    const ch = r.challenge
    if (cidFromBytes(ch.taskCid) === undefined) return 'challenge.taskCid'
    if (ch.seed.byteLength !== CHALLENGE_SEED_BYTES) return 'challenge.seed'
    if (challengeShapeProblem(ch) !== undefined) return 'challenge.shape'
    return { type: 'challenge', challenge: ch }
  }
  const c = r.cancel
  if (c === undefined) return 'a request carries exactly one part'
  if (cidFromBytes(c.taskCid) === undefined) return 'cancel.taskCid'
  if (!validString(c.reason)) return 'cancel.reason'
  return { type: 'cancel', cancel: c }
}

export class ClaimsProtocol {
  private readonly init: ClaimsProtocolInit
  private readonly timeoutMs: number
  private readonly shutdown = new AbortController()
  /** the serving side's per-peer budgets (refusals by reason in `budgets.refused`) */
  readonly budgets: PeerBudgets
  readonly rejected: Record<ClaimRejectReason, number> = Object.fromEntries(
    CLAIM_REJECT_REASONS.map((r) => [r, 0]),
  ) as Record<ClaimRejectReason, number>

  constructor(init: ClaimsProtocolInit) {
    this.init = init
    this.timeoutMs = init.timeoutMs ?? CLAIM_TIMEOUT_MS_DEFAULT
    this.budgets = new PeerBudgets({
      known: CLAIM_KNOWN_LIMITS_DEFAULT,
      stranger: CLAIM_STRANGER_LIMITS_DEFAULT,
      isKnown: init.isKnown ?? (() => false),
      strangerStreamsMax: CLAIM_STRANGER_STREAMS_MAX,
    })
  }

  async start(): Promise<void> {
    await this.init.host.handle(CLAIM_PROTOCOL, (stream, connection) => this.serve(stream, connection), {
      maxInboundStreams: this.init.maxInboundStreams ?? CLAIM_STREAMS_MAX_DEFAULT,
      maxOutboundStreams: this.init.maxOutboundStreams ?? CLAIM_STREAMS_MAX_DEFAULT,
    })
  }

  async stop(): Promise<void> {
    this.shutdown.abort()
    await this.init.host.unhandle(CLAIM_PROTOCOL).catch(() => {})
  }

  private async serve(stream: Stream, connection: Connection): Promise<void> {
    const lease = this.budgets.acquire(connection.remotePeer)
    if (lease === undefined) {
      this.rejected.busy++
      stream.abort(new BudgetExceededError('too many claim requests from this peer at once'))
      return
    }
    try {
      await this.serveOne(stream, connection, lease)
    } finally {
      lease.release()
    }
  }

  private async serveOne(
    stream: Stream,
    connection: Connection,
    lease: NonNullable<ReturnType<PeerBudgets['acquire']>>,
  ): Promise<void> {
    const signal = AbortSignal.any([AbortSignal.timeout(this.timeoutMs), this.shutdown.signal])
    const lp = boundedLpStream(stream, CLAIM_FRAME_BYTES_MAX, { lease })
    try {
      let frame: Awaited<ReturnType<typeof lp.read>>
      try {
        frame = await lp.read({ signal })
      } catch (error) {
        // more bytes than one frame, or than the peer's budget, allows
        const oversized = isOversizedFrameError(error) || error instanceof BudgetExceededError
        this.rejected[oversized ? 'oversized' : 'stream-error']++
        throw error
      }
      let request: ClaimRequest
      try {
        request = ClaimRequest.decode(frame, {
          limits: {
            assignment: { members: GROUP_SIZE_MAX },
            progress: { members: GROUP_SIZE_MAX, reports: GROUP_SIZE_MAX },
          },
        })
      } catch {
        this.rejected.malformed++
        await lp.write(
          ClaimResponse.encode({ status: ClaimResponse.Status.BAD_REQUEST, reason: 'malformed request' }),
          { signal },
        )
        await stream.close({ signal })
        return
      }
      const part = parseClaimRequest(request)
      if (typeof part === 'string') {
        this.rejected.invalid++
        await lp.write(
          ClaimResponse.encode({ status: ClaimResponse.Status.BAD_REQUEST, reason: `invalid ${part}` }),
          { signal },
        )
        await stream.close({ signal })
        return
      }
      let response: ClaimReply
      try {
        response = await this.init.handler(connection.remotePeer, part)
      } catch (error) {
        this.rejected['handler-error']++
        log.error('claim handler failed: %e', error)
        response = { status: ClaimResponse.Status.REFUSED, reason: 'internal error' }
      }
      await lp.write(
        ClaimResponse.encode({
          stateWanted: false,
          ...response,
          reason: response.reason.slice(0, REASON_LENGTH_MAX),
        }),
        { signal },
      )
      await stream.close({ signal })
    } catch (error) {
      log('serving %p failed: %s', connection.remotePeer, (error as Error).message)
      stream.abort(error instanceof Error ? error : new Error(String(error)))
    }
  }

  /** Sends one request and returns the answer; throws ClaimRefusedError unless it is OK. */
  async send(
    peer: PeerId,
    request: Partial<ClaimRequest>,
    options: { signal?: AbortSignal } = {},
  ): Promise<ClaimResponse> {
    const signal = AbortSignal.any([
      AbortSignal.timeout(this.timeoutMs),
      this.shutdown.signal,
      ...(options.signal ? [options.signal] : []),
    ])
    const bytes = ClaimRequest.encode(request)
    if (bytes.byteLength > CLAIM_FRAME_BYTES_MAX) throw new RangeError('claim request too large')
    const stream = await this.init.host.dialProtocol(peer, CLAIM_PROTOCOL, { signal })
    try {
      const lp = boundedLpStream(stream, CLAIM_FRAME_BYTES_MAX)
      await lp.write(bytes, { signal })
      const response = ClaimResponse.decode(await lp.read({ signal }))
      await stream.close({ signal }).catch(() => {})
      if (response.status !== ClaimResponse.Status.OK)
        throw new ClaimRefusedError(response.status, response.reason)
      return response
    } catch (error) {
      stream.abort(error instanceof Error ? error : new Error(String(error)))
      throw error
    }
  }
}
