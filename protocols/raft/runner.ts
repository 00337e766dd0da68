// Runs one member of one Raft group for real: a timer ticks the pure core, the transport feeds it
// messages, and every Ready goes through handleReady (ready.ts) with a durable storage: the write
// and its fsync run off the event loop (saveAsync), in the order protocols/raft/README.md ("The
// Ready order") gives. While one Ready's write is in flight, the inputs that arrive keep stepping
// the core and all go into the next Ready: a group commit, one fsync and one frame per peer for a
// burst of proposals (batching); the core's inflight window lets several such batches be on the
// wire at once (pipelining).
import { randomBytes } from 'node:crypto'
import { logger } from '@libp2p/logger'
import { RaftNode, type Ready, type Status } from './node.js'
import { ELECTION_TICKS_DEFAULT, HEARTBEAT_TICKS_DEFAULT } from './raft.js'
import { SeededRandom } from './random.js'
import { handleReady, type ReadyDriver } from './ready.js'
import type { RaftStorage } from './storage.js'
import type { RaftTransport } from './transport.js'
import {
  type ConfChange,
  decodeConfChange,
  type Entry,
  type MemberId,
  type Message,
  ProposalDroppedError,
} from './types.js'

/** Milliseconds per tick. */
export const TICK_MS_DEFAULT = 25
/** Largest entry propose() accepts. */
export const ENTRY_BYTES_MAX_DEFAULT = 8 << 20
/** Proposals awaiting commit beyond which propose() refuses. */
export const PENDING_PROPOSALS_MAX_DEFAULT = 1_000_000
/** Snapshot and compact after this many applied entries... */
export const SNAPSHOT_ENTRIES_DEFAULT = 10_000
/** ... or after this many applied entry bytes. */
export const SNAPSHOT_BYTES_DEFAULT = 64 << 20
/** Entries kept after a compaction, for slow followers. */
export const COMPACTION_KEEP_ENTRIES_DEFAULT = 1000

/** Milliseconds a validate() call may take before its append is dropped (to be validated again). */
export const VALIDATE_TIMEOUT_MS_DEFAULT = 10_000
/** Appends held for validation (the one being validated included) beyond which new ones are dropped. */
export const VALIDATE_QUEUE_MAX_DEFAULT = 64
/** Entry bytes held for validation beyond which new appends are dropped. */
export const VALIDATE_QUEUE_BYTES_MAX_DEFAULT = 64 << 20

/**
 * What a validator answers for the entries of one append: ok (they are stepped into the log), a
 * refusal (the leader lied: distrust it), or `retry` (this member cannot check them yet: the append is
 * dropped without a verdict on the leader, which sends it again).
 */
export type EntryVerdict = { ok: true } | { ok: false; reason: string; retry?: boolean }

/** What the guard does with an incoming message (see appendCheck). */
export type AppendCheck = { action: 'step' } | { action: 'validate'; entries: Entry[] }

/**
 * Whether an incoming message must be validated before it is stepped, and with which entries: a
 * MsgApp that the core would step into its log (a term not below ours, a sender not distrusted, a
 * prefix past our commit that passes the consistency check) and that carries entries this member
 * does not hold (same index and term). From the first entry that differs on, every entry would be
 * (re)written, so every one of them counts as new. Only 'normal' entries with data are returned:
 * conf entries are Raft's own, and the empty entry a new leader appends carries nothing. Anything
 * else steps at once: the core refuses it or it changes no entry.
 */
export function appendCheck(node: RaftNode, m: Message): AppendCheck {
  if (m.type !== 'MsgApp' || m.entries.length === 0) return { action: 'step' }
  if (m.term < node.term || node.distrusted().has(m.from)) return { action: 'step' }
  const log = node.log
  if (m.index < log.committed || log.term(m.index) !== m.logTerm) return { action: 'step' }
  const entries: Entry[] = []
  let differs = false
  for (const entry of m.entries) {
    if (!differs && log.term(entry.index) === entry.term) continue
    differs = true
    if (entry.type === 'normal' && entry.data.length > 0) entries.push(entry)
  }
  return entries.length > 0 ? { action: 'validate', entries } : { action: 'step' }
}

