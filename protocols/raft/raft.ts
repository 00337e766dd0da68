// The Raft state machine (Ongaro & Ousterhout, "In Search of an Understandable Consensus
// Algorithm", and the dissertation for pre-vote, check-quorum, membership and leader transfer),
// written after etcd-io/raft's raft.go. It is pure: inputs are messages, ticks and proposals;
// outputs are appended to `messages` and to the log's unstable part, and RaftNode turns them into
// Ready batches. No clock, timer, socket, file or Math.random in here.
import { RaftLog } from './log.js'
import { Progress } from './progress.js'
import type { Random } from './random.js'
import { CompactedError, type Storage } from './storage.js'
import {
  assert,
  type ConfChange,
  type ConfState,
  decodeConfChange,
  type Entry,
  entryBytes,
  type HardState,
  isLocalMessage,
  type MemberId,
  type Message,
  message,
  NONE,
  ProposalDroppedError,
  type Snapshot,
  type SnapshotMetadata,
  type StateType,
  voteResponseType,
} from './types.js'

/** Ticks without hearing from a leader before campaigning (before randomization). */
export const ELECTION_TICKS_DEFAULT = 10
/** Ticks between a leader's heartbeats. */
export const HEARTBEAT_TICKS_DEFAULT = 1

export interface RaftConfig {
  /** This member's id; never NONE. */
  id: MemberId
  storage: Storage
  /** Seeded randomness for election jitter. */
  random: Random
  /** Ticks without hearing from a leader before campaigning (randomized to [n, 2n)). @default 10 */
  electionTicks?: number
  /** Ticks between a leader's heartbeats. @default 1 */
  heartbeatTicks?: number
  /** Section 9.6 of the dissertation: a pre-election that does not disturb terms. @default true */
  preVote?: boolean
  /** Leader steps down when it has not heard from a quorum for an election timeout. @default true */
  checkQuorum?: boolean
  /** Entry bytes per MsgApp (batching). @default 1048576 */
  messageBytesMax?: number
  /** Appends in flight per follower (pipelining window). @default 256 */
  inflightMessagesMax?: number
  /**
   * Entry bytes in flight per follower (bounds head-of-line delay of heartbeats behind appends).
   * @default 8388608
   */
  inflightBytesMax?: number
  /**
   * Entry bytes appended by the leader but not yet committed before proposals are refused.
   * @default 268435456
   */
  uncommittedBytesMax?: number
  /** Bytes per InstallSnapshot chunk. @default 262144 */
  snapshotChunkBytes?: number
  /** Largest snapshot a follower accepts. @default 1073741824 */
  snapshotBytesMax?: number
  /** The index the application had applied before a restart. @default 0 */
  applied?: number
  /** Where the core narrates its transitions (transcripts, debug logs). @default none */
  logger?: (line: string) => void
}

interface IncomingSnapshot {
  metadata: SnapshotMetadata
  totalBytes: number
  parts: Uint8Array[]
  received: number
}

export class Raft {
  readonly id: MemberId
  term = 0
  vote: MemberId = NONE
  lead: MemberId = NONE
  state: StateType = 'follower'
  readonly log: RaftLog
  /** Voters' progress (the leader's own included); kept on every member so config is known. */
  progress = new Map<MemberId, Progress>()
  /** Messages produced since the last Ready. */
  messages: Message[] = []
  votes = new Map<MemberId, boolean>()
  leadTransferee: MemberId = NONE
  /** A conf change may not be proposed while one at an index above applied is pending. */
  pendingConfIndex = 0
  uncommittedBytes = 0
  /** Proposals appended since the last flush, not yet offered to followers. */
  appendsPending = false
  electionElapsed = 0
  heartbeatElapsed = 0
  randomizedElectionTimeout = 0
  readonly electionTicks: number
  readonly heartbeatTicks: number
  readonly preVote: boolean
  readonly checkQuorum: boolean
  private readonly random: Random
  private readonly messageBytesMax: number
  private readonly inflightMessagesMax: number
  private readonly inflightBytesMax: number
  private readonly uncommittedBytesMax: number
  private readonly snapshotChunkBytes: number
  private readonly snapshotBytesMax: number
  private readonly logger: (line: string) => void
  private incomingSnapshot: IncomingSnapshot | undefined
  /** Peers this member stopped trusting (distrust()), for the life of this object: never cleared. */
  readonly distrusted = new Set<MemberId>()
  /** Messages from distrusted peers dropped by step(). */
  distrustedDropped = 0

