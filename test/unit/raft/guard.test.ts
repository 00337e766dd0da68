// The runner's guard: appends are validated before a follower steps them into its log (hence before
// it acknowledges them), in log order, one validation at a time, within a bounded queue; a refusal, a
// throw or a timeout distrusts the leader. First one real RaftRunner fed hand-made messages (what is
// validated, when, and what leaves), then five real RaftRunners over an in-memory transport, where a
// leader that proposes a lie never commits it, loses the leadership and never wins it back.
import { afterEach, describe, expect, it } from 'vitest'
import { ProposalLostError, RaftRunner, type RaftRunnerInit } from '../../../protocols/raft/runner.js'
import { MemoryStorage } from '../../../protocols/raft/storage.js'
import type { RaftGroupHandler } from '../../../protocols/raft/transport.js'
import {
  type Entry,
  encodeConfChange,
  type MemberId,
  type Message,
  message,
  NONE,
  ProposalDroppedError,
} from '../../../protocols/raft/types.js'
import { decode, encode } from './network.js'

async function waitFor(condition: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 2))
  }
}

/** A few turns of the event loop, for something that must NOT happen. */
async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise((resolve) => setImmediate(resolve))
}

/** A promise with its resolve, for a validation the test answers. */
function deferred<T>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve!: (value: T) => void
  const promise = new Promise<T>((r) => {
    resolve = r
  })
  return { promise, resolve }
}

let runners: RaftRunner[] = []
afterEach(() => {
  for (const runner of runners) runner.stop()
  runners = []
})

const normal = (index: number, text: string, term = 1): Entry => ({
  index,
  term,
  type: 'normal',
  data: encode(text),
})

/** An append from `from` at term 1 after index `after`, whose entries are `texts` from after + 1. */
function append(after: number, texts: string[], from: MemberId = 'a', logTerm = after <= 3 ? 0 : 1): Message {
  return message({
    type: 'MsgApp',
    from,
    to: 'b',
    term: 1,
    index: after,
    logTerm,
    commit: 3,
    entries: texts.map((text, i) => normal(after + 1 + i, text)),
  })
}

/**
 * Member b of the group {a, b, c}, alone: the test hands it messages as the transport would and reads
 * what it sends. No ticks: nothing happens that the test does not cause.
 */
async function lone(init: Partial<RaftRunnerInit>) {
  const storage = new MemoryStorage()
  storage.bootstrap(['a', 'b', 'c'])
  const sent: Message[] = []
  let handler: RaftGroupHandler | undefined
  const runner = new RaftRunner({
    group: 'g',
    id: 'b',
    storage,
    transport: {
      join: (_group, h) => {
        handler = h
      },
      leave: () => {
        handler = undefined
      },
      send: (_group, messages) => {
        sent.push(...messages)
      },
    },
    tickMs: 1 << 30,
    seed: 1,
    ...init,
  })
  runners.push(runner)
  runner.start()
  await waitFor(() => runner.status().applied === 3, 'the bootstrap applied')
  const deliver = (...messages: Message[]) => handler!.onMessages(messages)
  /** The highest index b acknowledged to a. */
  const acked = () =>
    Math.max(0, ...sent.filter((m) => m.type === 'MsgAppResp' && !m.reject).map((m) => m.index))
  return { runner, storage, sent, deliver, acked }
}

/** Records validate() calls and lets the test answer each. */
function validator() {
  const calls: { texts: string[]; indexes: number[]; leader: MemberId }[] = []
  const answers: ReturnType<typeof deferred<{ ok: true } | { ok: false; reason: string }>>[] = []
  let running = 0
  let concurrent = 0
  const validate = (entries: Entry[], leader: MemberId) => {
    calls.push({ texts: entries.map((e) => decode(e.data)), indexes: entries.map((e) => e.index), leader })
    running++
    concurrent = Math.max(concurrent, running)
    const answer = deferred<{ ok: true } | { ok: false; reason: string }>()
    answers.push(answer)
    return answer.promise.finally(() => {
      running--
    })
  }
  return { calls, answers, validate, concurrent: () => concurrent }
}

