// Proves the storage-fault sentences and how errors are recognised: each code gets one sentence that
// names the path and what to do (for the data dir or an output folder); a system error is a fault
// only with a code of the set and, for EACCES/EPERM, a path (binding a port is not a disk problem);
// a fault is found through a library's chain of causes.
import { describe, expect, it } from 'vitest'
import {
  asStorageFault,
  findStorageFault,
  StorageFaultError,
  storageFaultSentence,
} from '../../../node/store/storage-fault.js'

function errno(code: string, path?: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: something`), { code, ...(path !== undefined ? { path } : {}) })
}

describe('storage faults', () => {
  it('says which path and what to do, in one sentence per code', () => {
    const dataDir = 'or start the node with --data-dir on a disk that can take it'
    expect(storageFaultSentence('ENOSPC', '/d')).toBe(
      `the disk holding /d is full (ENOSPC): free space on it, ${dataDir}`,
    )
    expect(storageFaultSentence('EDQUOT', '/d')).toBe(
      `the disk quota for /d is used up (EDQUOT): free space or raise the quota, ${dataDir}`,
    )
    expect(storageFaultSentence('EROFS', '/d')).toBe(
      `/d is on a read-only filesystem (EROFS): remount it read-write, ${dataDir}`,
    )
    expect(storageFaultSentence('EACCES', '/d')).toBe(
      `permission denied writing /d (EACCES): give this user write access to it, ${dataDir}`,
    )
    expect(storageFaultSentence('EPERM', '/d')).toContain('permission denied writing /d (EPERM)')
    expect(storageFaultSentence('EIO', '/d')).toContain('the disk holding /d failed a read or write (EIO)')
    expect(storageFaultSentence('ENOSPC', '/out', 'output')).toBe(
      'the disk holding /out is full (ENOSPC): free space on it, or choose another folder',
    )
    for (const code of ['ENOSPC', 'EDQUOT', 'EROFS', 'EACCES', 'EPERM', 'EIO'])
      expect(storageFaultSentence(code, '/d').split('\n')).toHaveLength(1)
  })

  it('recognises system errors with a storage code, and a path for EACCES and EPERM', () => {
    const full = asStorageFault(errno('ENOSPC'), '/d/wal.log')
    expect(full).toBeInstanceOf(StorageFaultError)
    expect(full?.code).toBe('ENOSPC')
    expect(full?.path).toBe('/d/wal.log')
    expect((full?.cause as Error | undefined)?.message).toBe('ENOSPC: something')
    expect(asStorageFault(errno('EROFS', '/d/x'))?.path).toBe('/d/x')
    expect(asStorageFault(errno('EACCES', '/d/x'))?.code).toBe('EACCES')
    // listen on a privileged port, kill of another user's process: no path, not the disk
    expect(asStorageFault(errno('EACCES'))).toBeUndefined()
    expect(asStorageFault(errno('EPERM'))).toBeUndefined()
    expect(asStorageFault(errno('ENOENT', '/d/x'))).toBeUndefined()
    expect(asStorageFault(errno('EADDRINUSE'))).toBeUndefined()
    expect(asStorageFault(new Error('plain'))).toBeUndefined()
    const fault = new StorageFaultError('EIO', '/d')
    expect(asStorageFault(fault)).toBe(fault)
  })

  it('finds a fault in a chain of causes', () => {
    const wrapped = new Error('Database failed to open', {
      cause: new Error('IO error', { cause: errno('EROFS', '/d/datastore/LOCK') }),
    })
    expect(findStorageFault(wrapped)?.code).toBe('EROFS')
    expect(findStorageFault(wrapped)?.path).toBe('/d/datastore/LOCK')
    expect(findStorageFault(new Error('x', { cause: new Error('y') }))).toBeUndefined()
  })
})
