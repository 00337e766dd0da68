// Proves `shardnet generate --network` end to end through the real CLI (node bin/shardnet.js as child
// processes): two background daemons started with `node start` serve blocks 0-1 and 2-3 of a tiny GPT
// (`node serve --blocks`), and `generate --network` on the second one, given the model directory (its id
// computed) or the id, writes exactly the bytes `shardnet generate DIR` writes locally with the same
// seed (sampling happens at the client; the cpu engines agree bitwise), with the chain on stderr.
// --stop ends the text before the stop text; Ctrl-C (SIGINT) mid-generation exits 130 and the servers'
// sessions end; an unknown model, no daemon and bad flags get one sentence and a non-zero exit.
import { execFile, spawn } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { type GptConfig, initializeGpt } from '../../kernels/models/gpt/config.js'
import type { ServeListing } from '../../node/api/serving-routes.js'
import { saveGptModel } from '../../node/executor/model-files.js'
import { modelIdOfDirectory } from '../../node/serving/model-package.js'
import { dataDirPaths } from '../../node/store/data-dir.js'
import { isShardnetProcessAlive, readPidFile } from '../../node/store/pid-file.js'
import { gptManifest } from '../unit/models/gpt-fixtures.js'
import { waitUntil } from './daemon-helpers.js'

const execFileAsync = promisify(execFile)

const CONFIG: GptConfig = {
  vocabSize: 256,
  context: 32,
  width: 32,
  layers: 4,
  heads: 2,
  layerNormEpsilon: 1e-5,
}

interface CliResult {
  code: number
  stdout: Buffer
  stderr: string
}

async function shardnet(...args: string[]): Promise<CliResult> {
  const environment = { ...process.env }
  delete environment.SHARDNET_DATA_DIR
  try {
    const { stdout, stderr } = await execFileAsync(process.execPath, ['bin/shardnet.js', ...args], {
      env: environment,
      timeout: 60_000,
      encoding: 'buffer',
    })
    return { code: 0, stdout, stderr: stderr.toString('utf8') }
  } catch (error) {
    const failed = error as { code?: number; stdout?: Buffer; stderr?: Buffer }
    return {
      code: failed.code ?? -1,
      stdout: failed.stdout ?? Buffer.alloc(0),
      stderr: failed.stderr?.toString('utf8') ?? '',
    }
  }
}

async function ok(...args: string[]): Promise<CliResult> {
  const result = await shardnet(...args)
  if (result.code !== 0)
    throw new Error(`shardnet ${args.join(' ')} failed (${result.code}): ${result.stderr}`)
  return result
}

/** sessions open on a daemon's served spans, from its API */
async function sessions(dataDir: string): Promise<number> {
  const paths = dataDirPaths(dataDir)
  const endpoint = JSON.parse(await readFile(paths.apiEndpoint, 'utf8')) as { url: string }
  const token = (await readFile(paths.apiToken, 'utf8')).trim()
  const response = await fetch(`${endpoint.url}/v1/serve`, { headers: { authorization: `Bearer ${token}` } })
  const listing = (await response.json()) as ServeListing
  return listing.entries.reduce((sum, entry) => sum + (entry.sessions ?? 0), 0)
}

