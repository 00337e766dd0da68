// A tiny interpreter for Raft scenario transcripts in the style of etcd-io/raft's testdata/*.txt:
// each command drives real RaftNodes over MemoryStorage and prints what they did, and the test
// compares that text with the committed transcript.
import { RaftNode } from '../../../protocols/raft/node.js'
import { SeededRandom } from '../../../protocols/raft/random.js'
import { MemoryStorage } from '../../../protocols/raft/storage.js'
import {
  decodeConfChange,
  type Entry,
  type Message,
  ProposalDroppedError,
  type Snapshot,
} from '../../../protocols/raft/types.js'

interface Member {
  node: RaftNode
  storage: MemoryStorage
  options: NodeOptions
}

interface NodeOptions {
  preVote: boolean
  checkQuorum: boolean
  electionTicks: number
  heartbeatTicks: number
  inflightMessagesMax: number
  messageBytesMax: number
  snapshotChunkBytes: number
}

const decoder = new TextDecoder()
const encoder = new TextEncoder()

function formatData(data: Uint8Array): string {
  return JSON.stringify(decoder.decode(data))
}

export function formatEntry(entry: Entry): string {
  if (entry.type === 'conf') {
    const change = decodeConfChange(entry.data)
    return `${entry.term}/${entry.index} EntryConfChange ${change.type} ${change.member}`
  }
  return `${entry.term}/${entry.index} EntryNormal ${formatData(entry.data)}`
}

function formatSnapshotMeta(snapshot: Snapshot['metadata']): string {
  return `Index:${snapshot.index} Term:${snapshot.term} Voters:[${snapshot.confState.voters.join(' ')}]`
}

export function formatMessage(m: Message): string {
  let out = `${m.from}->${m.to} ${m.type} Term:${m.term}`
  switch (m.type) {
    case 'MsgApp':
      out += ` Log:${m.logTerm}/${m.index} Commit:${m.commit}`
      if (m.entries.length > 0) out += ` Entries:[${m.entries.map(formatEntry).join(', ')}]`
      break
    case 'MsgAppResp':
      out += m.reject ? ` Log:${m.logTerm}/${m.index} Rejected (Hint: ${m.rejectHint})` : ` Log:0/${m.index}`
      break
    case 'MsgVote':
    case 'MsgPreVote':
      out += ` Log:${m.logTerm}/${m.index}${m.transfer ? ' Transfer' : ''}`
      break
    case 'MsgVoteResp':
    case 'MsgPreVoteResp':
      if (m.reject) out += ' Rejected'
      break
    case 'MsgHeartbeat':
      out += ` Commit:${m.commit}`
      break
    case 'MsgSnap':
      if (m.snapshot) {
        const chunk = m.snapshot
        out +=
          ` Snapshot: ${formatSnapshotMeta(chunk.metadata)} ` +
          `Chunk:${chunk.offset}+${chunk.data.length}/${chunk.totalBytes}`
      }
      break
    case 'MsgSnapResp':
      out += ` Index:${m.index} ${m.reject ? 'Rejected' : `Received:${m.rejectHint}`}`
      break
  }
  return out
}

/** Parses `key=value` and `key=(a,b)` arguments. */
function parseArgs(words: string[]): { positional: string[]; named: Map<string, string> } {
  const positional: string[] = []
  const named = new Map<string, string>()
  for (const word of words) {
    const eq = word.indexOf('=')
    if (eq > 0) named.set(word.slice(0, eq), word.slice(eq + 1))
    else positional.push(word)
  }
  return { positional, named }
}

function parseIdList(text: string): string[] {
  return text
    .replace(/[()]/g, '')
    .split(',')
    .map((id) => id.trim())
    .filter((id) => id.length > 0)
}

export class TranscriptInterpreter {
  private readonly members = new Map<string, Member>()
  private readonly crashed = new Map<string, MemoryStorage>()
  private readonly crashedOptions = new Map<string, NodeOptions>()
  private mailbox: Message[] = []
  private partition: string[][] | undefined
  private output: string[] = []
  private defaults: NodeOptions = {
    preVote: false,
    checkQuorum: false,
    electionTicks: 10,
    heartbeatTicks: 1,
    inflightMessagesMax: 256,
    messageBytesMax: 1 << 20,
    snapshotChunkBytes: 1 << 18,
  }