/** Counters of the runner's guard (validation of appends before they are acknowledged). */
export interface GuardStats {
  /** validate() calls that answered ok. */
  validated: number
  /** Appends refused: a verdict not ok or a throw (each distrusts the sender). */
  refused: number
  /** Appends dropped for the leader to send again: a `retry` verdict or a validation that timed out. */
  retried: number
  /** ... of which timed out. */
  timedOut: number
  /** Appends dropped because the queue of held appends was full (the leader sends them again). */
  droppedQueueFull: number
  /** Held appends dropped because their sender became distrusted. */
  droppedDistrusted: number
  /** Appends without entries dropped while others were held (they would only fill the queue). */
  droppedEmpty: number
}

class ValidationTimeoutError extends Error {
  static override name = 'ValidationTimeoutError'
  constructor() {
    super('validation timed out')
    this.name = 'ValidationTimeoutError'
  }
}

export class ProposalLostError extends Error {
  static override name = 'ProposalLostError'
  constructor(index: number) {
    super(`the entry proposed at index ${index} was overwritten by another leader`)
    this.name = 'ProposalLostError'
  }
}

/** The runner was stopped while the proposal was in flight. */
export class RaftStoppedError extends Error {
  static override name = 'RaftStoppedError'
  constructor() {
    super('raft group member stopped')
    this.name = 'RaftStoppedError'
  }
}

export interface RaftRunnerInit {
  /** The group id carried in every frame. */
  group: string
  /** This member's id: its libp2p peer id string. */
  id: MemberId
  storage: RaftStorage
  /** The libp2p RaftTransport, or anything that joins, leaves and sends the same way. */
  transport: Pick<RaftTransport, 'join' | 'leave' | 'send'>
  /**
   * For a member joining with an empty store: the group's members at the time, whose messages it
   * accepts before it has read them in the log. @default none
   */
  knownPeers?: MemberId[]
  /** Applies committed entries to the state machine, in order. */
  apply?: (entries: Entry[]) => void
  /**
   * Called with the entries this member has just appended to its log (a leader's proposals, what a
   * follower took from the leader) once they are durable and that Ready's messages (the leader's
   * appends, the follower's acknowledgement) have been handed to the transport. They are NOT
   * committed and may still be replaced: for work the state machine can do ahead of the commit
   * (it must check at apply time that the committed entry is the one it worked on). A throw is logged.
   */
  appended?: (entries: Entry[]) => void
  /**
   * Called with the entries of a Ready once their write has been handed to the storage, before it is
   * durable and before that Ready's late messages (a follower's acknowledgement) leave: for work that
   * may overlap the write (it runs on the event loop, so anything long delays the acknowledgement;
   * the hook should only schedule it). `appended` follows for the same entries once they are durable.
   * A throw is logged.
   */
  appending?: (entries: Entry[]) => void
  /** Loads a snapshot received from the leader into the state machine. */
  restore?: (data: Uint8Array, index: number) => void
  /** The state machine's current state, for snapshots. @default an empty snapshot */
  snapshotData?: () => Uint8Array
  /** Snapshot and compact after this many applied entries. @default 10000 */
  snapshotEntries?: number
  /** ... or after this many applied entry bytes (large entries). @default 67108864 */
  snapshotBytes?: number
  /** Entries kept after a compaction, for slow followers. @default 1000 */
  compactionKeepEntries?: number
  /** Milliseconds per tick. @default 25 */
  tickMs?: number
  /** Ticks before an election (randomized to [n, 2n)): 250-500 ms with the defaults. @default 10 */
  electionTicks?: number
  /** @default 1 */
  heartbeatTicks?: number
  /** Seed of the election jitter. @default random */
  seed?: number
  /** Largest entry accepted by propose(). @default 8388608 */
  entryBytesMax?: number
  /** Proposals awaiting commit beyond which propose() refuses. @default 1000000 */
  pendingProposalsMax?: number
  /** Called if storage fails and the member had to stop. */
  onFatal?: (error: Error) => void
  /** Called when this member's view of the leader or its role changes. */
  onLeaderChange?: (lead: MemberId, state: string) => void
  /**
   * Validates entries a leader sends before this follower steps them into its log (hence before it
   * acknowledges them). Called in log order, one call at a time, only with 'normal' entries this
   * member does not already hold (same index and term) and that carry data (not the empty entry a
   * new leader appends); never with entries this member proposed as leader. Resolves ok, or not ok
   * with a reason: the append and every other append held from that leader are dropped and the
   * leader is distrusted (distrust()); a throw is a refusal too. A `retry` verdict, or no answer
   * within validateTimeoutMs, drops the leader's held appends without distrusting it (it sends them
   * again; a call that timed out, or whose leader the driver distrusted meanwhile, may still be
   * running when the next one starts: its answer is ignored). @default none (accept)
   */
  validate?: (entries: Entry[], leader: MemberId) => Promise<EntryVerdict>
  /** Milliseconds a validate() call may take before its appends are dropped. @default 10000 */
  validateTimeoutMs?: number
  /**
   * Appends held while one is validated (in arrival order, the one being validated included) beyond
   * which new appends are dropped; the leader sends them again. @default 64
   */
  validateQueueMax?: number
  /** Entry bytes held for validation beyond which new appends are dropped. @default 67108864 */
  validateQueueBytesMax?: number
  /** Called when this member stops trusting `peer` (a refused append, or distrust() from the driver). */
  onDistrust?: (peer: MemberId, reason: string) => void
}

