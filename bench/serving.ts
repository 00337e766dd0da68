// Serving benchmark (#18): generation through chains of span servers on real in-process daemons on
// loopback, side by side with local generation of the same model on the same engine in one run.
//   1. tokens/s and time to first byte through chains of 1, 2 and 3 spans, against local generation,
//      with no added delay and with a modelled round trip per hop (each server answers every step
//      --delay-ms late: loopback has no latency of its own and this machine's kernel has no netem);
//      every chain's text is checked equal to the local text (sampling happens at the client)
//   2. the cost of verification at R = 0.1 and 1.0 against R = 0, with two servers per span
//   3. the time to recover from a server killed mid-generation (the largest gap between two bytes
//      around the kill, less the median gap), and that the text is unchanged
// Prints figures, never passes or fails. Run: npx tsx bench/serving.ts [--tokens N] [--delay-ms D]
import '../node/polyfill.js'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { createBackend } from '../kernels/index.js'
import {
  GPT_PRESETS,
  Gpt,
  type GptConfig,
  generateBytes,
  initializeGpt,
} from '../kernels/models/gpt/index.js'
import type { Daemon } from '../node/daemon.js'
import { loadGpt, saveGptModel } from '../node/executor/model-files.js'
import type { NetworkGenerateRequest, NetworkGenerateResult } from '../node/serving/api.js'
import { modelIdOfDirectory } from '../node/serving/model-package.js'
import { startTestDaemon, waitUntil } from '../test/integration/daemon-helpers.js'
import { gptManifest } from '../test/unit/models/gpt-fixtures.js'

const { values: flags } = parseArgs({
  options: {
    tokens: { type: 'string', default: '200' },
    'delay-ms': { type: 'string', default: '5' },
  },
})
const TOKENS = Number(flags.tokens)
const DELAY_MS = Number(flags['delay-ms'])
const CONFIG: GptConfig = { ...GPT_PRESETS.tiny }
const PROMPT = new TextEncoder().encode('The kernel documentation describes ')
const SAMPLING = { temperature: 0.8, topK: 0, topP: 1, seed: 3 }

/** the added delay every server applies to each step, changed between runs */
let delayMs = 0

interface Timed {
  text: string
  tokensPerSecond: number
  firstMs: number
  /** ms between consecutive bytes */
  gaps: number[]
  result?: NetworkGenerateResult
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor(sorted.length / 2)] ?? 0
}

/** tokens/s over the bytes after the first (the first carries the prompt's prefill) */
function timed(times: number[], start: number, bytes: number[], result?: NetworkGenerateResult): Timed {
  const gaps = times.slice(1).map((t, i) => t - times[i])
  const decodeSeconds = (times[times.length - 1] - times[0]) / 1000
  return {
    text: Buffer.from(bytes).toString('latin1'),
    tokensPerSecond: (times.length - 1) / decodeSeconds,
    firstMs: times[0] - start,
    gaps,
    result,
  }
}

async function generateLocal(directory: string): Promise<Timed> {
  const backend = await createBackend({ prefer: 'cpu', cpuEngine: 'native' })
  const { config, params } = await loadGpt(directory)
  const gpt = Gpt.create(backend, config, params)
  const run = async () => {
    const times: number[] = []
    const bytes: number[] = []
    const start = performance.now()
    for await (const byte of generateBytes(backend, gpt, PROMPT, { tokens: TOKENS, ...SAMPLING })) {
      times.push(performance.now())
      bytes.push(byte)
    }
    return timed(times, start, bytes)
  }
  await run()
  const best = await run()
  gpt.dispose()
  backend.destroy()
  return best
}

async function generateNetwork(
  client: Daemon,
  model: string,
  extra: Partial<NetworkGenerateRequest> = {},
  onByte?: (count: number) => void,
): Promise<Timed> {
  const times: number[] = []
  const bytes: number[] = []
  const start = performance.now()
  const generation = client.serving.generate({
    model,
    prompt: PROMPT,
    maxTokens: TOKENS,
    stop: [],
    verify: 0,
    ...SAMPLING,
    ...extra,
  })
  for await (const chunk of generation) {
    for (const byte of chunk) {
      times.push(performance.now())
      bytes.push(byte)
      onByte?.(bytes.length)
    }
  }
  return timed(times, start, bytes, await generation.result)
}

/** A client daemon and one server daemon per span, each serving its blocks of the model. */
async function startNetwork(directory: string, spans: string[]): Promise<Daemon[]> {
  const spanHost = {
    measureSteps: 4,
    transformOutput: async (output: Float32Array) => {
      if (delayMs > 0) await new Promise((resolve) => setTimeout(resolve, delayMs))
      return output
    },
  }
  const client = await startTestDaemon({ spanHost })
  const bootstrap = client.addresses()
  const servers: Daemon[] = []
  for (const blocks of spans) {
    const daemon = await startTestDaemon({ overrides: { bootstrap }, spanHost })
    await daemon.served.serve({ model: directory, blocks })
    servers.push(daemon)
  }
  const model = await modelIdOfDirectory(directory)
  await waitUntil(
    async () => {
      let found = 0
      for await (const server of client.host.services.discovery.findServers(model, {
        signal: AbortSignal.timeout(5_000),
      }))
        found += server.spans.length
      return found >= spans.length
    },
    'the client to find every span server',
    60_000,
    250,
  )
  return [client, ...servers]
}

