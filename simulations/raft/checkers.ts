// Safety checkers the Raft simulator runs after every step (TigerBeetle's VOPR habit): each one
// holds the global truth it needs and throws SafetyViolation the moment a member contradicts it.
import type { Entry, MemberId } from '../../protocols/raft/types.js'

export class SafetyViolation extends Error {
  static override name = 'SafetyViolation'
  readonly checker: string
  /** The members the violation implicates (for the focused failure trace). */
  readonly members: MemberId[]
  constructor(checker: string, message: string, members: MemberId[] = []) {
    super(`${checker}: ${message}`)
    this.name = 'SafetyViolation'
    this.checker = checker
    this.members = members
  }
}

const digests = new WeakMap<Entry, string>()

/**
 * FNV-1a over the entry's term, index, type and data: a cheap digest for cross-member comparison.
 * Entry objects are shared between members in the simulator, so the digest is cached per object.
 */
export function entryDigest(entry: Entry): string {
  const cached = digests.get(entry)
  if (cached !== undefined) return cached
  let hash = 0x811c9dc5
  for (const value of [entry.term, entry.index]) {
    let rest = value
    for (let i = 0; i < 7; i++) {
      hash = Math.imul(hash ^ (rest & 0xff), 0x01000193) >>> 0
      rest = Math.floor(rest / 256)
    }
  }
  hash = Math.imul(hash ^ (entry.type === 'conf' ? 1 : 0), 0x01000193) >>> 0
  const data = entry.data
  for (let i = 0; i < data.length; i++) hash = Math.imul(hash ^ data[i], 0x01000193) >>> 0
  const digest = hash.toString(16).padStart(8, '0')
  digests.set(entry, digest)
  return digest
}

/** Chains a state digest with the next applied entry's digest. */
export function chainDigest(previous: string, entry: string): string {
  let hash = 0x811c9dc5
  for (const text of [previous, entry]) {
    for (let i = 0; i < text.length; i++) {
      hash ^= text.charCodeAt(i)
      hash = Math.imul(hash, 0x01000193) >>> 0
    }
  }
  return hash.toString(16).padStart(8, '0')
}

export interface CommittedRecord {
  term: number
  digest: string
}

export class SafetyCheckers {
  /** Election Safety: the one leader of each term. */
  private readonly leaders = new Map<number, MemberId>()
  /** Every entry any member has reported committed, by index: must never change. */
  readonly committed = new Map<number, CommittedRecord>()
  /** The state digest after applying each index, as the first member to apply it computed it. */
  private readonly states = new Map<number, string>()
  highestCommitted = 0

  /** Section 5.2 Election Safety: at most one leader per term. */
  leader(term: number, member: MemberId): void {
    const known = this.leaders.get(term)
    if (known === undefined) this.leaders.set(term, member)
    else if (known !== member) {
      throw new SafetyViolation(
        'election-safety',
        `members ${known} and ${member} are both leader of term ${term}`,
        [known, member],
      )
    }
  }

  /** Log Matching / commitment: an entry at a committed index is the same everywhere, forever. */
  committedEntry(member: MemberId, entry: Entry): void {
    const digest = entryDigest(entry)
    const known = this.committed.get(entry.index)
    if (!known) {
      this.committed.set(entry.index, { term: entry.term, digest })
      if (entry.index > this.highestCommitted) this.highestCommitted = entry.index
    } else if (known.term !== entry.term || known.digest !== digest) {
      throw new SafetyViolation(
        'committed-entries-never-change',
        `member ${member} has ${entry.term}/${entry.index} digest ${digest} committed, but ` +
          `${known.term}/${entry.index} digest ${known.digest} was committed before`,
        [member],
      )
    }
  }

  /** State Machine Safety: every member applies the same entry at each index, in index order. */
  applied(member: MemberId, previousIndex: number, entry: Entry, stateAfter: string): void {
    if (entry.index !== previousIndex + 1) {
      throw new SafetyViolation(
        'applied-prefix',
        `member ${member} applied index ${entry.index} after ${previousIndex}`,
        [member],
      )
    }
    const known = this.committed.get(entry.index)
    const digest = entryDigest(entry)
    if (!known) {
      throw new SafetyViolation(
        'applied-prefix',
        `member ${member} applied ${entry.term}/${entry.index} that no member reported committed`,
        [member],
      )
    }
    if (known.term !== entry.term || known.digest !== digest) {
      throw new SafetyViolation(
        'state-machine-safety',
        `member ${member} applied ${entry.term}/${entry.index} digest ${digest}, but ` +
          `${known.term}/${entry.index} digest ${known.digest} is committed`,
        [member],
      )
    }
    this.state(member, entry.index, stateAfter)
  }

  /**
   * Forgets the records at indexes below `index` once every member has compacted past them, so a
   * long run's checkers stay bounded (the network simulator calls it; snapshots carry the digest
   * that state() still compares).
   */
  forgetBelow(index: number): void {
    for (const key of this.committed.keys()) if (key < index) this.committed.delete(key)
    for (const key of this.states.keys()) if (key < index) this.states.delete(key)
  }

  /** A state reached by applying up to index (or loaded from a snapshot) must match everyone's. */
  state(member: MemberId, index: number, digest: string): void {
    const known = this.states.get(index)
    if (known === undefined) this.states.set(index, digest)
    else if (known !== digest) {
      throw new SafetyViolation(
        'state-machine-safety',
        `member ${member} state at ${index} is ${digest}, others had ${known}`,
        [member],
      )
    }
  }

  /**
   * Section 5.4 Leader Completeness: a new leader's log holds every entry committed so far.
   * `termAt` answers the leader's log term at an index, or undefined when compacted into its
   * snapshot (covered when the snapshot index is at least that index).
   */
  newLeader(
    member: MemberId,
    term: number,
    snapshotIndex: number,
    lastIndex: number,
    termAt: (index: number) => number | undefined,
  ): void {
    this.leader(term, member)
    if (lastIndex < this.highestCommitted) {
      throw new SafetyViolation(
        'leader-completeness',
        `leader ${member} of term ${term} has last index ${lastIndex} < committed index ` +
          `${this.highestCommitted}`,
        [member],
      )
    }
    for (const [index, record] of this.committed) {
      if (index <= snapshotIndex) continue
      const ours = termAt(index)
      if (ours !== record.term) {
        throw new SafetyViolation(
          'leader-completeness',
          `leader ${member} of term ${term} has term ${ours} at committed index ${index} (committed ` +
            `term ${record.term})`,
          [member],
        )
      }
    }
  }
}