interface Waiter {
  term: number
  resolve: (value: { index: number; term: number }) => void
  reject: (error: Error) => void
}

export class RaftRunner {
  readonly node: RaftNode
  readonly group: string
  private readonly init: RaftRunnerInit
  private readonly log: ReturnType<typeof logger>
  private timer: NodeJS.Timeout | undefined
  private scheduled = false
  private processing = false
  private running = false
  private readonly waiters = new Map<number, Waiter>()
  private readonly snapshotEntries: number
  private readonly compactionKeepEntries: number
  private readonly snapshotBytes: number
  private appliedBytesSinceSnapshot = 0
  private lastSnapshotIndex: number
  /** Every member of the current configuration, plus voters being added: who may talk to us. */
  private members = new Set<string>()
  private readonly knownPeers = new Set<string>()
  private readonly driver: ReadyDriver
  /** Appends held for validation, in arrival order; the first is the one being validated. */
  private held: Message[] = []
  private heldBytes = 0
  /** The append whose validate() call is in flight. */
  private validating: Message | undefined
  private readonly distrustReasons = new Map<MemberId, string>()
  /** The guard's counters: validations, refusals, drops. */
  readonly guardStats: GuardStats = {
    validated: 0,
    refused: 0,
    retried: 0,
    timedOut: 0,
    droppedQueueFull: 0,
    droppedDistrusted: 0,
    droppedEmpty: 0,
  }

  constructor(init: RaftRunnerInit) {
    this.init = init
    this.group = init.group
    this.log = logger(`shardnet:raft:${init.group}`)
    const seed = init.seed ?? randomBytes(4).readUInt32LE(0)
    const snapshot = init.storage.snapshot()
    this.lastSnapshotIndex = snapshot.metadata.index
    if (snapshot.metadata.index > 0) init.restore?.(snapshot.data, snapshot.metadata.index)
    this.node = new RaftNode({
      id: init.id,
      storage: init.storage,
      random: new SeededRandom(seed),
      electionTicks: init.electionTicks ?? ELECTION_TICKS_DEFAULT,
      heartbeatTicks: init.heartbeatTicks ?? HEARTBEAT_TICKS_DEFAULT,
      applied: snapshot.metadata.index,
      logger: (line) => this.log(line),
    })
    this.snapshotEntries = init.snapshotEntries ?? SNAPSHOT_ENTRIES_DEFAULT
    this.compactionKeepEntries = init.compactionKeepEntries ?? COMPACTION_KEEP_ENTRIES_DEFAULT
    this.snapshotBytes = init.snapshotBytes ?? SNAPSHOT_BYTES_DEFAULT
    for (const peer of init.knownPeers ?? []) if (peer !== init.id) this.knownPeers.add(peer)
    this.refreshMembers()
    const storage = init.storage
    this.driver = {
      // a snapshot is rare and small beside the entries: it is written synchronously
      save: (update) =>
        storage.saveAsync && !update.snapshot ? storage.saveAsync(update) : storage.save(update),
      send: (messages) => init.transport.send(this.group, messages),
      apply: (ready) => this.applyReady(ready),
      appending: (entries) => this.announce('appending', entries),
      appended: (entries) => this.announce('appended', entries),
      advanced: (ready) => {
        this.maybeSnapshot(ready)
        this.refreshMembers()
      },
      // stopped during a write: this member is gone, as after a crash
      halted: () => !this.running,
    }
  }