  constructor(config: RaftConfig) {
    assert(config.id !== NONE, 'a member id must not be empty')
    this.id = config.id
    this.random = config.random
    this.electionTicks = config.electionTicks ?? ELECTION_TICKS_DEFAULT
    this.heartbeatTicks = config.heartbeatTicks ?? HEARTBEAT_TICKS_DEFAULT
    assert(this.heartbeatTicks > 0, 'heartbeatTicks must be positive')
    assert(this.electionTicks > this.heartbeatTicks, 'electionTicks must exceed heartbeatTicks')
    this.preVote = config.preVote ?? true
    this.checkQuorum = config.checkQuorum ?? true
    this.messageBytesMax = config.messageBytesMax ?? 1 << 20
    this.inflightMessagesMax = config.inflightMessagesMax ?? 256
    this.inflightBytesMax = config.inflightBytesMax ?? 8 << 20
    this.uncommittedBytesMax = config.uncommittedBytesMax ?? 256 << 20
    this.snapshotChunkBytes = config.snapshotChunkBytes ?? 256 << 10
    this.snapshotBytesMax = config.snapshotBytesMax ?? 1 << 30
    this.logger = config.logger ?? (() => {})
    this.log = new RaftLog(config.storage)
    const { hardState, confState } = config.storage.initialState()
    this.resetConfig(confState)
    if (hardState.term !== 0 || hardState.vote !== NONE || hardState.commit !== 0)
      this.loadHardState(hardState)
    if (config.applied !== undefined && config.applied > 0) this.log.appliedTo(config.applied)
    this.becomeFollower(this.term, NONE)
    this.logger(
      `newRaft ${this.id} [peers: [${this.voters().join(',')}], term: ${this.term}, commit: ` +
        `${this.log.committed}, applied: ${this.log.applied}, lastindex: ${this.log.lastIndex()}, ` +
        `lastterm: ${this.log.lastTerm()}]`,
    )
  }

  // ----- configuration -----

  voters(): MemberId[] {
    return [...this.progress.keys()].sort()
  }

  confState(): ConfState {
    return { voters: this.voters() }
  }

  private newProgress(): Progress {
    const progress = new Progress(this.log.lastIndex() + 1, this.inflightMessagesMax, this.inflightBytesMax)
    progress.recentActive = true
    return progress
  }

  private resetConfig(confState: ConfState): void {
    this.progress = new Map()
    for (const voter of confState.voters) this.progress.set(voter, this.newProgress())
  }

  /** A member may campaign only while it is a voter in its own configuration. */
  promotable(): boolean {
    return this.progress.has(this.id)
  }

  private quorum(): number {
    return Math.floor(this.progress.size / 2) + 1
  }

  private loadHardState(state: HardState): void {
    // A snapshot is committed by definition, so a hard state written before it may lag behind it.
    assert(
      state.commit <= this.log.lastIndex(),
      `hard state commit ${state.commit} is past the last index ${this.log.lastIndex()}`,
    )
    this.log.committed = Math.max(state.commit, this.log.committed)
    this.term = state.term
    this.vote = state.vote
  }

  hardState(): HardState {
    return { term: this.term, vote: this.vote, commit: this.log.committed }
  }

  // ----- role transitions -----

  private reset(term: number): void {
    this.appendsPending = false
    if (this.term !== term) {
      this.term = term
      this.vote = NONE
    }
    this.lead = NONE
    this.electionElapsed = 0
    this.heartbeatElapsed = 0
    this.resetRandomizedElectionTimeout()
    this.abortLeaderTransfer()
    this.votes = new Map()
    const lastIndex = this.log.lastIndex()
    for (const id of [...this.progress.keys()]) {
      const fresh = new Progress(lastIndex + 1, this.inflightMessagesMax, this.inflightBytesMax)
      if (id === this.id) fresh.match = this.log.persistedLastIndex()
      this.progress.set(id, fresh)
    }
    this.pendingConfIndex = 0
    this.uncommittedBytes = 0
  }

  private resetRandomizedElectionTimeout(): void {
    this.randomizedElectionTimeout = this.electionTicks + this.random.int(this.electionTicks)
  }

  becomeFollower(term: number, lead: MemberId): void {
    this.reset(term)
    this.lead = lead
    this.state = 'follower'
    this.logger(`${this.id} became follower at term ${this.term}`)
  }

  becomePreCandidate(): void {
    assert(this.state !== 'leader', 'invalid transition [leader -> pre-candidate]')
    // Pre-vote changes neither term nor vote (dissertation 9.6).
    this.votes = new Map()
    this.lead = NONE
    this.state = 'pre-candidate'
    this.logger(`${this.id} became pre-candidate at term ${this.term}`)
  }

  becomeCandidate(): void {
    assert(this.state !== 'leader', 'invalid transition [leader -> candidate]')
    this.reset(this.term + 1)
    this.vote = this.id
    this.state = 'candidate'
    this.logger(`${this.id} became candidate at term ${this.term}`)
  }

  becomeLeader(): void {
    assert(this.state !== 'follower', 'invalid transition [follower -> leader]')
    this.reset(this.term)
    this.lead = this.id
    this.state = 'leader'
    const self = this.progress.get(this.id)
    assert(self, 'leader is not in its own configuration')
    self.becomeReplicate()
    self.match = this.log.persistedLastIndex()
    self.next = this.log.lastIndex() + 1
    // Section 5.4.2 / 8: an empty entry of the new term lets earlier-term entries commit.
    const appended = this.appendEntries([{ term: 0, index: 0, type: 'normal', data: new Uint8Array(0) }])
    assert(appended, 'empty entry dropped on becoming leader')
    // Conf changes wait until that entry is applied: the fix Ongaro gave for the single-server
    // change bug (a new leader must commit an entry of its term before changing membership).
    this.pendingConfIndex = this.log.lastIndex()
    this.logger(`${this.id} became leader at term ${this.term}`)
  }

