// The GPT's command-line face, run as a user runs it (the real bin as a child process): `train
// --local --model gpt` writes a Hugging Face style directory (tensor names and shapes of GPT-2,
// GPT2Config keys), `eval` scores it in bits per byte on the same windows as training's final
// evaluation, `generate` streams raw bytes that a seed reproduces and that the KV cache does not
// change, and every bad flag or corrupt checkpoint ends with one sentence and a non-zero exit.
// The model is tiny (1 layer, width 16, context 32) and runs on the cpu backend; evaluations score
// the first windows of the validation split so that the file stays fast. Refusals that come before
// any device work run through the CLI's main() in this process (one of each kind also runs through
// the bin), since every child process costs seconds of startup on a 2-core machine.
import { execFile, spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync } from 'node:fs'
import { cp, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { decodeSafetensors, encodeSafetensors, type NamedTensor } from '../../kernels/models/safetensors.js'
import { main } from '../../node/cli/main.js'
import { saveModel } from '../../node/executor/model-files.js'

interface CliResult {
  code: number
  stdout: Buffer
  stderr: string
}

function runCli(args: string[], timeoutMs = 60_000): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(
      'node',
      ['bin/shardnet.js', ...args],
      {
        timeout: timeoutMs,
        encoding: 'buffer',
        maxBuffer: 16 << 20,
        env: {
          ...process.env,
          XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? '/tmp/shardnet-xdg',
          NO_COLOR: '1',
        },
      },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === 'number' ? error.code : -1
        resolve({ code, stdout, stderr: stderr.toString() })
      },
    )
  })
}

/** The CLI's main() in this process, its stdout and stderr captured (callers run one at a time). */
async function runMain(args: string[]): Promise<CliResult> {
  const out: Buffer[] = []
  let err = ''
  const stdoutWrite = process.stdout.write
  const stderrWrite = process.stderr.write
  process.stdout.write = ((chunk: string | Uint8Array) => {
    out.push(Buffer.from(chunk))
    return true
  }) as typeof process.stdout.write
  process.stderr.write = ((chunk: string | Uint8Array) => {
    err += chunk.toString()
    return true
  }) as typeof process.stderr.write
  try {
    const code = await main(['node', 'shardnet', ...args])
    return { code, stdout: Buffer.concat(out), stderr: err }
  } finally {
    process.stdout.write = stdoutWrite
    process.stderr.write = stderrWrite
  }
}

/** stderr of an expected failure: exactly one line "error: <sentence>" (Dawn's warnings aside) */
function errorLine(result: CliResult): string {
  const lines = result.stderr
    .split('\n')
    .filter((line) => line.trim() !== '' && !line.includes('artificially reduced'))
  expect(lines, result.stderr).toHaveLength(1)
  expect(lines[0]).toMatch(/^error: \S.*$/)
  return lines[0]
}

const LAYERS = 1
const WIDTH = 16
const HEADS = 2
const CONTEXT = 32
const STEPS = 5
const BATCH = 2
const FINAL_WINDOWS = 64

const smallGpt = (out: string) => [
  'train',
  '--local',
  '--model',
  'gpt',
  '--layers',
  String(LAYERS),
  '--width',
  String(WIDTH),
  '--heads',
  String(HEADS),
  '--context',
  String(CONTEXT),
  '--steps',
  String(STEPS),
  '--batch',
  String(BATCH),
  '--eval-every',
  '2',
  '--eval-windows',
  '4',
  '--final-windows',
  String(FINAL_WINDOWS),
  '--seed',
  '3',
  '--backend',
  'cpu',
  '--out',
  out,
]

let root: string
let model: string
let trained: CliResult
beforeAll(async () => {
  root = await mkdtemp(join(tmpdir(), 'shardnet-cli-gpt-'))
  model = join(root, 'gpt')
  trained = await runCli([...smallGpt(model), '--json'])
}, 120_000)
afterAll(async () => {
  await rm(root, { recursive: true, force: true })
})

