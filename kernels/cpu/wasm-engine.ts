// Placeholder until the wasm engine lands: reports itself unavailable.
import type { CpuEngine } from './engine.js'

export type EngineLoad = { engine: CpuEngine } | { error: string }

export async function loadWasmEngine(): Promise<EngineLoad> {
  return { error: 'not built' }
}
