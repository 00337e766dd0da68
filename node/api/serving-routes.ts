// Control API routes for the spans this node serves: POST /v1/serve (admin) asks it to serve a model
// directory or a model id, optionally a given span ("blocks": "A-B", inclusive); POST /v1/serve/stop
// (admin) stops serving one; GET /v1/serve (read) lists what it serves, each entry with its state
// (node/serving/served-models.ts). `shardnet node serve` is their client.
import type { ServedModels, ServeEntry } from '../serving/served-models.js'
import { ServeRequestError } from '../serving/served-models.js'
import { ApiError, type ApiRoute } from './server.js'

/** What GET /v1/serve answers. */
export interface ServeListing {
  /** the serve memory budget, and what the entries take of it at most */
  memoryBytes: number
  memoryUsedBytes: number
  entries: ServeEntry[]
}

const BODY_HELP = 'expected {"model": "<model directory (absolute path) or model id>", "blocks"?: "A-B"}'

export function servingRoutes(servedOf: () => ServedModels): ApiRoute[] {
  return [
    {
      method: 'POST',
      path: '/v1/serve',
      handle: async ({ body }) => {
        if (typeof body !== 'object' || body === null || Array.isArray(body))
          throw new ApiError(400, BODY_HELP)
        const { model, blocks, ...rest } = body as Record<string, unknown>
        if (typeof model !== 'string' || model === '') throw new ApiError(400, BODY_HELP)
        if (blocks !== undefined && typeof blocks !== 'string') throw new ApiError(400, BODY_HELP)
        const unknown = Object.keys(rest)
        if (unknown.length > 0)
          throw new ApiError(400, `unknown key "${unknown[0].slice(0, 40)}"; ${BODY_HELP}`)
        try {
          const entry = await servedOf().serve({ model, ...(blocks === undefined ? {} : { blocks }) })
          return { entry }
        } catch (error) {
          if (error instanceof ServeRequestError) throw new ApiError(error.status, error.message)
          throw error
        }
      },
    },
    {
      method: 'POST',
      path: '/v1/serve/stop',
      handle: async ({ body }) => {
        const model = (body as { model?: unknown } | undefined)?.model
        if (typeof model !== 'string' || model === '') {
          throw new ApiError(400, 'expected {"model": "<model directory or model id being served>"}')
        }
        try {
          return { entry: await servedOf().unserve(model) }
        } catch (error) {
          if (error instanceof ServeRequestError) throw new ApiError(error.status, error.message)
          throw error
        }
      },
    },
    {
      method: 'GET',
      path: '/v1/serve',
      handle: async (): Promise<ServeListing> => {
        const served = servedOf()
        return {
          memoryBytes: served.memoryBytes,
          memoryUsedBytes: served.memoryUsedBytes(),
          entries: served.list(),
        }
      },
    },
  ]
}