  /**
   * Who may talk to this member: the voters of its applied configuration, anyone added by a conf
   * entry already in its log (not yet applied), and the known peers it was given. A member that
   * joins with an empty store must be given the group's current members (as etcd requires
   * --initial-cluster for a joining member), or it could not hear a leader it has not yet read
   * about in the log.
   */
  private refreshMembers(): void {
    this.members = new Set([...this.node.voters(), ...this.node.pendingVoters(), ...this.knownPeers])
  }

  /** Adds peers this member should accept messages from (the group's members when it joined). */
  addKnownPeers(peers: MemberId[]): void {
    for (const peer of peers) if (peer !== this.init.id) this.knownPeers.add(peer)
    this.refreshMembers()
  }

  start(): void {
    if (this.running) return
    this.running = true
    this.init.transport.join(this.group, {
      // before its configuration is applied a new member accepts the group's messages from anyone
      // it will learn of; afterwards only from voters
      isMember: (peer) => this.members.size === 0 || this.members.has(peer),
      onMessages: (messages) => this.receive(messages),
    })
    this.timer = setInterval(() => {
      this.node.tick()
      this.schedule()
    }, this.init.tickMs ?? TICK_MS_DEFAULT)
    this.schedule()
  }

  stop(): void {
    if (!this.running) return
    this.running = false
    clearInterval(this.timer)
    this.init.transport.leave(this.group)
    // held appends are forgotten (the leader sends them again); a verdict still in flight is ignored
    this.held = []
    this.heldBytes = 0
    this.validating = undefined
    for (const waiter of this.waiters.values()) waiter.reject(new RaftStoppedError())
    this.waiters.clear()
  }

  status(): Status {
    return this.node.status()
  }

  isLeader(): boolean {
    return this.node.state === 'leader'
  }

  leader(): MemberId {
    return this.node.lead
  }

  /**
   * Proposes data; resolves once it is committed and applied here. Rejects with ProposalDroppedError
   * off the leader.
   */
  propose(data: Uint8Array): Promise<{ index: number; term: number }> {
    if (!this.running) return Promise.reject(new RaftStoppedError())
    if (data.length > (this.init.entryBytesMax ?? ENTRY_BYTES_MAX_DEFAULT)) {
      return Promise.reject(new RangeError(`entry of ${data.length} bytes exceeds entryBytesMax`))
    }
    if (this.waiters.size >= (this.init.pendingProposalsMax ?? PENDING_PROPOSALS_MAX_DEFAULT)) {
      return Promise.reject(new ProposalDroppedError('uncommitted-limit', this.node.lead))
    }
    let proposed: { index: number; term: number }
    try {
      proposed = this.node.propose(data)
    } catch (error) {
      return Promise.reject(error)
    }
    this.schedule()
    return new Promise((resolve, reject) => {
      this.waiters.set(proposed.index, { term: proposed.term, resolve, reject })
    })
  }

  proposeConfChange(change: ConfChange): Promise<{ index: number; term: number }> {
    let proposed: { index: number; term: number }
    try {
      proposed = this.node.proposeConfChange(change)
      if (change.type === 'add') this.members.add(change.member)
    } catch (error) {
      return Promise.reject(error)
    }
    this.schedule()
    return new Promise((resolve, reject) => {
      this.waiters.set(proposed.index, { term: proposed.term, resolve, reject })
    })
  }

  transferLeadership(to: MemberId): void {
    this.node.transferLeadership(to)
    this.schedule()
  }

  campaign(): void {
    this.node.campaign()
    this.schedule()
  }

  /**
   * Stops trusting `peer` for the life of this runner (RaftNode.distrust: no vote for it, nothing
   * it sends is heard, and if it is our leader we campaign once our election timer runs out); the
   * appends held from it are dropped and onDistrust is called. Idempotent: only the first call
   * counts, with its reason. This member never distrusts itself.
   */
  distrust(peer: MemberId, reason: string): void {
    if (peer === this.init.id || this.distrustReasons.has(peer)) return
    this.distrustReasons.set(peer, reason)
    this.node.distrust(peer)
    this.log('member %s distrusts %s: %s', this.init.id, peer, reason)
    this.dropHeldFrom(peer)
    try {
      this.init.onDistrust?.(peer, reason)
    } catch (error) {
      this.log.error('the onDistrust hook threw: %s', (error as Error).message)
    }
    this.schedule()
    this.pump()
  }

