// Attacks on /shardnet/infer/1.0.0 by a stranger's real libp2p node on loopback against real daemons
// (node/daemon.ts on the cpu backend), and what they get:
// - runs of shards nobody assigned, of another submitter's task, or of a shard not assigned: refused
//   from the first small frame, before anything is fetched, and counted as 'unassigned';
// - a length prefix trickled as 0xff bytes: the stream is dropped after 3 bytes, counted 'oversized';
// - silent streams: a stranger gets 2 at once (a third is refused, 'budget'), cut after 5 s ('timeout');
// - a 3,000-row shard the stranger assigned itself: it runs in the worker thread, and the control
//   API's p99 latency during the run stays under 200 ms (the old main-thread forward pass, measured
//   beside it, does not);
// - a running shard whose stream closes, or whose task the submitter releases, stops at once;
// - a flood of run requests: the worker takes INFER_QUEUE_MAX_DEFAULT, refuses the rest at once (busy,
//   or over the peer's stream budget);
// - a liar within the tolerance, ranked first by the submitter: the accepted logits are the median of
//   the agreeing results, bitwise the honest ones, not the liar's;
// - input files read in chunks give bitwise the rows (and the refusals) of parsing them whole; one over
//   the size limit is refused from its size;
// - an 80 MB input file: the submission runs to completion in a daemon process whose heap is limited to
//   512 MiB (node --max-old-space-size=512).
import { spawn } from 'node:child_process'
import { createWriteStream } from 'node:fs'
import { mkdtemp, readFile, rm, stat, truncate, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import { Worker } from 'node:worker_threads'
import { byteStream } from '@libp2p/utils'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Backend } from '../../kernels/backend.js'
import { CpuBackend } from '../../kernels/cpu-backend.js'
import { PIXEL_COUNT } from '../../kernels/data/mnist.js'
import { createBackend } from '../../kernels/index.js'
import type { Daemon } from '../../node/daemon.js'
import { dataDirPaths } from '../../node/store/data-dir.js'
import {
  assignShards,
  INFER_KNOWN_LIMITS,
  INFER_PROTOCOL,
  INFER_QUEUE_MAX_DEFAULT,
  InferBusyError,
  releaseTask,
  requestShard,
} from '../../node/tasks/infer-executor.js'
import {
  decodeModelBundle,
  floatsToBytes,
  INPUT_FILE_BYTES_MAX,
  InferenceInputError,
  type InferenceOutput,
  PREDICTIONS_FILE,
  parseInputs,
  readModelBundle,
  streamInputFile,
} from '../../node/tasks/infer-files.js'
import { predictLogits } from '../../node/tasks/infer-forward.js'
import { encodeTaskSpec, REQUIREMENTS_DEFAULT, TASK_SPEC_VERSION } from '../../protocols/tasks/spec.js'
import { apiRequest, startTestDaemon, waitUntil } from './daemon-helpers.js'
import { shardedLocalLogits, writeTestInputs, writeTestModel } from './inference-helpers.js'
import { connect, createTestNode, type TestNode } from './protocols-host.js'
import { stopAll, submitTask, TASK_DAEMON_TUNING, waitForTask, waitForTopicMesh } from './tasks-helpers.js'

const API_P99_MS_MAX = 200

function inputRows(rows: number, seed: number): Float32Array {
  const values = new Float32Array(rows * PIXEL_COUNT)
  for (let i = 0; i < values.length; i++) values[i] = ((i * 17 + seed * 31) % 101) / 100
  return values
}

/** A task the stranger submits itself (its spec, model and shard blocks in its own block store). */
async function strangerTask(
  stranger: TestNode,
  bundle: Uint8Array,
  shards: Float32Array[],
): Promise<{ task: string; modelCid: string; shardCids: string[] }> {
  const put = (bytes: Uint8Array) => stranger.services.blocks.put(bytes, { provide: false })
  const modelCid = await put(bundle)
  const shardCids = await Promise.all(shards.map((s) => put(floatsToBytes(s))))
  const rows = shards.reduce((n, s) => n + s.length / PIXEL_COUNT, 0)
  const spec = encodeTaskSpec({
    version: TASK_SPEC_VERSION,
    kind: 'infer',
    requirements: { ...REQUIREMENTS_DEFAULT },
    staffingDeadlineMs: 60_000,
    createdMs: Date.now(),
    submitter: stranger.peerId,
    nonce: crypto.getRandomValues(new Uint8Array(16)),
    infer: { modelCid, inputCid: shardCids[0], inputCount: rows, replicas: 1, shards: shards.length },
  })
  return {
    task: (await put(spec)).toString(),
    modelCid: modelCid.toString(),
    shardCids: shardCids.map(String),
  }
}