  // ----- ticks -----

  tick(): void {
    if (this.state === 'leader') this.tickHeartbeat()
    else this.tickElection()
  }

  private tickElection(): void {
    this.electionElapsed++
    if (this.promotable() && this.electionElapsed >= this.randomizedElectionTimeout) {
      this.electionElapsed = 0
      this.step(message({ type: 'MsgHup', from: this.id }))
    }
  }

  private tickHeartbeat(): void {
    this.heartbeatElapsed++
    this.electionElapsed++
    if (this.electionElapsed >= this.electionTicks) {
      this.electionElapsed = 0
      if (this.checkQuorum) this.step(message({ type: 'MsgCheckQuorum', from: this.id }))
      // a transfer that did not finish within an election timeout is abandoned
      if (this.state === 'leader' && this.leadTransferee !== NONE) this.abortLeaderTransfer()
    }
    if (this.state !== 'leader') return
    if (this.heartbeatElapsed >= this.heartbeatTicks) {
      this.heartbeatElapsed = 0
      this.step(message({ type: 'MsgBeat', from: this.id }))
    }
  }

  // ----- sending -----

  private send(m: Message): void {
    if (m.from === NONE) m.from = this.id
    const isVote = m.type === 'MsgVote' || m.type === 'MsgPreVote'
    const isVoteResponse = m.type === 'MsgVoteResp' || m.type === 'MsgPreVoteResp'
    if (isVote || isVoteResponse) {
      // votes carry the term they are for (a pre-vote's is our term + 1)
      assert(m.term !== 0, `term should be set when sending ${m.type}`)
    } else {
      assert(m.term === 0, `term should not be set when sending ${m.type} (was ${m.term})`)
      m.term = this.term
    }
    this.messages.push(m)
  }

  /** Sends an append (or a snapshot) to `to` if flow control allows; returns whether it sent. */
  maybeSendAppend(to: MemberId, sendIfEmpty: boolean): boolean {
    const progress = this.progress.get(to)
    if (!progress || progress.isPaused()) return false
    const prevIndex = progress.next - 1
    const prevTerm = this.log.term(prevIndex)
    if (prevTerm === undefined) return this.maybeSendSnapshot(to, progress)
    let entries: Entry[] = []
    if (progress.state !== 'replicate' || !progress.inflights.full()) {
      try {
        entries = this.log.entriesFrom(progress.next, this.messageBytesMax)
      } catch (error) {
        if (error instanceof CompactedError) return this.maybeSendSnapshot(to, progress)
        throw error
      }
    }
    if (entries.length === 0 && !sendIfEmpty) return false
    let bytes = 0
    for (const entry of entries) bytes += entryBytes(entry)
    this.send(
      message({
        type: 'MsgApp',
        to,
        index: prevIndex,
        logTerm: prevTerm,
        entries,
        commit: this.log.committed,
      }),
    )
    progress.sentEntries(entries.length, bytes)
    return true
  }

  sendAppend(to: MemberId): void {
    this.maybeSendAppend(to, true)
  }

  private maybeSendSnapshot(to: MemberId, progress: Progress): boolean {
    if (!progress.recentActive) {
      this.logger(`ignore sending snapshot to ${to} since it is not recently active`)
      return false
    }
    const snapshot = this.log.snapshot()
    assert(snapshot.metadata.index > 0, 'need a non-empty snapshot to catch up a follower')
    this.logger(
      `${this.id} [firstindex: ${this.log.firstIndex()}, commit: ${this.log.committed}] sent ` +
        `snapshot[index: ${snapshot.metadata.index}, term: ${snapshot.metadata.term}] to ${to}`,
    )
    progress.becomeSnapshot(snapshot)
    this.sendSnapshotChunk(to, progress)
    return true
  }

  /** Sends the chunk of the pending snapshot that starts at the follower's acknowledged offset. */
  private sendSnapshotChunk(to: MemberId, progress: Progress): void {
    const snapshot = progress.pendingSnapshot
    assert(snapshot, 'no pending snapshot to send')
    const offset = progress.snapshotOffset
    const data = snapshot.data.subarray(offset, offset + this.snapshotChunkBytes)
    this.send(
      message({
        type: 'MsgSnap',
        to,
        snapshot: { metadata: snapshot.metadata, offset, totalBytes: snapshot.data.length, data },
      }),
    )
  }

  private sendHeartbeat(to: MemberId): void {
    const progress = this.progress.get(to)
    assert(progress, `heartbeat to unknown member ${to}`)
    // a follower may only learn a commit index it can match
    const commit = Math.min(progress.match, this.log.committed)
    this.send(message({ type: 'MsgHeartbeat', to, commit }))
  }

