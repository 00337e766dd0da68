// Proves the durable store in a real temp data dir: atomic writes with the right modes, an identity
// that survives a restart, a block store that refuses and never serves bytes that do not match their
// CID (also when written piece by piece as a fetch arrives, with a crash-safe temp file and rename),
// pid files that tell a live daemon from a stale one, and the API token.
import { spawn } from 'node:child_process'
import { mkdtemp, readdir, readFile, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import { describe, expect, it } from 'vitest'
import { bearerTokenMatches, loadOrCreateApiToken } from '../../../node/api/token.js'
import { writeFileAtomic } from '../../../node/store/atomic-file.js'
import { BlockHashMismatchError, cidOfBytes, FileBlockStore } from '../../../node/store/block-store.js'
import { dataDirPaths, ensureDataDir, removeStaleTemporaryFiles } from '../../../node/store/data-dir.js'
import { DataDirInUseError, openDatastore } from '../../../node/store/datastore.js'
import { IdentityFileError, loadOrCreateIdentity } from '../../../node/store/identity.js'
import {
  acquirePidFile,
  DaemonAlreadyRunningError,
  readPidFile,
  releasePidFile,
} from '../../../node/store/pid-file.js'

async function tempDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'shardnet-store-'))
}

describe('atomic file writes', () => {
  it('writes the content with the requested mode and leaves no temp file', async () => {
    const folder = await tempDir()
    const path = join(folder, 'secret')
    await writeFileAtomic(path, 'one', 0o600)
    await writeFileAtomic(path, 'two', 0o600)
    expect(await readFile(path, 'utf8')).toBe('two')
    expect((await stat(path)).mode & 0o777).toBe(0o600)
    expect(await readdir(folder)).toEqual(['secret'])
  })

  it('cleans up temp files a crash left behind', async () => {
    const folder = await tempDir()
    await writeFile(join(folder, '.identity.key.abc123.tmp'), 'torn')
    await writeFile(join(folder, 'keep'), 'x')
    expect(await removeStaleTemporaryFiles(folder)).toBe(1)
    expect(await readdir(folder)).toEqual(['keep'])
  })
})

describe('identity', () => {
  it('creates an Ed25519 key with mode 0600 and loads the same PeerId again', async () => {
    const paths = dataDirPaths(await tempDir())
    await ensureDataDir(paths)
    const first = await loadOrCreateIdentity(paths.identityKey)
    expect(first.created).toBe(true)
    expect(first.privateKey.type).toBe('Ed25519')
    expect((await stat(paths.identityKey)).mode & 0o777).toBe(0o600)
    const second = await loadOrCreateIdentity(paths.identityKey)
    expect(second.created).toBe(false)
    expect(peerIdFromPrivateKey(second.privateKey).toString()).toBe(
      peerIdFromPrivateKey(first.privateKey).toString(),
    )
  })

  it('refuses a damaged key file instead of replacing the identity', async () => {
    const folder = await tempDir()
    const path = join(folder, 'identity.key')
    await writeFile(path, 'not a key')
    await expect(loadOrCreateIdentity(path)).rejects.toThrow(IdentityFileError)
    expect(await readFile(path, 'utf8')).toBe('not a key')
  })

  it('tightens a key file that others can read', async () => {
    const folder = await tempDir()
    const path = join(folder, 'identity.key')
    await loadOrCreateIdentity(path)
    const { chmod } = await import('node:fs/promises')
    await chmod(path, 0o644)
    await loadOrCreateIdentity(path)
    expect((await stat(path)).mode & 0o777).toBe(0o600)
  })
})

