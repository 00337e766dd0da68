// A programmatic in-memory group for table and property tests: real RaftNodes over MemoryStorage,
// each Ready handled by handleReady (the order every driver uses), with a mailbox the test controls
// (deliver, drop, partition), a record of what was applied and of what was stored as each message left.
import { RaftNode, type RaftNodeConfig, type Ready } from '../../../protocols/raft/node.js'
import { ELECTION_TICKS_DEFAULT, HEARTBEAT_TICKS_DEFAULT } from '../../../protocols/raft/raft.js'
import { SeededRandom } from '../../../protocols/raft/random.js'
import { handleReady, type ReadyDriver } from '../../../protocols/raft/ready.js'
import { MemoryStorage } from '../../../protocols/raft/storage.js'
import type { Entry, HardState, Message } from '../../../protocols/raft/types.js'

export type NodeOptions = Partial<Omit<RaftNodeConfig, 'id' | 'storage' | 'random'>>

/** Messages handed to the network together, with what the sender's storage held at that moment. */
export interface Sent {
  messages: Message[]
  storedLastIndex: number
  storedHardState: HardState
}

export interface TestMember {
  id: string
  node: RaftNode | undefined
  storage: MemoryStorage
  applied: Entry[]
  readies: Ready[]
  sent: Sent[]
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
      this.members.set(id, { id, node: undefined, storage, applied: [], readies: [], sent: [] })
      this.start(id)
    }
    this.processAll()
  }

  /** The members' election timeout before randomization, in ticks. */
  get electionTicks(): number {
    return this.options.electionTicks ?? ELECTION_TICKS_DEFAULT
  }

  /** Ticks between the leader's heartbeats. */
  get heartbeatTicks(): number {
    return this.options.heartbeatTicks ?? HEARTBEAT_TICKS_DEFAULT
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
    this.members.set(id, {
      id,
      node: undefined,
      storage: new MemoryStorage(),
      applied: [],
      readies: [],
      sent: [],
    })
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

  /** Handles every Ready of one member (protocols/raft/ready.ts): messages go to the mailbox. */
  process(id: string): void {
    const member = this.member(id)
    while (member.node?.hasReady()) handleReady(member.node, this.driver(member))
  }

  private driver(member: TestMember): ReadyDriver {
    return {
      save: (update) => member.storage.save(update),
      send: (messages) => {
        member.sent.push({
          messages,
          storedLastIndex: member.storage.lastIndex(),
          storedHardState: member.storage.initialState().hardState,
        })
        this.mailbox.push(...messages)
      },
      apply: (ready) => {
        member.readies.push(ready)
        if (ready.snapshot)
          member.applied = member.applied.filter((entry) => entry.index <= ready.snapshot!.metadata.index)
        for (const entry of ready.committedEntries) member.applied.push(entry)
      },
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
    this.tick(id, this.node(id).ticksUntilElection())
  }

  elect(id: string): void {
    this.node(id).campaign()
    this.stabilize()
  }

  leaders(): string[] {
    return [...this.members.values()].filter((m) => m.node?.state === 'leader').map((m) => m.id)
  }
}

export const encode = (text: string): Uint8Array => new TextEncoder().encode(text)
export const decode = (data: Uint8Array): string => new TextDecoder().decode(data)