describe('shardnet train --local --model gpt', () => {
  it('writes model.safetensors with GPT-2 names and shapes, config.json and model.json', async () => {
    expect(trained.code, trained.stderr).toBe(0)
    expect((await readdir(model)).sort()).toEqual(['config.json', 'model.json', 'model.safetensors'])
    const { tensors, metadata } = decodeSafetensors(
      new Uint8Array(await readFile(join(model, 'model.safetensors'))),
    )
    const d = WIDTH
    expect([...tensors].map(([name, tensor]) => [name, tensor.shape])).toEqual([
      ['wte.weight', [256, d]],
      ['wpe.weight', [CONTEXT, d]],
      ['h.0.ln_1.weight', [d]],
      ['h.0.ln_1.bias', [d]],
      ['h.0.attn.c_attn.weight', [d, 3 * d]],
      ['h.0.attn.c_attn.bias', [3 * d]],
      ['h.0.attn.c_proj.weight', [d, d]],
      ['h.0.attn.c_proj.bias', [d]],
      ['h.0.ln_2.weight', [d]],
      ['h.0.ln_2.bias', [d]],
      ['h.0.mlp.c_fc.weight', [d, 4 * d]],
      ['h.0.mlp.c_fc.bias', [4 * d]],
      ['h.0.mlp.c_proj.weight', [4 * d, d]],
      ['h.0.mlp.c_proj.bias', [d]],
      ['ln_f.weight', [d]],
      ['ln_f.bias', [d]],
    ])
    expect(metadata.format).toBe('pt')
    const config = JSON.parse(await readFile(join(model, 'config.json'), 'utf8'))
    expect(config).toMatchObject({
      architectures: ['GPT2LMHeadModel'],
      model_type: 'gpt2',
      vocab_size: 256,
      n_positions: CONTEXT,
      n_ctx: CONTEXT,
      n_embd: WIDTH,
      n_layer: LAYERS,
      n_head: HEADS,
      layer_norm_epsilon: 1e-5,
      activation_function: 'gelu_new',
      tie_word_embeddings: true,
    })
  })

  it('records the run in model.json and prints it as JSON', async () => {
    const printed = JSON.parse(trained.stdout.toString())
    const manifest = JSON.parse(await readFile(join(model, 'model.json'), 'utf8'))
    expect(printed).toMatchObject(manifest)
    const parameters =
      256 * 16 + 32 * 16 + (2 * 16 + 16 * 48 + 48 + 16 * 16 + 16 + 2 * 16 + 16 * 64 + 64 + 64 * 16 + 16) + 32
    expect(manifest).toMatchObject({
      model: 'gpt',
      seed: 3,
      parameterCount: parameters,
      architecture: { type: 'gpt', context: CONTEXT, width: WIDTH, layers: LAYERS, heads: HEADS },
      training: {
        preset: 'tiny',
        presetOverrides: { context: CONTEXT, width: WIDTH, layers: LAYERS, heads: HEADS },
        steps: STEPS,
        tokensSeen: STEPS * BATCH * CONTEXT,
        batchSize: BATCH,
        schedule: 'cosine',
        optimizer: { name: 'adamw', beta1: 0.9, beta2: 0.95, gradClip: 1 },
      },
      backend: { kind: 'cpu' },
      metrics: { validationBytes: FINAL_WINDOWS * CONTEXT, validationWindows: FINAL_WINDOWS },
    })
    // an untrained byte model is near uniform: 8 bits per byte
    expect(manifest.metrics.validationBitsPerByte).toBeGreaterThan(7)
    expect(manifest.metrics.validationBitsPerByte).toBeLessThan(8.5)
    expect(manifest.metrics.tokensPerSecond).toBeGreaterThan(0)
    // evaluations after steps 2 and 4 on 4 windows, and the final one
    expect(manifest.history.map((record: { step: number }) => record.step)).toEqual([2, 4, 5])
    expect(manifest.history.at(-1).validationBitsPerByte).toBe(manifest.metrics.validationBitsPerByte)
    expect(trained.stderr).toMatch(
      /training gpt 1 layers x 16 wide, 2 heads, context 32 \(\d+ parameters\) on cpu/,
    )
    expect(trained.stderr).toMatch(/step 5\/5 loss \d\.\d{4} lr \S+ \d+ tokens\/s ETA 0s/)
    expect(trained.stderr).toMatch(
      /step 2: validation \d\.\d{3} bits\/byte on the first 4 windows \(128 bytes/,
    )
    expect(trained.stderr).toMatch(
      /validation \d\.\d{3} bits\/byte over part of the split \(2048 bytes, 64 windows/,
    )
  })

  it('trains for --minutes with the step count fixed from the first steps', async () => {
    const out = join(root, 'minutes')
    const args = smallGpt(out).filter((arg, i, all) => arg !== '--steps' && all[i - 1] !== '--steps')
    const result = await runCli([...args, '--minutes', '0.05', '--final-windows', '2', '--json'])
    expect(result.code, result.stderr).toBe(0)
    const match = /--minutes 0\.05: (\d+) steps at \d+\.\d\d s per step/.exec(result.stderr)
    expect(match, result.stderr).not.toBeNull()
    const manifest = JSON.parse(result.stdout.toString())
    expect(manifest.training.steps).toBe(Number(match?.[1]))
    expect(manifest.training.minutes).toBe(0.05)
    expect(manifest.training.steps).toBeGreaterThan(10)
  })

  it('stops on SIGINT with exit code 130, one sentence, and nothing written', async () => {
    const out = join(root, 'interrupted')
    const args = smallGpt(out).map((arg, i, all) => (all[i - 1] === '--steps' ? '100000' : arg))
    const child = spawn('node', ['bin/shardnet.js', ...args], { env: { ...process.env, NO_COLOR: '1' } })
    let stderr = ''
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)))
    try {
      await new Promise<void>((resolve) => {
        child.stderr.on('data', (chunk: Buffer) => {
          stderr += chunk.toString()
          if (stderr.includes('step 10/100000')) resolve()
        })
      })
      child.kill('SIGINT')
      expect(await exited).toBe(130)
    } finally {
      // a child that ignored the signal must not outlive the test
      if (child.exitCode === null) child.kill('SIGKILL')
    }
    expect(stderr.trim().split('\n').at(-1)).toBe(
      'error: training was interrupted before it finished; nothing was written',
    )
    expect(existsSync(out)).toBe(false)
  })
})