function p99(samples: number[]): number {
  const sorted = [...samples].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.ceil(sorted.length * 0.99) - 1)]
}

// The API client runs in its own thread, as a real client runs in its own process: a client on the
// daemon's event loop could not send while that loop is blocked, and would never see the block.
const SAMPLER = `
const { parentPort, workerData } = require('node:worker_threads')
let stop = false
parentPort.on('message', () => { stop = true })
;(async () => {
  const samples = []
  while (!stop) {
    const started = performance.now()
    try {
      const headers = { authorization: 'Bearer ' + workerData.token }
      const response = await fetch(workerData.url, { headers })
      await response.arrayBuffer()
    } catch {}
    samples.push(performance.now() - started)
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
  parentPort.postMessage(samples)
})()
`

interface Latencies {
  /** GET /v1/status latencies, ms, one request every 25 ms from another thread */
  api: number[]
  /** the daemon's event-loop delay (what its timers, e.g. Raft heartbeats, wait): p99 and max, ms */
  loopP99Ms: number
  loopMaxMs: number
}

/** Latencies of the daemon's control API and event loop while `during` runs. */
async function latencies(daemon: Daemon, during: Promise<unknown>): Promise<Latencies> {
  const token = (await readFile(dataDirPaths(daemon.paths.root).apiToken, 'utf8')).trim()
  const loop = monitorEventLoopDelay({ resolution: 10 })
  loop.enable()
  const sampler = new Worker(SAMPLER, {
    eval: true,
    workerData: { url: `${daemon.api.url}/v1/status`, token },
  })
  const samples = new Promise<number[]>((resolve) => sampler.once('message', resolve))
  await during.catch(() => {})
  loop.disable()
  sampler.postMessage('stop')
  const api = await samples
  await sampler.terminate()
  return { api, loopP99Ms: loop.percentile(99) / 1e6, loopMaxMs: loop.max / 1e6 }
}

