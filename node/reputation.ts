/**
 * Per-peer reputation from this node's own history with each peer (agreement of replicas, group reports,
 * challenge answers, completed work), persisted as one JSON file in the data dir.
 *
 * ```ts
 * const book = await ReputationBook.open(join(dataDir, 'reputation.json'))
 * book.record(peerId, 'agreed')
 * book.score(peerId)                     // 0..1, a newcomer NEUTRAL_SCORE
 * book.replicasFor([a, b], 2)            // adaptive replication, see replicasFor()
 * await book.flush()                     // record() flushes on its own after FLUSH_DELAY_MS_DEFAULT
 * ```
 *
 * Score: a Beta(1, 1) prior over "this peer's next result is good": (good + 1) / (good + bad + 2), where
 * good counts 'agreed' and 'completed', and bad weighs each event by {@link BAD_EVENT_WEIGHTS} (a lie
 * costs as much as five agreements earn). 'timed-out' is weighed lightly: an honest peer on a poor link
 * times out too. Counts are capped at COUNT_MAX so a long history cannot make a peer immune.
 *
 * Bounds: at most `maxPeers` peers (the least recently seen is evicted), peer ids at most
 * PEER_ID_LENGTH_MAX characters, so the file stays under REPUTATION_FILE_BYTES_MAX. A file that does not
 * parse, does not match the schema, or is over that size is not trusted: the book starts empty, warns,
 * and the next flush replaces the file. Writes are atomic (temp file, fsync, rename).
 */
import { readFile, stat } from 'node:fs/promises'
import { logger } from '@libp2p/logger'
import { writeFileAtomic } from './store/atomic-file.js'

export type ReputationEvent =
  | 'agreed'
  | 'disagreed'
  | 'suspect'
  | 'rejected'
  | 'lied'
  | 'timed-out'
  | 'completed'

export const REPUTATION_EVENTS: readonly ReputationEvent[] = [
  'agreed',
  'disagreed',
  'suspect',
  'rejected',
  'lied',
  'timed-out',
  'completed',
]

/** The book's file name in the data dir. */
export const REPUTATION_FILE = 'reputation.json'
/** The score of a peer with no history. */
export const NEUTRAL_SCORE = 0.5
export const REPUTATION_PEERS_MAX_DEFAULT = 10_000
/** Longer keys are ignored: a libp2p peer id string is at most ~60 characters (Ed25519 ~52). */
export const PEER_ID_LENGTH_MAX = 128
/** Events of one kind counted per peer; more are not counted (the score stops moving). */
export const COUNT_MAX = 1_000_000
export const FLUSH_DELAY_MS_DEFAULT = 1_000
/** Consecutive agreements after which a peer counts as established (no longer a newcomer). */
export const TRUSTED_STREAK_DEFAULT = 10
/** A bad event this recent raises the replicas of any set that contains the peer. */
export const RECENT_BAD_MS_DEFAULT = 24 * 3_600_000
/** The score an established peer must also keep to lower replication. */
export const TRUSTED_SCORE_MIN = 0.8
/** Per peer at most ~260 bytes of JSON, so 10,000 peers fit well inside this. */
export const REPUTATION_FILE_BYTES_MAX = 8 * 1024 * 1024

/** How much one bad event weighs against one good one. */
export const BAD_EVENT_WEIGHTS: Readonly<Record<ReputationEvent, number>> = {
  agreed: 0,
  completed: 0,
  disagreed: 1,
  suspect: 1,
  rejected: 2,
  lied: 5,
  'timed-out': 0.5,
}

const GOOD_EVENTS = new Set<ReputationEvent>(['agreed', 'completed'])
/** Events that break a clean streak ('timed-out' does not: it says nothing about honesty). */
const STREAK_BREAKERS = new Set<ReputationEvent>(['disagreed', 'suspect', 'rejected', 'lied'])
const FILE_VERSION = 1

const log = logger('shardnet:reputation')

interface PeerRecord {
  counts: Record<ReputationEvent, number>
  /** consecutive 'agreed' (or 'completed') since the last streak-breaking event */
  streak: number
  /** ms of the last streak-breaking event, 0 when none */
  lastBadMs: number
  lastSeenMs: number
}

export interface ReputationBookOptions {
  /** @default REPUTATION_PEERS_MAX_DEFAULT */
  maxPeers?: number
  /** @default FLUSH_DELAY_MS_DEFAULT */
  flushDelayMs?: number
  /** @default TRUSTED_STREAK_DEFAULT */
  trustedStreak?: number
  /** @default RECENT_BAD_MS_DEFAULT */
  recentBadMs?: number
  now?: () => number
}

/** What open() found wrong with the file (it was not trusted and will be replaced). */
export type ReputationFileProblem = 'unreadable' | 'oversized' | 'malformed'

