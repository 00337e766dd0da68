// The public face of the core (etcd's RawNode): feed it ticks, messages and proposals, then take a
// Ready and hand it to handleReady (ready.ts), which persists, sends and applies it in the one order
// every driver uses (protocols/raft/README.md, "The Ready order") and calls advance().
//
//   const node = new RaftNode({ id, storage, random })
//   node.tick() | node.step(message) | node.propose(data)
//   while (node.hasReady()) await handleReady(node, driver) // returns nothing for a synchronous save
//
// The core (raft.ts) stays behind the node: drivers read the leader, role, term, configuration and
// log through the node's accessors and change the core only through tick, step, the proposals,
// campaign, transferLeadership and the Ready cycle.
import { Raft, type RaftConfig } from './raft.js'
import {
  assert,
  type ConfChange,
  type ConfState,
  decodeConfChange,
  type Entry,
  encodeConfChange,
  type HardState,
  hardStateEqual,
  isLocalMessage,
  type MemberId,
  type Message,
  message,
  type Snapshot,
  type StateType,
} from './types.js'

export interface SoftState {
  lead: MemberId
  state: StateType
}

export interface Ready {
  /** Leader and role, when they changed since the last Ready (not persisted). */
  softState?: SoftState
  /** Term, vote and commit to persist, when they changed. */
  hardState?: HardState
  /** Entries to append to storage (replacing any conflicting suffix). */
  entries: Entry[]
  /** A snapshot from the leader: persist it, then load it into the state machine. */
  snapshot?: Snapshot
  /** Entries committed by a quorum: apply them in order. */
  committedEntries: Entry[]
  /** Messages: a leader's appends and heartbeats may leave before the write, the rest once it is durable. */
  messages: Message[]
}

export interface Status {
  id: MemberId
  term: number
  vote: MemberId
  commit: number
  applied: number
  lead: MemberId
  state: StateType
  firstIndex: number
  lastIndex: number
  voters: MemberId[]
  leadTransferee: MemberId
  /** The leader's view of each follower: match index and replication state. */
  progress: Record<MemberId, { match: number; next: number; state: string }>
  /** Peers this member distrusts (distrust()), sorted. */
  distrusted: MemberId[]
  /** Messages from distrusted peers dropped so far. */
  distrustedDropped: number
}

export interface RaftNodeConfig extends RaftConfig {
  /** Committed entry bytes per Ready. @default 67108864 */
  readyCommittedBytesMax?: number
}

/** What a driver may read of a member's log: its bounds, its commit and apply points, terms and entries. */
export interface LogView {
  /** Highest index known to be committed. */
  readonly committed: number
  /** Highest index the application has applied (advance() of the Ready that carried it). */
  readonly applied: number
  firstIndex(): number
  lastIndex(): number
  /** The term at index, or undefined when it is compacted or past the end. */
  term(index: number): number | undefined
  /** Entries [lo, hi), up to bytesMax (at least one). */
  slice(lo: number, hi: number, bytesMax?: number): Entry[]
}

interface PendingReady {
  lastEntry?: { index: number; term: number }
  snapshotIndex?: number
  committed: Entry[]
}

export class RaftNode {
  private readonly raft: Raft
  private previousSoftState: SoftState
  private previousHardState: HardState
  private pending: PendingReady | undefined
  private readonly readyCommittedBytesMax: number

  constructor(config: RaftNodeConfig) {
    this.raft = new Raft(config)
    this.readyCommittedBytesMax = config.readyCommittedBytesMax ?? 64 << 20
    this.previousSoftState = this.softState()
    this.previousHardState = this.raft.hardState()
  }

  get id(): MemberId {
    return this.raft.id
  }

  /** The leader this member knows of, or NONE (''). */
  get lead(): MemberId {
    return this.raft.lead
  }

  /** This member's role: follower, pre-candidate, candidate or leader. */
  get state(): StateType {
    return this.raft.state
  }

  get term(): number {
    return this.raft.term
  }

  /** The log, read-only. */
  get log(): LogView {
    return this.raft.log
  }

  /** The voters of the applied configuration, sorted. */
  voters(): MemberId[] {
    return this.raft.voters()
  }

  /** The applied configuration, as a snapshot records it. */
  confState(): ConfState {
    return this.raft.confState()
  }

  /**
   * The pending membership: members that conf entries already in the log add but that are not yet
   * applied (they become voters as those entries apply, and the leader may already replicate to them).
   */
  pendingVoters(): MemberId[] {
    const log = this.raft.log
    const added: MemberId[] = []
    const from = Math.max(log.applied + 1, log.firstIndex())
    if (from > log.lastIndex()) return added
    for (const entry of log.slice(from, log.lastIndex() + 1)) {
      if (entry.type !== 'conf') continue
      const change = decodeConfChange(entry.data)
      if (change.type === 'add') added.push(change.member)
    }
    return added
  }

  /** Ticks before this member's election timer fires if nothing resets it. */
  ticksUntilElection(): number {
    return Math.max(1, this.raft.randomizedElectionTimeout - this.raft.electionElapsed)
  }

  tick(): void {
    this.raft.tick()
  }

  /** Starts an election now (as an expired election timer would). */
  campaign(): void {
    this.raft.step(message({ type: 'MsgHup', from: this.raft.id }))
  }

  /** Feeds a message from another member. Validating wire input is the transport's job. */
  step(m: Message): void {
    assert(!isLocalMessage(m.type), `local message ${m.type} fed to step()`)
    assert(m.to === this.raft.id, `message for ${m.to} fed to ${this.raft.id}`)
    this.raft.step(m)
  }