describe('a follower validates appends before it steps and acknowledges them', () => {
  it('in log order, one at a time; other messages step at once; held entries not re-validated', async () => {
    const v = validator()
    const { runner, sent, deliver, acked } = await lone({ validate: v.validate })
    deliver(
      append(3, ['x4', 'x5']),
      append(5, ['x6']),
      append(6, ['x7', 'x8']),
      message({ type: 'MsgHeartbeat', from: 'a', to: 'b', term: 1, commit: 3 }),
    )
    // the heartbeat stepped at once (b answers it and follows a); the appends wait
    await waitFor(() => sent.some((m) => m.type === 'MsgHeartbeatResp'), 'the heartbeat answered')
    expect(runner.leader()).toBe('a')
    expect(v.calls).toEqual([{ texts: ['x4', 'x5'], indexes: [4, 5], leader: 'a' }])
    expect(runner.heldAppends()).toBe(3)
    await settle()
    expect(acked()).toBeLessThan(4) // nothing past the bootstrap is acknowledged yet
    expect(runner.status().lastIndex).toBe(3)
    v.answers[0].resolve({ ok: true })
    await waitFor(() => v.calls.length === 2, 'the second validation')
    expect(v.calls[1].texts).toEqual(['x6'])
    await waitFor(() => acked() === 5, 'x4 and x5 acknowledged')
    expect(runner.status().lastIndex).toBe(5)
    v.answers[1].resolve({ ok: true })
    await waitFor(() => v.calls.length === 3, 'the third validation')
    expect(v.calls[2].texts).toEqual(['x7', 'x8'])
    v.answers[2].resolve({ ok: true })
    await waitFor(() => acked() === 8, 'everything acknowledged')
    expect(v.concurrent()).toBe(1)
    expect(runner.guardStats.validated).toBe(3)
    // a retransmission of what b holds steps at once, without a validation
    deliver(append(3, ['x4', 'x5', 'x6']))
    await settle()
    expect(v.calls.length).toBe(3)
    expect(runner.heldAppends()).toBe(0)
    // a suffix that overlaps what b holds: only the new entry is validated
    deliver(append(6, ['x7', 'x8', 'x9']))
    await waitFor(() => v.calls.length === 4, 'the overlap validated')
    expect(v.calls[3].texts).toEqual(['x9'])
  })

  it('conf entries and a new leader empty entry are not passed; an append of only those steps', async () => {
    const v = validator()
    const { runner, deliver, acked } = await lone({ validate: v.validate })
    const conf: Entry = {
      index: 5,
      term: 1,
      type: 'conf',
      data: encodeConfChange({ type: 'add', member: 'd' }),
    }
    deliver(
      message({
        type: 'MsgApp',
        from: 'a',
        to: 'b',
        term: 1,
        index: 3,
        logTerm: 0,
        commit: 3,
        entries: [normal(4, ''), conf],
      }),
    )
    await waitFor(() => acked() === 5, 'the empty and conf entries acknowledged')
    expect(v.calls).toEqual([])
    deliver(
      message({
        type: 'MsgApp',
        from: 'a',
        to: 'b',
        term: 1,
        index: 5,
        logTerm: 1,
        commit: 3,
        entries: [{ ...conf, index: 6 }, normal(7, 'y')],
      }),
    )
    await waitFor(() => v.calls.length === 1, 'the validation')
    expect(v.calls[0]).toEqual({ texts: ['y'], indexes: [7], leader: 'a' })
    v.answers[0].resolve({ ok: true })
    await waitFor(() => acked() === 7, 'y acknowledged')
    expect(runner.status().lastIndex).toBe(7)
  })

  it('an append that fails the consistency check or comes from an older term is not validated', async () => {
    const v = validator()
    const { deliver, sent } = await lone({ validate: v.validate })
    deliver(append(3, ['x4']))
    await waitFor(() => v.calls.length === 1, 'x4 validated')
    v.answers[0].resolve({ ok: true })
    await waitFor(() => sent.some((m) => m.type === 'MsgAppResp' && m.index === 4), 'x4 acknowledged')
    deliver(append(9, ['x10'])) // a gap: b cannot append it, so it is refused with a hint
    await waitFor(() => sent.some((m) => m.type === 'MsgAppResp' && m.reject), 'the gap refused')
    deliver(message({ ...append(4, ['x5']), term: 0 + 1, from: 'c' })) // c at term 1 too: a conflict
    expect(v.calls.length).toBe(2) // this one is new and matches: it is validated
  })

  it('a refusal drops that append and every held one from its leader, and distrusts it', async () => {
    const v = validator()
    const distrusts: [MemberId, string][] = []
    const { runner, deliver, acked, sent } = await lone({
      validate: v.validate,
      onDistrust: (peer, reason) => distrusts.push([peer, reason]),
    })
    deliver(append(3, ['x4']), append(4, ['LIE5']), append(5, ['x6']))
    await waitFor(() => v.calls.length === 1, 'x4 validated')
    v.answers[0].resolve({ ok: true })
    await waitFor(() => v.calls.length === 2, 'the lie validated')
    v.answers[1].resolve({ ok: false, reason: 'a lie' })
    await waitFor(() => distrusts.length === 1, 'the leader distrusted')
    expect(distrusts).toEqual([['a', 'a lie']])
    expect([...runner.distrusted()]).toEqual([['a', 'a lie']])
    expect(runner.guardStats).toMatchObject({ validated: 1, refused: 1, droppedDistrusted: 1 })
    expect(runner.heldAppends()).toBe(0)
    expect(v.calls.length).toBe(2) // x6 was dropped with the lie, never validated
    await settle()
    expect(runner.status().lastIndex).toBe(4)
    expect(acked()).toBe(4)
    expect(runner.leader()).toBe(NONE)
    // from now on nothing a sends is heard, and a second distrust changes nothing
    const answered = sent.length
    deliver(message({ type: 'MsgHeartbeat', from: 'a', to: 'b', term: 1, commit: 4 }), append(4, ['x5']))
    await settle()
    expect(sent.length).toBe(answered)
    expect(v.calls.length).toBe(2)
    expect(runner.status().distrustedDropped).toBe(2)
    runner.distrust('a', 'again')
    runner.distrust('b', 'myself')
    expect(distrusts.length).toBe(1)
    expect([...runner.distrusted()]).toEqual([['a', 'a lie']])
  })

  it('a throwing validate is a refusal; a timeout or a retry verdict only drops the append', async () => {
    const thrown = await lone({
      validate: async () => {
        throw new Error('digest mismatch')
      },
    })
    thrown.deliver(append(3, ['x4']))
    await waitFor(() => thrown.runner.distrusted().size === 1, 'the throw refused')
    expect(thrown.runner.distrusted().get('a')).toMatch(/digest mismatch/)
    expect(thrown.runner.status().lastIndex).toBe(3)

    // a slow validation proves nothing against the leader: its appends are dropped, to come again
    const started = Date.now()
    const slow = await lone({ validate: () => new Promise(() => {}), validateTimeoutMs: 60 })
    slow.deliver(append(3, ['x4']), append(4, ['x5']))
    await waitFor(() => slow.runner.guardStats.timedOut === 1, 'the timeout')
    expect(Date.now() - started).toBeGreaterThanOrEqual(60)
    expect(slow.runner.distrusted().size).toBe(0)
    expect(slow.runner.guardStats).toMatchObject({ refused: 0, retried: 1, timedOut: 1 })
    expect(slow.runner.heldAppends()).toBe(0)
    expect(slow.runner.status().lastIndex).toBe(3)
    expect(slow.acked()).toBeLessThan(4)

    // retry: dropped without distrust; the same append sent again is validated again and stepped
    let calls = 0
    const retry = await lone({
      validate: async () => (++calls === 1 ? { ok: false, reason: 'not yet', retry: true } : { ok: true }),
    })
    retry.deliver(append(3, ['x4']))
    await waitFor(() => retry.runner.guardStats.retried === 1, 'the retry')
    expect(retry.runner.status().lastIndex).toBe(3)
    retry.deliver(append(3, ['x4']))
    await waitFor(() => retry.runner.status().lastIndex === 4, 'the append stepped on its second delivery')
    expect(retry.runner.distrusted().size).toBe(0)
    expect(calls).toBe(2)
  })

  it('holds at most validateQueueMax appends and validateQueueBytesMax bytes; more are dropped', async () => {
    const v = validator()
    const { runner, deliver, acked } = await lone({ validate: v.validate, validateQueueMax: 8 })
    for (let i = 0; i < 11; i++) deliver(append(3 + i, [`x${4 + i}`]))
    await waitFor(() => v.calls.length === 1, 'the first validation')
    expect(runner.heldAppends()).toBe(8)
    expect(runner.guardStats.droppedQueueFull).toBe(3)
    // answered, the held ones step in order; the dropped ones are for the leader to send again
    let answered = 0
    while (answered < 8) {
      await waitFor(() => v.calls.length > answered, `validation ${answered + 1}`)
      v.answers[answered++].resolve({ ok: true })
    }
    await waitFor(() => acked() === 11, 'x4..x11 acknowledged')
    expect(v.calls.map((c) => c.texts[0])).toEqual(['x4', 'x5', 'x6', 'x7', 'x8', 'x9', 'x10', 'x11'])
    expect(runner.heldAppends()).toBe(0)

    // appends without entries do not take room while others are held: they are dropped
    const empty = await lone({ validate: v.validate, validateQueueMax: 2 })
    empty.deliver(append(3, ['z4']), ...Array.from({ length: 5 }, () => append(4, [])), append(4, ['z5']))
    expect(empty.runner.heldAppends()).toBe(2)
    expect(empty.runner.guardStats).toMatchObject({ droppedEmpty: 5, droppedQueueFull: 0 })

    const bytes = await lone({ validate: v.validate, validateQueueBytesMax: 10 })
    // 4 + 4 bytes fit in 10, the next 4 do not
    for (let i = 0; i < 4; i++) bytes.deliver(append(3 + i, [`y${100 + i}`]))
    expect(bytes.runner.heldAppends()).toBe(2)
    expect(bytes.runner.guardStats.droppedQueueFull).toBe(2)
  })

  it('distrust() from the driver drops what is held from that leader at once, mid-validation', async () => {
    const v = validator()
    const { runner, deliver } = await lone({ validate: v.validate })
    deliver(append(3, ['x4']), append(4, ['x5']))
    await waitFor(() => v.calls.length === 1, 'the validation')
    runner.distrust('a', 'its gradient digests do not match')
    expect(runner.heldAppends()).toBe(0)
    v.answers[0].resolve({ ok: true }) // a stale verdict: ignored
    await settle()
    expect(runner.status().lastIndex).toBe(3)
    expect(runner.guardStats).toMatchObject({ validated: 0, droppedDistrusted: 2 })
  })
})

