// Attacks on the task plane by a stranger's real libp2p node on loopback against real daemons (a
// submitter S and a worker W): a fake 24 h announcement that would hold W's only slot, a stranger
// cancelling (or assigning, or challenging) W's claim on S's task, a flood of distinct fake announcements,
// and workers that lie about their capability or answer the capability challenge wrong or late.
import type { PeerId } from '@libp2p/interface'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { createBackend } from '../../kernels/index.js'
import type { Daemon } from '../../node/daemon.js'
import { STAFF_SCORE_MIN } from '../../node/tasks/coordinator.js'
import { DECLINED_MAX_DEFAULT } from '../../node/tasks/worker.js'
import { CHALLENGE_TIMEOUT_MS_DEFAULT, computeChallenge } from '../../protocols/tasks/challenge.js'
import {
  type ClaimPart,
  type ClaimReply,
  ClaimResponse,
  ClaimsProtocol,
} from '../../protocols/tasks/claims.js'
import { TASKS_TOPIC } from '../../protocols/tasks/index.js'
import { waitUntil } from './daemon-helpers.js'
import { createTestNode, type TestNode } from './protocols-host.js'
import { startTaskNetwork, stopAll, submitTask, TASK_DAEMON_TUNING, waitForTask } from './tasks-helpers.js'

const CLAIM_TIMEOUT_MS = 3_000
const SEEN_CAPACITY = 500
const task = { kind: 'train', model: 'mnist-mlp', groups: 1, hiddenSizes: [8] }

async function fakeCid(n: number): Promise<CID> {
  return CID.createV1(raw.code, await sha256.digest(new TextEncoder().encode(`fake task ${n}`)))
}

type ChallengeMode = 'honest' | 'wrong' | 'late'

/** A stranger: a plain libp2p node with the task gossip and its own claim protocol handler. */
interface Stranger {
  node: TestNode
  claims: ClaimsProtocol
  /** claims it received (it never assigns), by task id */
  claimsFrom: Array<{ from: string; task: string; eligible: boolean }>
  challenges: number
  mode: ChallengeMode
}

async function startStranger(targets: Daemon[], mode: ChallengeMode = 'honest'): Promise<Stranger> {
  const node = await createTestNode()
  await node.start()
  const backend = await createBackend({ prefer: 'cpu' })
  const stranger: Stranger = { node, claims: undefined as never, claimsFrom: [], challenges: 0, mode }
  const handler = async (from: PeerId, request: ClaimPart): Promise<ClaimReply> => {
    if (request.type === 'claim') {
      stranger.claimsFrom.push({
        from: from.toString(),
        task: CID.decode(request.claim.taskCid).toString(),
        eligible: request.claim.eligible,
      })
      return { status: ClaimResponse.Status.OK, reason: 'claim recorded (never to be assigned)' }
    }
    if (request.type === 'challenge') {
      stranger.challenges++
      const { challenge } = request
      if (stranger.mode === 'late')
        await new Promise((resolve) => setTimeout(resolve, CHALLENGE_TIMEOUT_MS_DEFAULT + 1_000))
      const answer =
        stranger.mode === 'honest'
          ? await computeChallenge(backend, challenge.seed, challenge)
          : new Uint8Array(challenge.rows * challenge.cols * 4)
      return { status: ClaimResponse.Status.OK, reason: 'answered', challengeResult: answer }
    }
    return { status: ClaimResponse.Status.OK, reason: 'sure' }
  }
  stranger.claims = new ClaimsProtocol({ host: node, handler })
  await stranger.claims.start()
  for (const target of targets) {
    await waitUntil(
      async () => {
        try {
          await node.dial(target.host.getMultiaddrs()[0], { signal: AbortSignal.timeout(20_000) })
          return true
        } catch {
          return false
        }
      },
      'the stranger to connect',
      60_000,
      500,
    )
  }
  return stranger
}

