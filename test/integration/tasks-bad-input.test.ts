// Proves the task path refuses bad input with a clear reason and keeps working: malformed TaskSpecs,
// oversized request bodies and data files, a bad --data file, a task asking for more memory than any
// worker has (refused at the staffing deadline, saying how many workers declined and why), inference
// on unreadable inputs, and garbage, oversized, forged or misdirected frames on
// /shardnet/claim/1.0.0 (answered BAD_REQUEST / REFUSED and counted). Real daemons on loopback.
import { open, writeFile } from 'node:fs/promises'
import { request as httpRequest } from 'node:http'
import { join } from 'node:path'
import { lpStream } from '@libp2p/utils'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Daemon } from '../../node/daemon.js'
import {
  CLAIM_PROTOCOL,
  ClaimRefusedError,
  ClaimRequest,
  ClaimResponse,
} from '../../protocols/tasks/claims.js'
import { apiRequest, tempDataDir } from './daemon-helpers.js'
import { startTaskNetwork, stopAll, submitTask, waitForTask } from './tasks-helpers.js'

const minimal = { kind: 'train', model: 'mnist-mlp', groups: 1, groupSize: 3, steps: 10, hiddenSizes: [8] }

async function refusal(daemon: Daemon, body: unknown): Promise<{ status: number; error: string }> {
  const response = await apiRequest(daemon, '/v1/tasks', { method: 'POST', body })
  return { status: response.status, error: ((await response.json()) as { error: string }).error }
}

