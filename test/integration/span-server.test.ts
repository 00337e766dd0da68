// A SpanHost serving a real tiny GPT (written to a model directory) over /shardnet/span/1.0.0 between
// two real libp2p nodes on 127.0.0.1 TCP, on the cpu backend's native engine. The oracle is a GptSpan
// of the same blocks built here from the same parameters on a backend of its own (same engine): a
// session's outputs equal its forward bitwise. Every bad input of issue #18 gets its one error code and
// the host's sessions and cache bytes go back to zero; limits answer busy; idle sessions, killed
// streams, a hung-up peer, unload and stop free the caches; a stalled or broken server is told apart by
// the client's errors.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { identify } from '@libp2p/identify'
import type { Stream } from '@libp2p/interface'
import { noise } from '@libp2p/noise'
import { yamux } from '@libp2p/yamux'
import { createLibp2p, type Libp2p } from 'libp2p'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Backend } from '../../kernels/backend.js'
import { createBackend } from '../../kernels/index.js'
import { type GptConfig, initializeGpt } from '../../kernels/models/gpt/config.js'
import { GptSpan } from '../../kernels/models/gpt/span.js'
import { saveGptModel } from '../../node/executor/model-files.js'
import { SpanHost, type SpanHostInit } from '../../node/serving/span-host.js'
import { shardnetTcp } from '../../node/tcp.js'
import {
  decodeSpanResponse,
  encodeSpanRequest,
  encodeSpanResponse,
  hiddenToBytes,
  openSpanSession,
  SPAN_CONTROL_FRAME_BYTES_MAX,
  SPAN_PROTOCOL,
  type SpanErrorCode,
  SpanMalformedResponseError,
  type SpanOpenRequest,
  SpanProtocolError,
  type SpanResponseFrame,
  SpanStalledError,
  SpanStreamClosedError,
  spanStepFrameBytesMax,
} from '../../protocols/serving/index.js'
import { type BoundedLpStream, boundedLpStream } from '../../protocols/wire/framing.js'
import { gptManifest } from '../unit/models/gpt-fixtures.js'

const CONFIG: GptConfig = {
  vocabSize: 256,
  context: 64,
  width: 32,
  layers: 4,
  heads: 2,
  layerNormEpsilon: 1e-5,
}
const MODEL = 'bafkreispantestmodel'
const MANIFEST = gptManifest(3)

async function createNode(): Promise<Libp2p> {
  return createLibp2p({
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [shardnetTcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    connectionManager: { allow: ['/ip4/127.0.0.0/ipcidr/8'], dialTimeout: 30_000 },
    connectionMonitor: { abortConnectionOnPingFailure: false },
    services: { identify: identify() },
  })
}

/** Deterministic hidden rows [rows, D] (values of the size embeddings give). */
function rowsOf(rows: number, seed: number): Float32Array {
  return Float32Array.from({ length: rows * CONFIG.width }, (_, i) => Math.sin(seed * 131 + i * 0.7) * 0.5)
}

async function waitFor(condition: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

async function codeOf(promise: Promise<unknown>): Promise<SpanErrorCode | string> {
  try {
    await promise
  } catch (error) {
    if (error instanceof SpanProtocolError) return error.code
    return (error as Error).name
  }
  return 'resolved'
}

let dir: string
let params: Float32Array
let serverNode: Libp2p
let clientNode: Libp2p
let backend: Backend
let oracleBackend: Backend

/** A host on the server node with `limits`, serving blocks [start, end) of the model. */
async function startHost(
  start: number,
  end: number,
  init: Partial<Omit<SpanHostInit, 'host' | 'backend'>> = {},
): Promise<SpanHost> {
  const host = new SpanHost({ host: serverNode, backend, measureSteps: 2, ...init })
  await host.start()
  await host.load({ model: MODEL, directory: dir, start, end })
  return host
}

async function idle(host: SpanHost): Promise<void> {
  await waitFor(
    () =>
      host.counters().sessionsOpen === 0 && host.budgets.streams === 0 && host.budgets.bytesInFlight === 0,
    'the sessions to end and their streams to be released',
  )
  expect(host.counters().cacheBytes).toBe(0)
  expect(host.spans().every((s) => s.sessions === 0)).toBe(true)
}

const target = () => ({ dialer: clientNode, peer: serverNode.peerId })

/** A raw stream to the server: a hostile or broken client writes frames of its own. */
async function rawStream(): Promise<{ stream: Stream; lp: BoundedLpStream }> {
  const stream = await clientNode.dialProtocol(serverNode.peerId, SPAN_PROTOCOL)
  return { stream, lp: boundedLpStream(stream, 1 << 20) }
}

async function exchange(lp: BoundedLpStream, bytes: Uint8Array): Promise<SpanResponseFrame> {
  await lp.write(bytes)
  return decodeSpanResponse(await lp.read({ signal: AbortSignal.timeout(10_000) }))
}

function errorCode(frame: SpanResponseFrame): string {
  return frame.type === 'error' ? frame.code : frame.type
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'shardnet-span-'))
  params = initializeGpt(CONFIG, 3)
  await saveGptModel(dir, CONFIG, params, MANIFEST)
  backend = await createBackend({ prefer: 'cpu', cpuEngine: 'native' })
  oracleBackend = await createBackend({ prefer: 'cpu', cpuEngine: 'native' })
  serverNode = await createNode()
  clientNode = await createNode()
  await Promise.all([serverNode.start(), clientNode.start()])
  await clientNode.dial(serverNode.getMultiaddrs()[0])
})