  /** Sends the proposals batched since the last Ready (called as a Ready is built). */
  flushAppends(): void {
    if (!this.appendsPending) return
    this.appendsPending = false
    if (this.state !== 'leader') return
    // fill each follower's inflight window: several size-limited appends may go at once (pipelining)
    for (const id of this.progress.keys()) {
      if (id === this.id) continue
      while (this.maybeSendAppend(id, false)) {}
    }
  }

  bcastAppend(): void {
    for (const id of this.progress.keys()) if (id !== this.id) this.sendAppend(id)
  }

  private bcastHeartbeat(): void {
    for (const id of this.progress.keys()) if (id !== this.id) this.sendHeartbeat(id)
  }

  // ----- appending and committing -----

  /** Appends new entries as leader, stamping term and index; false if the uncommitted limit is hit. */
  appendEntries(entries: Entry[]): boolean {
    let bytes = 0
    for (const entry of entries) bytes += entryBytes(entry)
    if (this.uncommittedBytes > 0 && bytes > 0 && this.uncommittedBytes + bytes > this.uncommittedBytesMax) {
      return false
    }
    this.uncommittedBytes += bytes
    let index = this.log.lastIndex()
    const stamped = entries.map((entry) => ({ ...entry, term: this.term, index: ++index }))
    this.log.append(stamped)
    return true
  }

  /** Counts the leader's own durable entries once the driver has persisted them. */
  onPersisted(): void {
    if (this.state !== 'leader') return
    const self = this.progress.get(this.id)
    if (!self) return
    if (self.maybeUpdate(this.log.persistedLastIndex()) && this.maybeCommit()) this.bcastAppend()
  }

  /** Sections 5.3 and 5.4.2: commit the highest index a quorum holds, if it is of this term. */
  maybeCommit(): boolean {
    const matches = [...this.progress.values()].map((progress) => progress.match).sort((a, b) => b - a)
    const quorumIndex = matches[this.quorum() - 1]
    return this.log.maybeCommit(quorumIndex, this.term)
  }

  reduceUncommittedBytes(entries: Entry[]): void {
    if (this.state !== 'leader') return
    let bytes = 0
    for (const entry of entries) bytes += entryBytes(entry)
    this.uncommittedBytes = Math.max(0, this.uncommittedBytes - bytes)
  }

  // ----- proposals -----

  propose(entries: Entry[]): { index: number; term: number } {
    if (this.state !== 'leader') throw new ProposalDroppedError('not-leader', this.lead)
    if (!this.progress.has(this.id)) throw new ProposalDroppedError('removed', NONE)
    if (this.leadTransferee !== NONE) throw new ProposalDroppedError('transferring', this.leadTransferee)
    for (let i = 0; i < entries.length; i++) {
      if (entries[i].type !== 'conf') continue
      if (this.pendingConfIndex > this.log.applied) {
        throw new ProposalDroppedError('conf-change-pending', this.id)
      }
      this.pendingConfIndex = this.log.lastIndex() + i + 1
    }
    if (!this.appendEntries(entries)) throw new ProposalDroppedError('uncommitted-limit', this.id)
    // Batching: proposals made before the next Ready go out together in one append per follower
    // (RaftNode.ready() flushes), instead of one message per proposal.
    this.appendsPending = true
    return { index: this.log.lastIndex(), term: this.term }
  }

  // ----- elections -----

  private hasUnappliedConfChanges(): boolean {
    if (this.log.applied >= this.log.committed) return false
    const lo = this.log.applied + 1
    const hi = this.log.committed + 1
    try {
      for (const entry of this.log.slice(lo, hi)) if (entry.type === 'conf') return true
    } catch (error) {
      if (error instanceof CompactedError) return false
      throw error
    }
    return false
  }

  private hup(kind: 'pre-election' | 'election' | 'transfer'): void {
    if (this.state === 'leader') {
      this.logger(`${this.id} ignoring MsgHup because already leader`)
      return
    }
    if (!this.promotable()) {
      this.logger(`${this.id} is unpromotable and can not campaign`)
      return
    }
    if (this.hasUnappliedConfChanges()) {
      this.logger(
        `${this.id} cannot campaign at term ${this.term} ` +
          `since there are still pending configuration changes to apply`,
      )
      return
    }
    this.logger(`${this.id} is starting a new election at term ${this.term}`)
    this.campaign(kind)
  }

  campaign(kind: 'pre-election' | 'election' | 'transfer'): void {
    let term: number
    let type: 'MsgPreVote' | 'MsgVote'
    if (kind === 'pre-election') {
      this.becomePreCandidate()
      type = 'MsgPreVote'
      term = this.term + 1 // sent for the next term without incrementing ours
    } else {
      this.becomeCandidate()
      type = 'MsgVote'
      term = this.term
    }
    // our own vote: recorded in the hard state that is persisted before these messages leave
    if (this.poll(this.id, type === 'MsgVote' ? 'MsgVoteResp' : 'MsgPreVoteResp', true) === 'won') {
      // a single-member group wins at once
      if (kind === 'pre-election') this.campaign('election')
      else this.becomeLeader()
      return
    }
    const lastIndex = this.log.lastIndex()
    const lastTerm = this.log.lastTerm()
    for (const id of this.voters()) {
      if (id === this.id) continue
      this.logger(
        `${this.id} [logterm: ${lastTerm}, index: ${lastIndex}] ` +
          `sent ${type} request to ${id} at term ${this.term}`,
      )
      this.send(
        message({ type, to: id, term, index: lastIndex, logTerm: lastTerm, transfer: kind === 'transfer' }),
      )
    }
  }

