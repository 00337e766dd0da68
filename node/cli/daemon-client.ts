import { readFile } from 'node:fs/promises'
import type { ApiEndpointFile } from '../daemon.js'
import { dataDirPaths } from '../store/data-dir.js'
import { isShardnetProcessAlive } from '../store/pid-file.js'
import { UserError } from './errors.js'

/** A client of one daemon's control API, found through the files in its data dir. */
export interface DaemonClient {
  url: string
  pid: number
  peerId: string
  get<T>(path: string, signal?: AbortSignal): Promise<T>
  post<T>(path: string, body?: unknown, signal?: AbortSignal): Promise<T>
  /** GET returning text (e.g. /metrics) */
  text(path: string, signal?: AbortSignal): Promise<string>
  /**
   * POST whose response body is read as it comes (a stream of NDJSON lines): no deadline but the
   * daemon's own until the response starts; only `signal` ends it after that
   */
  postStream(path: string, body: unknown, signal: AbortSignal): Promise<ReadableStream<Uint8Array>>
}

/** How long the CLI waits for the daemon's answer when the command does not say. */
const REQUEST_TIMEOUT_MS = 60_000

function notRunning(dataDir: string): UserError {
  return new UserError(
    `no shardnet daemon is running on data dir ${dataDir}; start one with \`shardnet node start ` +
      `--data-dir ${dataDir}\``,
  )
}

/** Reads api.json and the token; a missing file or a dead pid means no daemon is running. */
export async function connectToDaemon(dataDir: string): Promise<DaemonClient> {
  const paths = dataDirPaths(dataDir)
  let endpoint: ApiEndpointFile
  let token: string
  try {
    endpoint = JSON.parse(await readFile(paths.apiEndpoint, 'utf8')) as ApiEndpointFile
    token = (await readFile(paths.apiToken, 'utf8')).trim()
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    if (code === 'ENOENT' || error instanceof SyntaxError) throw notRunning(paths.root)
    if (code === 'EACCES')
      throw new UserError(`cannot read the API token in ${paths.root}: permission denied`)
    throw error
  }
  if (!isShardnetProcessAlive(endpoint.pid)) throw notRunning(paths.root)
  const request = async (
    method: string,
    path: string,
    body?: unknown,
    signal?: AbortSignal,
  ): Promise<Response> => {
    let response: Response
    const deadline = signal ?? AbortSignal.timeout(REQUEST_TIMEOUT_MS)
    try {
      response = await fetch(`${endpoint.url}${path}`, {
        method,
        headers: {
          authorization: `Bearer ${token}`,
          ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
        },
        body: body !== undefined ? JSON.stringify(body) : undefined,
        signal: deadline,
      })
    } catch (error) {
      // fetch rejects with the signal's reason: a DOMException whose code is TIMEOUT_ERR
      if (error instanceof DOMException && error.code === DOMException.TIMEOUT_ERR) {
        throw new UserError(`the daemon at ${endpoint.url} did not answer ${method} ${path} in time`)
      }
      throw new UserError(
        `the daemon's API at ${endpoint.url} is not answering (${(error as Error).message})`,
      )
    }
    if (!response.ok) {
      let message = `${response.status} ${response.statusText}`
      try {
        message = ((await response.json()) as { error?: string }).error ?? message
      } catch {
        // not JSON: keep the status line
      }
      throw new UserError(`the daemon refused ${method} ${path}: ${message}`)
    }
    return response
  }
  return {
    url: endpoint.url,
    pid: endpoint.pid,
    peerId: endpoint.peerId,
    get: async <T>(path: string, signal?: AbortSignal) =>
      (await (await request('GET', path, undefined, signal)).json()) as T,
    post: async <T>(path: string, body?: unknown, signal?: AbortSignal) =>
      (await (await request('POST', path, body ?? {}, signal)).json()) as T,
    text: async (path: string, signal?: AbortSignal) =>
      (await request('GET', path, undefined, signal)).text(),
    postStream: async (path: string, body: unknown, signal: AbortSignal) => {
      const response = await request('POST', path, body, signal)
      if (response.body === null) throw new UserError(`the daemon answered POST ${path} with no body`)
      return response.body
    },
  }
}