describe('shardnet eval of a GPT', () => {
  it('scores the same windows to the same bits per byte as training did', async () => {
    const manifest = JSON.parse(await readFile(join(model, 'model.json'), 'utf8'))
    const [json, text] = await Promise.all([
      runCli(['eval', model, '--windows', String(FINAL_WINDOWS), '--backend', 'cpu', '--json']),
      runCli(['eval', model, '--windows', '8', '--backend', 'cpu']),
    ])
    expect(json.code, json.stderr).toBe(0)
    const result = JSON.parse(json.stdout.toString())
    expect(result).toMatchObject({
      model: 'gpt',
      backend: 'cpu',
      windows: FINAL_WINDOWS,
      bytes: FINAL_WINDOWS * CONTEXT,
      wholeSplit: false,
    })
    expect(result.bitsPerByte).toBe(manifest.metrics.validationBitsPerByte)
    expect(text.code, text.stderr).toBe(0)
    expect(text.stdout.toString()).toMatch(
      new RegExp(
        '^validation \\d\\.\\d{3} bits/byte \\(256 bytes scored in 8 windows, \\d+\\.\\d s\\) ' +
          'for gpt 1x16 context 32 on cpu\n$',
      ),
    )
    const bits = Number(/validation (\d\.\d{3})/.exec(text.stdout.toString())?.[1])
    expect(bits).toBeGreaterThan(7)
    expect(bits).toBeLessThan(8.5)
  })
})

