// Safety checkers the Raft simulator runs after every step (TigerBeetle's VOPR habit): each one
// holds the global truth it needs and throws SafetyViolation the moment a member contradicts it.
import type { Entry, MemberId } from '../../protocols/raft/types.js'

export class SafetyViolation extends Error {
  static override name = 'SafetyViolation'
  readonly checker: string
  constructor(checker: string, message: string) {
    super(`${checker}: ${message}`)
    this.name = 'SafetyViolation'
    this.checker = checker
  }
}

/** FNV-1a over the entry's term, index, type and data: a cheap digest for cross-member comparison. */
export function entryDigest(entry: Entry): string {
  // the mixing is inlined (no closure per call): the network simulator digests every entry twice
  let hash = 0x811c9dc5
  for (const value of [entry.term, entry.index]) {
    for (let shift = 0; shift < 48; shift += 8) {
      hash ^= Math.floor(value / 2 ** shift) & 0xff
      hash = Math.imul(hash, 0x01000193) >>> 0
    }
  }
  hash ^= entry.type === 'conf' ? 1 : 0
  hash = Math.imul(hash, 0x01000193) >>> 0
  const data = entry.data
  for (let i = 0; i < data.length; i++) {
    hash ^= data[i]
    hash = Math.imul(hash, 0x01000193) >>> 0
  }
  return hash.toString(16).padStart(8, '0')
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
        `member ${member} has ${entry.term}/${entry.index} digest ${digest} committed, but ${known.term}/${entry.index} digest ${known.digest} was committed before`,
      )
    }
  }

  /** State Machine Safety: every member applies the same entry at each index, in index order. */
  applied(member: MemberId, previousIndex: number, entry: Entry, stateAfter: string): void {
    if (entry.index !== previousIndex + 1) {
      throw new SafetyViolation(
        'applied-prefix',
        `member ${member} applied index ${entry.index} after ${previousIndex}`,
      )
    }
    const known = this.committed.get(entry.index)
    const digest = entryDigest(entry)
    if (!known) {
      throw new SafetyViolation(
        'applied-prefix',
        `member ${member} applied ${entry.term}/${entry.index} that no member reported committed`,
      )
    }
    if (known.term !== entry.term || known.digest !== digest) {
      throw new SafetyViolation(
        'state-machine-safety',
        `member ${member} applied ${entry.term}/${entry.index} digest ${digest}, but ${known.term}/${entry.index} digest ${known.digest} is committed`,
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
        `leader ${member} of term ${term} has last index ${lastIndex} < committed index ${this.highestCommitted}`,
      )
    }
    for (const [index, record] of this.committed) {
      if (index <= snapshotIndex) continue
      const ours = termAt(index)
      if (ours !== record.term) {
        throw new SafetyViolation(
          'leader-completeness',
          `leader ${member} of term ${term} has term ${ours} at committed index ${index} (committed term ${record.term})`,
        )
      }
    }
  }
}
