// Proves the CLI's daemon client tells a daemon that is too slow from one that is not answering at
// all: a real HTTP server that never replies makes the request's deadline (AbortSignal.timeout) fire,
// which the client reports as "did not answer in time"; a server that drops the connection is
// "not answering". The daemon is found as the CLI finds it: api.json and the token in a data dir,
// naming a live process whose command line says shardnet.
import { type ChildProcess, spawn } from 'node:child_process'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { connectToDaemon } from '../../../node/cli/daemon-client.js'
import { UserError } from '../../../node/cli/errors.js'
import { dataDirPaths } from '../../../node/store/data-dir.js'

const cleanups: Array<() => Promise<void> | void> = []

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
})

/** A data dir whose api.json points at `server`, owned by a live process named shardnet. */
async function dataDirFor(server: Server): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), 'shardnet-client-'))
  cleanups.push(() => rm(root, { recursive: true, force: true }))
  const owner: ChildProcess = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)', 'shardnet'], {
    stdio: 'ignore',
  })
  cleanups.push(() => {
    owner.kill()
  })
  const paths = dataDirPaths(root)
  await mkdir(paths.root, { recursive: true })
  const { port } = server.address() as AddressInfo
  await writeFile(
    paths.apiEndpoint,
    JSON.stringify({ url: `http://127.0.0.1:${port}`, pid: owner.pid, peerId: 'test' }),
  )
  await writeFile(paths.apiToken, 'a'.repeat(64))
  return root
}

async function listen(onRequest: Parameters<typeof createServer>[1]): Promise<Server> {
  const server = createServer(onRequest)
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  cleanups.push(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      }),
  )
  return server
}

async function failure(work: Promise<unknown>): Promise<UserError> {
  const error = await work.then(
    () => undefined,
    (caught: unknown) => caught,
  )
  expect(error).toBeInstanceOf(UserError)
  return error as UserError
}

describe('daemon client', () => {
  it('reports a daemon that does not answer before the deadline as too slow', async () => {
    const server = await listen(() => {
      // never answers
    })
    const client = await connectToDaemon(await dataDirFor(server))
    const error = await failure(client.get('/v1/status', AbortSignal.timeout(100)))
    expect(error.message).toMatch(/did not answer GET \/v1\/status in time/)
  })

  it('reports a daemon that drops the connection as not answering', async () => {
    const server = await listen((request) => request.socket.destroy())
    const client = await connectToDaemon(await dataDirFor(server))
    const error = await failure(client.get('/v1/status', AbortSignal.timeout(5_000)))
    expect(error.message).toMatch(/is not answering/)
  })
})