afterAll(async () => {
  await Promise.allSettled([serverNode?.stop(), clientNode?.stop()])
  backend?.destroy()
  oracleBackend?.destroy()
  if (dir !== undefined) await rm(dir, { recursive: true, force: true })
})

describe('span sessions', () => {
  it('compute bitwise what a local GptSpan of the same blocks computes, remote and local', async () => {
    const host = await startHost(1, 3)
    try {
      const [info] = host.spans()
      expect(info).toMatchObject({ model: MODEL, name: 'gpt', start: 1, end: 3, blocks: 4, context: 64 })
      expect(info.tokensPerSecond).toBeGreaterThan(0)
      for (const [start, end] of [
        [1, 3],
        [2, 3],
      ]) {
        const oracle = GptSpan.fromParameters(oracleBackend, CONFIG, params, start, end).session(16)
        const remote = await openSpanSession(target(), { model: MODEL, start, end, maxLength: 16 })
        const local = await host.openLocalSession({ model: MODEL, start, end, maxLength: 16 })
        expect([remote.width, remote.maxLength, local.width, local.maxLength]).toEqual([32, 16, 32, 16])
        // a prefill, appends, a new prefill at 0 and appends again
        const steps: Array<[number, number]> = [
          [0, 5],
          [5, 1],
          [6, 3],
          [0, 2],
          [2, 1],
        ]
        for (const [i, [offset, rows]] of steps.entries()) {
          const input = rowsOf(rows, i + start * 10)
          const expected = await oracle.forward(input, rows, offset)
          const fromRemote = await remote.step(offset, rows, input)
          const fromLocal = await local.step(offset, rows, input)
          expect(Buffer.from(fromRemote.hidden.buffer)).toEqual(Buffer.from(expected.buffer))
          expect(Buffer.from(fromLocal.hidden.buffer)).toEqual(Buffer.from(expected.buffer))
          expect(fromRemote.computeMs).toBeGreaterThanOrEqual(0)
          expect(remote.length).toBe(offset + rows)
        }
        expect(host.counters().sessionsOpen).toBe(2)
        expect(host.counters().cacheBytes).toBeGreaterThan(0)
        await remote.close()
        await local.close()
        oracle.dispose()
        await idle(host)
      }
      expect(host.counters().steps).toBe(20)
      expect(host.counters().sessionsEnded.closed).toBe(4)
    } finally {
      await host.stop()
    }
  })

  it('answers each bad input with its one code; the session goes on; the cache is freed', async () => {
    const host = await startHost(1, 3)
    try {
      const open = (o: Partial<SpanOpenRequest>) =>
        codeOf(openSpanSession(target(), { model: MODEL, start: 1, end: 3, maxLength: 16, ...o }))
      // a span request outside the model, or outside what this server serves; an unknown model
      expect(await open({ start: 2, end: 5 })).toBe('outside-model')
      expect(await open({ start: 0, end: 2 })).toBe('outside-model')
      expect(await open({ model: 'bafkreinotservedhere' })).toBe('unknown-model')
      // a prompt past the context
      expect(await open({ maxLength: 65 })).toBe('past-context')
      expect(await codeOf(host.openLocalSession({ model: MODEL, start: 1, end: 3, maxLength: 65 }))).toBe(
        'past-context',
      )
      await idle(host)

      const session = await openSpanSession(target(), { model: MODEL, start: 1, end: 3, maxLength: 8 })
      // the client refuses what it cannot send, as the server would
      expect(await codeOf(session.step(0, 9, rowsOf(9, 1)))).toBe('past-context')
      // activations of the wrong shape, answered by the server
      expect(await codeOf(session.step(0, 2, rowsOf(1, 1)))).toBe('bad-shape')
      expect(await codeOf(session.step(0, 1, rowsOf(1, 1).subarray(1)))).toBe('bad-shape')
      expect(await codeOf(session.step(3, 1, rowsOf(1, 1)))).toBe('bad-offset')
      expect(session.closed).toBe(false)
      const good = await session.step(0, 6, rowsOf(6, 2))
      expect(good.hidden.length).toBe(6 * 32)
      // positions past the session's max_length
      expect(await codeOf(session.step(6, 3, rowsOf(3, 3)))).toBe('past-context')
      await session.step(6, 2, rowsOf(2, 3))
      await session.close()
      await idle(host)

      // a hostile client's frames: a step without a session, another session's id, garbage, a
      // past-context step the client API would not send, a second open
      const first = await rawStream()
      const step = (session: number, offset: number, rows: number, hidden: Float32Array) =>
        encodeSpanRequest({ type: 'step', step: { session, offset, rows, hidden: hiddenToBytes(hidden) } })
      expect(errorCode(await exchange(first.lp, step(1, 0, 1, rowsOf(1, 1))))).toBe('unknown-session')
      first.stream.abort(new Error('done'))
      const raw = await rawStream()
      const opened = await exchange(
        raw.lp,
        encodeSpanRequest({ type: 'open', open: { model: MODEL, start: 1, end: 3, maxLength: 4 } }),
      )
      if (opened.type !== 'opened') throw new Error(`expected opened, got ${opened.type}`)
      const id = opened.opened.session
      expect(errorCode(await exchange(raw.lp, step(id + 1, 0, 1, rowsOf(1, 1))))).toBe('unknown-session')
      expect(errorCode(await exchange(raw.lp, Uint8Array.of(0xff, 0xff, 0xff)))).toBe('malformed')
      expect(errorCode(await exchange(raw.lp, step(id, 0, 3, rowsOf(3, 1))))).toBe('hidden')
      expect(errorCode(await exchange(raw.lp, step(id, 3, 2, rowsOf(2, 1))))).toBe('past-context')
      expect(errorCode(await exchange(raw.lp, step(id, 0, 2, rowsOf(3, 1))))).toBe('bad-shape')
      expect(errorCode(await exchange(raw.lp, step(id, 2, 1, rowsOf(1, 1))))).toBe('bad-offset')
      expect(
        errorCode(
          await exchange(
            raw.lp,
            encodeSpanRequest({ type: 'open', open: { model: MODEL, start: 1, end: 3, maxLength: 4 } }),
          ),
        ),
      ).toBe('malformed')
      expect(errorCode(await exchange(raw.lp, step(id, 0, 1, rowsOf(1, 1))))).toBe('hidden')
      // a frame over the session's limit ends the session with bad-shape
      const oversized = new Uint8Array(spanStepFrameBytesMax(32, 4) + 1)
      expect(errorCode(await exchange(raw.lp, oversized))).toBe('bad-shape')
      await idle(host)
      const refused = host.counters().refused
      expect(refused).toMatchObject({
        'outside-model': 2,
        'unknown-model': 1,
        'unknown-session': 2,
        malformed: 2,
      })
      expect(refused['past-context']).toBeGreaterThanOrEqual(3)
      expect(refused['bad-shape']).toBeGreaterThanOrEqual(4)
      expect(refused['bad-offset']).toBe(2)
      // the node still serves
      const after = await openSpanSession(target(), { model: MODEL, start: 1, end: 3, maxLength: 4 })
      await after.step(0, 1, rowsOf(1, 1))
      await after.close()
      await idle(host)
    } finally {
      await host.stop()
    }
  })

  it('refuses politely with busy past its sessions, cache bytes and per-peer sessions', async () => {
    // two 16-position sessions of 2 blocks and a 1-position one fit in the cache budget, no more
    const cacheBytes = 2 * 16 * 32 * 2 * 4
    const host = await startHost(1, 3, { limits: { sessionsMax: 3, cacheBytesMax: 2 * cacheBytes + 512 } })
    try {
      const a = await openSpanSession(target(), { model: MODEL, start: 1, end: 3, maxLength: 16 })
      const b = await host.openLocalSession({ model: MODEL, start: 1, end: 3, maxLength: 16 })
      expect(host.counters().cacheBytes).toBe(2 * cacheBytes)
      expect(await codeOf(openSpanSession(target(), { model: MODEL, start: 1, end: 3, maxLength: 16 }))).toBe(
        'busy',
      )
      const small = await openSpanSession(target(), { model: MODEL, start: 1, end: 3, maxLength: 1 })
      expect(await codeOf(host.openLocalSession({ model: MODEL, start: 1, end: 3, maxLength: 1 }))).toBe(
        'busy',
      )
      expect(host.counters().refused.busy).toBe(2)
      // the open sessions are unharmed
      await a.step(0, 2, rowsOf(2, 1))
      await b.step(0, 2, rowsOf(2, 1))
      for (const s of [a, b, small]) await s.close()
      await idle(host)
    } finally {
      await host.stop()
    }
    const perPeer = await startHost(1, 3, { limits: { sessionsPerPeerMax: 1 } })
    try {
      const a = await openSpanSession(target(), { model: MODEL, start: 1, end: 3, maxLength: 4 })
      expect(await codeOf(openSpanSession(target(), { model: MODEL, start: 1, end: 3, maxLength: 4 }))).toBe(
        'busy',
      )
      await a.close()
      await idle(perPeer)
      const again = await openSpanSession(target(), { model: MODEL, start: 1, end: 3, maxLength: 4 })
      await again.close()
      await idle(perPeer)
    } finally {
      await perPeer.stop()
    }
  })

  it('answers an open that comes too late or is too large, and frees the stream', async () => {
    const host = await startHost(1, 3, { limits: { openTimeoutMs: 300 } })
    try {
      const silent = await rawStream()
      const late = decodeSpanResponse(await silent.lp.read({ signal: AbortSignal.timeout(10_000) }))
      expect(errorCode(late)).toBe('timeout')
      const large = await rawStream()
      expect(errorCode(await exchange(large.lp, new Uint8Array(SPAN_CONTROL_FRAME_BYTES_MAX + 1)))).toBe(
        'malformed',
      )
      await idle(host)
      expect(host.counters().refused).toMatchObject({ timeout: 1, malformed: 1 })
      expect(host.counters().sessionsOpened).toBe(0)
    } finally {
      await host.stop()
    }
  })

  it('frees the cache of an idle session, a killed stream and a peer that hangs up', async () => {
    const host = await startHost(0, 4, { limits: { idleTimeoutMs: 400 } })
    try {
      const remote = await openSpanSession(target(), { model: MODEL, start: 0, end: 4, maxLength: 8 })
      const local = await host.openLocalSession({ model: MODEL, start: 0, end: 4, maxLength: 8 })
      await remote.step(0, 2, rowsOf(2, 1))
      await local.step(0, 2, rowsOf(2, 1))
      await idle(host)
      expect(host.counters().sessionsEnded.timeout).toBe(2)
      expect(await codeOf(remote.step(2, 1, rowsOf(1, 1)))).toBe('timeout')
      expect(remote.closed).toBe(true)
      expect(await codeOf(local.step(2, 1, rowsOf(1, 1)))).toBe('SpanStreamClosedError')

      // a stream the client kills mid-session
      const stream = await clientNode.dialProtocol(serverNode.peerId, SPAN_PROTOCOL)
      const killed = await openSpanSession(stream, { model: MODEL, start: 0, end: 4, maxLength: 8 })
      await killed.step(0, 3, rowsOf(3, 1))
      expect(host.counters().sessionsOpen).toBe(1)
      stream.abort(new Error('killed'))
      await idle(host)

      // a client that hangs up its connection
      const other = await createNode()
      await other.start()
      try {
        await other.dial(serverNode.getMultiaddrs()[0])
        const gone = await openSpanSession(
          { dialer: other, peer: serverNode.peerId },
          {
            model: MODEL,
            start: 0,
            end: 4,
            maxLength: 8,
          },
        )
        await gone.step(0, 1, rowsOf(1, 1))
        expect(host.counters().sessionsOpen).toBe(1)
      } finally {
        await other.stop()
      }
      await idle(host)
      expect(host.counters().sessionsEnded.stream).toBe(2)
    } finally {
      await host.stop()
    }
  })

  it('ends sessions with a clear code on unload and stop', async () => {
    const host = await startHost(1, 3)
    const remote = await openSpanSession(target(), { model: MODEL, start: 1, end: 3, maxLength: 8 })
    const sub = await openSpanSession(target(), { model: MODEL, start: 2, end: 3, maxLength: 8 })
    await remote.step(0, 1, rowsOf(1, 1))
    await sub.step(0, 1, rowsOf(1, 1))
    expect(await host.unload(MODEL)).toBe(true)
    expect(host.spans()).toEqual([])
    await idle(host)
    expect(await codeOf(remote.step(1, 1, rowsOf(1, 1)))).toBe('unknown-model')
    expect(await codeOf(sub.step(1, 1, rowsOf(1, 1)))).toBe('unknown-model')

    await host.load({ model: MODEL, directory: dir, start: 1, end: 3 })
    const again = await openSpanSession(target(), { model: MODEL, start: 1, end: 3, maxLength: 8 })
    await again.step(0, 1, rowsOf(1, 1))
    await host.stop()
    await idle(host)
    expect(await codeOf(again.step(1, 1, rowsOf(1, 1)))).toBe('busy')
    expect(await codeOf(openSpanSession(target(), { model: MODEL, start: 1, end: 3, maxLength: 8 }))).toBe(
      'SpanStreamClosedError',
    )
  })
})

