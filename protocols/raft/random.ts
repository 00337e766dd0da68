// The seeded randomness the core is given (election jitter) and the simulator uses. A tiny
// splitmix32 generator rather than pure-rand: the core needs one method, the simulator needs to
// fork independent streams cheaply, and both must be reproducible from a printed integer seed.

export interface Random {
  /** A uniformly random integer in [0, maxExclusive). */
  int(maxExclusive: number): number
}

export class SeededRandom implements Random {
  private state: number

  constructor(seed: number) {
    this.state = seed >>> 0
  }

  /** The next 32 random bits (splitmix32). */
  next32(): number {
    this.state = (this.state + 0x9e3779b9) >>> 0
    let z = this.state
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0
    return (z ^ (z >>> 16)) >>> 0
  }

  int(maxExclusive: number): number {
    if (maxExclusive <= 1) return 0
    return Math.floor((this.next32() / 0x1_0000_0000) * maxExclusive)
  }

  /** A float in [0, 1). */
  float(): number {
    return this.next32() / 0x1_0000_0000
  }

  chance(probability: number): boolean {
    return this.float() < probability
  }

  /** A new independent generator derived from this one (for per-member streams). */
  fork(): SeededRandom {
    return new SeededRandom(this.next32() ^ 0x5bd1e995)
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]
  }
}