  /** Appends data as the leader; throws ProposalDroppedError (with a leader hint) otherwise. */
  propose(data: Uint8Array): { index: number; term: number } {
    return this.raft.propose([{ term: 0, index: 0, type: 'normal', data }])
  }

  /** Proposes several entries at once (one message batch). */
  proposeBatch(items: Uint8Array[]): { index: number; term: number } {
    return this.raft.propose(items.map((data) => ({ term: 0, index: 0, type: 'normal' as const, data })))
  }

  /** Proposes adding or removing one voter; it takes effect as the entry is applied. */
  proposeConfChange(change: ConfChange): { index: number; term: number } {
    return this.raft.propose([{ term: 0, index: 0, type: 'conf', data: encodeConfChange(change) }])
  }

  /** Asks the leader to hand leadership to `transferee` once it is caught up. */
  transferLeadership(transferee: MemberId): void {
    if (this.raft.state !== 'leader') return
    this.raft.step(message({ type: 'MsgTransferLeader', from: transferee }))
  }

  /**
   * Stops trusting `peer` for the life of this node: it gets no vote or pre-vote from this member,
   * everything it sends is dropped (and counted in status().distrustedDropped), and if it is this
   * member's leader the member forgets it and campaigns once its election timer runs out. Raft's
   * safety is untouched (raft.ts, Raft.distrust, says why). Returns whether `peer` was newly
   * distrusted; distrusting oneself does nothing.
   */
  distrust(peer: MemberId): boolean {
    return this.raft.distrust(peer)
  }

  /** The peers this member distrusts. */
  distrusted(): ReadonlySet<MemberId> {
    return this.raft.distrusted
  }

  private softState(): SoftState {
    return { lead: this.raft.lead, state: this.raft.state }
  }

  hasReady(): boolean {
    assert(this.pending === undefined, 'hasReady() before advance() of the previous Ready')
    if (this.raft.appendsPending) return true
    const soft = this.softState()
    if (soft.lead !== this.previousSoftState.lead || soft.state !== this.previousSoftState.state) return true
    if (!hardStateEqual(this.raft.hardState(), this.previousHardState)) return true
    const log = this.raft.log
    if (log.nextUnstableSnapshot()) return true
    if (this.raft.messages.length > 0 || log.hasNextUnstableEntries()) return true
    return log.hasNextCommittedEntries()
  }

  ready(): Ready {
    assert(this.pending === undefined, 'ready() before advance() of the previous Ready')
    this.raft.flushAppends()
    const log = this.raft.log
    const ready: Ready = {
      entries: log.nextUnstableEntries(),
      committedEntries: log.nextCommittedEntries(this.readyCommittedBytesMax),
      messages: this.raft.messages,
    }
    this.raft.messages = []
    const soft = this.softState()
    if (soft.lead !== this.previousSoftState.lead || soft.state !== this.previousSoftState.state) {
      ready.softState = soft
      this.previousSoftState = soft
    }
    const hard = this.raft.hardState()
    if (!hardStateEqual(hard, this.previousHardState)) {
      ready.hardState = hard
      this.previousHardState = hard
    }
    const snapshot = log.nextUnstableSnapshot()
    if (snapshot) {
      ready.snapshot = snapshot
      log.unstable.snapshotInProgress = true
    }
    log.unstable.entriesInProgress = log.unstable.entries.length
    const pending: PendingReady = { committed: ready.committedEntries }
    if (ready.entries.length > 0) {
      const last = ready.entries[ready.entries.length - 1]
      pending.lastEntry = { index: last.index, term: last.term }
    }
    if (snapshot) pending.snapshotIndex = snapshot.metadata.index
    if (ready.committedEntries.length > 0) {
      log.applying = ready.committedEntries[ready.committedEntries.length - 1].index
      this.raft.reduceUncommittedBytes(ready.committedEntries)
    }
    this.pending = pending
    return ready
  }

  /** Acknowledges that the last Ready was persisted, sent and applied (handleReady calls it). */
  advance(): void {
    const pending = this.pending
    assert(pending, 'advance() without a Ready')
    this.pending = undefined
    const log = this.raft.log
    if (pending.snapshotIndex !== undefined) {
      log.unstable.stableSnapTo(pending.snapshotIndex)
      if (log.applied < pending.snapshotIndex) log.appliedTo(pending.snapshotIndex)
    }
    if (pending.lastEntry) log.unstable.stableTo(pending.lastEntry.index, pending.lastEntry.term)
    for (const entry of pending.committed) {
      this.raft.applyConfEntry(entry)
      log.appliedTo(entry.index)
    }
    this.raft.onPersisted()
  }

  status(): Status {
    const raft = this.raft
    const progress: Status['progress'] = {}
    if (raft.state === 'leader') {
      for (const [id, pr] of raft.progress) progress[id] = { match: pr.match, next: pr.next, state: pr.state }
    }
    return {
      id: raft.id,
      term: raft.term,
      vote: raft.vote,
      commit: raft.log.committed,
      applied: raft.log.applied,
      lead: raft.lead,
      state: raft.state,
      firstIndex: raft.log.firstIndex(),
      lastIndex: raft.log.lastIndex(),
      voters: raft.voters(),
      leadTransferee: raft.leadTransferee,
      progress,
      distrusted: [...raft.distrusted].sort(),
      distrustedDropped: raft.distrustedDropped,
    }
  }
}