/** Delivers every message on a later turn of the event loop; a stopped member hears nothing. */
class Hub {
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
        for (const m of messages) setImmediate(() => this.handlers.get(m.to)?.onMessages([m]))
      },
    }
  }
}

/** Proposes `text` on `leader`: true once committed, false if it was dropped or lost to another leader. */
function commits(leader: RaftRunner, text: string): Promise<boolean> {
  return leader.propose(encode(text)).then(
    () => true,
    (error) => {
      if (error instanceof ProposalLostError || error instanceof ProposalDroppedError) return false
      throw error
    },
  )
}

const TICK_MS = 10
const ELECTION_TICKS = 10
/** The longest randomized election timeout. */
const ELECTION_MS = 2 * ELECTION_TICKS * TICK_MS

describe('five runners and a leader that lies', () => {
  it('the lie never commits; another member leads, commits, and the liar never leads again', async () => {
    const ids = ['a', 'b', 'c', 'd', 'e']
    const hub = new Hub()
    const byId = new Map<string, RaftRunner>()
    const applied = new Map<string, string[]>(ids.map((id) => [id, []]))
    const validated = new Map<string, string[]>(ids.map((id) => [id, []]))
    /** Every time a member reported itself leader, with the term. */
    const reigns: { id: string; term: number }[] = []
    for (const id of ids) {
      const storage = new MemoryStorage()
      storage.bootstrap(ids)
      const runner = new RaftRunner({
        group: 'g',
        id,
        storage,
        transport: hub.transport(id),
        tickMs: TICK_MS,
        electionTicks: ELECTION_TICKS,
        seed: ids.indexOf(id) + 1,
        apply: (entries) => {
          for (const entry of entries) applied.get(id)!.push(decode(entry.data))
        },
        validate: async (entries) => {
          const texts = entries.map((entry) => decode(entry.data))
          validated.get(id)!.push(...texts)
          const lie = texts.find((text) => text.startsWith('LIE'))
          return lie ? { ok: false, reason: `${lie} is a lie` } : { ok: true }
        },
        onLeaderChange: (_lead, state) => {
          if (state === 'leader') reigns.push({ id, term: byId.get(id)!.status().term })
        },
      })
      byId.set(id, runner)
      runners.push(runner)
    }
    const live = () => [...byId.values()].filter((r) => (r as unknown as { running: boolean }).running)
    const leaderOf = (members: RaftRunner[]) =>
      members.filter((r) => r.isLeader()).sort((x, y) => y.status().term - x.status().term)[0]
    for (const runner of byId.values()) runner.start()
    await waitFor(() => ids.every((id) => byId.get(id)!.status().applied >= 5), 'the bootstrap applied')
    const liar = byId.get('a')!
    // a leads and commits h1 (an election elsewhere on a loaded machine is possible: campaign again)
    const deadline = Date.now() + 10_000
    for (;;) {
      await waitFor(
        () => {
          if (!liar.isLeader() && liar.status().state === 'follower') liar.campaign()
          return liar.isLeader()
        },
        'a leads',
        10_000,
      )
      if (await commits(liar, 'h1')) break
      if (Date.now() > deadline) throw new Error('h1 never committed')
    }
    await waitFor(() => ids.every((id) => applied.get(id)!.includes('h1')), 'h1 applied everywhere')

    const lieAt = Date.now()
    const lieTerm = liar.status().term
    let lieSettled = false
    liar.propose(encode('LIE1')).then(
      () => {
        lieSettled = true
      },
      () => {},
    )
    const honest = ids.filter((id) => id !== 'a').map((id) => byId.get(id)!)
    await waitFor(() => honest.every((r) => r.distrusted().has('a')), 'every honest member distrusts a')
    for (const r of honest) expect(r.distrusted().get('a')).toBe('LIE1 is a lie')
    await waitFor(() => leaderOf(honest) !== undefined, 'a new leader', 10 * ELECTION_MS)
    const second = leaderOf(honest)
    // within a few election timeouts (generous for a loaded machine)
    expect(Date.now() - lieAt).toBeLessThan(10 * ELECTION_MS)
    expect(second.status().term).toBeGreaterThan(lieTerm)

    // phase 2: stop the new leader once a holds its log; the three others elect one of them, not a
    await waitFor(() => liar.status().lastIndex === second.status().lastIndex, 'a to follow the new leader')
    second.stop()
    const rest = honest.filter((r) => r !== second)
    await waitFor(() => leaderOf(rest) !== undefined, 'a third leader', 20 * ELECTION_MS)
    const third = leaderOf(rest)

    // phase 3: stop it too. a and the two left hold the same log, so without distrust a would win
    await waitFor(() => liar.status().lastIndex === third.status().lastIndex, 'a to follow the third leader')
    expect(liar.status().lastIndex).toBe(rest.find((r) => r !== third)!.status().lastIndex)
    third.stop()
    await new Promise((resolve) => setTimeout(resolve, 5 * ELECTION_MS))
    expect(live().filter((r) => r.isLeader())).toEqual([])
    expect(reigns.filter((reign) => reign.term > third.status().term)).toEqual([])
    expect(liar.status().state).not.toBe('leader')

    // phase 4: the second leader is back (a partition heals): an honest leader again, and new work commits
    second.start()
    const back = [second, ...rest.filter((r) => r !== third)]
    await waitFor(() => leaderOf(back) !== undefined, 'a leader after the heal', 20 * ELECTION_MS)
    // the restarted member may still believe it leads its old term until it hears the new one: a
    // proposal lost that way is made again on the leader of the highest term
    const until = Date.now() + 20 * ELECTION_MS
    for (;;) {
      const leader = leaderOf(back)
      if (leader && (await commits(leader, 'h2'))) break
      if (Date.now() > until) throw new Error('h2 never committed')
      await new Promise((resolve) => setTimeout(resolve, TICK_MS))
    }
    for (const r of back) {
      const id = r.status().id
      await waitFor(() => applied.get(id)!.includes('h2'), `h2 applied on ${id}`)
    }

    // the lie: never committed anywhere, never acknowledged into an honest log, never validated ok
    for (const id of ids) expect(applied.get(id)!.some((text) => text.startsWith('LIE'))).toBe(false)
    expect(lieSettled).toBe(false)
    // a never led again after its lie, and never validated its own proposals
    expect(reigns.filter((reign) => reign.id === 'a' && reign.term > lieTerm)).toEqual([])
    expect(validated.get('a')!.some((text) => text === 'h1' || text.startsWith('LIE'))).toBe(false)
    for (const r of honest) expect(r.status().lastIndex).toBeGreaterThan(0)
  }, 60_000)
})