  private poll(id: MemberId, type: string, granted: boolean): 'won' | 'lost' | 'pending' {
    if (id !== this.id) {
      this.logger(`${this.id} received ${type} ${granted ? '' : 'rejection '}from ${id} at term ${this.term}`)
    }
    if (!this.votes.has(id)) this.votes.set(id, granted)
    let grantedCount = 0
    let rejectedCount = 0
    for (const voter of this.progress.keys()) {
      const vote = this.votes.get(voter)
      if (vote === true) grantedCount++
      else if (vote === false) rejectedCount++
    }
    const quorum = this.quorum()
    if (grantedCount >= quorum) return 'won'
    if (rejectedCount > this.progress.size - quorum) return 'lost'
    return 'pending'
  }

  // ----- distrust -----

  /**
   * Stops trusting `peer` for the life of this member (not persisted: a restarted process trusts
   * again). From now on everything `peer` sends is dropped by step(): its appends, heartbeats,
   * snapshot chunks and MsgTimeoutNow, its vote requests (it gets no vote and no pre-vote from us), its
   * votes and its acknowledgements (a liar's word counts for nothing: a fake acknowledgement would let
   * a leader commit an entry a quorum does not hold, a second vote in one term would elect two
   * leaders), and any term it claims (it cannot push ours up). If it is our leader we forget it, so
   * our election timer runs out and we campaign as if it had died; a vote it gave us and its match
   * index as our follower stop counting. Returns whether `peer` was newly distrusted; a member never
   * distrusts itself, and distrusting a peer outside the configuration only drops its messages.
   *
   * Safety (log matching, leader completeness, state machine safety) is untouched, because distrust
   * only ever does things Raft's proof already allows: (1) dropping messages is message loss, which
   * the proof assumes of the network; (2) `lead` is soft state, no rule of the proof reads it (it
   * gates votes only as etcd's liveness refinement; our vote stays recorded, one per term); (3) a
   * withheld vote is a lost vote request and a forgotten vote received is a lost response, so every
   * leader still holds the votes of a quorum of the term; (4) lowering a follower's match index only
   * delays commitment (commit never moves back), so every committed index still counts acknowledgements
   * from a quorum, each of which answered an append carrying that entry. The property test
   * (test/unit/raft/property.test.ts) injects distrust at random and checks safety against its model.
   */
  distrust(peer: MemberId): boolean {
    if (peer === this.id || peer === NONE || this.distrusted.has(peer)) return false
    this.distrusted.add(peer)
    this.logger(`${this.id} [term: ${this.term}] distrusts ${peer}`)
    if (this.lead === peer) this.lead = NONE
    this.votes.delete(peer)
    const progress = this.progress.get(peer)
    if (progress && this.state === 'leader') progress.match = 0
    if (this.leadTransferee === peer) this.abortLeaderTransfer()
    return true
  }

  // ----- the step function -----

