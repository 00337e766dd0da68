// SpanHost without libp2p (its in-process sessions, which the chain client uses for a span on its own
// node): loads and reloads, refusals of bad loads, many sessions stepping at once on one backend giving
// exactly what a GptSpan of the same blocks gives one at a time, and the memory it accounts for
// sub-spans and caches going back to zero. The native cpu engine; the oracle runs on a backend of its own.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Backend } from '../../../kernels/backend.js'
import { createBackend } from '../../../kernels/index.js'
import { type GptConfig, initializeGpt } from '../../../kernels/models/gpt/config.js'
import { GptSpan, GptSpanError } from '../../../kernels/models/gpt/span.js'
import { ModelFilesError, saveGptModel } from '../../../node/executor/model-files.js'
import { SpanHost } from '../../../node/serving/span-host.js'
import { SpanProtocolError } from '../../../protocols/serving/index.js'
import { gptManifest } from '../models/gpt-fixtures.js'

const CONFIG: GptConfig = {
  vocabSize: 256,
  context: 32,
  width: 16,
  layers: 3,
  heads: 2,
  layerNormEpsilon: 1e-5,
}
const MODEL = 'bafkreispanhostunit'
const MANIFEST = gptManifest(5)
/** a registrar that is never used: these tests stay in-process */
const NO_NETWORK = {
  handle: async () => {},
  unhandle: async () => {},
}

let dir: string
let params: Float32Array
let backend: Backend
let oracleBackend: Backend

function rowsOf(rows: number, seed: number): Float32Array {
  return Float32Array.from({ length: rows * CONFIG.width }, (_, i) => Math.cos(seed * 17 + i * 0.3) * 0.7)
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'shardnet-span-host-'))
  params = initializeGpt(CONFIG, 5)
  await saveGptModel(dir, CONFIG, params, MANIFEST)
  backend = await createBackend({ prefer: 'cpu', cpuEngine: 'native' })
  oracleBackend = await createBackend({ prefer: 'cpu', cpuEngine: 'native' })
})

afterAll(async () => {
  backend?.destroy()
  oracleBackend?.destroy()
  if (dir !== undefined) await rm(dir, { recursive: true, force: true })
})

describe('SpanHost', () => {
  it('refuses a load it cannot serve and serves nothing then', async () => {
    const host = new SpanHost({ host: NO_NETWORK, backend, measureSteps: 1 })
    await expect(host.load({ model: MODEL, directory: join(dir, 'nope'), start: 0, end: 1 })).rejects.toThrow(
      ModelFilesError,
    )
    await expect(host.load({ model: MODEL, directory: dir, start: 2, end: 4 })).rejects.toThrow(GptSpanError)
    await expect(host.load({ model: MODEL, directory: dir, start: 1, end: 1 })).rejects.toThrow(GptSpanError)
    expect(host.spans()).toEqual([])
    await host.stop()
  })

  it('runs many sessions at once exactly as a GptSpan runs each alone', async () => {
    const host = new SpanHost({ host: NO_NETWORK, backend, measureSteps: 1 })
    await host.load({ model: MODEL, directory: dir, start: 0, end: 3 })
    const ranges: Array<[number, number]> = [
      [0, 3],
      [0, 3],
      [1, 3],
      [0, 2],
      [1, 2],
      [1, 2],
    ]
    const sessions = await Promise.all(
      ranges.map(([start, end]) => host.openLocalSession({ model: MODEL, start, end, maxLength: 12 })),
    )
    // weights of the three sub-ranges ([1,3), [0,2), [1,2)) and six caches are accounted for
    const perBlockWeights = (12 * 16 * 16 + 13 * 16) * 4
    const perBlockCache = 2 * 12 * 16 * 4
    const blocks = ranges.reduce((n, [start, end]) => n + end - start, 0)
    expect(host.counters().cacheBytes).toBe(blocks * perBlockCache + (2 + 2 + 1) * perBlockWeights)
    expect(host.spans()[0].sessions).toBe(6)
    const steps: Array<[number, number]> = [
      [0, 4],
      [4, 1],
      [5, 2],
      [0, 3],
      [3, 1],
    ]
    // every session's steps in flight together (each session's own steps in order)
    const outputs = await Promise.all(
      sessions.map(async (session, s) => {
        const results: Float32Array[] = []
        for (const [i, [offset, rows]] of steps.entries())
          results.push((await session.step(offset, rows, rowsOf(rows, s * 10 + i))).hidden)
        return results
      }),
    )
    for (const [s, [start, end]] of ranges.entries()) {
      const span = GptSpan.fromParameters(oracleBackend, CONFIG, params, start, end)
      const oracle = span.session(12)
      for (const [i, [offset, rows]] of steps.entries()) {
        const expected = await oracle.forward(rowsOf(rows, s * 10 + i), rows, offset)
        expect(Buffer.from(outputs[s][i].buffer)).toEqual(Buffer.from(expected.buffer))
      }
      span.dispose()
    }
    await Promise.all(sessions.map((s) => s.close()))
    expect(host.counters()).toMatchObject({ sessionsOpen: 0, cacheBytes: 0, steps: 30 })
    await host.stop()
  })

  it('replaces a model loaded with another span: its sessions end with unknown-model', async () => {
    const host = new SpanHost({ host: NO_NETWORK, backend, measureSteps: 1 })
    let changes = 0
    host.onChange(() => changes++)
    const first = await host.load({ model: MODEL, directory: dir, start: 0, end: 2 })
    expect(first).toMatchObject({ start: 0, end: 2, blocks: 3, context: 32, sessions: 0 })
    expect(await host.load({ model: MODEL, directory: dir, start: 0, end: 2 })).toEqual(first)
    const session = await host.openLocalSession({ model: MODEL, start: 0, end: 2, maxLength: 4 })
    await session.step(0, 1, rowsOf(1, 1))
    await host.load({ model: MODEL, directory: dir, start: 1, end: 3 })
    expect(host.spans().map((s) => [s.start, s.end])).toEqual([[1, 3]])
    expect(session.closed).toBe(true)
    expect(host.counters()).toMatchObject({ sessionsOpen: 0, cacheBytes: 0 })
    const refused = await host
      .openLocalSession({ model: MODEL, start: 0, end: 2, maxLength: 4 })
      .catch((e) => e)
    expect(refused).toBeInstanceOf(SpanProtocolError)
    expect((refused as SpanProtocolError).code).toBe('outside-model')
    expect(changes).toBe(3)
    await host.stop()
    expect(host.spans()).toEqual([])
    expect(changes).toBe(4)
  })
})
