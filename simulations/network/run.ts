// The service behind `shardnet sim`: prints the seed and every derived parameter, runs the
// simulation, writes the report, and optionally cross-checks the gossip and DHT models against
// real libp2p nodes. It knows nothing of flags or terminals; the CLI passes callbacks.

import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import {
  type ChainSimulationOptions,
  chainReportJson,
  deriveChainParameters,
  describeChainParameters,
  describeChainResult,
  simulateChains,
} from './chains.js'
import { deriveParameters, describeParameters, type NetworkSimulationOptions } from './parameters.js'
import { type CrossCheckResult, crossCheckWithRealNodes } from './real.js'
import { buildReport, replayCommand, writeReport } from './report.js'
import { simulateNetwork } from './simulator.js'

export interface NetworkRunHooks {
  reportDirectory?: string
  /** Real libp2p nodes to cross-check the models with. */
  realNodes?: number
  log: (line: string) => void
  onStart?: () => void
  onProgress?: (share: number) => void
  onSimulated?: () => void
}

export interface NetworkRunOutcome {
  json: Record<string, unknown>
  violation?: { checker: string; message: string; trace: string[] }
  replay: string
  crossCheck?: CrossCheckResult
  crossCheckFailed: boolean
  wallMs: number
}

export async function runNetworkSimulation(
  options: NetworkSimulationOptions,
  hooks: NetworkRunHooks,
): Promise<NetworkRunOutcome> {
  const parameters = deriveParameters(options)
  hooks.log(`seed=${options.seed}`)
  for (const line of describeParameters(parameters)) hooks.log(`  ${line}`)
  hooks.onStart?.()
  const started = performance.now()
  const data = simulateNetwork(options, { onProgress: hooks.onProgress })
  const wallMs = performance.now() - started
  hooks.onSimulated?.()
  const report = buildReport(data)
  for (const line of report.summary) hooks.log(line)
  hooks.log(
    `wall time ${(wallMs / 1000).toFixed(1)} s, ${Math.round(data.events / (wallMs / 1000))} events/s, ` +
      `peak RSS ${Math.round(process.memoryUsage().rss / 2 ** 20)} MiB`,
  )
  const replay = replayCommand(parameters)
  if (data.violation) {
    hooks.log(`SAFETY VIOLATION seed=${options.seed} ${data.violation.checker}: ${data.violation.message}`)
    hooks.log('  the group’s last events:')
    for (const line of data.violation.trace) hooks.log(`    ${line}`)
    hooks.log(`  replay: ${replay}`)
  }
  let crossCheck: CrossCheckResult | undefined
  if (hooks.realNodes) {
    hooks.log(`cross-check: starting ${hooks.realNodes} real libp2p nodes over the memory transport`)
    crossCheck = await crossCheckWithRealNodes({ nodes: hooks.realNodes, seed: options.seed, log: hooks.log })
    for (const line of crossCheck.lines) hooks.log(line)
    report.json.crossCheck = crossCheck.json
  }
  if (hooks.reportDirectory) {
    const files = writeReport(hooks.reportDirectory, report)
    hooks.log(`report: ${files.join(', ')}`)
  }
  return {
    json: report.json,
    violation: data.violation,
    replay,
    crossCheck,
    crossCheckFailed: crossCheck !== undefined && !crossCheck.agrees,
    wallMs,
  }
}

export interface ChainRunHooks {
  /** Write chains.json here. */
  reportDirectory?: string
  log: (line: string) => void
}

/**
 * `shardnet sim chains`: prints the seed and every derived parameter, runs the chain simulation
 * (chains.ts), prints the summary and writes chains.json (the same bytes for the same seed).
 */
export function runChainSimulation(
  options: ChainSimulationOptions,
  hooks: ChainRunHooks,
): { json: Record<string, unknown>; wallMs: number } {
  const parameters = deriveChainParameters(options)
  hooks.log(`seed=${options.seed}`)
  for (const line of describeChainParameters(parameters)) hooks.log(`  ${line}`)
  const started = performance.now()
  const result = simulateChains(options)
  const wallMs = performance.now() - started
  for (const line of describeChainResult(result)) hooks.log(line)
  hooks.log(
    `wall time ${(wallMs / 1000).toFixed(1)} s, ${Math.round(result.events / (wallMs / 1000))} events/s`,
  )
  const json = chainReportJson(result)
  if (hooks.reportDirectory) {
    mkdirSync(hooks.reportDirectory, { recursive: true })
    const path = join(hooks.reportDirectory, 'chains.json')
    writeFileSync(path, `${JSON.stringify(json, null, 2)}\n`)
    hooks.log(`report: ${path}`)
  }
  return { json, wallMs }
}