  step(m: Message): void {
    if (m.from !== this.id && this.distrusted.has(m.from)) {
      this.distrustedDropped++
      if (m.type === 'MsgTransferLeader') {
        this.logger(`${this.id} ignored transferring leadership to distrusted ${m.from}`)
      } else {
        this.logger(
          `${this.id} [term: ${this.term}] dropped ${m.type} from distrusted ${m.from} [term: ${m.term}]`,
        )
      }
      return
    }
    if (m.term === 0) {
      assert(isLocalMessage(m.type), `non-local ${m.type} without a term`)
    } else if (m.term > this.term) {
      if (m.type === 'MsgVote' || m.type === 'MsgPreVote') {
        const inLease = this.checkQuorum && this.lead !== NONE && this.electionElapsed < this.electionTicks
        if (!m.transfer && inLease) {
          // Dissertation 4.2.3: a member that hears from a leader ignores disruptive candidates.
          this.logger(
            `${this.id} [logterm: ${this.log.lastTerm()}, index: ${this.log.lastIndex()}, vote: ` +
              `${this.vote}] ignored ${m.type} from ${m.from} [logterm: ${m.logTerm}, index: ${m.index}] ` +
              `at term ${this.term}: lease is not expired`,
          )
          return
        }
      }
      if (m.type === 'MsgPreVote') {
        // never change our term in response to a pre-vote
      } else if (m.type === 'MsgPreVoteResp' && !m.reject) {
        // a granted pre-vote carries the term we asked for; we move to it only on winning
      } else {
        this.logger(
          `${this.id} [term: ${this.term}] received a ${m.type} message with higher term from ` +
            `${m.from} [term: ${m.term}]`,
        )
        if (m.type === 'MsgApp' || m.type === 'MsgHeartbeat' || m.type === 'MsgSnap') {
          this.becomeFollower(m.term, m.from)
        } else {
          this.becomeFollower(m.term, NONE)
        }
      }
    } else if (m.term < this.term) {
      if ((this.checkQuorum || this.preVote) && (m.type === 'MsgHeartbeat' || m.type === 'MsgApp')) {
        // A stale leader (e.g. healed from a partition) learns our term and steps down; without
        // this a member stuck with pre-vote could never be told to.
        this.send(message({ type: 'MsgAppResp', to: m.from }))
      } else if (m.type === 'MsgPreVote') {
        this.send(message({ type: 'MsgPreVoteResp', to: m.from, term: this.term, reject: true }))
      } else {
        this.logger(
          `${this.id} [term: ${this.term}] ignored a ${m.type} message with lower term from ${m.from} ` +
            `[term: ${m.term}]`,
        )
      }
      return
    }

    switch (m.type) {
      case 'MsgHup':
        this.hup(this.preVote ? 'pre-election' : 'election')
        return
      case 'MsgVote':
      case 'MsgPreVote': {
        // Section 5.2 and 5.4.1: one vote per term, only for a log at least as up to date.
        const canVote =
          this.vote === m.from ||
          (this.vote === NONE && this.lead === NONE) ||
          (m.type === 'MsgPreVote' && m.term > this.term)
        if (canVote && this.log.isUpToDate(m.index, m.logTerm)) {
          this.logger(
            `${this.id} [logterm: ${this.log.lastTerm()}, index: ${this.log.lastIndex()}, vote: ` +
              `${this.vote}] cast ${m.type} for ${m.from} [logterm: ${m.logTerm}, index: ${m.index}] at ` +
              `term ${this.term}`,
          )
          this.send(message({ type: voteResponseType(m.type), to: m.from, term: m.term }))
          if (m.type === 'MsgVote') {
            this.electionElapsed = 0
            this.vote = m.from
          }
        } else {
          this.logger(
            `${this.id} [logterm: ${this.log.lastTerm()}, index: ${this.log.lastIndex()}, vote: ` +
              `${this.vote}] rejected ${m.type} from ${m.from} [logterm: ${m.logTerm}, index: ` +
              `${m.index}] at term ${this.term}`,
          )
          this.send(message({ type: voteResponseType(m.type), to: m.from, term: this.term, reject: true }))
        }
        return
      }
    }
    if (this.state === 'leader') this.stepLeader(m)
    else if (this.state === 'follower') this.stepFollower(m)
    else this.stepCandidate(m)
  }

  private stepLeader(m: Message): void {
    switch (m.type) {
      case 'MsgBeat':
        this.bcastHeartbeat()
        return
      case 'MsgCheckQuorum': {
        let active = 0
        for (const [id, progress] of this.progress) if (id === this.id || progress.recentActive) active++
        if (active < this.quorum()) {
          this.logger(`${this.id} stepped down to follower since quorum is not active`)
          this.becomeFollower(this.term, NONE)
        }
        for (const [id, progress] of this.progress) if (id !== this.id) progress.recentActive = false
        return
      }
      case 'MsgTransferLeader': {
        const transferee = m.from
        if (!this.progress.has(transferee)) {
          this.logger(`${this.id} ignored transferring leadership to non-member ${transferee}`)
          return
        }
        if (this.leadTransferee !== NONE) {
          if (this.leadTransferee === transferee) return
          this.abortLeaderTransfer()
        }
        if (transferee === this.id) return
        this.logger(`${this.id} [term ${this.term}] starts to transfer leadership to ${transferee}`)
        // the transfer must finish within an election timeout or it is aborted
        this.electionElapsed = 0
        this.leadTransferee = transferee
        const progress = this.progress.get(transferee)!
        if (progress.match === this.log.lastIndex()) this.sendTimeoutNow(transferee)
        else this.sendAppend(transferee)
        return
      }
    }
    const progress = this.progress.get(m.from)
    if (!progress) {
      this.logger(`${this.id} no progress available for ${m.from}`)
      return
    }
    switch (m.type) {
      case 'MsgAppResp':
        progress.recentActive = true
        if (m.reject) {
          // Fast backtracking (section 5.3, as in etcd): the follower's hint names the last index
          // whose term is <= the term we probed with; skip to the last index of ours that can match.
          this.logger(
            `${this.id} received MsgAppResp(rejected, hint: (index ${m.rejectHint}, term ` +
              `${m.logTerm})) from ${m.from} for index ${m.index}`,
          )
          let nextProbe = m.rejectHint
          if (m.logTerm > 0) nextProbe = this.log.findConflictByTerm(m.rejectHint, m.logTerm).index
          if (progress.maybeDecrTo(m.index, nextProbe)) {
            if (progress.state === 'replicate') progress.becomeProbe()
            this.sendAppend(m.from)
          }
          return
        }
        if (m.index > this.log.lastIndex()) {
          // no follower can hold more than we sent: a corrupt or foreign message, dropped
          this.logger(`${this.id} ignored MsgAppResp from ${m.from} for index ${m.index} past our last index`)
          return
        }
        {
          const wasPaused = progress.isPaused()
          if (progress.maybeUpdate(m.index) || (progress.match === m.index && progress.state === 'probe')) {
            if (progress.state === 'probe') {
              progress.becomeReplicate()
            } else if (
              progress.state === 'snapshot' &&
              progress.match >= (progress.pendingSnapshot?.metadata.index ?? 0)
            ) {
              progress.becomeProbe()
              progress.becomeReplicate()
            } else if (progress.state === 'replicate') {
              progress.inflights.freeLE(m.index)
            }
            if (this.maybeCommit()) this.bcastAppend()
            else if (wasPaused) this.sendAppend(m.from)
            // the window may have room for several more batches now
            while (this.maybeSendAppend(m.from, false)) {}
            if (m.from === this.leadTransferee && progress.match === this.log.lastIndex()) {
              this.logger(`${this.id} sent MsgTimeoutNow to ${m.from} after received MsgAppResp`)
              this.sendTimeoutNow(m.from)
            }
          }
        }
        return
      case 'MsgHeartbeatResp':
        progress.recentActive = true
        if (progress.state === 'snapshot') {
          // the chunk in flight may have been lost: resend from what the follower holds
          this.sendSnapshotChunk(m.from, progress)
          return
        }
        progress.paused = false
        if (progress.match < this.log.lastIndex() || progress.state === 'probe') this.sendAppend(m.from)
        return
      case 'MsgSnapResp': {
        progress.recentActive = true
        const pending = progress.pendingSnapshot
        if (progress.state !== 'snapshot' || !pending || pending.metadata.index !== m.index) return
        if (m.reject) {
          this.logger(`${this.id} snapshot to ${m.from} failed; probing again`)
          progress.becomeProbe()
          return
        }
        if (m.rejectHint >= pending.data.length) return // complete: its MsgAppResp follows
        progress.snapshotOffset = m.rejectHint
        this.sendSnapshotChunk(m.from, progress)
        return
      }
      default:
        return
    }
  }

