// Proves that /shardnet/grad/1.0.0 refuses bad input with a clear, counted reason and keeps the group
// training: three real libp2p nodes form a group, but the third runs no member runtime; the test
// speaks for it with hand-made requests (NaN, wrong length, inconsistent int8 scales, a stale base,
// a future step, the wrong recipient), then an outsider sends as a non-member, an oversized frame,
// garbage and an unknown group. The leader answers or drops each, and the group still finishes once
// the third member sends honest (zero) gradients.

import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { lpStream } from '@libp2p/utils'
import { afterAll, describe, expect, it } from 'vitest'
import { loadMnist } from '../../kernels/data/mnist.js'
import { CpuBackend } from '../../kernels/index.js'
import { parameterCount } from '../../kernels/models/mlp.js'
import { mlpTrainingModel } from '../../kernels/models/mlp-kind.js'
import { DurableRaftStorage } from '../../node/store/raft-storage.js'
import { GRADIENT_PROTOCOL, GradientSendError } from '../../protocols/training/exchange.js'
import { type GroupMember, startGroupMember } from '../../protocols/training/group.js'
import { floatsToBytes } from '../../protocols/training/params.js'
import { gradientDigest, signaturePayload } from '../../protocols/training/verify.js'
import { Gradient, GradRequest, GradResponse } from '../../protocols/wire/training.js'
import { createTrainingNode, datasetShard, type TrainingNode, waitFor } from './training-cluster.js'

const directory = mkdtempSync(join(tmpdir(), 'shardnet-training-bad-'))
const backend = new CpuBackend()
const nodes: TrainingNode[] = []
const members: GroupMember[] = []
const stores: DurableRaftStorage[] = []
afterAll(async () => {
  for (const member of members) member.stop()
  await Promise.all(nodes.map((node) => node.stop()))
  for (const store of stores) store.close()
  backend.destroy()
  rmSync(directory, { recursive: true, force: true })
})

const GROUP = 'bad-input'
const architecture = { inputSize: 784, hiddenSizes: [16], outputSize: 10 }
const COUNT = parameterCount(architecture)
const STEPS = 7

function gradient(
  step: number,
  digestHex: string,
  values: Float32Array,
  fields: Partial<Gradient> = {},
): Gradient {
  return {
    step,
    baseDigest: Uint8Array.from(Buffer.from(digestHex, 'hex')),
    loss: 1,
    encoding: Gradient.Encoding.FLOAT32,
    length: values.length,
    values: floatsToBytes(values),
    scales: new Uint8Array(0),
    blockSize: 0,
    signature: new Uint8Array(0),
    ...fields,
  } as Gradient
}