describe('the span client', () => {
  it('rejects a stalled server with SpanStalledError quickly, and the server frees the session', async () => {
    let stall = false
    const host = await startHost(1, 3, {
      transformOutput: async (output) => {
        if (stall) await new Promise((resolve) => setTimeout(resolve, 1_500))
        return output
      },
    })
    try {
      const session = await openSpanSession(
        target(),
        { model: MODEL, start: 1, end: 3, maxLength: 8 },
        { stepTimeoutMs: 300 },
      )
      await session.step(0, 1, rowsOf(1, 1))
      stall = true
      const started = Date.now()
      await expect(session.step(1, 1, rowsOf(1, 1))).rejects.toBeInstanceOf(SpanStalledError)
      expect(Date.now() - started).toBeLessThan(1_000)
      await expect(session.step(1, 1, rowsOf(1, 1))).rejects.toBeInstanceOf(SpanStreamClosedError)
      await idle(host)
    } finally {
      await host.stop()
    }
  })

  it('tells a broken or lying server apart: closed streams and answers that break the protocol', async () => {
    const lies: Array<(lp: BoundedLpStream, stream: Stream) => Promise<void>> = []
    await serverNode.handle(SPAN_PROTOCOL, async (stream) => {
      const lp = boundedLpStream(stream, 1 << 20)
      await lp.read()
      const behave = lies.shift()!
      await behave(lp, stream)
    })
    const opened = (maxLength = 8): SpanResponseFrame => ({
      type: 'opened',
      opened: { session: 7, width: 32, maxLength, idleTimeoutMs: 1000 },
    })
    const answer = (lp: BoundedLpStream, frame: SpanResponseFrame) => lp.write(encodeSpanResponse(frame))
    const open = { model: MODEL, start: 1, end: 3, maxLength: 8 }
    try {
      // resets the stream after the open
      lies.push(async (lp, stream) => {
        await answer(lp, opened())
        await lp.read()
        stream.abort(new Error('gone'))
      })
      const a = await openSpanSession(target(), open)
      await expect(a.step(0, 1, rowsOf(1, 1))).rejects.toBeInstanceOf(SpanStreamClosedError)
      // answers for another session, then with the wrong number of bytes, then garbage
      for (const hidden of [
        { session: 8, offset: 0, rows: 1, hidden: hiddenToBytes(rowsOf(1, 1)), computeMs: 1 },
        { session: 7, offset: 0, rows: 1, hidden: hiddenToBytes(rowsOf(2, 1)), computeMs: 1 },
      ]) {
        lies.push(async (lp) => {
          await answer(lp, opened())
          await lp.read()
          await answer(lp, { type: 'hidden', hidden })
        })
        const s = await openSpanSession(target(), open)
        await expect(s.step(0, 1, rowsOf(1, 1))).rejects.toBeInstanceOf(SpanMalformedResponseError)
        expect(s.closed).toBe(true)
      }
      lies.push(async (lp) => {
        await answer(lp, opened())
        await lp.read()
        await lp.write(Uint8Array.of(1, 2, 3))
      })
      const g = await openSpanSession(target(), open)
      await expect(g.step(0, 1, rowsOf(1, 1))).rejects.toBeInstanceOf(SpanMalformedResponseError)
      // opens fewer positions than asked
      lies.push(async (lp) => answer(lp, opened(4)))
      await expect(openSpanSession(target(), open)).rejects.toBeInstanceOf(SpanMalformedResponseError)
      // a peer that does not speak the protocol at all
      await serverNode.unhandle(SPAN_PROTOCOL)
      await expect(openSpanSession(target(), open)).rejects.toBeInstanceOf(SpanStreamClosedError)
    } finally {
      await serverNode.unhandle(SPAN_PROTOCOL).catch(() => {})
    }
  })
})
