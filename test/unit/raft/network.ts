// A programmatic in-memory group for table and property tests: real RaftNodes over MemoryStorage,
// with a mailbox the test controls (deliver, drop, partition) and a record of what was applied.
import { RaftNode, type RaftNodeConfig, type Ready } from '../../../protocols/raft/node.js'
import { SeededRandom } from '../../../protocols/raft/random.js'
import { MemoryStorage } from '../../../protocols/raft/storage.js'
import type { Entry, Message } from '../../../protocols/raft/types.js'

export type NodeOptions = Partial<Omit<RaftNodeConfig, 'id' | 'storage' | 'random'>>

export interface TestMember {
  id: string
  node: RaftNode | undefined
  storage: MemoryStorage
  applied: Entry[]
  readies: Ready[]
}

export class TestNetwork {
  readonly members = new Map<string, TestMember>()
  mailbox: Message[] = []
  /** Returns false to drop a message as it is delivered. */
  filter: (m: Message) => boolean = () => true
  private readonly options: NodeOptions

  constructor(ids: string[], options: NodeOptions = {}) {
    this.options = { preVote: false, checkQuorum: false, ...options }
    for (const id of ids) {
      const storage = new MemoryStorage()
      storage.bootstrap(ids)
      this.members.set(id, { id, node: undefined, storage, applied: [], readies: [] })
      this.start(id)
    }
    this.processAll()
  }

  start(id: string, applied = 0): RaftNode {
    const member = this.member(id)
    member.node = new RaftNode({
      id,
      storage: member.storage,
      random: new SeededRandom(Number.parseInt(id, 36) * 7919),
      applied,
      ...this.options,
    })
    return member.node
  }

  /** Adds a member with empty storage (to be added by a conf change). */
  addEmpty(id: string): RaftNode {
    this.members.set(id, { id, node: undefined, storage: new MemoryStorage(), applied: [], readies: [] })
    return this.start(id)
  }

  crash(id: string): void {
    this.member(id).node = undefined
  }

  member(id: string): TestMember {
    const member = this.members.get(id)
    if (!member) throw new Error(`no member ${id}`)
    return member
  }

  node(id: string): RaftNode {
    const node = this.member(id).node
    if (!node) throw new Error(`member ${id} is down`)
    return node
  }

  /** Handles every Ready of one member: persist, queue messages, apply, advance. */
  process(id: string): void {
    const member = this.member(id)
    while (member.node?.hasReady()) {
      const ready = member.node.ready()
      member.readies.push(ready)
      member.storage.save({ snapshot: ready.snapshot, entries: ready.entries, hardState: ready.hardState })
      if (ready.snapshot)
        member.applied = member.applied.filter((entry) => entry.index <= ready.snapshot!.metadata.index)
      for (const entry of ready.committedEntries) member.applied.push(entry)
      this.mailbox.push(...ready.messages)
      member.node.advance()
    }
  }

  processAll(): void {
    for (const id of this.members.keys()) this.process(id)
  }

  /** Delivers every queued message once (dropping those the filter refuses), then processes. */
  deliverAll(): number {
    const messages = this.mailbox
    this.mailbox = []
    let delivered = 0
    for (const m of messages) {
      const target = this.members.get(m.to)?.node
      if (!target || !this.filter(m)) continue
      target.step(m)
      delivered++
    }
    this.processAll()
    return delivered
  }

  stabilize(roundsMax = 100): void {
    this.processAll()
    for (let round = 0; round < roundsMax && this.mailbox.length > 0; round++) this.deliverAll()
  }

  /** Cuts `group` off from everyone else (both directions). */
  isolate(...group: string[]): void {
    this.filter = (m) => group.includes(m.from) === group.includes(m.to)
  }

  heal(): void {
    this.filter = () => true
  }

  tick(id: string, times = 1): void {
    for (let i = 0; i < times; i++) this.node(id).tick()
    this.process(id)
  }

  /** Ticks one member until its randomized election timer fires. */
  timeout(id: string): void {
    const raft = this.node(id).raft
    this.tick(id, Math.max(1, raft.randomizedElectionTimeout - raft.electionElapsed))
  }

  elect(id: string): void {
    this.node(id).campaign()
    this.stabilize()
  }

  leaders(): string[] {
    return [...this.members.values()].filter((m) => m.node?.raft.state === 'leader').map((m) => m.id)
  }
}

export const encode = (text: string): Uint8Array => new TextEncoder().encode(text)
export const decode = (data: Uint8Array): string => new TextDecoder().decode(data)