  run(command: string): string {
    this.output = []
    const words = command.trim().split(/\s+/)
    const [name, ...rest] = words
    const { positional, named } = parseArgs(rest)
    switch (name) {
      case 'add-nodes':
        this.addNodes(Number(positional[0]), named)
        break
      case 'add-node':
        this.addNode(positional[0], [], this.defaults)
        break
      case 'campaign':
        this.member(positional[0]).node.campaign()
        break
      case 'propose':
        this.propose(positional[0], () =>
          this.member(positional[0]).node.propose(encoder.encode(positional[1] ?? '')),
        )
        break
      case 'propose-conf-change':
        this.propose(positional[0], () =>
          this.member(positional[0]).node.proposeConfChange({
            type: positional[1] as 'add' | 'remove',
            member: positional[2],
          }),
        )
        break
      case 'transfer-leadership':
        this.member(named.get('from')!).node.transferLeadership(named.get('to')!)
        break
      case 'tick-election':
        this.tickElection(positional[0])
        break
      case 'tick-heartbeat': {
        const member = this.member(positional[0])
        for (let i = 0; i < member.options.heartbeatTicks; i++) member.node.tick()
        break
      }
      case 'process-ready':
        for (const id of positional) this.processReady(id)
        break
      case 'deliver-msgs':
        this.deliver(positional, named.has('drop') ? parseIdList(named.get('drop')!) : [])
        break
      case 'stabilize':
        this.stabilize(positional)
        break
      case 'partition':
        this.partition = positional.map(parseIdList)
        this.print(`partitioned ${this.partition.map((group) => `(${group.join(',')})`).join(' ')}`)
        break
      case 'heal':
        this.partition = undefined
        this.print('healed')
        break
      case 'status':
        this.printStatus(positional[0])
        break
      case 'raft-log':
        this.printLog(positional[0])
        break
      case 'distrust':
        this.print(`${this.member(positional[0]).node.distrust(positional[1]) ? 'distrusted' : 'unchanged'}`)
        break
      case 'compact':
        this.compact(positional[0], Number(positional[1]))
        break
      case 'crash':
        this.crash(positional[0])
        break
      case 'restart':
        this.restart(positional[0])
        break
      default:
        throw new Error(`unknown command ${name}`)
    }
    return this.output.length === 0 ? 'ok' : this.output.join('\n')
  }

  private print(line: string): void {
    this.output.push(line)
  }

  private member(id: string): Member {
    const member = this.members.get(id)
    if (!member) throw new Error(`no running member ${id}`)
    return member
  }

  private addNodes(count: number, named: Map<string, string>): void {
    const options: NodeOptions = {
      ...this.defaults,
      preVote: named.get('prevote') === 'true',
      checkQuorum: named.get('checkquorum') === 'true',
      heartbeatTicks: Number(named.get('heartbeat') ?? this.defaults.heartbeatTicks),
      electionTicks: Number(named.get('election') ?? this.defaults.electionTicks),
      inflightMessagesMax: Number(named.get('inflight') ?? this.defaults.inflightMessagesMax),
      messageBytesMax: Number(named.get('msgbytes') ?? this.defaults.messageBytesMax),
      snapshotChunkBytes: Number(named.get('chunk') ?? this.defaults.snapshotChunkBytes),
    }
    this.defaults = options
    const start = this.members.size + 1
    const ids = Array.from({ length: count }, (_, i) => String(start + i))
    const voters = named.has('voters') ? parseIdList(named.get('voters')!) : ids
    for (const id of ids) this.addNode(id, voters, options)
    // apply the bootstrap conf entries silently, as a daemon does on its first start
    const saved = this.output
    this.output = []
    for (const id of ids) this.processReady(id)
    this.output = saved
  }

  private addNode(id: string, voters: string[], options: NodeOptions): void {
    const storage = new MemoryStorage()
    if (voters.length > 0) storage.bootstrap(voters)
    this.members.set(id, { node: this.newNode(id, storage, options, 0), storage, options })
  }

  private newNode(id: string, storage: MemoryStorage, options: NodeOptions, applied: number): RaftNode {
    return new RaftNode({
      id,
      storage,
      random: new SeededRandom(Number(id) * 7919),
      applied,
      ...options,
      logger: (line) => this.print(`INFO ${line}`),
    })
  }

  private propose(_id: string, action: () => { index: number; term: number }): void {
    try {
      action()
    } catch (error) {
      if (error instanceof ProposalDroppedError) this.print(`raft proposal dropped: ${error.reason}`)
      else throw error
    }
  }

  private tickElection(id: string): void {
    const member = this.member(id)
    if (member.node.state === 'leader') {
      for (let i = 0; i < member.options.electionTicks; i++) member.node.tick()
      return
    }
    // tick exactly until the randomized timer fires, so transcripts do not depend on the jitter
    const remaining = member.node.ticksUntilElection()
    for (let i = 0; i < remaining; i++) member.node.tick()
  }