  /** The peers this runner distrusts, with the reason it first gave. */
  distrusted(): ReadonlyMap<MemberId, string> {
    return this.distrustReasons
  }

  /** How many appends are held for validation now (the one being validated included). */
  heldAppends(): number {
    return this.held.length
  }

  private receive(messages: Message[]): void {
    if (!this.running) return
    for (const m of messages) {
      // an append joins the queue if it must be validated, or if appends are already held (the
      // leader's appends keep their order); everything else steps at once
      if (m.type === 'MsgApp' && this.init.validate && !this.node.distrusted().has(m.from)) {
        if (this.held.length > 0 && m.entries.length === 0) {
          // an append without entries (a leader's probe or commit notice, sent on every heartbeat
          // answer while our acknowledgement is pending) would only fill the queue: as if lost
          this.guardStats.droppedEmpty++
          continue
        }
        if (this.held.length > 0 || appendCheck(this.node, m).action === 'validate') {
          this.hold(m)
          continue
        }
      }
      this.node.step(m)
    }
    this.schedule()
    this.pump()
  }

  private hold(m: Message): void {
    const bytes = appendBytes(m)
    const countMax = this.init.validateQueueMax ?? VALIDATE_QUEUE_MAX_DEFAULT
    const bytesMax = this.init.validateQueueBytesMax ?? VALIDATE_QUEUE_BYTES_MAX_DEFAULT
    // the first append is always taken, however large (the core's own limits bound it)
    if (this.held.length >= countMax || (this.held.length > 0 && this.heldBytes + bytes > bytesMax)) {
      this.guardStats.droppedQueueFull++
      return
    }
    this.held.push(m)
    this.heldBytes += bytes
  }

  private dropHeldFrom(peer: MemberId): void {
    const kept = this.held.filter((m) => m.from !== peer)
    this.guardStats.droppedDistrusted += this.held.length - kept.length
    this.held = kept
    this.heldBytes = 0
    for (const m of kept) this.heldBytes += appendBytes(m)
    // a validation in flight for its append is abandoned: its verdict will be ignored
    if (this.validating?.from === peer) this.validating = undefined
  }

  /**
   * Steps held appends in order while they need no validation, and starts the validation of the
   * first that does; one validation at a time. Its verdict steps the append, or drops it with every
   * other append held from its sender and distrusts the sender.
   */
  private pump(): void {
    const validate = this.init.validate
    if (!validate) return
    while (this.running && this.validating === undefined && this.held.length > 0) {
      const m = this.held[0]
      const check = appendCheck(this.node, m)
      if (check.action === 'step') {
        this.held.shift()
        this.heldBytes -= appendBytes(m)
        this.node.step(m)
        this.schedule()
        continue
      }
      this.validating = m
      void this.validateAppend(validate, m, check.entries)
    }
  }