describe('file block store', () => {
  it('stores, finds and verifies blocks across instances', async () => {
    const folder = await tempDir()
    const bytes = new TextEncoder().encode('a block of shardnet data')
    const store = new FileBlockStore({ folder })
    const cid = await store.putBytes(bytes)
    expect(cid.toString()).toBe((await cidOfBytes(bytes)).toString())
    const reopened = new FileBlockStore({ folder })
    expect(await reopened.has(cid)).toBe(true)
    expect(await reopened.get(cid)).toEqual(bytes)
    await reopened.delete(cid)
    expect(await reopened.has(cid)).toBe(false)
    expect(await reopened.get(cid)).toBeUndefined()
  })

  it('refuses bytes that do not hash to the CID', async () => {
    const store = new FileBlockStore({ folder: await tempDir() })
    const cid = await cidOfBytes(new TextEncoder().encode('expected'))
    await expect(store.put(cid, new TextEncoder().encode('other'))).rejects.toThrow(BlockHashMismatchError)
    expect(await store.has(cid)).toBe(false)
  })

  it('never serves a block corrupted on disk', async () => {
    const folder = await tempDir()
    const store = new FileBlockStore({ folder })
    const cid = await store.putBytes(new TextEncoder().encode('intact'))
    const [name] = await readdir(folder)
    await writeFile(join(folder, name), 'flipped')
    expect(await store.get(cid)).toBeUndefined()
    expect(await store.has(cid)).toBe(false)
  })

  it('refuses blocks over its size limit', async () => {
    const store = new FileBlockStore({ folder: await tempDir(), blockBytesMax: 8 })
    await expect(store.putBytes(new Uint8Array(9))).rejects.toThrow(RangeError)
  })

  it('stores a block written piece by piece only on commit, durably named and private', async () => {
    const folder = await tempDir()
    // a small flush threshold, so background fdatasyncs run between the writes
    const store = new FileBlockStore({ folder, writerSyncBytes: 1000 })
    const bytes = new Uint8Array(100_000).map((_, i) => (i * 2654435761) >>> 24)
    const cid = await cidOfBytes(bytes)
    const writer = store.writer(cid)
    for (let offset = 0; offset < bytes.length; offset += 7_000)
      writer.write(bytes.subarray(offset, offset + 7_000))
    expect(await store.has(cid)).toBe(false)
    await writer.commit()
    expect(await readdir(folder)).toEqual([cid.toString()])
    expect((await stat(join(folder, cid.toString()))).mode & 0o777).toBe(0o600)
    expect(await new FileBlockStore({ folder }).get(cid)).toEqual(bytes)
    expect(() => writer.write(bytes)).toThrow()
  })

  it(
    'commits a block another thread wrote into the ' + "writer's file, and refuses one over the limit",
    async () => {
      const folder = await tempDir()
      const store = new FileBlockStore({ folder, blockBytesMax: 50_000 })
      const bytes = new Uint8Array(40_000).map((_, i) => (i * 7) & 0xff)
      const cid = await cidOfBytes(bytes)
      const writer = store.writer(cid)
      // what the blocks service's worker does: create the file exclusively, write it, then commit
      await writeFile(writer.file.path, bytes, { flag: 'wx', mode: 0o600 })
      await writer.commit()
      expect(await readdir(folder)).toEqual([cid.toString()])
      expect(await store.get(cid)).toEqual(bytes)

      const big = new Uint8Array(60_000)
      const bigCid = await cidOfBytes(big)
      const tooLarge = store.writer(bigCid)
      await writeFile(tooLarge.file.path, big, { flag: 'wx', mode: 0o600 })
      await expect(tooLarge.commit()).rejects.toThrow(RangeError)
      const aborted = store.writer(bigCid)
      await writeFile(aborted.file.path, bytes, { flag: 'wx', mode: 0o600 })
      await aborted.abort()
      expect(await readdir(folder)).toEqual([cid.toString()])
    },
  )

  it('leaves nothing behind when a writer is aborted or goes over the limit', async () => {
    const folder = await tempDir()
    const store = new FileBlockStore({ folder, blockBytesMax: 10 })
    const cid = await cidOfBytes(new Uint8Array(12))
    const aborted = store.writer(cid)
    aborted.write(new Uint8Array(6))
    await aborted.abort()
    expect(await readdir(folder)).toEqual([])
    const tooLarge = store.writer(cid)
    tooLarge.write(new Uint8Array(6))
    tooLarge.write(new Uint8Array(6))
    await expect(tooLarge.commit()).rejects.toThrow(RangeError)
    expect(await readdir(folder)).toEqual([])
    expect(await store.has(cid)).toBe(false)
  })
})

