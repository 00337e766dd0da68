/**
 * An expected failure the user can act on (bad flag, missing file, daemon not running).
 * The CLI prints its message as one sentence and exits with `exitCode`; anything else is a bug
 * and is reported with its stack.
 */
export class UserError extends Error {
  static override name = 'UserError'
  readonly exitCode: number
  constructor(message: string, exitCode = 1) {
    super(message)
    this.name = 'UserError'
    this.exitCode = exitCode
  }
}

/** The exit code of a write the disk refused (full, read-only, forbidden): sysexits' EX_IOERR. */
export const EXIT_STORAGE_FAULT = 74
