// Proves bad input to inference is refused with a clear reason and never crashes a node, on real
// daemons over libp2p on loopback: garbage and out-of-range /shardnet/infer/1.0.0 requests, runs of
// shards nobody assigned and an assignment whose task spec cannot be fetched are answered with a
// refusal and counted, an oversized first frame is dropped and counted, the worker still serves
// afterwards, malformed submissions (bad input file, missing model) get a 400 naming the problem, and a
// task no worker is eligible for fails naming why they declined.
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { lpStream } from '@libp2p/utils'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { PIXEL_COUNT } from '../../kernels/data/mnist.js'
import { initialHostLayers, type MlpArchitecture, parameterCount } from '../../kernels/models/mlp.js'
import type { Daemon } from '../../node/daemon.js'
import { saveModel } from '../../node/executor/model-files.js'
import { assignShards, INFER_PROTOCOL, requestShard } from '../../node/tasks/infer-executor.js'
import { apiRequest } from './daemon-helpers.js'
import { startTaskNetwork, stopAll, submitTask, waitForTask } from './tasks-helpers.js'

async function ask(from: Daemon, to: Daemon, frame: Uint8Array): Promise<string> {
  const stream = await from.host.dialProtocol(to.peerId, INFER_PROTOCOL)
  const lp = lpStream(stream, { maxDataLength: 1 << 20 })
  await lp.write(frame)
  const answer = new TextDecoder().decode((await lp.read()).subarray())
  await stream.close().catch(() => {})
  return answer
}

describe('inference bad input', () => {
  let daemons: Daemon[] = []
  let folder: string

  beforeAll(async () => {
    folder = await mkdtemp(join(tmpdir(), 'shardnet-infer-bad-'))
    daemons = await startTaskNetwork(2)
  }, 120_000)

  afterAll(async () => {
    await stopAll(daemons)
    await rm(folder, { recursive: true, force: true })
  })

  it('refuses and counts hostile requests, and keeps serving', async () => {
    const [submitter, worker] = daemons
    const counters = worker.tasks.inferWorker.rejected
    expect(await ask(submitter, worker, new TextEncoder().encode('not json'))).toMatch(
      /"ok":false.*malformed/,
    )
    expect(
      await ask(
        submitter,
        worker,
        new TextEncoder().encode(JSON.stringify({ task: 't', shard: -1, rows: 1 })),
      ),
    ).toMatch(/malformed request: shard/)
    expect(
      await ask(
        submitter,
        worker,
        new TextEncoder().encode(
          JSON.stringify({ task: 't', shard: 0, rows: 1e9, modelCid: 'x', inputCid: 'y' }),
        ),
      ),
    ).toMatch(/malformed request: rows/)
    expect(counters.malformed).toBe(3)
    // a first frame over the header limit: the stream is dropped as soon as its length prefix is read
    await expect(ask(submitter, worker, new Uint8Array(8000))).rejects.toThrow()
    expect(counters.oversized).toBe(1)

    // well formed, but no submitter assigned that shard here: refused before anything is fetched
    const missing = CID.create(1, raw.code, await sha256.digest(new TextEncoder().encode('nothing here')))
    await expect(
      requestShard(
        submitter.host,
        worker.peerId,
        { task: 't', shard: 0, rows: 1, modelCid: missing.toString(), inputCid: missing.toString() },
        { timeoutMs: 60_000 },
      ),
    ).rejects.toThrow(/the worker refused: .*not assigned/)
    expect(counters.unassigned).toBe(1)
    // an assignment of a task whose spec block exists nowhere is refused naming why
    await expect(
      assignShards(submitter.host, worker.peerId, missing.toString(), [0], { timeoutMs: 60_000 }),
    ).rejects.toThrow(/cannot fetch the task spec/)
    expect(counters.unusable).toBe(1)
    // the node is still up and answering
    expect(await ask(submitter, worker, new TextEncoder().encode('{}'))).toMatch(/malformed request: task/)
  }, 120_000)

  it('refuses malformed submissions with a 400 naming the problem', async () => {
    const [submitter] = daemons
    const submit = async (body: unknown) => {
      const response = await apiRequest(submitter, '/v1/tasks', { method: 'POST', body })
      return { status: response.status, error: ((await response.json()) as { error?: string }).error ?? '' }
    }
    const inputFile = join(folder, 'inputs.json')
    await writeFile(inputFile, JSON.stringify({ inputs: [[1, 2, 3]] }))
    const wrongWidth = await submit({ kind: 'infer', model: folder, inputFile, replicas: 1 })
    expect(wrongWidth.status).toBe(400)
    expect(wrongWidth.error).toMatch(/row 0 .* 784 numbers/)
    await writeFile(inputFile, JSON.stringify({ inputs: [Array(784).fill(0)] }))
    const noModel = await submit({ kind: 'infer', model: join(folder, 'none'), inputFile, replicas: 1 })
    expect(noModel.status).toBe(400)
    expect(noModel.error).toMatch(/no model found/)
    const noFile = await submit({
      kind: 'infer',
      model: folder,
      inputFile: join(folder, 'nope'),
      replicas: 1,
    })
    expect(noFile.status).toBe(400)
    expect(noFile.error).toMatch(/cannot read the input file/)
  }, 60_000)

  it('fails a task no worker is eligible for, naming why they declined', async () => {
    const [submitter, worker] = daemons
    const architecture: MlpArchitecture = { inputSize: PIXEL_COUNT, hiddenSizes: [4], outputSize: 10 }
    const modelDir = join(folder, 'model')
    await saveModel(modelDir, architecture, initialHostLayers(architecture, 1), {
      model: 'mnist-mlp',
      architecture: { type: 'mlp', activation: 'relu', ...architecture, hiddenSizes: [4] },
      parameterCount: parameterCount(architecture),
      dataset: {},
      seed: 1,
      training: {},
      backend: {},
      metrics: { testAccuracy: 0, testLoss: 0 },
      history: [],
      createdAt: new Date().toISOString(),
    })
    const inputFile = join(folder, 'one.json')
    await writeFile(inputFile, JSON.stringify({ inputs: [Array(PIXEL_COUNT).fill(0.5)] }))
    const task = await submitTask(submitter, {
      kind: 'infer',
      model: modelDir,
      inputFile,
      replicas: 1,
      shards: 1,
      requirements: { minGflops: 1e6 },
    })
    const done = await waitForTask(
      submitter,
      task.id,
      (t) => t.state !== 'running',
      'the task to end',
      60_000,
    )
    expect(done.state).toBe('failed')
    expect(done.error).toMatch(/no other peer is left .*1 declined: .*needs 1000000 GFLOP\/s/)
    // declining is not misbehaviour: the worker's score is untouched
    expect(submitter.tasks.inference.peerScores()[worker.peerId.toString()] ?? 0).toBe(0)
  }, 60_000)
})
