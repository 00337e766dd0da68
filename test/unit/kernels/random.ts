// Seeded test inputs, without vitest: child-process fixtures (fixtures/) import them too.

/** mulberry32: small, fast, seeded; enough for test inputs */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** `length` floats uniform in [low, high) */
export function randomArray(random: () => number, length: number, low = -1, high = 1): Float32Array {
  const out = new Float32Array(length)
  for (let i = 0; i < length; i++) out[i] = low + (high - low) * random()
  return out
}