  private stepCandidate(m: Message): void {
    const myResponse = this.state === 'pre-candidate' ? 'MsgPreVoteResp' : 'MsgVoteResp'
    switch (m.type) {
      case 'MsgApp':
        this.becomeFollower(m.term, m.from)
        this.handleAppendEntries(m)
        return
      case 'MsgHeartbeat':
        this.becomeFollower(m.term, m.from)
        this.handleHeartbeat(m)
        return
      case 'MsgSnap':
        this.becomeFollower(m.term, m.from)
        this.handleSnapshot(m)
        return
      case 'MsgPreVoteResp':
      case 'MsgVoteResp': {
        if (m.type !== myResponse) return
        const result = this.poll(m.from, m.type, !m.reject)
        if (result === 'won') {
          if (this.state === 'pre-candidate') {
            this.campaign('election')
          } else {
            this.becomeLeader()
            this.bcastAppend()
          }
        } else if (result === 'lost') {
          this.becomeFollower(this.term, NONE)
        }
        return
      }
      case 'MsgTimeoutNow':
        this.logger(`${this.id} [term ${this.term} state ${this.state}] ignored MsgTimeoutNow from ${m.from}`)
        return
      default:
        return
    }
  }

  private stepFollower(m: Message): void {
    switch (m.type) {
      case 'MsgApp':
        this.electionElapsed = 0
        this.lead = m.from
        this.handleAppendEntries(m)
        return
      case 'MsgHeartbeat':
        this.electionElapsed = 0
        this.lead = m.from
        this.handleHeartbeat(m)
        return
      case 'MsgSnap':
        this.electionElapsed = 0
        this.lead = m.from
        this.handleSnapshot(m)
        return
      case 'MsgTimeoutNow':
        // leadership transfer: campaign at once, skipping pre-vote and the others' leases
        this.logger(
          `${this.id} [term ${this.term}] received MsgTimeoutNow from ${m.from} and starts an election ` +
            `to get leadership`,
        )
        this.hup('transfer')
        return
      default:
        return
    }
  }

  // ----- follower handlers -----

  private handleAppendEntries(m: Message): void {
    if (m.index < this.log.committed) {
      this.send(message({ type: 'MsgAppResp', to: m.from, index: this.log.committed }))
      return
    }
    const lastNew = this.log.maybeAppend(m.index, m.logTerm, m.commit, m.entries)
    if (lastNew !== undefined) {
      this.send(message({ type: 'MsgAppResp', to: m.from, index: lastNew }))
      return
    }
    // Section 5.3 consistency check failed: reject with a hint so the leader can skip a term.
    const hintIndex = Math.min(m.index, this.log.lastIndex())
    const hint = this.log.findConflictByTerm(hintIndex, m.logTerm)
    this.logger(
      `${this.id} [logterm: ${this.log.term(m.index) ?? 0}, index: ${m.index}] rejected MsgApp ` +
        `[logterm: ${m.logTerm}, index: ${m.index}] from ${m.from}`,
    )
    this.send(
      message({
        type: 'MsgAppResp',
        to: m.from,
        index: m.index,
        reject: true,
        rejectHint: hint.index,
        logTerm: hint.term,
      }),
    )
  }

