// Storage faults: a disk that is full, over quota, read-only, refuses this user, or fails. They are
// the user's to fix, not bugs: each is reported as one sentence naming the path and what to do.

/** The error codes that mean the filesystem under a path cannot take a write. */
export const STORAGE_FAULT_CODES: ReadonlySet<string> = new Set([
  'ENOSPC',
  'EDQUOT',
  'EROFS',
  'EACCES',
  'EPERM',
  'EIO',
])

/** Where the failed write went: the node's data dir, or a folder the user named (`result --out`). */
export type StorageFaultPlace = 'data-dir' | 'output'

/** A write to the data dir (or another file the node writes) failed for a reason the user can act on. */
export class StorageFaultError extends Error {
  static override name = 'StorageFaultError'
  /** the errno code (ENOSPC, EDQUOT, EROFS, EACCES, EPERM, EIO) */
  readonly code: string
  /** the file or folder the write was for */
  readonly path: string

  constructor(code: string, path: string, cause?: unknown, place: StorageFaultPlace = 'data-dir') {
    super(storageFaultSentence(code, path, place), cause !== undefined ? { cause } : undefined)
    this.name = 'StorageFaultError'
    this.code = code
    this.path = path
  }
}

/** True for a Node.js system error whose code is one of STORAGE_FAULT_CODES. */
export function isStorageFaultCode(error: unknown): error is NodeJS.ErrnoException & { code: string } {
  const code = (error as NodeJS.ErrnoException | undefined)?.code
  return typeof code === 'string' && STORAGE_FAULT_CODES.has(code)
}

/**
 * The StorageFaultError for `error` if it is a storage fault, else undefined: a StorageFaultError
 * already, or a system error with one of STORAGE_FAULT_CODES about `path` (when given: the caller
 * knows the error came from writing it) or about the path the error names. An EACCES or EPERM that
 * names no path (binding a privileged port, signalling a process) is not a storage fault.
 */
export function asStorageFault(
  error: unknown,
  path?: string,
  place: StorageFaultPlace = 'data-dir',
): StorageFaultError | undefined {
  if (error instanceof StorageFaultError) return error
  if (!isStorageFaultCode(error)) return undefined
  const named = path ?? error.path
  if (named === undefined && (error.code === 'EACCES' || error.code === 'EPERM')) return undefined
  return new StorageFaultError(error.code, named ?? 'the data dir', error, place)
}

/**
 * The storage fault in `error` or in its chain of causes (a library that wraps the system error:
 * LevelDB, fetch), as asStorageFault finds it, else undefined.
 */
export function findStorageFault(
  error: unknown,
  place: StorageFaultPlace = 'data-dir',
): StorageFaultError | undefined {
  let current: unknown = error
  for (let depth = 0; depth < 8 && current !== undefined && current !== null; depth++) {
    const fault = asStorageFault(current, undefined, place)
    if (fault !== undefined) return fault
    current = (current as { cause?: unknown }).cause
  }
  return undefined
}

/** One sentence: what happened to which path, and what to do about it. */
export function storageFaultSentence(
  code: string,
  path: string,
  place: StorageFaultPlace = 'data-dir',
): string {
  const elsewhere =
    place === 'data-dir'
      ? 'or start the node with --data-dir on a disk that can take it'
      : 'or choose another folder'
  switch (code) {
    case 'ENOSPC':
      return `the disk holding ${path} is full (ENOSPC): free space on it, ${elsewhere}`
    case 'EDQUOT':
      return `the disk quota for ${path} is used up (EDQUOT): free space or raise the quota, ${elsewhere}`
    case 'EROFS':
      return `${path} is on a read-only filesystem (EROFS): remount it read-write, ${elsewhere}`
    case 'EACCES':
    case 'EPERM':
      return `permission denied writing ${path} (${code}): give this user write access to it, ${elsewhere}`
    case 'EIO':
      return (
        `the disk holding ${path} failed a read or write (EIO): check the disk (dmesg, smartctl) ` +
        `before using it again, ${elsewhere}`
      )
    default:
      return `cannot write ${path} (${code}): ${elsewhere}`
  }
}
