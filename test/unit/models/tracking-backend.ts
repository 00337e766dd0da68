// A cpu backend that records every tensor it returns, to check that all of them get disposed.
import type { Backend } from '../../../kernels/backend.js'
import { type CpuBackend, CpuTensor } from '../../../kernels/cpu-backend.js'

/** Records every tensor the wrapped backend returns, to check that all of them get disposed. */
export function trackingBackend(inner: CpuBackend): { backend: Backend; live: () => CpuTensor[] } {
  const made: CpuTensor[] = []
  const collect = (value: unknown) => {
    if (value instanceof CpuTensor) made.push(value)
    else if (value !== null && typeof value === 'object')
      for (const part of Object.values(value)) if (part instanceof CpuTensor) made.push(part)
  }
  const backend = new Proxy(inner, {
    get(target, property) {
      const value = Reflect.get(target, property)
      if (typeof value !== 'function') return value
      return (...args: unknown[]) => {
        const result = value.apply(target, args)
        collect(result)
        return result
      }
    },
  })
  return { backend, live: () => made.filter((tensor) => !tensor.disposed) }
}
