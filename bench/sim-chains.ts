// Inference chains in the network simulator (simulations/network/chains.ts): for each model, a
// 1,000-server swarm and a small one (each block held about 3 times over), at several churn rates,
// the share of generation sessions that complete, their decode tokens/s (p10, p50, p90 over the
// sessions of every seed), time to first token and failovers per session; then Petals' published
// figures beside the comparable rows. Simulated time only: the figures are the model's, not a
// measurement of this machine (the wall time printed is).
//   npx tsx bench/sim-chains.ts                         # every model, 3 seeds, 1 h of sessions each
//   npx tsx bench/sim-chains.ts --models bloom-176b --seeds 1 --churn 0,2
import { parseArgs } from 'node:util'
import { type ChainSessionRecord, quantilesOf, simulateChains } from '../simulations/network/chains.js'
import {
  CHAIN_MODEL_NAMES,
  CHAIN_MODELS,
  type ChainModelName,
  serversForCoverage,
} from '../simulations/network/chains-model.js'
import { flagReaders } from './flags.js'

const USAGE =
  'usage: npx tsx bench/sim-chains.ts [--models a,b] [--seeds N] [--churn r1,r2,...] [--servers N] ' +
  '[--coverage C] [--sessions-per-1000 N] [--prompt N] [--tokens N] [--hours H] [--value-bytes 4|2]'

const { values } = parseArgs({
  options: {
    models: { type: 'string', default: CHAIN_MODEL_NAMES.join(',') },
    seeds: { type: 'string', default: '3' },
    churn: { type: 'string', default: '0,0.5,2,8' },
    servers: { type: 'string', default: '1000' },
    coverage: { type: 'string', default: '3' },
    'sessions-per-1000': { type: 'string', default: '1200' },
    prompt: { type: 'string', default: '32' },
    tokens: { type: 'string', default: '128' },
    hours: { type: 'string', default: '1' },
    'value-bytes': { type: 'string', default: '4' },
    help: { type: 'boolean' },
  },
})
const flags = flagReaders<Exclude<keyof typeof values, 'help'>>(values, USAGE)
const models = (values.models ?? '').split(',').map((name) => {
  if (!(CHAIN_MODEL_NAMES as string[]).includes(name)) flags.fail(`unknown model ${name}`)
  return name as ChainModelName
})
const seeds = flags.integer('seeds', 1)
const churnRates = (values.churn ?? '').split(',').map((text) => {
  const rate = Number(text)
  if (!Number.isFinite(rate) || rate < 0) flags.fail(`--churn: ${text} is not a rate >= 0`)
  return rate
})
const largeSwarm = flags.integer('servers', 1)
const coverage = flags.number('coverage', 0, true)
const sessionsPer1000 = flags.number('sessions-per-1000', 0, true)
const promptTokens = flags.integer('prompt', 1)
const newTokens = flags.integer('tokens', 2)
const durationMs = flags.number('hours', 0, true) * 3_600_000
const hiddenValueBytes = flags.integer('value-bytes', 2)
if (hiddenValueBytes !== 2 && hiddenValueBytes !== 4) flags.fail('--value-bytes must be 4 (float32) or 2')

/**
 * Petals' published figures (single-batch generation, one client, over the Internet):
 * - BLOOM-176B "with ≈ 1 step per second" on consumer GPUs (Borzunov et al., "Petals: Collaborative
 *   Inference and Fine-tuning of Large Models", ACL 2023 demo, arXiv:2209.01188, abstract, as on
 *   https://paperswithcode.com/paper/petals-collaborative-inference-and-fine); its real-world setup
 *   was 14 servers with consumer GPUs across Europe and North America (the authors' comment on the
 *   paper's table, r/MachineLearning, December 2022).
 * - The Petals README (2023): "Single-batch inference runs at up to 6 steps/sec for LLaMA 2 (70B)",
 *   earlier "5-6 steps/sec for LLaMA-65B and ≈ 1 step/sec for BLOOM" (quoted in
 *   https://coreintelligence.com.au/bittorrent-for-llms-getting-multiple-gpus-to-serve-one-llm/ and
 *   https://feddit.site/comment/26226).
 */
