// Proves capability records stay fresh and die with their worker: on 4 real nodes over loopback TCP, a
// worker's record is re-signed with a higher seq on every refresh, a withdrawn worker's record expires and
// findWorkers stops returning it (remote DHT validators refuse the stale record), and the announcement
// iterator yields valid announcements until its signal aborts.
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { ReceivedAnnouncement } from '../../protocols/tasks/index.js'
import { createNetwork, stopAll, type TestNode, waitFor, waitForTopicMesh } from './protocols-host.js'

// long enough that a busy machine still finds a record before it expires
const REFRESH_MS = 2_000
const TTL_MS = 6_000

async function workers(asker: TestNode): Promise<Map<string, number>> {
  const found = new Map<string, number>()
  for await (const w of asker.services.discovery.findWorkers('webgpu', {
    signal: AbortSignal.timeout(30_000),
  })) {
    found.set(w.peerId.toString(), w.record.seq)
  }
  return found
}

describe('record refresh, expiry and the announcement iterator', () => {
  let nodes: TestNode[] = []

  beforeAll(async () => {
    nodes = await createNetwork(4, { discovery: { refreshIntervalMs: REFRESH_MS, recordTtlMs: TTL_MS } })
  }, 120_000)

  afterAll(async () => {
    await stopAll(nodes)
  })

  it('refreshes records with a higher seq, and a withdrawn record expires from lookups', async () => {
    const [asker, stays, leaves] = nodes
    const ad = { capability: 'webgpu', adapterName: 'a', maxBufferBytes: 1 << 20, gflops: 1 } as const
    const first = await stays.services.discovery.advertise(ad)
    await leaves.services.discovery.advertise(ad)
    await waitFor(
      async () => {
        const initial = await workers(asker)
        return initial.has(stays.peerId.toString()) && initial.has(leaves.peerId.toString())
      },
      'both workers to be found',
      30_000,
      250,
    )

    leaves.services.discovery.withdraw()
    // after the TTL: the staying worker is found with a refreshed record, the leaving one is gone
    await waitFor(
      async () => {
        const now = await workers(asker)
        return (now.get(stays.peerId.toString()) ?? 0) > first.seq && !now.has(leaves.peerId.toString())
      },
      'a refreshed record for the staying worker and none for the withdrawn one',
      60_000,
      250,
    )
    expect(stays.services.discovery.counters().published).toBeGreaterThan(1)
    // the stale record is refused whichever way it comes back: every DHT peer's validator drops it (the get
    // fails) or a copy still arrives and the asker's own check finds it expired
    await expect(asker.services.discovery.getRecord(leaves.peerId)).rejects.toThrow()
    const { rejected } = asker.services.discovery.counters()
    expect(rejected['fetch-failed'] + rejected.expired).toBeGreaterThan(0)
  })

  it('the announcements() iterator yields valid announcements until aborted', async () => {
    await waitForTopicMesh(nodes)
    const [listener, submitter] = nodes
    const controller = new AbortController()
    const got: ReceivedAnnouncement[] = []
    const consuming = (async () => {
      for await (const a of listener.services.tasks.announcements({ signal: controller.signal })) got.push(a)
    })()
    for (let i = 0; i < 3; i++) {
      const taskCid = CID.createV1(raw.code, await sha256.digest(new TextEncoder().encode(`iterated ${i}`)))
      await submitter.services.tasks.announce({ taskCid, kind: 'infer', groups: 1, groupSize: 1 })
    }
    await waitFor(() => got.length === 3, 'three announcements through the iterator')
    controller.abort()
    await consuming
    expect(got.every((a) => a.announcement.submitter.equals(submitter.peerId))).toBe(true)
  })
})
