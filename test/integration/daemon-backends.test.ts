// Proves a daemon measures its backends at start and computes on the fastest: its status (the API's
// JSON and `node status`'s text) shows every backend's figure and which one is in use, its peers read
// the same figures from its capability record, and a restart reads them from the cache in the data
// dir, where a pin still decides which backend computes.
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import type { NodeStatus } from '../../node/api/node-routes.js'
import { formatStatus } from '../../node/cli/node.js'
import type { Daemon } from '../../node/daemon.js'
import { BACKEND_PROBE_FILE, probeBackends, probeTargets } from '../../node/executor/backend-probe.js'
import type { NodeCapability } from '../../node/executor/capability.js'
import { apiRequest, startTestDaemon, tempDataDir, waitUntil } from './daemon-helpers.js'

const daemons: Daemon[] = []
afterEach(async () => {
  await Promise.all(daemons.splice(0).map((daemon) => daemon.stop()))
})

async function statusOf(daemon: Daemon): Promise<NodeStatus> {
  const response = await apiRequest(daemon, '/v1/status')
  expect(response.status).toBe(200)
  return (await response.json()) as NodeStatus
}

function nameOf(figure: { backend: string; engine?: string }): string {
  return figure.engine === undefined ? figure.backend : `${figure.backend}/${figure.engine}`
}

/** the in-use figure is the capability's own, and the text status lists every figure */
function expectShown(status: NodeStatus): NodeCapability['backends'][number] {
  const capability = status.capability
  const inUse = capability.backends.filter((figure) => figure.inUse)
  expect(inUse).toHaveLength(1)
  expect(inUse[0].backend).toBe(capability.backend)
  expect(inUse[0].engine).toBe(capability.cpuEngine)
  expect(inUse[0].matmulGflops).toBe(capability.matmulGflops)
  const text = formatStatus(status)
  for (const figure of capability.backends) {
    const line = text.split('\n').find((l) => l.includes(`${figure.inUse ? '*' : ' '} ${nameOf(figure)} `))
    expect(line, `a line for ${nameOf(figure)} in\n${text}`).toBeDefined()
    expect(line).toContain(`${figure.matmulGflops.toFixed(2)} GFLOP/s  ${figure.adapterName}`)
  }
  return inUse[0]
}

describe('a daemon’s backends', () => {
  it('measures every backend at start, computes on the fastest, shows and advertises them', async () => {
    const first = await startTestDaemon({ overrides: { backend: 'auto', cpuEngine: undefined } })
    daemons.push(first)
    const status = await statusOf(first)
    const capability = status.capability
    console.log(
      `probe at daemon start: ${(capability.probe!.seconds * 1000).toFixed(0)} ms, ` +
        `${capability.backends.map((b) => `${nameOf(b)} ${b.matmulGflops.toFixed(1)}`).join(', ')} GFLOP/s`,
    )
    expect(capability.probe?.source).toBe('measured')
    expect(capability.chosenBy).toBe('fastest')
    const names = capability.backends.map(nameOf)
    // the reference ops always open; every backend is either measured or said to be unavailable
    expect(names).toContain('cpu/reference')
    expect(names.length + (capability.unavailable ?? []).length).toBe(probeTargets().length)
    const inUse = expectShown(status)
    expect(inUse.matmulGflops).toBe(Math.max(...capability.backends.map((b) => b.matmulGflops)))

    // a peer reads the same figures from the first node's capability record
    const second = await startTestDaemon({ overrides: { bootstrap: [first.addresses()[0]] } })
    daemons.push(second)
    let found: Awaited<ReturnType<Daemon['peers']>> = []
    await waitUntil(
      async () => {
        found = await second.peers({ capability: capability.backend, signal: AbortSignal.timeout(5_000) })
        return found.some((peer) => peer.peerId === first.peerId.toString())
      },
      'the second node to find the first through its capability record',
      30_000,
      250,
    )
    const record = found.find((peer) => peer.peerId === first.peerId.toString())!.capability!
    expect(record.backends).toEqual(
      capability.backends.map((b) => ({
        backend: b.backend,
        ...(b.engine === undefined ? {} : { engine: b.engine }),
        adapterName: b.adapterName,
        gflops: b.matmulGflops,
        inUse: b.inUse,
      })),
    )
  })

  it('reads the figures from the cache in its data dir, and a pin still decides', async () => {
    const dataDir = await tempDataDir()
    // what an earlier start on an idle machine left in the data dir
    const probed = await probeBackends({ dataDir, busyLoadAverage: Number.POSITIVE_INFINITY })
    expect(probed.cached).toBe(true)
    const daemon = await startTestDaemon({ dataDir, overrides: { backend: 'cpu', cpuEngine: 'reference' } })
    daemons.push(daemon)
    const status = await statusOf(daemon)
    const capability = status.capability
    console.log(`probe at daemon start from the cache: ${(capability.probe!.seconds * 1000).toFixed(1)} ms`)
    expect(capability.probe?.source).toBe('cache')
    expect(capability.probe?.measuredAtMs).toBe(probed.result.measuredAtMs)
    expect(capability.backends.map((b) => [nameOf(b), b.matmulGflops])).toEqual(
      probed.result.measured.map((m) => [nameOf(m), m.matmulGflops]),
    )
    expect(capability.chosenBy).toBe('pinned')
    expect(expectShown(status).engine).toBe('reference')
    expect(formatStatus(status)).toMatch(/\(\* in use, pinned by the config; figures from the cache/)
    // the cache is still the one written before
    const file = JSON.parse(await readFile(join(dataDir, BACKEND_PROBE_FILE), 'utf8'))
    expect(file.probe.measuredAtMs).toBe(probed.result.measuredAtMs)
  })
})