describe('hostile peers on /shardnet/infer/1.0.0', () => {
  let folder: string
  let worker: Daemon
  let stranger: TestNode
  let other: TestNode
  let bundle: Uint8Array

  beforeAll(async () => {
    folder = await mkdtemp(join(tmpdir(), 'shardnet-hostile-infer-'))
    // the reference ops: the tests below need shards that run for seconds (a queue to fill, a run
    // to stop, the API while a long shard computes); the native engine finishes them in milliseconds
    worker = await startTestDaemon({ overrides: { cpuEngine: 'reference' } })
    stranger = await createTestNode()
    other = await createTestNode()
    await Promise.all([stranger.start(), other.start()])
    await connect(stranger, worker.host as unknown as TestNode)
    await connect(other, worker.host as unknown as TestNode)
    bundle = await readModelBundle(await writeTestModel(folder, [512, 512], 3))
  }, 120_000)

  afterAll(async () => {
    await Promise.all([stranger?.stop(), other?.stop()])
    await worker?.stop()
    await rm(folder, { recursive: true, force: true })
  })

  it('refuses runs nobody assigned from the first frame, and counts them', async () => {
    const counters = worker.tasks.inferWorker.rejected
    const before = counters.unassigned
    const { task, modelCid, shardCids } = await strangerTask(stranger, bundle, [
      inputRows(4, 1),
      inputRows(4, 2),
    ])
    const run = (from: TestNode, shard: number) =>
      requestShard(
        from,
        worker.peerId,
        { task, shard, modelCid, inputCid: shardCids[shard], rows: 4 },
        { timeoutMs: 30_000 },
      )
    // never assigned
    await expect(run(stranger, 0)).rejects.toThrow(/not assigned to this worker/)
    await assignShards(stranger, worker.peerId, task, [0])
    // assigned to the stranger, asked by another peer; and a shard not assigned
    await expect(run(other, 0)).rejects.toThrow(/not assigned to this worker/)
    await expect(run(stranger, 1)).rejects.toThrow(/not assigned to this worker/)
    // another peer cannot take over or release the stranger's task
    await expect(assignShards(other, worker.peerId, task, [1])).rejects.toThrow(/not by you/)
    expect(counters.unassigned - before).toBe(3)
    // and /metrics reports the same count
    const metrics = await (await apiRequest(worker, '/metrics')).text()
    expect(metrics).toContain(
      `shardnet_refused_total{source="infer",reason="unassigned"} ${counters.unassigned}`,
    )
    // the assigned shard runs
    const answer = await run(stranger, 0)
    expect(answer.logits).toHaveLength(40)
    await releaseTask(stranger, worker.peerId, task)
    await expect(run(stranger, 0)).rejects.toThrow(/not assigned to this worker/)
  }, 120_000)

  it('drops a trickled 0xff length prefix after 3 bytes and counts it', async () => {
    const counters = worker.tasks.inferWorker.rejected
    const before = counters.oversized
    const stream = await stranger.dialProtocol(worker.peerId, INFER_PROTOCOL)
    const bytes = byteStream(stream)
    let sent = 0
    try {
      for (; sent < 1000; sent++) {
        await bytes.write(new Uint8Array([0xff]), { signal: AbortSignal.timeout(5_000) })
        await new Promise((resolve) => setTimeout(resolve, 10))
        if (stream.status !== 'open') break
      }
    } catch {
      // the worker reset the stream
    }
    // the worker ended the stream: nothing more comes back
    expect(await bytes.read({ signal: AbortSignal.timeout(5_000) }).catch(() => null)).toBeNull()
    expect(sent).toBeLessThan(50)
    expect(counters.oversized - before).toBe(1)
  }, 60_000)

  it('gives a stranger 2 silent streams, refuses a third, and times the silent ones out', async () => {
    const counters = worker.tasks.inferWorker.rejected
    const before = { budget: counters.budget, timeout: counters.timeout }
    const silent = await Promise.all([0, 1].map(() => other.dialProtocol(worker.peerId, INFER_PROTOCOL)))
    await waitUntil(
      () => worker.tasks.inferWorker.budgets.peerUsage(other.peerId).streams === 2,
      'two streams',
    )
    const third = await other.dialProtocol(worker.peerId, INFER_PROTOCOL)
    await waitUntil(() => counters.budget - before.budget === 1, 'the third stream to be refused', 5_000, 20)
    expect(
      await byteStream(third)
        .read({ signal: AbortSignal.timeout(5_000) })
        .catch(() => null),
    ).toBeNull()
    // the silent streams are cut at the stranger's read deadline (5 s)
    const started = performance.now()
    await waitUntil(
      () => counters.timeout - before.timeout === 2,
      'the silent streams to time out',
      15_000,
      50,
    )
    expect(performance.now() - started).toBeLessThan(7_000)
    expect(worker.tasks.inferWorker.budgets.peerUsage(other.peerId).streams).toBe(0)
    for (const stream of silent) stream.abort(new Error('done'))
  }, 60_000)

  it('runs a 3,000-row shard off the main thread: the control API p99 stays under 200 ms', async () => {
    const rows = 3000
    const { task, modelCid, shardCids } = await strangerTask(stranger, bundle, [inputRows(rows, 5)])
    await assignShards(stranger, worker.peerId, task, [0])
    const idle = await latencies(worker, new Promise((resolve) => setTimeout(resolve, 1000)))
    const started = performance.now()
    const run = requestShard(
      stranger,
      worker.peerId,
      { task, shard: 0, modelCid, inputCid: shardCids[0], rows },
      { timeoutMs: 120_000 },
    )
    const during = await latencies(worker, run)
    const seconds = (performance.now() - started) / 1000
    const { logits } = await run
    expect(logits).toHaveLength(rows * 10)

    // the old behaviour beside it: the same forward pass on the main thread, 1,000 rows at a time, on
    // the reference ops (the native engine computes 3,000 rows in a few milliseconds, so it would not
    // show what a long pass on the main thread does to the API)
    const reference = new CpuBackend({ engine: 'reference' })
    const old = await startTestDaemon({
      taskService: {
        inferPredict: (_backend, model, inputs) =>
          predictLogits(reference, model, inputs, { sliceRows: 1000, yieldBetween: false }),
      },
    })
    let oldDuring: Latencies
    try {
      await connect(stranger, old.host as unknown as TestNode)
      await assignShards(stranger, old.peerId, task, [0])
      const oldRun = requestShard(
        stranger,
        old.peerId,
        { task, shard: 0, modelCid, inputCid: shardCids[0], rows },
        { timeoutMs: 120_000 },
      )
      oldDuring = await latencies(old, oldRun)
      const oldLogits = (await oldRun).logits
      expect(oldLogits).toHaveLength(logits.length)
      for (let i = 0; i < logits.length; i++) expect(Math.abs(oldLogits[i] - logits[i])).toBeLessThan(1e-4)
    } finally {
      await old.stop()
    }
    await releaseTask(stranger, worker.peerId, task)
    const round = (x: number) => Number(x.toFixed(1))
    const figures = (l: Latencies) => ({
      apiP99Ms: round(p99(l.api)),
      apiMaxMs: round(Math.max(...l.api)),
      loopP99Ms: round(l.loopP99Ms),
      loopMaxMs: round(l.loopMaxMs),
      samples: l.api.length,
    })
    console.log(
      '3,000-row shard:',
      JSON.stringify({
        seconds: round(seconds),
        idle: figures(idle),
        thread: figures(during),
        mainThread: figures(oldDuring),
      }),
    )
    expect(during.api.length).toBeGreaterThan(10)
    expect(p99(during.api)).toBeLessThan(API_P99_MS_MAX)
    // the measurement can tell: the main-thread forward pass blocks the API well beyond the bound
    expect(p99(oldDuring.api)).toBeGreaterThan(API_P99_MS_MAX)
  }, 300_000)

  it('stops a running shard when its stream closes or the submitter releases the task', async () => {
    const counters = worker.tasks.inferWorker.rejected
    const before = counters.aborted
    const rows = 3000
    const { task, modelCid, shardCids } = await strangerTask(stranger, bundle, [inputRows(rows, 9)])
    await assignShards(stranger, worker.peerId, task, [0])
    const started = () => worker.tasks.inferWorker.queued === 1
    // the submitter goes away mid-run: its stream closes
    const closing = new AbortController()
    const closed = requestShard(
      stranger,
      worker.peerId,
      { task, shard: 0, modelCid, inputCid: shardCids[0], rows },
      { signal: closing.signal, timeoutMs: 120_000 },
    )
    await waitUntil(started, 'the shard to start')
    closing.abort(new Error('the submitter went away'))
    await expect(closed).rejects.toThrow()
    const stoppedAt = performance.now()
    await waitUntil(() => worker.tasks.inferWorker.queued === 0, 'the shard to stop', 10_000, 20)
    const stopMs = performance.now() - stoppedAt
    expect(counters.aborted - before).toBe(1)
    // the submitter releases the task mid-run
    const released = requestShard(
      stranger,
      worker.peerId,
      { task, shard: 0, modelCid, inputCid: shardCids[0], rows },
      { timeoutMs: 120_000 },
    )
    await waitUntil(started, 'the shard to start')
    await releaseTask(stranger, worker.peerId, task)
    await expect(released).rejects.toThrow()
    await waitUntil(() => worker.tasks.inferWorker.queued === 0, 'the shard to stop', 10_000, 20)
    expect(counters.aborted - before).toBe(2)
    console.log(`a closed stream stopped its shard in ${stopMs.toFixed(0)} ms`)
    // a 3,000-row shard takes seconds: stopping took far less
    expect(stopMs).toBeLessThan(1_000)
  }, 120_000)

  it('refuses a flood of run requests beyond its queue as busy', async () => {
    const counters = worker.tasks.inferWorker.rejected
    const before = { busy: counters.busy, budget: counters.budget }
    const rows = 1000
    const { task, modelCid, shardCids } = await strangerTask(stranger, bundle, [inputRows(rows, 7)])
    await assignShards(stranger, worker.peerId, task, [0])
    const flood = 12
    const settled = await Promise.allSettled(
      Array.from({ length: flood }, () =>
        requestShard(
          stranger,
          worker.peerId,
          { task, shard: 0, modelCid, inputCid: shardCids[0], rows },
          { timeoutMs: 120_000 },
        ),
      ),
    )
    const served = settled.filter((s) => s.status === 'fulfilled').length
    const busy = settled.filter((s) => s.status === 'rejected' && s.reason instanceof InferBusyError)
    expect(served).toBe(INFER_QUEUE_MAX_DEFAULT)
    // the rest refused at once: busy, or (streams beyond the peer's budget of 8) before a byte is read
    const refused = { busy: counters.busy - before.busy, budget: counters.budget - before.budget }
    expect(refused.busy + refused.budget).toBe(flood - INFER_QUEUE_MAX_DEFAULT)
    expect(busy).toHaveLength(refused.busy)
    expect(refused.busy).toBeGreaterThanOrEqual(INFER_KNOWN_LIMITS.streamsPerPeer - INFER_QUEUE_MAX_DEFAULT)
    expect(worker.tasks.inferWorker.queued).toBe(0)
    await releaseTask(stranger, worker.peerId, task)
  }, 300_000)
})