describe('bad input on /shardnet/grad/1.0.0', () => {
  it('refuses and counts every bad request, and the group still trains', async () => {
    const data = await loadMnist()
    for (let i = 0; i < 4; i++) nodes.push(await createTrainingNode())
    const [a, b, speaker, outsider] = nodes
    for (const x of nodes)
      for (const y of nodes)
        if (x !== y && x.getConnections(y.peerId).length === 0) await x.dial(y.getMultiaddrs())
    const ids = [a, b, speaker].map((node) => node.peerId.toString())
    for (const node of [a, b]) {
      const storage = DurableRaftStorage.open(join(directory, node.peerId.toString()))
      stores.push(storage)
      members.push(
        startGroupMember({
          components: { peerId: node.peerId, raft: node.services.raft, gradients: node.services.gradients },
          groupId: GROUP,
          members: ids,
          model: mlpTrainingModel(architecture, datasetShard(data.train, 4, 0, 3)),
          seed: 3,
          batchSize: 16,
          learningRate: 1e-3,
          steps: STEPS,
          storage,
          backend,
          // the leader waits for the speaker at every step: the test decides when each step completes
          stragglerTimeoutMs: 600_000,
        }),
      )
    }
    const leaderIndex =
      (await waitFor(
        () => {
          const index = members.findIndex((member) => member.status().isLeader)
          return index >= 0 ? index + 1 : undefined
        },
        30_000,
        'a leader',
      )) - 1
    const leader = members[leaderIndex]
    const leaderId = leader.status().self
    const followerId = members[1 - leaderIndex].status().self
    const leaderNode = [a, b][leaderIndex]
    // the speaker signs what it sends, as a member must (a forged signature is one of the cases)
    const signed = async (request: Gradient): Promise<Gradient> =>
      request.signature.length > 0
        ? request
        : {
            ...request,
            signature: await speaker.services.gradients.sign(
              signaturePayload(GROUP, gradientDigest(request)),
            ),
          }
    const send = async (request: Gradient, to = leaderId) =>
      speaker.services.gradients.sendGradient(to, GROUP, await signed(request))
    await waitFor(() => leader.status().step === 0 && leader.status().digest, 10_000, 'step 0')
    const digest = leader.status().digest
    const good = new Float32Array(COUNT)

    const rejectedInEntries: string[] = []
    leader.on('step', (event) => {
      for (const { member, reason } of event.rejected) if (member === ids[2]) rejectedInEntries.push(reason)
    })
    // refused without being recorded: the step waits on
    const unrecorded: Array<[string, Gradient, string, GradResponse.Status, string]> = [
      [
        'another base',
        gradient(0, '00'.repeat(32), good),
        leaderId,
        GradResponse.Status.STALE,
        'computed on other params',
      ],
      ['a future step', gradient(5, digest, good), leaderId, GradResponse.Status.NOT_READY, ''],
      ['the wrong recipient', gradient(0, digest, good), followerId, GradResponse.Status.NOT_LEADER, ''],
      [
        'a forged signature',
        gradient(0, digest, good, { signature: new Uint8Array(64).fill(1) }),
        leaderId,
        GradResponse.Status.REJECTED,
        'bad signature',
      ],
    ]
    for (const [what, request, to, status, reason] of unrecorded) {
      const { response } = await send(request, to)
      expect({ what, status: response.status, reason: response.reason }).toEqual({ what, status, reason })
      if (status === GradResponse.Status.NOT_LEADER) expect(response.leader).toBe(leaderId)
    }
    expect(leader.status().step).toBe(0)
    // screened out: the speaker has reported (badly) and the step goes on without it
    const nan = good.slice()
    nan[5] = Number.NaN
    const infinite = good.slice()
    infinite[0] = Number.POSITIVE_INFINITY
    const screened: Array<[string, (step: number, digest: string) => Gradient, string]> = [
      ['NaN', (step, base) => gradient(step, base, nan), 'non-finite'],
      ['Inf', (step, base) => gradient(step, base, infinite), 'non-finite'],
      ['wrong length', (step, base) => gradient(step, base, new Float32Array(COUNT - 1)), 'wrong-length'],
      [
        'int8 with missing scales',
        (step, base) =>
          gradient(step, base, good, {
            encoding: Gradient.Encoding.INT8,
            values: new Uint8Array(COUNT),
            scales: new Uint8Array(4),
            blockSize: 256,
          }),
        'wrong-length',
      ],
    ]
    for (const [index, [what, make, reason]] of screened.entries()) {
      await waitFor(() => leader.status().step === index, 30_000, `step ${index}`)
      const { response } = await send(make(index, leader.status().digest))
      expect({ what, status: response.status, reason: response.reason }).toEqual({
        what,
        status: GradResponse.Status.REJECTED,
        reason,
      })
    }
    await waitFor(() => leader.status().step === screened.length, 30_000, 'the screened steps to complete')
    expect(rejectedInEntries).toEqual(screened.map(([, , reason]) => reason))

    // an outsider: a valid libp2p identity that is a member of no group here: its stream is refused
    // before a byte of it is read
    await expect(
      outsider.services.gradients.sendGradient(leaderId, GROUP, gradient(0, digest, good)),
    ).rejects.toThrow(GradientSendError)
    const refused = leaderNode.services.gradients.stats.refused
    await waitFor(() => refused.stranger >= 1, 10_000, 'the stranger refusal')
    // a member's request above the group's limit (parameter count x 4 + overhead)
    const big = await speaker.dialProtocol(leaderNode.getMultiaddrs(), GRADIENT_PROTOCOL)
    await lpStream(big, { maxDataLength: 64 << 20 })
      .write(new Uint8Array(COUNT * 4 + 100_000))
      .catch(() => {})
    await waitFor(() => refused.oversized >= 1, 10_000, 'the oversized refusal')
    // a member's garbage that is not a GradRequest, and its request for a group nobody runs
    const garbage = await speaker.dialProtocol(leaderNode.getMultiaddrs(), GRADIENT_PROTOCOL)
    await lpStream(garbage).write(new Uint8Array([0xff, 0xff, 0xff, 0x01]))
    await waitFor(() => refused.malformed >= 1, 10_000, 'the malformed refusal')
    const unknown = await speaker.dialProtocol(leaderNode.getMultiaddrs(), GRADIENT_PROTOCOL)
    await lpStream(unknown).write(
      GradRequest.encode({ group: 'no-such-group', stateRequest: true, share: false }),
    )
    await waitFor(() => refused['unknown-group'] >= 1, 10_000, 'the unknown-group refusal')

    // the speaker now behaves: a zero gradient at every step, and the group finishes
    for (let step = screened.length; step < STEPS; step++) {
      await waitFor(() => leader.status().step === step, 30_000, `step ${step}`)
      const { response } = await send(gradient(step, leader.status().digest, good))
      expect(response.status).toBe(GradResponse.Status.ACCEPTED)
    }
    const [first, second] = await Promise.all(members.map((member) => member.finished()))
    expect(first.digest).toBe(second.digest)
    const speakerReport = leader.status().reports.find((report) => report.member === ids[2])!
    expect(speakerReport.accepted).toBe(STEPS - screened.length)
    expect(speakerReport.rejected).toBe(screened.length)
  }, 120_000)
})