describe('datastore', () => {
  it('keeps values across a reopen and refuses a second opener', async () => {
    const path = join(await tempDir(), 'datastore')
    const datastore = await openDatastore(path)
    const { Key } = await import('interface-datastore')
    await datastore.put(new Key('/peers/x'), new Uint8Array([1, 2, 3]))
    await expect(openDatastore(path)).rejects.toThrow(DataDirInUseError)
    await datastore.close()
    const again = await openDatastore(path)
    expect([...(await again.get(new Key('/peers/x')))]).toEqual([1, 2, 3])
    await again.close()
  })
})

describe('pid file', () => {
  it('replaces the pid file of a process that is gone', async () => {
    const path = join(await tempDir(), 'daemon.pid')
    const child = spawn(process.execPath, ['-e', ''])
    const deadPid = child.pid!
    await new Promise((resolve) => child.once('exit', resolve))
    await writeFile(path, `${deadPid}\n`)
    expect(await acquirePidFile(path)).toEqual({ replacedStale: true })
    expect(await readPidFile(path)).toBe(process.pid)
    await releasePidFile(path)
    expect(await readPidFile(path)).toBeUndefined()
  })

  it('refuses when a live shardnet daemon owns the data dir', async () => {
    const path = join(await tempDir(), 'daemon.pid')
    // a live process whose command line names shardnet, like a real daemon's
    const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)', 'shardnet-test'])
    try {
      await new Promise((resolve) => setTimeout(resolve, 100))
      await writeFile(path, `${child.pid}\n`)
      await expect(acquirePidFile(path)).rejects.toThrow(DaemonAlreadyRunningError)
    } finally {
      child.kill('SIGKILL')
    }
  })

  it('treats a live process that is not a shardnet daemon as stale (pid reuse)', async () => {
    const path = join(await tempDir(), 'daemon.pid')
    const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'])
    try {
      await new Promise((resolve) => setTimeout(resolve, 100))
      await writeFile(path, `${child.pid}\n`)
      expect(await acquirePidFile(path)).toEqual({ replacedStale: true })
    } finally {
      child.kill('SIGKILL')
    }
  })

  it('ignores a garbage pid file', async () => {
    const path = join(await tempDir(), 'daemon.pid')
    await writeFile(path, 'garbage')
    expect(await readPidFile(path)).toBeUndefined()
    expect(await acquirePidFile(path)).toEqual({ replacedStale: false })
  })
})

describe('API token', () => {
  it('creates a 0600 token once and compares bearer headers exactly', async () => {
    const path = join(await tempDir(), 'api-token')
    const token = await loadOrCreateApiToken(path)
    expect(token).toMatch(/^[0-9a-f]{64}$/)
    expect((await stat(path)).mode & 0o777).toBe(0o600)
    expect(await loadOrCreateApiToken(path)).toBe(token)
    expect(bearerTokenMatches(`Bearer ${token}`, token)).toBe(true)
    expect(bearerTokenMatches(undefined, token)).toBe(false)
    expect(bearerTokenMatches(token, token)).toBe(false)
    expect(bearerTokenMatches(`Bearer ${token.slice(1)}x`, token)).toBe(false)
    expect(bearerTokenMatches(`Bearer ${token}0`, token)).toBe(false)
  })

  it('replaces a damaged token file', async () => {
    const path = join(await tempDir(), 'api-token')
    await writeFile(path, '')
    expect(await loadOrCreateApiToken(path)).toMatch(/^[0-9a-f]{64}$/)
  })
})