  /**
   * Prints a Ready whole (etcd's transcript format), saves it and queues its messages. They are
   * delivered by a later command, so the order within a Ready (protocols/raft/ready.ts) is not
   * observable here and the transcripts keep each Ready's messages in the core's order.
   */
  private processReady(id: string): boolean {
    const member = this.members.get(id)
    if (!member?.node.hasReady()) return false
    const ready = member.node.ready()
    this.print(`> ${id} handling Ready`)
    const lines: string[] = []
    if (ready.softState) lines.push(`Lead:${ready.softState.lead || '0'} State:${ready.softState.state}`)
    if (ready.hardState) {
      lines.push(
        `HardState Term:${ready.hardState.term} Vote:${ready.hardState.vote || '0'} ` +
          `Commit:${ready.hardState.commit}`,
      )
    }
    if (ready.entries.length > 0) {
      lines.push('Entries:')
      for (const entry of ready.entries) lines.push(formatEntry(entry))
    }
    if (ready.snapshot) lines.push(`Snapshot ${formatSnapshotMeta(ready.snapshot.metadata)}`)
    if (ready.committedEntries.length > 0) {
      lines.push('CommittedEntries:')
      for (const entry of ready.committedEntries) lines.push(formatEntry(entry))
    }
    if (ready.messages.length > 0) {
      lines.push('Messages:')
      for (const m of ready.messages) lines.push(formatMessage(m))
    }
    for (const line of lines) this.print(`  ${line}`)
    member.storage.save({ snapshot: ready.snapshot, entries: ready.entries, hardState: ready.hardState })
    for (const m of ready.messages) this.mailbox.push(m)
    member.node.advance()
    return true
  }

  private connected(a: string, b: string): boolean {
    if (!this.partition) return true
    return this.partition.some((group) => group.includes(a) && group.includes(b))
  }

  private deliver(ids: string[], drop: string[]): boolean {
    let delivered = false
    const recipients = ids.length > 0 ? ids : [...new Set(this.mailbox.map((m) => m.to))].sort()
    for (const id of recipients) {
      const messages = this.mailbox.filter((m) => m.to === id)
      this.mailbox = this.mailbox.filter((m) => m.to !== id)
      if (messages.length === 0) continue
      delivered = true
      if (drop.includes(id)) {
        for (const m of messages) this.print(`dropped: ${formatMessage(m)}`)
        continue
      }
      const member = this.members.get(id)
      if (!member) continue // a crashed member loses what was sent to it
      const kept = messages.filter((m) => this.connected(m.from, m.to))
      for (const m of messages) if (!kept.includes(m)) this.print(`partitioned: ${formatMessage(m)}`)
      if (kept.length === 0) continue
      this.print(`> ${id} receiving messages`)
      for (const m of kept) {
        this.print(`  ${formatMessage(m)}`)
        member.node.step(m)
      }
    }
    return delivered
  }

  private stabilize(ids: string[]): void {
    const all = ids.length > 0 ? ids : [...this.members.keys()].sort()
    for (let round = 0; round < 1000; round++) {
      let progressed = false
      for (const id of all) progressed = this.processReady(id) || progressed
      const before = this.mailbox.length
      const delivered = this.deliver(
        [...new Set(this.mailbox.map((m) => m.to))]
          .filter((to) => all.includes(to) || !this.members.has(to))
          .sort(),
        [],
      )
      // messages to unlisted members stay queued and do not count as progress
      if (!progressed && (!delivered || before === this.mailbox.length)) return
    }
    throw new Error('stabilize did not converge')
  }

  private printStatus(id: string): void {
    const status = this.member(id).node.status()
    this.print(
      `${id}: ${status.state} term:${status.term} lead:${status.lead || '0'} commit:${status.commit} ` +
        `applied:${status.applied} last:${status.lastIndex} voters:[${status.voters.join(' ')}]` +
        (status.distrusted.length > 0
          ? ` distrusted:[${status.distrusted.join(' ')}] dropped:${status.distrustedDropped}`
          : ''),
    )
    for (const [peer, pr] of Object.entries(status.progress)) {
      this.print(`  ${peer}: match=${pr.match} next=${pr.next} ${pr.state}`)
    }
  }

  private printLog(id: string): void {
    const member = this.members.get(id)
    const storage = member?.storage ?? this.crashed.get(id)
    if (!storage) throw new Error(`no member ${id}`)
    const first = storage.firstIndex()
    const last = storage.lastIndex()
    if (first > last) {
      this.print(`log is empty: first index=${first}, last index=${last}`)
      return
    }
    for (const entry of storage.entries(first, last + 1)) this.print(formatEntry(entry))
  }

  private compact(id: string, index: number): void {
    const member = this.member(id)
    member.storage.createSnapshot(index, member.node.confState(), encoder.encode(`snap@${index}`))
    member.storage.compact(index)
    this.printLog(id)
  }

  private crash(id: string): void {
    const member = this.member(id)
    this.members.delete(id)
    this.crashed.set(id, member.storage)
    this.crashedOptions.set(id, member.options)
    this.mailbox = this.mailbox.filter((m) => m.to !== id)
    this.print(`crashed ${id}`)
  }

  private restart(id: string): void {
    const storage = this.crashed.get(id)
    const options = this.crashedOptions.get(id)
    if (!storage || !options) throw new Error(`member ${id} is not crashed`)
    this.crashed.delete(id)
    this.crashedOptions.delete(id)
    const node = this.newNode(id, storage, options, storage.snapshot().metadata.index)
    this.members.set(id, { node, storage, options })
  }
}
