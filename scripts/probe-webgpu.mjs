// Prints the WebGPU adapter Dawn finds, or "none". Used by scripts/setup.sh to decide whether the
// software Vulkan driver must be installed. Exit code 0 when an adapter exists, 3 when none.
import { mkdirSync } from 'node:fs'

if (!process.env.XDG_RUNTIME_DIR) {
  process.env.XDG_RUNTIME_DIR = '/tmp/shardnet-xdg'
  mkdirSync(process.env.XDG_RUNTIME_DIR, { recursive: true, mode: 0o700 })
}
try {
  const { create } = await import('webgpu')
  const gpu = create([])
  const adapter = await gpu.requestAdapter()
  if (!adapter) {
    console.log('none')
    process.exit(3)
  }
  const device = await adapter.requestDevice()
  console.log(adapter.info.description || adapter.info.vendor || 'unknown adapter')
  device.destroy()
  // keep gpu referenced until here (Dawn aborts if it is collected while a device lives)
  void gpu
  process.exit(0)
} catch (error) {
  console.log(`none (${error instanceof Error ? error.message : String(error)})`)
  process.exit(3)
}