describe('bad task input', () => {
  let daemons: Daemon[] = []
  let folder: string
  beforeAll(async () => {
    daemons = await startTaskNetwork(4)
    folder = await tempDataDir()
  }, 120_000)
  afterAll(async () => stopAll(daemons))

  it('refuses malformed TaskSpecs naming the field', async () => {
    const [submitter] = daemons
    expect(await refusal(submitter, { ...minimal, groupSize: 2 })).toEqual({
      status: 400,
      error: 'groupSize must be an odd integer from 1 to 15 (a Raft group needs a clear majority), got 2',
    })
    expect((await refusal(submitter, { ...minimal, steps: -5 })).error).toMatch(/^steps must be an integer/)
    expect((await refusal(submitter, { ...minimal, learningRate: 'fast' })).error).toBe(
      'learningRate must be a number',
    )
    expect((await refusal(submitter, { ...minimal, hiddenSizes: [0] })).error).toMatch(/hiddenSizes/)
    expect((await refusal(submitter, [1, 2])).error).toBe('a task must be a JSON object')
    expect((await refusal(submitter, { ...minimal, requirements: { minMemoryBytes: 2 ** 55 } })).status).toBe(
      400,
    )
    const garbage = await fetch(`${submitter.api.url}/v1/tasks`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${(await apiToken(submitter)).trim()}`,
        'content-type': 'application/json',
      },
      body: '{"kind": "train", ',
    })
    expect(garbage.status).toBe(400)
  })

  it('refuses oversized inputs and bad data files', async () => {
    const [submitter] = daemons
    // the API stops reading a body over 1 MiB: the client sees 413 or, mid-upload, a reset connection
    // (sent on its own connection, so the reset cannot spill into the next request)
    const token = (await apiToken(submitter)).trim()
    const huge = await new Promise<number | 'reset'>((resolve) => {
      const body = JSON.stringify({ ...minimal, pad: 'x'.repeat(2 * 1024 * 1024) })
      const request = httpRequest(
        `${submitter.api.url}/v1/tasks`,
        {
          method: 'POST',
          agent: false,
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        },
        (response) => {
          response.resume()
          resolve(response.statusCode ?? 0)
        },
      )
      request.on('error', (error: NodeJS.ErrnoException) =>
        resolve(error.code === 'ECONNRESET' || error.code === 'EPIPE' ? 'reset' : -1),
      )
      request.end(body)
    })
    expect([413, 'reset']).toContain(huge)
    expect((await refusal(submitter, { ...minimal, hiddenSizes: new Array(100).fill(8) })).error).toMatch(
      /at most 8 layers/,
    )
    expect((await refusal(submitter, { ...minimal, dataFile: 'x'.repeat(5000) })).status).toBe(400)
    // the small GPT (86M parameters) does not fit the training path: refused before any data is made
    const small = {
      ...minimal,
      model: 'gpt',
      hiddenSizes: undefined,
      gpt: { context: 1024, width: 768, layers: 12, heads: 12 },
    }
    const tooBig = await refusal(submitter, small)
    expect(tooBig.status).toBe(400)
    expect(tooBig.error).toMatch(/has 86039040 parameters; a training group carries at most 2080768/)
    expect((await refusal(submitter, { ...minimal, dataFile: join(folder, 'missing.json') })).error).toMatch(
      /does not exist/,
    )
    const big = join(folder, 'big.json')
    const handle = await open(big, 'w')
    await handle.truncate(600 * 1024 * 1024) // sparse: refused by its size, never read
    await handle.close()
    expect((await refusal(submitter, { ...minimal, dataFile: big })).error).toMatch(/above the limit/)
    const badPixel = join(folder, 'bad-pixel.json')
    await writeFile(
      badPixel,
      JSON.stringify({ images: [new Array(784).fill(2), new Array(784).fill(0)], labels: [1, 2] }),
    )
    expect((await refusal(submitter, { ...minimal, dataFile: badPixel })).error).toMatch(
      /pixels are numbers in \[0, 1\]/,
    )
    const badLabel = join(folder, 'bad-label.json')
    await writeFile(
      badLabel,
      JSON.stringify({ images: [new Array(784).fill(0), new Array(784).fill(0)], labels: [1, 12] }),
    )
    expect((await refusal(submitter, { ...minimal, dataFile: badLabel })).error).toMatch(
      /labels are digits 0 to 9/,
    )
  })

  it('fails a task that asks for more memory than any worker has, saying why', async () => {
    const [submitter] = daemons
    const task = await submitTask(submitter, {
      ...minimal,
      deadlineMs: 8_000,
      requirements: { minMemoryBytes: 2 ** 45 },
    })
    const failed = await waitForTask(
      submitter,
      task.id,
      (t) => t.state === 'failed',
      'the staffing deadline',
      60_000,
    )
    expect(failed.error).toMatch(
      /^could not staff the task before its deadline: found 0 eligible workers, needed 3/,
    )
    expect(failed.error).toMatch(/[1-3] declined: needs 32 TiB of memory, the most this worker has is/)
  })

  it('refuses an inference task whose inputs or model cannot be read', async () => {
    const response = await refusal(daemons[0], {
      kind: 'infer',
      model: '/nowhere',
      inputFile: '/nowhere.json',
    })
    expect(response.status).toBe(400)
    expect(response.error).toMatch(/nowhere/)
  })

  it('answers garbage, oversized and forged claim frames without falling over', async () => {
    const [submitter, worker] = daemons
    const rawExchange = async (bytes: Uint8Array): Promise<ClaimResponse | Error> => {
      const stream = await worker.host.dialProtocol(submitter.peerId, CLAIM_PROTOCOL)
      const lp = lpStream(stream, { maxDataLength: 1 << 20 })
      try {
        await lp.write(bytes)
        return ClaimResponse.decode(await lp.read({ signal: AbortSignal.timeout(10_000) }))
      } catch (error) {
        return error as Error
      } finally {
        stream.abort(new Error('done'))
      }
    }
    const before = { ...submitter.tasks.claims.rejected }
    const garbage = await rawExchange(new Uint8Array([0xff, 0xff, 0xff, 0x01, 0x02]))
    expect(garbage).toMatchObject({ status: ClaimResponse.Status.BAD_REQUEST, reason: 'malformed request' })
    const empty = await rawExchange(ClaimRequest.encode({}))
    expect(empty).toMatchObject({ status: ClaimResponse.Status.BAD_REQUEST })
    const oversized = await rawExchange(new Uint8Array(200 * 1024))
    expect(oversized).toBeInstanceOf(Error)
    const unknownCid = CID.createV1(raw.code, await sha256.digest(new Uint8Array([1, 2, 3])))
    const badCapability = await rawExchange(
      ClaimRequest.encode({
        claim: {
          taskCid: unknownCid.bytes as Uint8Array<ArrayBuffer>,
          eligible: true,
          reason: '',
          capability: { backend: 'quantum', gflops: Number.NaN, maxBufferBytes: 1, memoryBytes: 1 },
        },
      }),
    )
    expect(badCapability).toMatchObject({
      status: ClaimResponse.Status.BAD_REQUEST,
      reason: 'invalid claim.capability.backend',
    })
    const after = submitter.tasks.claims.rejected
    expect(after.malformed).toBeGreaterThan(before.malformed)
    expect(after.invalid).toBeGreaterThanOrEqual(before.invalid + 2)
    // the length prefix over the limit is the stream library's InvalidDataLengthError: counted as oversized
    expect(after.oversized).toBe(before.oversized + 1)

    // well-formed but misdirected: an unknown task, progress from a stranger, an assignment never claimed
    const claims = worker.tasks.claims
    const capability = { backend: 'cpu', gflops: 1, maxBufferBytes: 1, memoryBytes: 1 }
    await expect(
      claims.send(submitter.peerId, {
        claim: {
          taskCid: unknownCid.bytes as Uint8Array<ArrayBuffer>,
          eligible: true,
          reason: '',
          capability,
        },
      }),
    ).rejects.toMatchObject({ name: ClaimRefusedError.name, status: ClaimResponse.Status.UNKNOWN_TASK })
    const task = await submitTask(submitter, {
      ...minimal,
      deadlineMs: 2_000,
      requirements: { minMemoryBytes: 2 ** 45 },
    })
    const taskCid = CID.parse(task.id).bytes as Uint8Array<ArrayBuffer>
    await expect(
      claims.send(submitter.peerId, {
        progress: {
          taskCid,
          group: 0,
          step: 5,
          loss: 1,
          samplesPerSecond: 1,
          leader: new Uint8Array(0),
          members: [],
          outerRound: 0,
          paramsCid: new Uint8Array(0),
          done: true,
          error: '',
          appliedRound: 0,
          incarnation: 0,
          stateCid: new Uint8Array(0),
          reports: [],
        },
      }),
    ).rejects.toMatchObject({ status: ClaimResponse.Status.REFUSED })
    await expect(
      submitter.tasks.claims.send(worker.peerId, {
        assignment: {
          taskCid: unknownCid.bytes as Uint8Array<ArrayBuffer>,
          group: 0,
          members: [worker.peerId.toMultihash().bytes as Uint8Array<ArrayBuffer>],
          shardCid: unknownCid.bytes as Uint8Array<ArrayBuffer>,
          incarnation: 0,
          stateCid: new Uint8Array(0),
        },
      }),
    ).rejects.toMatchObject({
      status: ClaimResponse.Status.REFUSED,
      reason: 'this worker did not claim that task from you',
    })
    // and the network still trains afterwards
    const good = await submitTask(submitter, { ...minimal, steps: 15, deadlineMs: 30_000 })
    const done = await waitForTask(
      submitter,
      good.id,
      (t) => ['completed', 'failed'].includes(t.state),
      'completion',
    )
    expect(done.state).toBe('completed')
  }, 240_000)
})

async function apiToken(daemon: Daemon): Promise<string> {
  const { readFile } = await import('node:fs/promises')
  return readFile(join(daemon.paths.root, 'api-token'), 'utf8')
}
