// Reading a benchmark's parsed flags (node:util parseArgs strings) as numbers: a bad value prints
// the sentence and the usage line and exits 2; --help prints the usage and exits 0.
export interface FlagReaders<K extends string> {
  fail(message: string): never
  /** the flag as an integer >= min */
  integer(name: K, min: number): number
  /** the flag as a finite number >= min (> 0 when `strictlyPositive`) */
  number(name: K, min?: number, strictlyPositive?: boolean): number
}

export function flagReaders<K extends string>(
  flags: Record<K, string | boolean | undefined> & { help?: boolean },
  usage: string,
): FlagReaders<K> {
  if (flags.help === true) {
    console.log(usage)
    process.exit(0)
  }
  const fail = (message: string): never => {
    console.error(`${message}\n${usage}`)
    process.exit(2)
  }
  return {
    fail,
    integer(name, min) {
      const value = Number(flags[name])
      if (!Number.isInteger(value) || value < min) fail(`--${name} must be an integer >= ${min}`)
      return value
    },
    number(name, min = 0, strictlyPositive = false) {
      const value = Number(flags[name])
      const ok = Number.isFinite(value) && (strictlyPositive ? value > min : value >= min)
      if (!ok) fail(`--${name} must be a number ${strictlyPositive ? '>' : '>='} ${min}`)
      return value
    },
  }
}
