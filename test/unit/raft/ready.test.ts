// The one Ready order (protocols/raft/ready.ts), observed through a driver that records each step
// and whose write completes only when the test says so, as the runner's fsync off the event loop.
import { describe, expect, it } from 'vitest'
import { handleReady, type ReadyDriver } from '../../../protocols/raft/ready.js'
import type { MemoryStorage, StorageUpdate } from '../../../protocols/raft/storage.js'
import type { Entry, Message } from '../../../protocols/raft/types.js'
import { encode, TestNetwork } from './network.js'

const indexes = (entries: Entry[]): string => entries.map((entry) => entry.index).join(',')
const described = (messages: Message[]): string =>
  messages.map((m) => `${m.type}>${m.to}${m.entries.length > 0 ? `[${indexes(m.entries)}]` : ''}`).join(' ')

/** A driver that records each step; its save completes when finish() is called. */
class RecordingDriver implements ReadyDriver {
  readonly steps: string[] = []
  readonly sent: Message[] = []
  halt = false
  private finishSave: (() => void) | undefined

  constructor(private readonly storage: MemoryStorage) {}

  save(update: StorageUpdate): Promise<void> {
    const what = update.snapshot ? `snapshot@${update.snapshot.metadata.index}` : indexes(update.entries)
    this.steps.push(`save ${what}`)
    return new Promise((resolve) => {
      this.finishSave = () => {
        this.storage.save(update)
        this.steps.push('durable')
        resolve()
      }
    })
  }

  finish(): void {
    this.finishSave?.()
  }

  send(messages: Message[]): void {
    this.sent.push(...messages)
    this.steps.push(`send ${described(messages)}`)
  }

  apply(ready: { snapshot?: { metadata: { index: number } }; committedEntries: Entry[] }): void {
    const snapshot = ready.snapshot ? `snapshot@${ready.snapshot.metadata.index} ` : ''
    this.steps.push(`apply ${snapshot}${indexes(ready.committedEntries)}`.trimEnd())
  }

  appending(entries: Entry[]): void {
    this.steps.push(`appending ${indexes(entries)}`)
  }

  appended(entries: Entry[]): void {
    this.steps.push(`appended ${indexes(entries)}`)
  }

  advanced(): void {
    this.steps.push('advanced')
  }

  halted(): boolean {
    return this.halt
  }
}

/** Three members, 1 elected; its empty entry (index 4) is committed and applied everywhere. */
function electedGroup(): TestNetwork {
  const network = new TestNetwork(['1', '2', '3'])
  network.elect('1')
  return network
}

/** Delivers the queued messages for `to` to its node without processing its Ready. */
function deliverTo(network: TestNetwork, to: string): void {
  const kept: Message[] = []
  for (const m of network.mailbox) m.to === to ? network.node(to).step(m) : kept.push(m)
  network.mailbox = kept
}

