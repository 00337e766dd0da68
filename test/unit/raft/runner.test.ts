// The runner drives its Readies through handleReady with an asynchronous write: three runners over
// an in-memory transport, each on a MemoryStorage whose saveAsync the test can hold open, as a slow
// fsync would. What leaves, and what goes into the next write, while a write is held.
import { afterEach, describe, expect, it } from 'vitest'
import { RaftRunner } from '../../../protocols/raft/runner.js'
import { MemoryStorage, type StorageUpdate } from '../../../protocols/raft/storage.js'
import type { RaftGroupHandler } from '../../../protocols/raft/transport.js'
import type { Message } from '../../../protocols/raft/types.js'
import { decode, encode } from './network.js'

/** A MemoryStorage whose asynchronous writes complete only once released while held. */
class HeldStorage extends MemoryStorage {
  held = false
  readonly writes: StorageUpdate[] = []
  private readonly waiting: (() => void)[] = []

  saveAsync(update: StorageUpdate): Promise<void> {
    this.writes.push(update)
    if (!this.held) {
      this.save(update)
      return Promise.resolve()
    }
    return new Promise((resolve) => {
      this.waiting.push(() => {
        this.save(update)
        resolve()
      })
    })
  }

  release(): void {
    this.held = false
    for (const complete of this.waiting.splice(0)) complete()
  }

  /** Whether a write carrying `text` has been handed to this storage. */
  wrote(text: string): boolean {
    return this.writes.some((update) => update.entries.some((entry) => decode(entry.data) === text))
  }
}

/** Delivers every message on a later turn of the event loop and keeps a record of what was sent. */
class Hub {
  readonly sent: Message[] = []
  private readonly handlers = new Map<string, RaftGroupHandler>()

  transport(id: string) {
    return {
      join: (_group: string, handler: RaftGroupHandler) => {
        this.handlers.set(id, handler)
      },
      leave: () => {
        this.handlers.delete(id)
      },
      send: (_group: string, messages: Message[]) => {
        for (const m of messages) {
          this.sent.push(m)
          setImmediate(() => this.handlers.get(m.to)?.onMessages([m]))
        }
      },
    }
  }
}

async function waitFor(condition: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 5000
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 2))
  }
}

/** A few turns of the event loop, for something that must NOT happen. */
async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise((resolve) => setImmediate(resolve))
}

const carries = (m: Message, text: string): boolean => m.entries.some((entry) => decode(entry.data) === text)

let runners: RaftRunner[] = []

afterEach(() => {
  for (const runner of runners) runner.stop()
  runners = []
})

async function group(): Promise<{ hub: Hub; storages: Map<string, HeldStorage>; leader: RaftRunner }> {
  const hub = new Hub()
  const ids = ['a', 'b', 'c']
  const storages = new Map<string, HeldStorage>()
  for (const id of ids) {
    const storage = new HeldStorage()
    storage.bootstrap(ids)
    storages.set(id, storage)
    runners.push(
      new RaftRunner({
        group: 'g',
        id,
        storage,
        transport: hub.transport(id),
        tickMs: 5,
        // no election but the one the test starts: a loaded machine that stalls the event loop for
        // 50-100 ms (the default 10 ticks) must not hand the leadership to another member mid-test
        electionTicks: 1000,
        seed: ids.indexOf(id),
      }),
    )
  }
  for (const runner of runners) runner.start()
  // a member campaigns only once its configuration (the bootstrap entries) is applied
  await waitFor(() => runners.every((r) => r.status().applied >= ids.length), 'the bootstrap applied')
  const leader = runners[0]
  leader.campaign()
  await waitFor(
    () => leader.isLeader() && runners.every((r) => r.status().applied === 4),
    'an elected leader',
  )
  return { hub, storages, leader }
}

describe('the runner handles each Ready in the one order, with its write off the event loop', () => {
  it('a follower acknowledges entries only once its write of them has completed', async () => {
    const { hub, storages, leader } = await group()
    const follower = storages.get('b')!
    follower.held = true
    const committed = leader.propose(encode('x'))
    await waitFor(() => follower.wrote('x'), "b's write of x")
    const index = follower.writes.at(-1)!.entries.at(-1)!.index
    const acknowledged = () =>
      hub.sent.some((m) => m.from === 'b' && m.type === 'MsgAppResp' && m.index >= index)
    await committed // a and c are a quorum
    await settle()
    expect(acknowledged()).toBe(false)
    follower.release()
    await waitFor(acknowledged, "b's acknowledgement")
  })

  it("a leader's append leaves during its own write; what arrives meanwhile is one next write", async () => {
    const { hub, storages, leader } = await group()
    const own = storages.get('a')!
    own.held = true
    const proposals = [leader.propose(encode('x'))]
    await waitFor(() => own.wrote('x'), "a's write of x")
    expect(hub.sent.filter((m) => m.type === 'MsgApp' && carries(m, 'x')).map((m) => m.to)).toEqual([
      'b',
      'c',
    ])
    proposals.push(leader.propose(encode('y')), leader.propose(encode('z')))
    await settle()
    expect(own.wrote('y')).toBe(false) // one write at a time
    const writes = own.writes.length
    own.release()
    await Promise.all(proposals)
    const next = own.writes[writes].entries.map((entry) => decode(entry.data))
    expect(next).toEqual(['y', 'z']) // group commit: both in the write after x's
  })
})