  private async validateAppend(
    validate: NonNullable<RaftRunnerInit['validate']>,
    m: Message,
    entries: Entry[],
  ): Promise<void> {
    const timeoutMs = this.init.validateTimeoutMs ?? VALIDATE_TIMEOUT_MS_DEFAULT
    let timer: NodeJS.Timeout | undefined
    let verdict: EntryVerdict
    try {
      verdict = await Promise.race([
        validate(entries, m.from),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new ValidationTimeoutError()), timeoutMs)
        }),
      ])
    } catch (error) {
      // a slow validation proves nothing against the leader: its append is dropped and sent again
      if (error instanceof ValidationTimeoutError) {
        this.guardStats.timedOut++
        verdict = { ok: false, reason: error.message, retry: true }
      } else verdict = { ok: false, reason: `validation threw: ${error}` }
    } finally {
      clearTimeout(timer)
    }
    // stopped, or the append was dropped meanwhile (its sender distrusted): the verdict is stale
    if (this.validating !== m) return
    this.validating = undefined
    if (!verdict.ok && verdict.retry) {
      // the appends held after it build on it: the core would refuse them; the leader resends all
      this.guardStats.retried++
      this.held = this.held.filter((held) => held.from !== m.from)
      this.heldBytes = 0
      for (const held of this.held) this.heldBytes += appendBytes(held)
      this.log('dropped an append from %s to validate again: %s', m.from, verdict.reason)
      this.pump()
      return
    }
    if (!verdict.ok) {
      this.guardStats.refused++
      this.held.shift()
      this.heldBytes -= appendBytes(m)
      this.distrust(m.from, verdict.reason) // drops the rest of its sender's appends
      this.pump()
      return
    }
    this.guardStats.validated++
    // the log may have moved while we waited (a snapshot): validate again what is new now
    const now = appendCheck(this.node, m)
    const checked = new Set(entries.map((entry) => `${entry.index}/${entry.term}`))
    if (
      now.action === 'validate' &&
      now.entries.some((entry) => !checked.has(`${entry.index}/${entry.term}`))
    ) {
      this.pump()
      return
    }
    this.held.shift()
    this.heldBytes -= appendBytes(m)
    this.node.step(m)
    this.schedule()
    this.pump()
  }

  /** Coalesces everything that happens in this turn of the event loop into one Ready. */
  private schedule(): void {
    if (this.scheduled || this.processing || !this.running) return
    this.scheduled = true
    setImmediate(() => {
      this.scheduled = false
      if (this.running) void this.processReady()
    })
  }

  /**
   * The Ready loop: one Ready at a time, each awaited until durable. Inputs that arrive meanwhile
   * wait in the core for the next Ready (schedule() does nothing while processing).
   */
  private async processReady(): Promise<void> {
    if (this.processing) return
    this.processing = true
    try {
      while (this.running && this.node.hasReady()) {
        const saving = handleReady(this.node, this.driver)
        if (saving) await saving
      }
    } catch (error) {
      // a storage failure: this member cannot go on safely; stop it (the others carry the group)
      this.log.error('raft member %s stopped: %s', this.init.id, (error as Error).message)
      this.stop()
      this.init.onFatal?.(error as Error)
    } finally {
      this.processing = false
    }
  }

  private announce(hook: 'appending' | 'appended', entries: Entry[]): void {
    try {
      this.init[hook]?.(entries)
    } catch (error) {
      this.log.error('the %s hook threw: %s', hook, (error as Error).message)
    }
  }

  private applyReady(ready: Ready): void {
    if (ready.snapshot) {
      this.init.restore?.(ready.snapshot.data, ready.snapshot.metadata.index)
      this.lastSnapshotIndex = ready.snapshot.metadata.index
    }
    if (ready.softState) this.init.onLeaderChange?.(ready.softState.lead, ready.softState.state)
    if (ready.committedEntries.length === 0) return
    this.init.apply?.(ready.committedEntries)
    for (const entry of ready.committedEntries) {
      if (entry.type === 'conf') {
        const change = decodeConfChange(entry.data)
        // a removed member is no longer heard, even if it was once a known peer
        if (change.type === 'remove') this.knownPeers.delete(change.member)
      }
      const waiter = this.waiters.get(entry.index)
      if (!waiter) continue
      this.waiters.delete(entry.index)
      if (waiter.term === entry.term) waiter.resolve({ index: entry.index, term: entry.term })
      else waiter.reject(new ProposalLostError(entry.index))
    }
  }

  /** Snapshots and compacts once enough entries were applied (after the Ready's advance()). */
  private maybeSnapshot(ready: Ready): void {
    const storage = this.init.storage
    if (ready.committedEntries.length === 0) return
    const applied = ready.committedEntries[ready.committedEntries.length - 1].index
    for (const entry of ready.committedEntries) this.appliedBytesSinceSnapshot += entry.data.length
    const sinceSnapshot = applied - this.lastSnapshotIndex
    if (sinceSnapshot >= this.snapshotEntries || this.appliedBytesSinceSnapshot >= this.snapshotBytes) {
      storage.createSnapshot(applied, this.node.confState(), this.init.snapshotData?.() ?? new Uint8Array(0))
      // keep a tail for slow followers, but never more than half of what was just snapshotted (the
      // memory mirror and the WAL stay bounded with large entries too)
      const compactTo = applied - Math.min(this.compactionKeepEntries, Math.floor(sinceSnapshot / 2))
      if (compactTo >= storage.firstIndex()) storage.compact(compactTo)
      this.lastSnapshotIndex = applied
      this.appliedBytesSinceSnapshot = 0
    }
  }
}

function appendBytes(m: Message): number {
  let bytes = 0
  for (const entry of m.entries) bytes += entry.data.length
  return bytes
}