describe('shardnet generate --network (the real CLI and background daemons)', () => {
  let root: string
  let model: string
  let modelId: string
  let a: string
  let b: string
  const generation = ['--prompt', 'Hello there', '--tokens', '60', '--seed', '4', '--temperature', '0.8']

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), 'shardnet-generate-network-'))
    model = join(root, 'model')
    a = join(root, 'a')
    b = join(root, 'b')
    await saveGptModel(model, CONFIG, initializeGpt(CONFIG, 3), gptManifest(3))
    modelId = await modelIdOfDirectory(model)
    const first = JSON.parse(
      (await ok('node', 'start', '--data-dir', a, '--backend', 'cpu', '--json')).stdout.toString(),
    )
    await ok('node', 'start', '--data-dir', b, '--backend', 'cpu', '--bootstrap', first.addresses[0])
    await Promise.all([
      ok('node', 'serve', model, '--blocks', '0-1', '--data-dir', a),
      ok('node', 'serve', model, '--blocks', '2-3', '--data-dir', b),
    ])
  }, 60_000)

  afterAll(async () => {
    await Promise.allSettled([a, b].map((dataDir) => shardnet('node', 'stop', '--data-dir', dataDir)))
    // whatever did not stop is killed by its pid, never by name
    for (const dataDir of [a, b]) {
      const pid = await readPidFile(dataDirPaths(dataDir).pidFile)
      if (pid !== undefined && isShardnetProcessAlive(pid)) process.kill(pid, 'SIGKILL')
    }
    await rm(root, { recursive: true, force: true })
  })

  it('writes the bytes local generation writes with the same seed, the chain on stderr', async () => {
    const local = await ok('generate', model, ...generation, '--backend', 'cpu')
    expect(local.stdout.length).toBe(60)
    // the chain may take a moment to appear in b's DHT view: the first try is retried until it works
    let network: CliResult | undefined
    await waitUntil(
      async () => {
        network = await shardnet('generate', '--network', model, ...generation, '--data-dir', b)
        return network.code === 0
      },
      () => `generate --network to succeed (last: ${network?.stderr})`,
      30_000,
      500,
    )
    expect(network?.stdout).toEqual(local.stdout)
    expect(network?.stderr).toMatch(/^60 bytes in [\d.]+ s \([\d.]+ tokens\/s, first byte after \d+ ms\)\n/)
    expect(network?.stderr).toContain('through 2 servers: ')
    expect(network?.stderr).toMatch(/\(blocks 0-1\), this node \(blocks 2-3\)\n$/)

    // by id, the same
    const byId = await ok('generate', '--network', modelId, ...generation, '--data-dir', b)
    expect(byId.stdout).toEqual(local.stdout)
  })

  it('--stop ends the text before the stop text', async () => {
    const local = await ok('generate', model, ...generation, '--backend', 'cpu')
    const at = local.stdout.findIndex((byte, index) => index >= 3 && byte >= 0x21 && byte < 0x7f)
    expect(at).toBeGreaterThan(0)
    const stop = String.fromCharCode(local.stdout[at])
    const stopped = await ok('generate', '--network', modelId, ...generation, '--stop', stop, '--data-dir', b)
    expect(stopped.stdout).toEqual(local.stdout.subarray(0, local.stdout.indexOf(local.stdout[at])))
    expect(stopped.stderr).toContain('stopped at a stop text')
  })

  it("Ctrl-C mid-generation exits 130 and ends the servers' sessions", async () => {
    const child = spawn(
      process.execPath,
      [
        'bin/shardnet.js',
        'generate',
        '--network',
        modelId,
        '--prompt',
        'x',
        '--tokens',
        '100000',
        '--data-dir',
        b,
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    )
    let written = 0
    let stderr = ''
    child.stdout.on('data', (chunk: Buffer) => {
      written += chunk.length
    })
    child.stderr.on('data', (chunk: Buffer) => {
      stderr += chunk.toString()
    })
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
    await waitUntil(
      () => written >= 20,
      () => `bytes on stdout (stderr: ${stderr})`,
      30_000,
      20,
    )
    expect(await sessions(a)).toBe(1)
    child.kill('SIGINT')
    expect(await exited).toBe(130)
    expect(stderr).toMatch(/generation was interrupted after \d+ bytes/)
    expect(written).toBeLessThan(100_000)
    await waitUntil(
      async () => (await sessions(a)) + (await sessions(b)) === 0,
      'the sessions to end',
      10_000,
      100,
    )
  })

  it('refuses an unknown model, a missing daemon and bad flags with one sentence', async () => {
    const absent = CID.createV1(raw.code, await sha256.digest(new TextEncoder().encode('nobody'))).toString()
    const unknown = await shardnet('generate', '--network', absent, '--prompt', 'x', '--data-dir', b)
    expect(unknown.code).toBe(1)
    expect(unknown.stderr).toBe(
      `error: the daemon refused POST /v1/generate: no server of the model ${absent} was found\n`,
    )
    const none = await shardnet(
      'generate',
      '--network',
      modelId,
      '--prompt',
      'x',
      '--data-dir',
      join(root, 'none'),
    )
    expect(none.code).toBe(1)
    expect(none.stderr).toMatch(/^error: no shardnet daemon is running on data dir /)
    const badTopP = await shardnet(
      'generate',
      '--network',
      modelId,
      '--prompt',
      'x',
      '--top-p',
      '0',
      '--data-dir',
      b,
    )
    expect(badTopP.stderr).toBe('error: --top-p must be a number above 0 to 1, got 0\n')
    const both = await shardnet('generate', model, '--network', modelId, '--prompt', 'x', '--data-dir', b)
    expect(both.stderr).toMatch(/^error: give either a model directory or --network MODEL, not both/)
    const localStop = await shardnet('generate', model, '--prompt', 'x', '--stop', 'a')
    expect(localStop.stderr).toBe('error: --stop needs --network (generation through the network)\n')
    for (const result of [badTopP, both, localStop]) expect(result.code).toBe(1)
  })
})