describe('shardnet generate', () => {
  const generate = (...flags: string[]) =>
    runCli(['generate', model, '--prompt', 'The kernel ', '--tokens', '40', '--backend', 'cpu', ...flags])

  it('streams raw bytes that the seed reproduces', async () => {
    const [first, second, other] = await Promise.all([
      generate('--seed', '7', '--temperature', '1'),
      generate('--seed', '7', '--temperature', '1'),
      generate('--seed', '8', '--temperature', '1'),
    ])
    for (const result of [first, second, other]) expect(result.code, result.stderr).toBe(0)
    expect(first.stdout.length).toBe(40)
    expect(second.stdout.equals(first.stdout)).toBe(true)
    // a near-uniform model: 40 bytes drawn from another seed are not the same 40 bytes
    expect(other.stdout.equals(first.stdout)).toBe(false)
    expect(first.stderr).toMatch(/40 bytes in \d+\.\d\d s \(\d+\.\d tokens\/s on cpu\)/)
  })

  it('gives the same greedy bytes with and without the KV cache across a cut prompt and slides', async () => {
    // 50 prompt bytes over a context of 32: the prompt is cut, and 40 more bytes slide the window
    const prompt = 'Documentation/admin-guide/kernel-parameters.txt: '
    const args = [
      'generate',
      model,
      '--prompt',
      prompt,
      '--tokens',
      '40',
      '--temperature',
      '0',
      '--backend',
      'cpu',
    ]
    const [cached, uncached] = await Promise.all([runCli(args), runCli([...args, '--no-cache'])])
    expect(cached.code, cached.stderr).toBe(0)
    expect(uncached.code, uncached.stderr).toBe(0)
    expect(cached.stdout.length).toBe(40)
    expect(uncached.stdout.equals(cached.stdout)).toBe(true)
    const dropped = Buffer.byteLength(prompt) - CONTEXT
    for (const result of [cached, uncached])
      expect(result.stderr).toContain(
        `the prompt is longer than the model's context of 32 bytes: its first ${dropped} bytes were dropped`,
      )
    expect(uncached.stderr).toMatch(/no cache\)/)
  })

  it.each([
    [['--tokens', '0'], /--tokens must be an integer from 1 to 100000, got 0/],
    [['--tokens', '100001'], /--tokens must be an integer from 1 to 100000, got 100001/],
    [['--tokens', 'many'], /--tokens must be a number, got "many"/],
    [['--temperature', '-0.5'], /--temperature must be a number from 0 \(greedy\) to 10, got -0.5/],
    [['--temperature', '11'], /--temperature must be a number from 0 \(greedy\) to 10, got 11/],
    [['--top-k', '257'], /--top-k must be an integer from 0 \(all bytes\) to 256, got 257/],
    [['--top-k', '2.5'], /--top-k must be an integer from 0 \(all bytes\) to 256, got 2.5/],
    [['--seed', '-1'], /--seed must be an integer from 0/],
  ])('refuses %j with the allowed range', async (flags, message) => {
    const result = await runMain(['generate', model, '--prompt', 'The kernel ', '--backend', 'cpu', ...flags])
    expect(result.code).toBe(1)
    expect(result.stdout.length).toBe(0)
    expect(errorLine(result)).toMatch(message)
  })

  it('refuses an out-of-range flag through the bin too', async () => {
    const result = await generate('--top-k', '300')
    expect(result.code).toBe(1)
    expect(result.stdout.length).toBe(0)
    expect(errorLine(result)).toMatch(/--top-k must be an integer from 0 \(all bytes\) to 256, got 300/)
  })

  it('refuses a missing prompt and an MLP directory', async () => {
    const mlp = join(root, 'mlp')
    const architecture = { inputSize: 2, hiddenSizes: [], outputSize: 2 }
    await saveModel(mlp, architecture, [{ weight: new Float32Array(4), bias: new Float32Array(2) }], {
      model: 'mnist-mlp',
      architecture: { type: 'mlp', activation: 'relu', ...architecture },
      parameterCount: 6,
      dataset: {},
      seed: 1,
      training: {},
      backend: {},
      metrics: {},
      history: [],
      createdAt: new Date(0).toISOString(),
    })
    const noPrompt = await runMain(['generate', model, '--backend', 'cpu'])
    const onMlp = await runMain(['generate', mlp, '--prompt', 'x', '--backend', 'cpu'])
    expect(noPrompt.code).toBe(1)
    expect(errorLine(noPrompt)).toMatch(/--prompt <text> is required/)
    expect(onMlp.code).toBe(1)
    expect(errorLine(onMlp)).toBe(`error: ${mlp} holds an MLP, not a GPT`)
  })
})

describe('flags of the other model', () => {
  it('are refused through the bin', async () => {
    const out = join(root, 'bad-bin')
    const result = await runCli(['train', '--local', '--model', 'gpt', '--epochs', '3', '--out', out])
    expect(result.code).toBe(1)
    expect(errorLine(result)).toMatch(/^error: --epochs does not apply to --model gpt/)
    expect(existsSync(out)).toBe(false)
  })

  it.each([
    [['--model', 'gpt', '--epochs', '3'], /^error: --epochs does not apply to --model gpt/],
    [
      ['--model', 'gpt', '--hidden', '8', '--dataset-dir', '/tmp'],
      /^error: --hidden, --dataset-dir do not apply/,
    ],
    [['--model', 'mnist-mlp', '--steps', '5'], /^error: --steps does not apply to --model mnist-mlp/],
    [['--preset', 'tiny'], /^error: --preset does not apply to --model mnist-mlp/],
    [
      ['--model', 'gpt', '--steps', '5', '--minutes', '1'],
      /^error: give either --steps or --minutes, not both/,
    ],
    [['--model', 'gpt', '--width', '16', '--heads', '3'], /^error: --width 16 must be a multiple of heads 3/],
    [['--model', 'gpt', '--context', '0'], /^error: --context must be an integer from 1 to 8192, got 0/],
    [['--model', 'gpt', '--warmup', '-1'], /^error: --warmup must be an integer from 0/],
    [['--model', 'gpt', '--minutes', '0'], /^error: --minutes must be a number above 0/],
    [['--model', 'gpt', '--lr', '0'], /^error: --lr must be a number above 0/],
    [['--model', 'transformer'], /^error: unknown model "transformer"; known models: mnist-mlp, gpt/],
  ])('refuses %j with one sentence and writes nothing', async (flags, message) => {
    const out = join(root, `bad-${flags.join('_').replace(/[^a-z0-9]/gi, '')}`)
    const result = await runMain(['train', '--local', '--backend', 'cpu', '--out', out, ...flags])
    expect(result.code).toBe(1)
    expect(errorLine(result)).toMatch(message)
    expect(existsSync(out)).toBe(false)
  })
})