/** A cpu backend that reports another adapter, so its results are compared within the tolerance. */
function otherAdapter(backend: CpuBackend): Backend {
  return new Proxy(backend, {
    get(target, prop) {
      if (prop === 'info') return { ...target.info, adapterName: 'a lying gpu' }
      const value = Reflect.get(target, prop, target)
      return typeof value === 'function' ? value.bind(target) : value
    },
  }) as Backend
}

describe('a liar within the tolerance', () => {
  let daemons: Daemon[] = []
  let folder: string

  beforeAll(async () => {
    folder = await mkdtemp(join(tmpdir(), 'shardnet-hostile-liar-'))
    const submitter = await startTestDaemon(TASK_DAEMON_TUNING)
    const bootstrap = { overrides: { bootstrap: [submitter.addresses()[0]] } }
    const honest = await Promise.all(
      [0, 1].map(() => startTestDaemon({ ...TASK_DAEMON_TUNING, ...bootstrap })),
    )
    const liar = await startTestDaemon({
      ...bootstrap,
      taskService: {
        ...TASK_DAEMON_TUNING.taskService,
        openBackend: async () => otherAdapter(new CpuBackend()),
        // within the tolerance: |offset| < 1e-3 + 1e-3·|x|
        inferPredict: async (backend, model, inputs) =>
          (await predictLogits(backend, model, inputs)).map((v) => v + 6e-4),
      },
    })
    daemons = [submitter, ...honest, liar]
    await waitForTopicMesh(daemons)
  }, 120_000)

  afterAll(async () => {
    await stopAll(daemons)
    await rm(folder, { recursive: true, force: true })
  })

  it('does not pick the accepted values, even when ranked first', async () => {
    const [submitter, , , liar] = daemons
    const liarId = liar.peerId.toString()
    // the liar has the best record in the submitter's book, so it is the first replica of every shard
    const book = submitter.tasks.inference.reputation!
    for (let i = 0; i < 20; i++) book.record(liarId, 'agreed')
    const modelDir = await writeTestModel(folder, [32], 11)
    const rows = 40
    const { inputs, inputFile } = await writeTestInputs(folder, rows, 29, 13, 97)
    const task = await submitTask(submitter, {
      kind: 'infer',
      model: modelDir,
      inputFile,
      replicas: 2,
      shards: 4,
      deadlineMs: 60_000,
    })
    const done = await waitForTask(submitter, task.id, (t) => t.state !== 'running', 'the inference')
    expect(done.error).toBeUndefined()
    const output = JSON.parse(
      await readFile(join(done.resultDir!, PREDICTIONS_FILE), 'utf8'),
    ) as InferenceOutput
    // the liar agreed within the tolerance on every shard (it is in the accepted cluster) ...
    for (const shard of output.shards) {
      expect(shard.agreeing).toContain(liarId)
      expect(shard.agreeing).toHaveLength(3)
    }
    // ... yet the accepted logits are the honest ones, bitwise
    const backend = await createBackend({ prefer: 'cpu' })
    const local = await shardedLocalLogits(
      backend,
      decodeModelBundle(await readModelBundle(modelDir)),
      inputs,
      4,
    )
    backend.destroy()
    expect(output.predictions.flatMap((p) => p.logits)).toEqual(Array.from(local))
  }, 240_000)
})