describe('handleReady: the one Ready order', () => {
  it("sends a leader's appends before its own write and counts its own entry only once durable", async () => {
    const network = electedGroup()
    const leader = network.node('1')
    leader.propose(encode('x'))
    const driver = new RecordingDriver(network.member('1').storage)
    const pending = handleReady(leader, driver)
    expect(pending).toBeInstanceOf(Promise)
    // the appends left while the write is still in flight
    expect(driver.steps).toEqual(['send MsgApp>2[5] MsgApp>3[5]', 'apply', 'save 5', 'appending 5'])
    // member 2 stores and acknowledges the append: with the leader's own entry not yet durable,
    // that is 1 of the 2 acknowledgements a quorum of 3 needs
    network.node('2').step(driver.sent.find((m) => m.to === '2')!)
    network.process('2')
    for (const m of network.mailbox.splice(0)) if (m.to === '1') leader.step(m)
    expect(leader.log.committed).toBe(4)
    driver.finish()
    await pending
    expect(driver.steps.slice(4)).toEqual(['durable', 'appended 5', 'advanced'])
    expect(leader.log.committed).toBe(5) // its own entry, now durable, completes the quorum
  })

  it('sends a follower acknowledgement only once the entries it acknowledges are durable', async () => {
    const network = electedGroup()
    network.node('1').propose(encode('x'))
    network.process('1')
    deliverTo(network, '2')
    const follower = network.node('2')
    const storage = network.member('2').storage
    const driver = new RecordingDriver(storage)
    const pending = handleReady(follower, driver)
    expect(driver.steps).toEqual(['apply', 'save 5', 'appending 5'])
    expect(storage.lastIndex()).toBe(4)
    driver.finish()
    await pending
    expect(driver.steps.slice(3)).toEqual(['durable', 'send MsgAppResp>1', 'appended 5', 'advanced'])
  })

  it('applies committed entries while the write is in flight', async () => {
    const network = electedGroup()
    network.node('1').propose(encode('x'))
    network.process('1')
    for (const id of ['2', '3']) {
      deliverTo(network, id)
      network.process(id)
    }
    deliverTo(network, '1') // the acknowledgements: the leader commits 5, the followers do not know yet
    network.node('1').propose(encode('y'))
    network.process('1')
    deliverTo(network, '2') // 6, with the news that 5 is committed
    const driver = new RecordingDriver(network.member('2').storage)
    const pending = handleReady(network.node('2'), driver)
    expect(driver.steps).toEqual(['apply 5', 'save 6', 'appending 6'])
    driver.finish()
    await pending
  })

  it('writes a snapshot before it sends anything or loads it', async () => {
    const network = electedGroup()
    network.crash('3')
    for (let i = 0; i < 3; i++) network.node('1').propose(encode(`e${i}`))
    network.stabilize()
    const leaderStorage = network.member('1').storage
    const applied = network.node('1').log.applied
    leaderStorage.createSnapshot(applied, network.node('1').confState(), encode('state'))
    leaderStorage.compact(applied)
    network.start('3', network.member('3').storage.snapshot().metadata.index)
    network.tick('1', network.heartbeatTicks)
    // until 3's response to the heartbeat has brought the leader to send it the snapshot
    for (let round = 0; round < 10 && !network.mailbox.some((m) => m.type === 'MsgSnap'); round++)
      network.deliverAll()
    deliverTo(network, '3')
    const driver = new RecordingDriver(network.member('3').storage)
    const pending = handleReady(network.node('3'), driver)
    expect(driver.steps).toEqual([`save snapshot@${applied}`])
    driver.finish()
    await pending
    expect(driver.steps).toEqual([
      `save snapshot@${applied}`,
      'durable',
      'send MsgAppResp>1',
      `apply snapshot@${applied}`,
      'advanced',
    ])
  })

  it('does nothing after a write during which the member halted (crashed or stopped)', async () => {
    const network = electedGroup()
    network.node('1').propose(encode('x'))
    network.process('1')
    deliverTo(network, '2')
    const driver = new RecordingDriver(network.member('2').storage)
    const pending = handleReady(network.node('2'), driver)
    driver.halt = true
    driver.finish()
    await pending
    expect(driver.steps).toEqual(['apply', 'save 5', 'appending 5', 'durable'])
  })

  it('completes within the call when the save is synchronous', () => {
    const network = electedGroup()
    network.node('1').propose(encode('x'))
    network.process('1')
    deliverTo(network, '2')
    const storage = network.member('2').storage
    const steps: string[] = []
    const result = handleReady(network.node('2'), {
      save: (update) => {
        storage.save(update)
        steps.push(`save ${indexes(update.entries)}`)
      },
      send: (messages) => steps.push(`send ${described(messages)} (stored up to ${storage.lastIndex()})`),
      apply: () => steps.push('apply'),
    })
    expect(result).toBeUndefined()
    expect(steps).toEqual(['apply', 'save 5', 'send MsgAppResp>1 (stored up to 5)'])
    expect(network.node('2').hasReady()).toBe(false) // advanced
  })
})