const PETALS: Partial<Record<ChainModelName, { stepsPerSecond: number; note: string }>> = {
  'bloom-176b': { stepsPerSecond: 1, note: '≈1 step/s (Petals paper, consumer GPUs over the Internet)' },
  'llama-2-70b': { stepsPerSecond: 6, note: 'up to 6 steps/s (Petals README, Llama 2 70B)' },
}

interface Row {
  model: ChainModelName
  servers: number
  churn: number
  sessions: number
  completedShare: number
  failedAtStart: number
  failedMidway: number
  tokensPerSecond: ReturnType<typeof quantilesOf>
  ttftMs: ReturnType<typeof quantilesOf>
  failoversPerSession: number
  hopsP50: number
}

function run(model: ChainModelName, servers: number, churn: number): Row {
  const records: ChainSessionRecord[] = []
  let failedAtStart = 0
  let failedMidway = 0
  const hops: number[] = []
  for (let seed = 1; seed <= seeds; seed++) {
    const result = simulateChains(
      {
        seed,
        model,
        servers,
        churnPerHour: churn,
        sessionsPerHour: Math.max(120, (sessionsPer1000 * servers) / 1000),
        promptTokens,
        newTokens,
        durationMs,
        hiddenValueBytes: hiddenValueBytes as 2 | 4,
      },
      { onSessionEnded: (record) => records.push(record) },
    )
    failedAtStart += result.sessions.failedAtStart
    failedMidway += result.sessions.failedMidway
    hops.push(result.chainHops.p50)
  }
  const completed = records.filter((r) => r.outcome === 'completed')
  return {
    model,
    servers,
    churn,
    sessions: records.length,
    completedShare: records.length === 0 ? 0 : completed.length / records.length,
    failedAtStart,
    failedMidway,
    tokensPerSecond: quantilesOf(completed.map((r) => r.tokensPerSecond)),
    ttftMs: quantilesOf(completed.map((r) => r.timeToFirstTokenMs)),
    failoversPerSession: records.reduce((sum, r) => sum + r.failovers, 0) / Math.max(1, records.length),
    hopsP50: quantilesOf(hops).p50,
  }
}

const started = performance.now()
const wire = hiddenValueBytes === 4 ? 'float32' : '16-bit'
console.log(
  `chain simulation: ${seeds} seed(s) each, ${durationMs / 3_600_000} h of sessions of ${promptTokens} ` +
    `prompt + ${newTokens} new tokens, ${wire} hidden states on the wire; tokens/s is each completed ` +
    `session's decode rate, pooled over the seeds`,
)
console.log(
  '| model | servers | churn/h | sessions | completed | failed (start/midway) | tokens/s p10 / p50 / p90 | ' +
    'first token p50 / p90 (s) | failovers/session | hops p50 |',
)
console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |')
const rows: Row[] = []
for (const model of models) {
  const small = serversForCoverage(CHAIN_MODELS[model], coverage)
  for (const servers of [largeSwarm, small]) {
    for (const churn of churnRates) {
      const row = run(model, servers, churn)
      rows.push(row)
      const t = row.tokensPerSecond
      const share = `${(row.completedShare * 100).toFixed(1)}%`
      const tokensPerSecond = [t.p10, t.p50, t.p90].map((v) => v.toFixed(2)).join(' / ')
      const firstToken = [row.ttftMs.p50, row.ttftMs.p90].map((v) => (v / 1000).toFixed(2)).join(' / ')
      console.log(
        `| ${model} | ${servers} | ${churn} | ${row.sessions} | ${share} | ${row.failedAtStart} / ` +
          `${row.failedMidway} | ${tokensPerSecond} | ${firstToken} | ` +
          `${row.failoversPerSession.toFixed(3)} | ${row.hopsP50} |`,
      )
    }
  }
}
console.log('\nagainst Petals’ published figures (tokens/s p50 of the simulation, no churn):')
for (const model of models) {
  const petals = PETALS[model]
  if (!petals) continue
  for (const row of rows.filter((r) => r.model === model && r.churn === Math.min(...churnRates))) {
    const ratio = row.tokensPerSecond.p50 / petals.stepsPerSecond
    console.log(
      `  ${model}, ${row.servers} servers: ${row.tokensPerSecond.p50.toFixed(2)} tokens/s, ` +
        `${ratio.toFixed(2)}x Petals' ${petals.note}`,
    )
  }
}
console.log(`wall time ${((performance.now() - started) / 1000).toFixed(1)} s`)