describe('input files read in chunks', () => {
  let folder: string

  beforeAll(async () => {
    folder = await mkdtemp(join(tmpdir(), 'shardnet-hostile-input-'))
  })

  afterAll(async () => {
    await rm(folder, { recursive: true, force: true })
  })

  it('gives the same rows and the same refusals as parsing the file whole', async () => {
    // about 4 MB: values in every JSON number form, so numbers straddle the 1 MiB chunk boundaries
    const rows = Array.from({ length: 500 }, (_, r) =>
      Array.from({ length: PIXEL_COUNT }, (_, i) => {
        const k = (r * 7919 + i * 104729) % 1000
        return k % 5 === 0
          ? -k / 7
          : k % 5 === 1
            ? k * 1e-9
            : k % 5 === 2
              ? k
              : k % 5 === 3
                ? 1e21 * k
                : k / 3
      }),
    )
    const cases: Array<[string, string]> = [
      ['object', JSON.stringify({ note: { skip: ['"]}', 1, null] }, inputs: rows, after: 'é' })],
      ['array', JSON.stringify(rows)],
      ['images', JSON.stringify({ images: rows }, null, 1)],
      ['empty', '{"inputs": []}'],
      ['narrow', '{"inputs": [[1, 2, 3]]}'],
      ['text', JSON.stringify({ inputs: [[...Array(PIXEL_COUNT - 1).fill(0), 'x']] })],
      ['flat', '{"inputs": [5]}'],
      ['no-key', '{"rows": []}'],
    ]
    for (const [name, text] of cases) {
      const file = join(folder, `${name}.json`)
      await writeFile(file, text)
      let whole: Float32Array | string
      try {
        whole = parseInputs(JSON.parse(text), file).values
      } catch (error) {
        whole = (error as Error).message
      }
      let streamed: Float32Array | string
      try {
        const input = await streamInputFile(file, join(folder, `${name}.rows`))
        const bytes = await readFile(input.rowsFile)
        streamed = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4)
        expect(input.rows).toBe(streamed.length / PIXEL_COUNT)
      } catch (error) {
        expect(error).toBeInstanceOf(InferenceInputError)
        streamed = (error as Error).message
      }
      expect(streamed, name).toEqual(whole)
    }
    // not JSON at all, or cut short
    for (const text of ['{"inputs": [[1, 2', 'inputs', '{"inputs": [[1e]]}']) {
      const file = join(folder, 'bad.json')
      await writeFile(file, text)
      await expect(streamInputFile(file, join(folder, 'bad.rows'))).rejects.toThrow(/is not valid JSON/)
    }
    // over the size limit: refused from its size, before a byte is read (a sparse file)
    const huge = join(folder, 'huge.json')
    await writeFile(huge, '')
    await truncate(huge, INPUT_FILE_BYTES_MAX + 1)
    await expect(streamInputFile(huge, join(folder, 'huge.rows'))).rejects.toThrow(
      /larger than the 536870912 bytes accepted/,
    )
  }, 60_000)
})