function claimFor(taskId: string, gflops: number) {
  return {
    claim: {
      taskCid: CID.parse(taskId).bytes as Uint8Array<ArrayBuffer>,
      eligible: true,
      reason: '',
      capability: { backend: 'cpu', gflops, maxBufferBytes: 2 ** 30, memoryBytes: 2 ** 33 },
    },
  }
}

describe('hostile peers on the task plane', () => {
  let daemons: Daemon[] = []
  let submitter: Daemon
  let worker: Daemon
  let stranger: Stranger
  const others: Stranger[] = []

  beforeAll(async () => {
    daemons = await startTaskNetwork(2, {
      taskService: { ...TASK_DAEMON_TUNING.taskService, reannounceMs: 5_000 },
      overrides: { claimTimeoutMs: CLAIM_TIMEOUT_MS },
      tasks: { seenCapacity: SEEN_CAPACITY },
    })
    ;[submitter, worker] = daemons
    stranger = await startStranger([worker, submitter])
    await waitUntil(
      () =>
        stranger.node.services.pubsub.getSubscribers(TASKS_TOPIC).some((p) => p.equals(worker.peerId)) &&
        worker.host.services.pubsub.getSubscribers(TASKS_TOPIC).some((p) => p.equals(stranger.node.peerId)),
      'the stranger and the worker to see each other on the task topic',
    )
  }, 180_000)

  afterAll(async () => {
    for (const s of [stranger, ...others]) {
      await s?.claims.stop()
      await s?.node.stop()
    }
    await stopAll(daemons)
  })

  it('a fake 24 h announcement holds the worker only until the staffing timeout', async () => {
    const fake = await fakeCid(0)
    await stranger.node.services.tasks.announce({
      taskCid: fake,
      kind: 'train',
      groups: 1,
      groupSize: 1,
      ttlMs: 24 * 3_600_000,
    })
    // the worker claimed the fake task: its only slot is taken
    await waitUntil(
      () => stranger.claimsFrom.some((c) => c.task === fake.toString() && c.eligible),
      'the worker to claim the fake task',
    )
    expect(worker.tasks.worker.claimOn(fake.toString())?.submitter).toBe(stranger.node.peerId.toString())
    const real = await submitTask(submitter, { ...task, groupSize: 1, steps: 10, deadlineMs: 60_000 })
    const done = await waitForTask(
      submitter,
      real.id,
      (t) => t.state === 'completed' || t.state === 'failed',
      'the real task to end',
      120_000,
    )
    expect(done.state).toBe('completed')
    expect(done.groups[0].members).toEqual([worker.peerId.toString()])
    expect(worker.tasks.worker.counters.claimsLapsed).toBeGreaterThanOrEqual(1)
    expect(worker.tasks.worker.claimOn(fake.toString())?.lapsed).toBe(true)
    // the submitter measured the worker itself, and the worker's completed group is on its record
    expect(submitter.tasks.coordinator.measuredGflops(worker.peerId.toString())).toBeGreaterThan(0)
    expect(submitter.tasks.coordinator.counters.challengesPassed).toBeGreaterThanOrEqual(1)
    expect(submitter.tasks.reputation?.counts(worker.peerId.toString()).completed).toBe(1)
  }, 180_000)

  it("a stranger cannot cancel, assign or challenge a worker's claim on someone else's task", async () => {
    const staffing = await submitTask(submitter, { ...task, groupSize: 3, steps: 10, deadlineMs: 60_000 })
    await waitUntil(
      () => worker.tasks.worker.claimOn(staffing.id)?.submitter === submitter.peerId.toString(),
      "the worker to claim the submitter's task",
    )
    const taskCid = CID.parse(staffing.id).bytes as Uint8Array<ArrayBuffer>
    const before = worker.tasks.worker.counters.notFromSubmitter
    await expect(
      stranger.claims.send(worker.peerId, { cancel: { taskCid, reason: 'completed' } }),
    ).rejects.toMatchObject({ status: ClaimResponse.Status.REFUSED, reason: 'only the submitter can cancel' })
    await expect(
      stranger.claims.send(worker.peerId, {
        challenge: { taskCid, seed: new Uint8Array(16), rows: 64, inner: 12_288, cols: 64 },
      }),
    ).rejects.toMatchObject({ status: ClaimResponse.Status.REFUSED })
    await expect(
      stranger.claims.send(worker.peerId, {
        assignment: {
          taskCid,
          group: 0,
          members: [worker.peerId.toMultihash().bytes as Uint8Array<ArrayBuffer>],
          shardCid: taskCid,
          incarnation: 0,
          stateCid: new Uint8Array(0),
        },
      }),
    ).rejects.toMatchObject({ status: ClaimResponse.Status.REFUSED })
    expect(worker.tasks.worker.counters.notFromSubmitter).toBe(before + 2)
    // the claim is still the submitter's; the submitter itself can release it
    expect(worker.tasks.worker.claimOn(staffing.id)?.submitter).toBe(submitter.peerId.toString())
    submitter.tasks.coordinator.cancel(staffing.id)
    await waitUntil(
      () => worker.tasks.worker.claimOn(staffing.id) === undefined,
      'the submitter to release the claim',
    )
  }, 120_000)

  it('measures a worker that lies about its speed, and does not staff a wrong or late answer', async () => {
    const open = await submitTask(submitter, { ...task, groupSize: 3, steps: 10, deadlineMs: 60_000 })
    // the stranger claims 1000 GFLOP/s and answers honestly on its cpu backend
    const accepted = await stranger.claims.send(submitter.peerId, claimFor(open.id, 1000))
    expect(accepted.reason).toBe('claim recorded')
    expect(stranger.challenges).toBe(1)
    const view = await waitForTask(
      submitter,
      open.id,
      (t) => t.claimants.some((c) => c.peerId === stranger.node.peerId.toString()),
      'the stranger to be a claimant',
      30_000,
    )
    const recorded = view.claimants.find((c) => c.peerId === stranger.node.peerId.toString())!
    const measured = submitter.tasks.coordinator.measuredGflops(stranger.node.peerId.toString())!
    expect(recorded.gflops).toBe(measured)
    // a 2-core machine's cpu backend: nowhere near the 1000 claimed
    expect(measured).toBeGreaterThan(0)
    expect(measured).toBeLessThan(50)
    // a task that needs 50 GFLOP/s refuses the liar by the measured figure
    const fast = await submitTask(submitter, {
      ...task,
      groupSize: 1,
      steps: 10,
      deadlineMs: 30_000,
      requirements: { minGflops: 50 },
    })
    await expect(stranger.claims.send(submitter.peerId, claimFor(fast.id, 1000))).rejects.toMatchObject({
      status: ClaimResponse.Status.REFUSED,
      reason: expect.stringMatching(/^measured: /),
    })

    // another stranger answers the challenge wrong: refused, recorded as a liar, never measured again
    const liar = await startStranger([submitter], 'wrong')
    others.push(liar)
    const liarId = liar.node.peerId.toString()
    const wrongBefore = submitter.tasks.coordinator.counters.challengesWrong
    await expect(liar.claims.send(submitter.peerId, claimFor(open.id, 1000))).rejects.toMatchObject({
      status: ClaimResponse.Status.REFUSED,
      reason: expect.stringMatching(/wrong answer to the capability challenge/),
    })
    expect(liar.challenges).toBe(1)
    expect(submitter.tasks.coordinator.counters.challengesWrong).toBe(wrongBefore + 1)
    expect(submitter.tasks.reputation?.counts(liarId).lied).toBe(1)
    expect(submitter.tasks.reputation!.score(liarId)).toBeLessThan(STAFF_SCORE_MIN)
    const other = await submitTask(submitter, { ...task, groupSize: 3, steps: 10, deadlineMs: 30_000 })
    await expect(liar.claims.send(submitter.peerId, claimFor(other.id, 1000))).rejects.toMatchObject({
      status: ClaimResponse.Status.REFUSED,
      reason: 'this submitter does not staff peers with its record of this one',
    })
    expect(liar.challenges).toBe(1)
    const after = await waitForTask(
      submitter,
      open.id,
      (t) => t.declined.some((d) => d.peerId === liarId),
      'the liar to be listed as declined',
      30_000,
    )
    expect(after.claimants.map((c) => c.peerId)).not.toContain(liarId)

    // a third answers too late: refused, recorded as timed out
    const slow = await startStranger([submitter], 'late')
    others.push(slow)
    const slowId = slow.node.peerId.toString()
    await expect(slow.claims.send(submitter.peerId, claimFor(open.id, 1))).rejects.toMatchObject({
      status: ClaimResponse.Status.REFUSED,
      reason: expect.stringMatching(/^no answer to the capability challenge within/),
    })
    expect(submitter.tasks.reputation?.counts(slowId)['timed-out']).toBe(1)
    const final = await waitForTask(
      submitter,
      open.id,
      (t) => t.declined.some((d) => d.peerId === slowId),
      'the slow stranger to be listed as declined',
      30_000,
    )
    expect(final.claimants.map((c) => c.peerId)).not.toContain(slowId)
    for (const id of [open.id, other.id]) submitter.tasks.coordinator.cancel(id)
  }, 180_000)

  it('a flood of distinct fake announcements keeps the worker and gossip maps bounded', async () => {
    const flood = 1_200
    const gossip = worker.host.services.tasks
    const acceptedBefore = gossip.counters().accepted
    const c = worker.tasks.worker.counters
    const handledBefore = c.declinedEvicted + c.sendsBusy + worker.tasks.worker.sizes().declined
    for (let i = 0; i < flood; i++) {
      await stranger.node.services.tasks.announce({
        taskCid: await fakeCid(1_000 + i),
        kind: 'train',
        // a requirement the worker does not meet: it declines each (the path that used to grow without end)
        requirements: { minMemoryBytes: 2 ** 45 },
        groups: 1,
        groupSize: 1,
        ttlMs: 24 * 3_600_000,
      })
      if (i % 50 === 49) await new Promise((resolve) => setTimeout(resolve, 100))
    }
    await waitUntil(
      () => gossip.counters().accepted - acceptedBefore >= flood * 0.95,
      () => `the worker to receive the flood (${gossip.counters().accepted - acceptedBefore} of ${flood})`,
      120_000,
    )
    await new Promise((resolve) => setTimeout(resolve, 2_000))
    const sizes = worker.tasks.worker.sizes()
    const counters = gossip.counters()
    const handled = c.declinedEvicted + c.sendsBusy + sizes.declined - handledBefore
    console.log(
      `flood of ${flood}: declined held ${sizes.declined} (evicted ${c.declinedEvicted}, ` +
        `not answered while declines were busy: ${c.sendsBusy}), gossip seen ${counters.seen} ` +
        `(evicted ${counters.seenEvicted})`,
    )
    expect(sizes.declined).toBeLessThanOrEqual(DECLINED_MAX_DEFAULT)
    // every announcement was either declined (held or evicted) or not answered while declines were busy
    expect(handled).toBeGreaterThanOrEqual(flood * 0.95)
    expect(c.declinedEvicted + c.sendsBusy).toBeGreaterThan(0)
    expect(counters.seen).toBeLessThanOrEqual(SEEN_CAPACITY)
    expect(counters.seenEvicted).toBeGreaterThanOrEqual(2 * flood - SEEN_CAPACITY)
    // and the worker still works for a real task afterwards
    const real = await submitTask(submitter, { ...task, groupSize: 1, steps: 10, deadlineMs: 60_000 })
    const done = await waitForTask(
      submitter,
      real.id,
      (t) => t.state === 'completed' || t.state === 'failed',
      'a real task after the flood',
      120_000,
    )
    expect(done.state).toBe('completed')
  }, 300_000)
})
