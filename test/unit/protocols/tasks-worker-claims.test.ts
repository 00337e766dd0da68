// Proves the worker's claim bookkeeping against hostile submitters, with a fake clock and fake gossip:
// a claim on a 24 h announcement holds the slot only for the staffing timeout (then that task and its
// submitter cool down and another submitter's task gets the slot), only the submitter can cancel, the
// declined map stays within its cap however many distinct announcements arrive, and the submitter
// allow-list is applied.
import { mkdtemp } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { PeerId } from '@libp2p/interface'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'
import { describe, expect, it } from 'vitest'
import { createBackend } from '../../../kernels/index.js'
import type { NodeCapability } from '../../../node/executor/capability.js'
import { type AnyTaskExecutor, Worker } from '../../../node/tasks/worker.js'
import type { BlockExchange } from '../../../protocols/blocks/index.js'
import { ClaimResponse, type ClaimsProtocol } from '../../../protocols/tasks/claims.js'
import type { ReceivedAnnouncement, TaskGossip } from '../../../protocols/tasks/index.js'
import type { ClaimRequest } from '../../../protocols/wire/claims.js'

const HOUR = 3_600_000
const capability: NodeCapability = {
  backend: 'cpu',
  adapterName: 'test',
  isFallbackAdapter: true,
  maxBufferBytes: 2 ** 30,
  memoryBytes: 2 ** 33,
  matmulGflops: 1,
  matmulSize: 128,
  backends: [{ backend: 'cpu', adapterName: 'test', matmulGflops: 1, inUse: true }],
}

async function peer(): Promise<PeerId> {
  return peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
}

async function cidOf(n: number): Promise<CID> {
  return CID.createV1(raw.code, await sha256.digest(new TextEncoder().encode(`task ${n}`)))
}

const settle = () => new Promise((resolve) => setImmediate(resolve))

async function setup(init: { allowedSubmitters?: string[]; declinedMax?: number } = {}) {
  let nowMs = 1_000_000
  const sent: Array<{ to: string; request: Partial<ClaimRequest> }> = []
  const gossip = new EventTarget()
  const worker = new Worker({
    peerId: await peer(),
    claims: {
      send: async (to: PeerId, request: Partial<ClaimRequest>) => {
        sent.push({ to: to.toString(), request })
        return { status: ClaimResponse.Status.OK, reason: '', stateWanted: false }
      },
    } as unknown as ClaimsProtocol,
    blocks: {} as BlockExchange,
    gossip: gossip as unknown as TaskGossip,
    capability,
    assignedFolder: await mkdtemp(join(tmpdir(), 'worker-assigned-')),
    workFolder: await mkdtemp(join(tmpdir(), 'worker-work-')),
    executors: [{ kind: 'train', run: async () => {} } as AnyTaskExecutor],
    openBackend: () => createBackend({ prefer: 'cpu' }),
    claimTimeoutMs: 30_000,
    claimCooldownMs: 30_000,
    ...(init.declinedMax !== undefined ? { declinedMax: init.declinedMax } : {}),
    ...(init.allowedSubmitters !== undefined ? { allowedSubmitters: new Set(init.allowedSubmitters) } : {}),
    now: () => nowMs,
  })
  await worker.start()
  const announce = async (taskCid: CID, submitter: PeerId, minMemoryBytes = 0) => {
    const detail: ReceivedAnnouncement = {
      announcement: {
        taskCid,
        kind: 'train',
        requirements: { backend: 'any', minMemoryBytes, minGflops: 0 },
        groups: 1,
        groupSize: 1,
        submitter,
        createdMs: nowMs,
        expiresMs: nowMs + 24 * HOUR,
        nonce: new Uint8Array(16),
      },
      from: submitter,
      receivedMs: nowMs,
    }
    gossip.dispatchEvent(new CustomEvent('announcement', { detail }))
    await settle()
  }
  const claimsTo = (submitter: PeerId) =>
    sent.filter((s) => s.to === submitter.toString() && s.request.claim?.eligible === true).length
  return { worker, announce, claimsTo, advance: (ms: number) => (nowMs += ms), sent }
}

