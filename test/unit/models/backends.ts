// Which backends the model tests run on, and how they get one: every test runs on the cpu backend
// and on webgpu (Dawn; lavapipe in CI). Asking for webgpu and getting the cpu fallback is a failure,
// not a silent pass on the wrong backend.
import { type Backend, type BackendKind, createBackend } from '../../../kernels/index.js'

export function backendKindsUnderTest(): BackendKind[] {
  return ['cpu', 'webgpu']
}

export async function createBackendUnderTest(kind: BackendKind): Promise<Backend> {
  const backend = await createBackend({ prefer: kind })
  if (backend.kind !== kind) {
    backend.destroy()
    throw new Error(`asked for the ${kind} backend and got ${backend.kind}: ${backend.info.fallbackReason}`)
  }
  return backend
}