  private handleHeartbeat(m: Message): void {
    if (m.commit > this.log.committed) this.log.commitTo(Math.min(m.commit, this.log.lastIndex()))
    this.send(message({ type: 'MsgHeartbeatResp', to: m.from }))
  }

  /** One InstallSnapshot chunk: accepted only in order; the answer names the bytes held. */
  private handleSnapshot(m: Message): void {
    const chunk = m.snapshot
    if (!chunk) return
    const metadata = chunk.metadata
    if (metadata.index <= this.log.committed) {
      this.incomingSnapshot = undefined
      this.send(message({ type: 'MsgAppResp', to: m.from, index: this.log.committed }))
      return
    }
    if (chunk.totalBytes > this.snapshotBytesMax) {
      this.logger(`${this.id} refused a snapshot of ${chunk.totalBytes} bytes from ${m.from}`)
      this.send(message({ type: 'MsgSnapResp', to: m.from, index: metadata.index, reject: true }))
      return
    }
    let incoming = this.incomingSnapshot
    if (chunk.offset === 0) {
      incoming = { metadata, totalBytes: chunk.totalBytes, parts: [], received: 0 }
      this.incomingSnapshot = incoming
    }
    if (!incoming || incoming.metadata.index !== metadata.index || incoming.metadata.term !== metadata.term) {
      this.send(message({ type: 'MsgSnapResp', to: m.from, index: metadata.index, rejectHint: 0 }))
      return
    }
    if (chunk.offset === incoming.received && incoming.received < incoming.totalBytes) {
      incoming.parts.push(chunk.data)
      incoming.received += chunk.data.length
    } else if (!(chunk.offset === 0 && incoming.totalBytes === 0)) {
      // a duplicate or a gap: tell the leader where we are
      this.send(
        message({ type: 'MsgSnapResp', to: m.from, index: metadata.index, rejectHint: incoming.received }),
      )
      return
    }
    if (incoming.received < incoming.totalBytes) {
      this.send(
        message({ type: 'MsgSnapResp', to: m.from, index: metadata.index, rejectHint: incoming.received }),
      )
      return
    }
    this.incomingSnapshot = undefined
    const data = new Uint8Array(incoming.totalBytes)
    let offset = 0
    for (const part of incoming.parts) {
      data.set(part, offset)
      offset += part.length
    }
    if (this.restore({ metadata, data })) {
      this.logger(
        `${this.id} [commit: ${this.log.committed}] restored snapshot [index: ${metadata.index}, term: ` +
          `${metadata.term}]`,
      )
      this.send(message({ type: 'MsgAppResp', to: m.from, index: this.log.lastIndex() }))
    } else {
      this.logger(
        `${this.id} [commit: ${this.log.committed}] ignored snapshot [index: ${metadata.index}, term: ` +
          `${metadata.term}]`,
      )
      this.send(message({ type: 'MsgAppResp', to: m.from, index: this.log.committed }))
    }
  }

  /** Installs a snapshot from the leader; false if our log already covers it. */
  restore(snapshot: Snapshot): boolean {
    const { index, term } = snapshot.metadata
    if (index <= this.log.committed) return false
    assert(this.state === 'follower', `restoring a snapshot as ${this.state}`)
    if (this.log.matchTerm(index, term)) {
      // our log already has the snapshot's last entry: only the commit index moves
      this.log.commitTo(index)
      return false
    }
    this.log.restore(snapshot)
    this.resetConfig(snapshot.metadata.confState)
    return true
  }

  // ----- membership and leadership transfer -----

  /** Applies a committed conf entry (called as the application applies it). */
  applyConfChange(change: ConfChange): void {
    if (change.type === 'add') {
      if (!this.progress.has(change.member)) this.progress.set(change.member, this.newProgress())
    } else {
      this.progress.delete(change.member)
    }
    this.logger(
      `${this.id} applied conf change ${change.type} ${change.member}: voters [${this.voters().join(',')}]`,
    )
    if (this.state !== 'leader') return
    if (!this.progress.has(this.id)) {
      // a leader that removed itself steps down; the others elect a successor
      this.becomeFollower(this.term, NONE)
      return
    }
    if (this.maybeCommit()) this.bcastAppend()
    else for (const id of this.progress.keys()) if (id !== this.id) this.maybeSendAppend(id, false)
    if (this.leadTransferee !== NONE && !this.progress.has(this.leadTransferee)) this.abortLeaderTransfer()
  }

  applyConfEntry(entry: Entry): void {
    if (entry.type === 'conf') this.applyConfChange(decodeConfChange(entry.data))
  }

  private sendTimeoutNow(to: MemberId): void {
    this.send(message({ type: 'MsgTimeoutNow', to }))
  }

  private abortLeaderTransfer(): void {
    this.leadTransferee = NONE
  }
}
