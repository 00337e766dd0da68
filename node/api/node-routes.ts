// Control API routes for the node itself: status, peers, blocks, stop. The daemon adds them to its
// routes (beside the task routes of node/api/tasks.ts); each reaches the node through `nodeOf`, which
// refuses with 503 while the daemon is still starting.
import { CID } from 'multiformats/cid'
import { type BlockExchange, BlockNotFoundError } from '../../protocols/blocks/index.js'
import type { CapabilityDiscovery } from '../../protocols/discovery/index.js'
import type { TaskGossip } from '../../protocols/tasks/index.js'
import type { NodeCapability } from '../executor/capability.js'
import { PEER_LOOKUP_TIMEOUT_MS, type PeerEntry } from '../peers.js'
import type { ServedSpanInfo } from '../serving/api.js'
import type { SpanHostCounters } from '../serving/span-host.js'
import { ApiError, type ApiRoute } from './server.js'

/** What `shardnet node status` shows. */
export interface NodeStatus {
  peerId: string
  addresses: string[]
  capability: NodeCapability
  peers: number
  dhtRoutingTablePeers: number
  uptimeSeconds: number
  version: string
  dataDir: string
  apiUrl: string
  privateNetwork: boolean
  /** what the protocols counted since start: gossip accepted/rejected, blocks moved, records published */
  counters: {
    tasks: ReturnType<TaskGossip['counters']>
    blocks: ReturnType<BlockExchange['counters']>
    discovery: ReturnType<CapabilityDiscovery['counters']>
  }
  /** the spans of models' blocks this node serves, and what its span server counted */
  serving: { spans: ServedSpanInfo[]; counters: SpanHostCounters }
}

/** The node as these routes use it (the Daemon). */
export interface ApiNode {
  status(): NodeStatus
  peers(options: { capability?: 'webgpu' | 'cpu'; signal?: AbortSignal }): Promise<PeerEntry[]>
  blocks: Pick<BlockExchange, 'put' | 'get'>
  stop(): Promise<void>
}

/** How long after answering a stop request the node stops (the reply must leave first). */
const STOP_AFTER_REPLY_MS = 50

export function nodeApiRoutes(nodeOf: () => ApiNode): ApiRoute[] {
  return [
    { method: 'GET', path: '/v1/status', handle: async () => nodeOf().status() },
    {
      method: 'GET',
      path: '/v1/peers',
      handle: async ({ url, signal }) => {
        const capability = url.searchParams.get('capability')
        if (capability != null && capability !== 'webgpu' && capability !== 'cpu') {
          throw new ApiError(400, `unknown capability "${capability}" (expected webgpu or cpu)`)
        }
        const lookup = AbortSignal.any([signal, AbortSignal.timeout(PEER_LOOKUP_TIMEOUT_MS)])
        return { peers: await nodeOf().peers({ capability: capability ?? undefined, signal: lookup }) }
      },
    },
    {
      method: 'POST',
      path: '/v1/blocks',
      handle: async ({ body, signal }) => {
        const data = (body as { data?: unknown } | undefined)?.data
        if (typeof data !== 'string') throw new ApiError(400, 'expected {"data": "<base64>"}')
        const cid = await nodeOf().blocks.put(Buffer.from(data, 'base64'), { signal })
        return { cid: cid.toString() }
      },
    },
    {
      method: 'GET',
      path: '/v1/blocks',
      handle: async ({ url, signal }) => {
        let cid: CID
        try {
          cid = CID.parse(url.searchParams.get('cid') ?? '')
        } catch {
          throw new ApiError(400, 'expected ?cid=<a CID>')
        }
        try {
          const bytes = await nodeOf().blocks.get(cid, { signal })
          return { cid: cid.toString(), data: Buffer.from(bytes).toString('base64') }
        } catch (error) {
          if (error instanceof BlockNotFoundError) throw new ApiError(404, `block ${cid} was not found`)
          throw error
        }
      },
    },
    {
      method: 'POST',
      path: '/v1/stop',
      handle: async () => {
        // answer first, then stop: the client gets its reply before the API closes
        setTimeout(() => void nodeOf().stop(), STOP_AFTER_REPLY_MS)
        return { stopping: true }
      },
    },
  ]
}
