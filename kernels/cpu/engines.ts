// Choosing a cpu engine (see engine.ts): the native addon where it loads, tfjs' WebAssembly matmul
// where it does not, the reference ops when asked for or when neither loads.
import { logger } from '@libp2p/logger'
import { loadNativeEngine } from '../native/loader.js'
import { type CpuEngine, type CpuEngineName, REFERENCE_ENGINE } from './engine.js'
import { loadWasmEngine } from './wasm-engine.js'

const log = logger('shardnet:kernels:cpu')

/** an engine that was asked for by name and cannot run here */
export class CpuEngineUnavailableError extends Error {
  static override name = 'CpuEngineUnavailableError'
  constructor(message: string) {
    super(message)
    this.name = 'CpuEngineUnavailableError'
  }
}

/**
 * The engine of that name, or without a name the fastest that loads synchronously: native, else
 * reference. The wasm engine initialises asynchronously: loadCpuEngine gives it.
 */
export function defaultCpuEngine(name?: CpuEngineName): CpuEngine {
  if (name === 'reference') return REFERENCE_ENGINE
  if (name === 'wasm')
    throw new CpuEngineUnavailableError('the wasm engine loads asynchronously: use loadCpuEngine')
  const native = loadNativeEngine()
  if ('engine' in native) return native.engine
  if (name === 'native')
    throw new CpuEngineUnavailableError(`the native cpu engine is unavailable: ${native.error}`)
  return REFERENCE_ENGINE
}

/** why the native engine did not load, or undefined when it did */
export function nativeEngineError(): string | undefined {
  const native = loadNativeEngine()
  return 'error' in native ? native.error : undefined
}

/**
 * The engine of that name, or without a name the fastest available: native, else wasm, else
 * reference. A named engine that cannot run throws CpuEngineUnavailableError.
 */
export async function loadCpuEngine(name?: CpuEngineName): Promise<CpuEngine> {
  if (name === 'wasm') {
    const wasm = await loadWasmEngine()
    if ('error' in wasm)
      throw new CpuEngineUnavailableError(`the wasm cpu engine is unavailable: ${wasm.error}`)
    return wasm.engine
  }
  if (name !== undefined) return defaultCpuEngine(name)
  const native = loadNativeEngine()
  if ('engine' in native) return native.engine
  log('native cpu engine unavailable (%s); trying wasm', native.error)
  const wasm = await loadWasmEngine()
  if ('engine' in wasm) return wasm.engine
  log('wasm cpu engine unavailable (%s); using the reference ops', wasm.error)
  return REFERENCE_ENGINE
}
