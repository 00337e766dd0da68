// The shapes the Raft core consumes and produces. They mirror etcd-io/raft's raftpb, with
// string member ids (libp2p peer ids in the daemon, '1'..'n' in tests and the simulator).

export type MemberId = string
/** The id meaning "nobody" (no vote cast, no leader known). */
export const NONE: MemberId = ''

export type EntryType = 'normal' | 'conf'

export interface Entry {
  term: number
  index: number
  type: EntryType
  data: Uint8Array
}

export interface HardState {
  term: number
  vote: MemberId
  commit: number
}

export interface ConfState {
  voters: MemberId[]
}

export interface SnapshotMetadata {
  index: number
  term: number
  confState: ConfState
}

export interface Snapshot {
  metadata: SnapshotMetadata
  data: Uint8Array
}

export type ConfChangeType = 'add' | 'remove'

/** A single-server membership change (Raft dissertation 4.1), carried in a 'conf' entry. */
export interface ConfChange {
  type: ConfChangeType
  member: MemberId
}

export type MessageType =
  | 'MsgHup' // local: start an election
  | 'MsgBeat' // local: leader sends heartbeats
  | 'MsgCheckQuorum' // local: leader checks it still hears from a quorum
  | 'MsgApp'
  | 'MsgAppResp'
  | 'MsgVote'
  | 'MsgVoteResp'
  | 'MsgPreVote'
  | 'MsgPreVoteResp'
  | 'MsgSnap' // one chunk of an InstallSnapshot transfer
  | 'MsgSnapResp' // acknowledges the bytes of a snapshot received so far
  | 'MsgHeartbeat'
  | 'MsgHeartbeatResp'
  | 'MsgTransferLeader' // local on the leader: hand leadership to `from`
  | 'MsgTimeoutNow' // leader -> transferee: campaign now, skipping pre-vote and leases

export const MESSAGE_TYPES: readonly MessageType[] = [
  'MsgHup',
  'MsgBeat',
  'MsgCheckQuorum',
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
  'MsgTransferLeader',
  'MsgTimeoutNow',
]

/** One chunk of a snapshot in flight: bytes [offset, offset + data.length) of the snapshot data. */
export interface SnapshotChunk {
  metadata: SnapshotMetadata
  offset: number
  totalBytes: number
  data: Uint8Array
}

export interface Message {
  type: MessageType
  from: MemberId
  to: MemberId
  term: number
  /**
   * MsgApp: term of the entry at `index`; vote requests: candidate's last log term; rejections:
   * hint term.
   */
  logTerm: number
  /** MsgApp: index preceding `entries`; MsgAppResp: last index matched (or rejected probe index). */
  index: number
  entries: Entry[]
  commit: number
  reject: boolean
  rejectHint: number
  /** Vote requests sent on a leader transfer ignore leases (etcd's campaignTransfer context). */
  transfer: boolean
  snapshot?: SnapshotChunk
}

export type StateType = 'follower' | 'pre-candidate' | 'candidate' | 'leader'

export function emptyHardState(): HardState {
  return { term: 0, vote: NONE, commit: 0 }
}

export function isEmptyHardState(state: HardState): boolean {
  return state.term === 0 && state.vote === NONE && state.commit === 0
}

export function hardStateEqual(a: HardState, b: HardState): boolean {
  return a.term === b.term && a.vote === b.vote && a.commit === b.commit
}

export function emptySnapshot(): Snapshot {
  return { metadata: { index: 0, term: 0, confState: { voters: [] } }, data: new Uint8Array(0) }
}

/** Builds a message with every field defaulted, so handlers only name what they set. */
export function message(fields: Partial<Message> & Pick<Message, 'type'>): Message {
  return {
    from: NONE,
    to: NONE,
    term: 0,
    logTerm: 0,
    index: 0,
    entries: [],
    commit: 0,
    reject: false,
    rejectHint: 0,
    transfer: false,
    ...fields,
  }
}

export function isLocalMessage(type: MessageType): boolean {
  return type === 'MsgHup' || type === 'MsgBeat' || type === 'MsgCheckQuorum' || type === 'MsgTransferLeader'
}

export function isResponseMessage(type: MessageType): boolean {
  return (
    type === 'MsgAppResp' ||
    type === 'MsgVoteResp' ||
    type === 'MsgPreVoteResp' ||
    type === 'MsgHeartbeatResp' ||
    type === 'MsgSnapResp'
  )
}

export function voteResponseType(type: MessageType): MessageType {
  if (type === 'MsgVote') return 'MsgVoteResp'
  if (type === 'MsgPreVote') return 'MsgPreVoteResp'
  throw new RaftAssertionError(`not a vote message: ${type}`)
}

const textEncoder = new TextEncoder()
const textDecoder = new TextDecoder()

export function encodeConfChange(change: ConfChange): Uint8Array {
  return textEncoder.encode(JSON.stringify({ type: change.type, member: change.member }))
}

/** Decodes a conf entry's payload; a malformed one is a programmer error (only the leader writes them). */
export function decodeConfChange(data: Uint8Array): ConfChange {
  const parsed = JSON.parse(textDecoder.decode(data)) as { type?: unknown; member?: unknown }
  if ((parsed.type !== 'add' && parsed.type !== 'remove') || typeof parsed.member !== 'string') {
    throw new RaftAssertionError('malformed conf change entry')
  }
  return { type: parsed.type, member: parsed.member }
}

export function entryBytes(entry: Entry): number {
  return entry.data.length
}

/** A broken invariant inside the core: a bug, never an operating condition. Stays on and crashes. */
export class RaftAssertionError extends Error {
  static override name = 'RaftAssertionError'
  constructor(message: string) {
    super(message)
    this.name = 'RaftAssertionError'
  }
}

export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new RaftAssertionError(message)
}

/** A proposal the core did not append (not leader, transfer in progress, too much uncommitted data). */
export class ProposalDroppedError extends Error {
  static override name = 'ProposalDroppedError'
  readonly reason: 'not-leader' | 'transferring' | 'uncommitted-limit' | 'conf-change-pending' | 'removed'
  /** The leader this member knows of, NONE if none: where a client should retry. */
  readonly leader: MemberId
  constructor(reason: ProposalDroppedError['reason'], leader: MemberId) {
    super(`proposal dropped: ${reason}`)
    this.name = 'ProposalDroppedError'
    this.reason = reason
    this.leader = leader
  }
}