function emptyCounts(): Record<ReputationEvent, number> {
  return Object.fromEntries(REPUTATION_EVENTS.map((e) => [e, 0])) as Record<ReputationEvent, number>
}

function isCount(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value) && value >= 0 && value <= COUNT_MAX
}

function isTime(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0
}

/** The peer records of a file, or undefined when anything in it is off (the whole file is then dropped). */
function parseFile(text: string, maxPeers: number): Map<string, PeerRecord> | undefined {
  let data: unknown
  try {
    data = JSON.parse(text)
  } catch {
    return undefined
  }
  if (typeof data !== 'object' || data === null) return undefined
  const { version, peers } = data as { version?: unknown; peers?: unknown }
  if (version !== FILE_VERSION || !Array.isArray(peers) || peers.length > maxPeers) return undefined
  const out = new Map<string, PeerRecord>()
  for (const entry of peers) {
    if (typeof entry !== 'object' || entry === null) return undefined
    const e = entry as Record<string, unknown>
    if (typeof e.peer !== 'string' || e.peer.length === 0 || e.peer.length > PEER_ID_LENGTH_MAX)
      return undefined
    if (out.has(e.peer)) return undefined
    if (typeof e.counts !== 'object' || e.counts === null) return undefined
    const counts = emptyCounts()
    for (const event of REPUTATION_EVENTS) {
      const n = (e.counts as Record<string, unknown>)[event] ?? 0
      if (!isCount(n)) return undefined
      counts[event] = n
    }
    if (!isCount(e.streak) || !Number.isInteger(e.streak)) return undefined
    if (!isTime(e.lastBadMs) || !isTime(e.lastSeenMs)) return undefined
    out.set(e.peer, { counts, streak: e.streak, lastBadMs: e.lastBadMs, lastSeenMs: e.lastSeenMs })
  }
  // least recently seen first, so Map order is eviction order
  return new Map([...out].sort((a, b) => a[1].lastSeenMs - b[1].lastSeenMs))
}

export class ReputationBook {
  /** Why the file open() read was not trusted; undefined when it was fine or absent. */
  readonly fileProblem: ReputationFileProblem | undefined
  /** Peers evicted (least recently seen) to stay within maxPeers. */
  evicted = 0
  /** record() calls ignored because the peer key was empty or too long. */
  ignored = 0
  private readonly path: string
  private readonly peers: Map<string, PeerRecord>
  private readonly maxPeers: number
  private readonly flushDelayMs: number
  private readonly trustedStreak: number
  private readonly recentBadMs: number
  private readonly now: () => number
  private timer: ReturnType<typeof setTimeout> | undefined
  private dirty = false
  private writing: Promise<void> = Promise.resolve()

  private constructor(
    path: string,
    peers: Map<string, PeerRecord>,
    problem: ReputationFileProblem | undefined,
    options: ReputationBookOptions,
  ) {
    this.path = path
    this.peers = peers
    this.fileProblem = problem
    this.maxPeers = options.maxPeers ?? REPUTATION_PEERS_MAX_DEFAULT
    this.flushDelayMs = options.flushDelayMs ?? FLUSH_DELAY_MS_DEFAULT
    this.trustedStreak = options.trustedStreak ?? TRUSTED_STREAK_DEFAULT
    this.recentBadMs = options.recentBadMs ?? RECENT_BAD_MS_DEFAULT
    this.now = options.now ?? Date.now
    // a damaged file is replaced at once, so it is never read again
    if (problem !== undefined) this.dirty = true
  }

  /** Reads the book at `path` (a missing file is an empty book; a damaged one is dropped with a warning). */
  static async open(path: string, options: ReputationBookOptions = {}): Promise<ReputationBook> {
    const maxPeers = options.maxPeers ?? REPUTATION_PEERS_MAX_DEFAULT
    let problem: ReputationFileProblem | undefined
    let peers = new Map<string, PeerRecord>()
    try {
      const info = await stat(path)
      if (info.size > REPUTATION_FILE_BYTES_MAX) problem = 'oversized'
      else {
        const parsed = parseFile(await readFile(path, 'utf8'), maxPeers)
        if (parsed === undefined) problem = 'malformed'
        else peers = parsed
      }
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT') problem = 'unreadable'
    }
    if (problem !== undefined)
      log.error('reputation file %s is %s: starting empty and replacing it', path, problem)
    const book = new ReputationBook(path, peers, problem, options)
    if (problem !== undefined) await book.flush()
    return book
  }

  get size(): number {
    return this.peers.size
  }