describe('corrupt GPT checkpoints', () => {
  /** A copy of the trained model with its tensors changed, model.json's hash updated to match. */
  async function corrupted(
    name: string,
    change: (tensors: Array<[string, NamedTensor]>) => void,
  ): Promise<string> {
    const directory = join(root, `corrupt-${name}`)
    await cp(model, directory, { recursive: true })
    const { tensors, metadata } = decodeSafetensors(
      new Uint8Array(await readFile(join(model, 'model.safetensors'))),
    )
    const list = [...tensors]
    change(list)
    const bytes = encodeSafetensors(list, metadata)
    await writeFile(join(directory, 'model.safetensors'), bytes)
    const manifestPath = join(directory, 'model.json')
    const manifest = JSON.parse(await readFile(manifestPath, 'utf8'))
    manifest.weights.bytes = bytes.length
    manifest.weights.sha256 = createHash('sha256').update(bytes).digest('hex')
    await writeFile(manifestPath, JSON.stringify(manifest))
    return directory
  }

  it('refuses each with one sentence and a non-zero exit, in eval and generate', async () => {
    const missing = await corrupted('missing', (list) => {
      list.splice(
        list.findIndex(([name]) => name === 'h.0.mlp.c_fc.bias'),
        1,
      )
    })
    const extra = await corrupted('extra', (list) => {
      list.push(['h.0.attn.rotary.weight', { shape: [4], data: new Float32Array(4) }])
    })
    const shape = await corrupted('shape', (list) => {
      const entry = list.find(([name]) => name === 'wpe.weight') as [string, NamedTensor]
      entry[1] = { shape: [WIDTH, CONTEXT], data: entry[1].data }
    })
    const nan = await corrupted('nan', (list) => {
      const entry = list.find(([name]) => name === 'ln_f.weight') as [string, NamedTensor]
      const data = Float32Array.from(entry[1].data)
      data[5] = Number.NaN
      entry[1] = { shape: entry[1].shape, data }
    })
    const config = await corrupted('config', () => {})
    const configPath = join(config, 'config.json')
    await writeFile(configPath, (await readFile(configPath, 'utf8')).replace('"n_embd": 16', '"n_embd": 32'))
    const noConfig = await corrupted('no-config', () => {})
    await rm(join(noConfig, 'config.json'))
    const hash = join(root, 'corrupt-hash')
    await cp(model, hash, { recursive: true })
    const weights = await readFile(join(hash, 'model.safetensors'))
    weights[weights.length - 1] ^= 1
    await writeFile(join(hash, 'model.safetensors'), weights)

    const cases: Array<[string, RegExp]> = [
      [
        missing,
        /model\.safetensors does not fit config\.json: the checkpoint has no tensor h\.0\.mlp\.c_fc\.bias/,
      ],
      [extra, /a tensor config\.json does not describe: h\.0\.attn\.rotary\.weight/],
      [shape, /wpe\.weight has shape \[16, 32\], config\.json implies \[32, 16\]/],
      [nan, /ln_f\.weight holds a non-finite value \(NaN\) at 5/],
      [config, /config\.json and model\.json disagree about the model \(width: 32 against 16\)/],
      [noConfig, /config\.json is missing/],
      [hash, /model\.safetensors does not match model\.json \(sha256 differs\)/],
    ]
    const results: CliResult[] = []
    for (const [directory] of cases) {
      results.push(await runMain(['eval', directory, '--backend', 'cpu', '--windows', '1']))
      results.push(await runMain(['generate', directory, '--prompt', 'x', '--backend', 'cpu']))
    }
    // and through the bin: one sentence, exit code 1
    const viaBin = await runCli(['eval', nan, '--backend', 'cpu'])
    expect(viaBin.code).toBe(1)
    expect(errorLine(viaBin)).toMatch(/ln_f\.weight holds a non-finite value/)
    cases.forEach(([, message], i) => {
      for (const result of [results[2 * i], results[2 * i + 1]]) {
        expect(result.code).toBe(1)
        expect(result.stdout.length).toBe(0)
        expect(errorLine(result)).toMatch(message)
      }
    })
  }, 120_000)
})
