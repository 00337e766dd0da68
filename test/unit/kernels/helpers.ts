// Shared helpers for the kernel tests: seeded inputs, the tolerance check that prints the first
// mismatches, and the list of backends every op suite runs against.
import { expect } from 'vitest'
import type { Backend } from '../../../kernels/backend.js'
import { createBackend } from '../../../kernels/index.js'

export { randomArray, seededRandom } from './random.js'

export interface Tolerance {
  atol: number
  rtol: number
}

/**
 * Asserts |ref - got| <= atol + rtol*|ref| elementwise (NaN must match NaN); on failure the
 * message lists the first mismatches with their indices.
 */
export function expectClose(
  label: string,
  reference: ArrayLike<number>,
  got: ArrayLike<number>,
  { atol, rtol }: Tolerance,
): void {
  expect(got.length, `${label}: length`).toBe(reference.length)
  const mismatches: string[] = []
  let count = 0
  let worst = 0
  for (let i = 0; i < reference.length; i++) {
    const r = reference[i]
    const g = got[i]
    const bothNaN = Number.isNaN(r) && Number.isNaN(g)
    const error = Math.abs(r - g)
    const ok = bothNaN || error <= atol + rtol * Math.abs(r)
    if (!bothNaN && Number.isFinite(error)) worst = Math.max(worst, error)
    if (!ok) {
      count++
      if (mismatches.length < 8) mismatches.push(`  [${i}] ref=${r} got=${g} |diff|=${error}`)
    }
  }
  if (count > 0) {
    throw new Error(
      `${label}: ${count} of ${reference.length} elements outside atol=${atol} rtol=${rtol} ` +
        `(largest |diff| ${worst}); first mismatches:\n${mismatches.join('\n')}`,
    )
  }
}

/** a backend and, for cpu, its engine (kernels/cpu/engine.ts) */
export type BackendName = 'cpu-native' | 'cpu-wasm' | 'cpu-reference' | 'webgpu'
/** every op suite runs against each: CI builds the native engine and installs lavapipe */
export const BACKENDS: readonly BackendName[] = ['cpu-native', 'cpu-wasm', 'cpu-reference', 'webgpu']

/** the named backend; one that is not available here fails the test instead of falling back */
export async function openBackend(name: BackendName): Promise<Backend> {
  if (name === 'webgpu') {
    const backend = await createBackend({ prefer: 'webgpu' })
    if (backend.kind !== 'webgpu')
      throw new Error(
        `expected the webgpu backend, got ${backend.kind}: ${backend.info.fallbackReason ?? ''}`,
      )
    return backend
  }
  const engine = name === 'cpu-native' ? 'native' : name === 'cpu-wasm' ? 'wasm' : 'reference'
  return createBackend({ prefer: 'cpu', cpuEngine: engine })
}