describe('worker claims against hostile submitters', () => {
  it('frees the slot of an unassigned 24 h claim after the staffing timeout, and cools it down', async () => {
    const { worker, announce, claimsTo, advance } = await setup()
    const attacker = await peer()
    const honest = await peer()
    const fake = await cidOf(1)
    const real = await cidOf(2)
    await announce(fake, attacker)
    expect(claimsTo(attacker)).toBe(1)
    // the only slot is held: a real task is not claimed yet
    advance(29_000)
    await announce(real, honest)
    expect(claimsTo(honest)).toBe(0)
    // past the staffing timeout the claim lapses: the attacker's re-announcement is not claimed again
    // (cool-down), and another attacker task neither, while the real task's re-announcement is
    advance(2_000)
    await announce(fake, attacker)
    await announce(await cidOf(3), attacker)
    expect(claimsTo(attacker)).toBe(1)
    await announce(real, honest)
    expect(claimsTo(honest)).toBe(1)
    expect(worker.counters.claimsLapsed).toBe(1)
    expect(worker.claimOn(fake.toString())?.lapsed).toBe(true)
    expect(worker.claimOn(real.toString())).toEqual({ submitter: honest.toString(), lapsed: false })
    await worker.stop()
  })

  it('cools down only the task, not a submitter that challenged its claim (a slow honest one)', async () => {
    const { worker, announce, claimsTo, advance } = await setup()
    const submitter = await peer()
    const stranger = await peer()
    const first = await cidOf(30)
    await announce(first, submitter)
    const challenge = {
      type: 'challenge' as const,
      challenge: {
        taskCid: first.bytes as Uint8Array<ArrayBuffer>,
        seed: new Uint8Array(16),
        rows: 2,
        inner: 4,
        cols: 2,
      },
    }
    // nobody else can make the worker compute; the submitter once
    expect(await worker.handle(stranger, challenge)).toMatchObject({ status: ClaimResponse.Status.REFUSED })
    const answered = await worker.handle(submitter, challenge)
    expect(answered).toMatchObject({ status: ClaimResponse.Status.OK })
    expect(answered.challengeResult?.byteLength).toBe(2 * 2 * 4)
    expect(await worker.handle(submitter, challenge)).toMatchObject({ status: ClaimResponse.Status.REFUSED })
    advance(31_000)
    await announce(first, submitter)
    expect(claimsTo(submitter)).toBe(1)
    await announce(await cidOf(31), submitter)
    expect(claimsTo(submitter)).toBe(2)
    expect(worker.counters.challengesAnswered).toBe(1)
    await worker.stop()
  })

  it('lets only the submitter cancel a claim', async () => {
    const { worker, announce } = await setup()
    const submitter = await peer()
    const stranger = await peer()
    const task = await cidOf(10)
    await announce(task, submitter)
    const cancel = {
      type: 'cancel' as const,
      cancel: { taskCid: task.bytes as Uint8Array<ArrayBuffer>, reason: 'x' },
    }
    expect(await worker.handle(stranger, cancel)).toMatchObject({ status: ClaimResponse.Status.REFUSED })
    expect(worker.claimOn(task.toString())?.submitter).toBe(submitter.toString())
    expect(worker.counters.notFromSubmitter).toBe(1)
    expect(await worker.handle(submitter, cancel)).toMatchObject({ status: ClaimResponse.Status.OK })
    expect(worker.claimOn(task.toString())).toBeUndefined()
    await worker.stop()
  })

  it('keeps the declined map within its cap under a flood of distinct announcements', async () => {
    const { worker, announce, sent } = await setup({ declinedMax: 50 })
    const flooder = await peer()
    for (let i = 0; i < 400; i++) await announce(await cidOf(100 + i), flooder, 2 ** 45)
    expect(worker.sizes().declined).toBe(50)
    expect(worker.counters.declinedEvicted).toBe(350)
    // each was answered once with the reason
    expect(sent.filter((s) => s.request.claim?.eligible === false)).toHaveLength(400)
    // a declined task that is re-announced is not answered again
    await announce(await cidOf(499), flooder, 2 ** 45)
    expect(sent).toHaveLength(400)
    await worker.stop()
  })

  it('claims only for submitters on its allow-list when it has one', async () => {
    const listed = await peer()
    const other = await peer()
    const { worker, announce, claimsTo } = await setup({ allowedSubmitters: [listed.toString()] })
    await announce(await cidOf(20), other)
    expect(claimsTo(other)).toBe(0)
    expect(worker.counters.submitterNotAllowed).toBe(1)
    await announce(await cidOf(21), listed)
    expect(claimsTo(listed)).toBe(1)
    await worker.stop()
  })
})