describe('an 80 MB input file', () => {
  let folder: string

  beforeAll(async () => {
    folder = await mkdtemp(join(tmpdir(), 'shardnet-hostile-big-'))
  })

  afterAll(async () => {
    await rm(folder, { recursive: true, force: true })
  })

  it('runs in a daemon whose heap is limited to 512 MiB', async () => {
    // written in pieces: values k/100 as the inference helpers write them, about 3.4 KB a row
    const inputFile = join(folder, 'big.json')
    const out = createWriteStream(inputFile)
    const bytesMin = 80 * 1024 * 1024
    let rows = 0
    let written = 0
    const write = (text: string) =>
      new Promise<void>((resolve) => {
        written += text.length
        if (out.write(text)) resolve()
        else out.once('drain', () => resolve())
      })
    await write('{"inputs": [')
    while (written < bytesMin) {
      const row = Array.from({ length: PIXEL_COUNT }, (_, i) => ((rows * 31 + i * 17) % 101) / 100)
      await write(`${rows > 0 ? ',' : ''}${JSON.stringify(row)}`)
      rows++
    }
    await write(']}')
    await new Promise<void>((resolve, reject) =>
      out.end((error?: Error | null) => (error ? reject(error) : resolve())),
    )
    expect((await stat(inputFile)).size).toBeGreaterThanOrEqual(bytesMin)

    const script = fileURLToPath(new URL('./hostile-inference-daemon.ts', import.meta.url))
    const child = spawn(
      process.execPath,
      ['--max-old-space-size=512', '--import', 'tsx', script, folder, inputFile],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    )
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (chunk) => {
      stdout += chunk
    })
    child.stderr.on('data', (chunk) => {
      stderr += chunk
    })
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve))
    expect(stderr.slice(-2000), stderr.slice(-2000)).not.toMatch(/heap out of memory/)
    expect(code, stderr.slice(-2000)).toBe(0)
    const result = JSON.parse(stdout.trim().split('\n').at(-1)!) as {
      state: string
      count: number
      seconds: number
      heapUsedMaxMiB: number
      rssMaxMiB: number
    }
    console.log(`80 MB input (${rows} rows):`, JSON.stringify(result))
    expect(result.state).toBe('completed')
    expect(result.count).toBe(rows)
    expect(result.heapUsedMaxMiB).toBeLessThan(512)
  }, 600_000)
})