async function stopAll(daemons: Daemon[]): Promise<void> {
  await Promise.allSettled(daemons.map((daemon) => daemon.stop()))
}

const f = (value: number, digits = 1) => value.toFixed(digits)

async function main(): Promise<void> {
  process.env.XDG_RUNTIME_DIR ??= '/tmp/shardnet-xdg'
  const root = await mkdtemp(join(tmpdir(), 'shardnet-bench-serving-'))
  const directory = join(root, 'model')
  await saveGptModel(directory, CONFIG, initializeGpt(CONFIG, 5), gptManifest(5))
  const model = await modelIdOfDirectory(directory)
  const { layers, width, heads, context } = CONFIG
  console.log(`model gpt tiny (${layers} layers, width ${width}, ${heads} heads, context ${context})`)
  console.log(`${TOKENS} bytes after a ${PROMPT.length}-byte prompt, temperature 0.8, cpu native engine`)
  console.log(`every daemon in this process on loopback; modelled round trip per hop: ${DELAY_MS} ms\n`)

  const local = await generateLocal(directory)
  console.log(
    `local                 ${f(local.tokensPerSecond).padStart(7)} tok/s   first byte ${f(local.firstMs)} ms`,
  )

  // 1. chains of 1, 2 and 3 spans
  const chains: Array<[string, string[]]> = [
    ['1 span ', ['0-3']],
    ['2 spans', ['0-1', '2-3']],
    ['3 spans', ['0-0', '1-2', '3-3']],
  ]
  for (const [name, spans] of chains) {
    const daemons = await startNetwork(directory, spans)
    try {
      for (const delay of [0, DELAY_MS]) {
        delayMs = delay
        await generateNetwork(daemons[0], model) // warm-up: the ends, the route, the sessions
        const run = await generateNetwork(daemons[0], model)
        const hops = run.result?.chain.length ?? 0
        console.log(
          `chain ${name} +${String(delay).padStart(2)} ms ${f(run.tokensPerSecond).padStart(7)} tok/s` +
            `   first byte ${f(run.firstMs)} ms   ${f(run.tokensPerSecond / local.tokensPerSecond, 2)}x` +
            ` local   ${hops} hops   text ${run.text === local.text ? 'same as local' : 'DIFFERS'}`,
        )
      }
    } finally {
      delayMs = 0
      await stopAll(daemons)
    }
  }

  // 2 and 3: two servers for each span
  const daemons = await startNetwork(directory, ['0-1', '0-1', '2-3', '2-3'])
  try {
    console.log('')
    for (const delay of [0, DELAY_MS]) {
      delayMs = delay
      await generateNetwork(daemons[0], model)
      const base = await generateNetwork(daemons[0], model)
      for (const verify of [0.1, 1]) {
        const run = await generateNetwork(daemons[0], model, { verify })
        console.log(
          `verify ${verify.toFixed(1)} +${String(delay).padStart(2)} ms ` +
            `${f(run.tokensPerSecond).padStart(7)}` +
            ` tok/s   ${f(run.tokensPerSecond / base.tokensPerSecond, 2)}x of verify 0` +
            ` (${f(base.tokensPerSecond)})   ${run.result?.verifiedSteps} steps checked` +
            `   text ${run.text === local.text ? 'same' : 'DIFFERS'}`,
        )
      }
    }
    delayMs = 0
    // 3. a server of the chain killed after a third of the bytes
    const servers = daemons.slice(1)
    let killedAt = 0
    let killed: Promise<void> | undefined
    const run = await generateNetwork(daemons[0], model, {}, (count) => {
      if (count !== Math.floor(TOKENS / 3) || killed !== undefined) return
      const busy = servers.find(
        (daemon) => daemon.spans.counters().sessionsOpen > 0 && daemon.spans.spans()[0]?.start === 2,
      )
      if (busy === undefined) return
      killedAt = count
      killed = busy.stop()
    })
    await killed
    const after = run.gaps.slice(killedAt - 1, killedAt + 3)
    const recoveryMs = Math.max(...after) - median(run.gaps)
    console.log(
      `\nkilled the server of blocks 2-3 after byte ${killedAt}: recovered in ${f(recoveryMs)} ms ` +
        `(largest gap after the kill less the median gap ${f(median(run.gaps), 2)} ms), ` +
        `${run.result?.failovers} failover(s), text ${run.text === local.text ? 'same as local' : 'DIFFERS'}`,
    )
  } finally {
    await stopAll(daemons)
    await rm(root, { recursive: true, force: true })
  }
}

await main()
process.exit(0)
