// Proves a data dir has one owner: a second daemon on a data dir in use is refused (DataDirInUseError)
// without disturbing the first, and a daemon starting on a data dir cleans up the temp files an
// interrupted atomic write left, keeping its identity.
import { readdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { DataDirInUseError } from '../../node/store/datastore.js'
import { apiRequest, startTestDaemon, tempDataDir } from './daemon-helpers.js'

describe('the data dir', () => {
  it('refuses a second daemon while the first keeps running', async () => {
    const dataDir = await tempDataDir()
    const first = await startTestDaemon({ dataDir })
    try {
      const identity = await readFile(join(dataDir, 'identity.key'))
      await expect(startTestDaemon({ dataDir })).rejects.toThrow(DataDirInUseError)
      expect(await readFile(join(dataDir, 'identity.key'))).toEqual(identity)
      expect((await apiRequest(first, '/v1/status')).status).toBe(200)
    } finally {
      await first.stop()
    }
  })

  it('cleans up after an interrupted write and keeps its identity', async () => {
    const dataDir = await tempDataDir()
    const first = await startTestDaemon({ dataDir })
    const peerId = first.peerId.toString()
    await first.stop()
    // what a crash in the middle of writeFileAtomic leaves behind
    await writeFile(join(dataDir, '.api-token.0a1b2c.tmp'), 'torn')
    await writeFile(join(dataDir, 'blocks', '.bafkrei.3d4e5f.tmp'), 'torn')
    const second = await startTestDaemon({ dataDir })
    try {
      expect(second.peerId.toString()).toBe(peerId)
      expect((await readdir(dataDir)).filter((name) => name.endsWith('.tmp'))).toEqual([])
      expect(await readdir(join(dataDir, 'blocks'))).toEqual([])
    } finally {
      await second.stop()
    }
  })
})