  /** Records one event about `peer` and schedules a flush. */
  record(peer: string, event: ReputationEvent, nowMs: number = this.now()): void {
    if (peer.length === 0 || peer.length > PEER_ID_LENGTH_MAX || !REPUTATION_EVENTS.includes(event)) {
      this.ignored++
      return
    }
    let entry = this.peers.get(peer)
    if (entry === undefined) {
      entry = { counts: emptyCounts(), streak: 0, lastBadMs: 0, lastSeenMs: nowMs }
    } else this.peers.delete(peer)
    // re-inserted last: Map order is least recently seen first
    this.peers.set(peer, entry)
    entry.lastSeenMs = Math.max(entry.lastSeenMs, nowMs)
    entry.counts[event] = Math.min(COUNT_MAX, entry.counts[event] + 1)
    if (GOOD_EVENTS.has(event)) entry.streak = Math.min(COUNT_MAX, entry.streak + 1)
    else if (STREAK_BREAKERS.has(event)) {
      entry.streak = 0
      entry.lastBadMs = Math.max(entry.lastBadMs, nowMs)
    }
    while (this.peers.size > this.maxPeers) {
      const oldest = this.peers.keys().next().value as string
      this.peers.delete(oldest)
      this.evicted++
    }
    this.schedule()
  }

  /** 0..1: (good + 1) / (good + weighted bad + 2); NEUTRAL_SCORE for a peer with no history. */
  score(peer: string): number {
    const entry = this.peers.get(peer)
    if (entry === undefined) return NEUTRAL_SCORE
    let good = 0
    let bad = 0
    for (const event of REPUTATION_EVENTS) {
      if (GOOD_EVENTS.has(event)) good += entry.counts[event]
      else bad += entry.counts[event] * BAD_EVENT_WEIGHTS[event]
    }
    return (good + 1) / (good + bad + 2)
  }

  /** Consecutive agreements (or completions) since the last disagreement, suspicion, rejection or lie. */
  cleanStreak(peer: string): number {
    return this.peers.get(peer)?.streak ?? 0
  }

  /** The events recorded about `peer` (zeros for a stranger). */
  counts(peer: string): Readonly<Record<ReputationEvent, number>> {
    return { ...(this.peers.get(peer)?.counts ?? emptyCounts()) }
  }

  /**
   * Whether `peer` is established: a clean streak of at least trustedStreak, a score of at least
   * TRUSTED_SCORE_MIN and no streak-breaking event within recentBadMs.
   */
  trusted(peer: string, nowMs: number = this.now()): boolean {
    const entry = this.peers.get(peer)
    if (entry === undefined) return false
    return (
      entry.streak >= this.trustedStreak &&
      this.score(peer) >= TRUSTED_SCORE_MIN &&
      (entry.lastBadMs === 0 || nowMs - entry.lastBadMs >= this.recentBadMs)
    )
  }

  /**
   * BOINC-style adaptive replication: how many replicas to run when `peers` are the candidates and
   * `base` the configured count.
   * - any candidate that is not established (a newcomer, or a streak-breaking event within recentBadMs,
   *   or a score under TRUSTED_SCORE_MIN): base + 1;
   * - every candidate established: base - 1, but never under 2 (one result and one that checks it: a
   *   long clean record lowers the cost, it never removes the comparison);
   * - otherwise (no candidates): base.
   * Never under 1 (a base of 1 with established candidates stays 1).
   */
  replicasFor(peers: readonly string[], base: number, nowMs: number = this.now()): number {
    const b = Math.max(1, Math.floor(base))
    if (peers.length === 0) return b
    if (peers.some((p) => !this.trusted(p, nowMs))) return b + 1
    return Math.max(Math.min(b, 2), b - 1)
  }

  /** Writes the book now (waits for a write in flight first). */
  async flush(): Promise<void> {
    if (this.timer !== undefined) {
      clearTimeout(this.timer)
      this.timer = undefined
    }
    const write = this.writing.then(async () => {
      if (!this.dirty) return
      this.dirty = false
      try {
        await writeFileAtomic(this.path, this.serialize())
      } catch (error) {
        this.dirty = true
        throw error
      }
    })
    this.writing = write.catch(() => {})
    await write
  }

  /** Flushes and stops the timer. */
  async close(): Promise<void> {
    await this.flush()
  }

  private schedule(): void {
    this.dirty = true
    if (this.timer !== undefined) return
    this.timer = setTimeout(() => {
      this.timer = undefined
      this.flush().catch((error) => log.error('writing %s failed: %e', this.path, error))
    }, this.flushDelayMs)
    this.timer.unref?.()
  }

  private serialize(): string {
    const peers = [...this.peers].map(([peer, e]) => ({
      peer,
      counts: e.counts,
      streak: e.streak,
      lastBadMs: e.lastBadMs,
      lastSeenMs: e.lastSeenMs,
    }))
    return JSON.stringify({ version: FILE_VERSION, peers })
  }
}
