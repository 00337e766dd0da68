// Proves readGptParts reads some tensors of a GPT model directory alone and exactly: a span's and the
// ends' tensors are bitwise the full loader's (loadGpt) slices, a GptSpan and GptEnds built from them
// compute bitwise what fromParameters' do, and a tensor outside the part is never read (a NaN there does
// not matter, one inside is refused). Weights files that lie are refused with one clear ModelFilesError
// each: a header length past the file or the limit, a header that is not JSON, holes and overlaps, a
// dtype other than F32, a shape other than config.json's, a missing or extra tensor, a file of another
// size or sha256 than model.json's, an untied head; a partial weights file (pieces.json) refuses bytes
// of the pieces it lacks. The files here are real files written by saveGptModel, then altered.
import { createHash } from 'node:crypto'
import { mkdtemp, readFile, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Backend } from '../../../kernels/backend.js'
import { createBackend } from '../../../kernels/index.js'
import { type GptConfig, gptParameterLayout, initializeGpt } from '../../../kernels/models/gpt/config.js'
import { GptEnds, GptSpan } from '../../../kernels/models/gpt/span.js'
import { encodeSafetensors, type NamedTensor } from '../../../kernels/models/safetensors.js'
import {
  gptPartNames,
  PRESENT_PIECES_FILE,
  PRESENT_PIECES_FORMAT,
  readGptParts,
  WEIGHTS_HEADER_BYTES_MAX,
} from '../../../node/executor/gpt-tensors.js'
import {
  loadGpt,
  MANIFEST_FILE,
  ModelFilesError,
  saveGptModel,
  WEIGHTS_FILE,
} from '../../../node/executor/model-files.js'
import { gptManifest } from '../models/gpt-fixtures.js'

const CONFIG: GptConfig = {
  vocabSize: 256,
  context: 16,
  width: 16,
  layers: 4,
  heads: 2,
  layerNormEpsilon: 1e-5,
}
const MANIFEST = gptManifest(1)

async function modelDir(params = initializeGpt(CONFIG, 5)): Promise<string> {
  const directory = join(await mkdtemp(join(tmpdir(), 'shardnet-tensors-')), 'model')
  await saveGptModel(directory, CONFIG, params, MANIFEST)
  return directory
}

/** Replaces the weights file and makes model.json describe it (size and sha256), as a liar would. */
async function replaceWeights(directory: string, weights: Uint8Array): Promise<void> {
  await writeFile(join(directory, WEIGHTS_FILE), weights)
  const manifest = JSON.parse(await readFile(join(directory, MANIFEST_FILE), 'utf8'))
  manifest.weights.bytes = weights.byteLength
  manifest.weights.sha256 = createHash('sha256').update(weights).digest('hex')
  await writeFile(join(directory, MANIFEST_FILE), JSON.stringify(manifest))
}

/** The model's tensors in layout order, with `change` applied (it may rename, drop or alter them). */
function tensorsOf(
  params: Float32Array,
  change: (tensors: Array<[string, NamedTensor]>) => Array<[string, NamedTensor]> = (t) => t,
): Uint8Array {
  const tensors: Array<[string, NamedTensor]> = gptParameterLayout(CONFIG).map((entry) => [
    entry.name,
    { shape: [...entry.shape], data: params.slice(entry.offset, entry.offset + entry.size) },
  ])
  return encodeSafetensors(change(tensors), { format: 'pt' })
}

/** A safetensors file whose header is `header` (JSON text, padded) and whose data is `dataBytes` zeros. */
function rawFile(header: string, dataBytes: number, claimedLength?: bigint): Uint8Array {
  const text = new TextEncoder().encode(header)
  const out = new Uint8Array(8 + text.byteLength + dataBytes)
  new DataView(out.buffer).setBigUint64(0, claimedLength ?? BigInt(text.byteLength), true)
  out.set(text, 8)
  return out
}

async function refusal(promise: Promise<unknown>): Promise<string> {
  try {
    await promise
  } catch (error) {
    expect(error).toBeInstanceOf(ModelFilesError)
    return (error as Error).message
  }
  throw new Error('expected a ModelFilesError')
}

function bits(values: Float32Array): Buffer {
  return Buffer.from(values.buffer, values.byteOffset, values.byteLength)
}

describe('readGptParts', () => {
  const params = initializeGpt(CONFIG, 5)
  let directory: string
  let backend: Backend

  beforeAll(async () => {
    directory = await modelDir(params)
    backend = await createBackend({ prefer: 'cpu', cpuEngine: 'native' })
  })
  afterAll(() => backend?.destroy())

  it("reads a span's and the ends' tensors bitwise as the full loader has them, and only those", async () => {
    const full = await loadGpt(directory)
    const layout = new Map(gptParameterLayout(CONFIG).map((entry) => [entry.name, entry]))
    const span = await readGptParts(directory, { span: { start: 1, end: 3 } })
    expect(span.config).toEqual(CONFIG)
    expect(span.manifest.model).toBe('gpt')
    expect([...span.tensors.keys()]).toEqual(gptPartNames(CONFIG, { span: { start: 1, end: 3 } }))
    expect([...span.tensors.keys()].every((name) => /^h\.[12]\./.test(name))).toBe(true)
    expect(span.tensors.size).toBe(24)
    const ends = await readGptParts(directory, { ends: true })
    expect([...ends.tensors.keys()]).toEqual(['wte.weight', 'wpe.weight', 'ln_f.weight', 'ln_f.bias'])
    for (const tensors of [span.tensors, ends.tensors]) {
      for (const [name, values] of tensors) {
        const entry = layout.get(name)
        if (entry === undefined) throw new Error(`${name} is not in the layout`)
        expect(bits(values).equals(bits(full.params.subarray(entry.offset, entry.offset + entry.size)))).toBe(
          true,
        )
      }
    }
  })

  it('builds a GptSpan and GptEnds that compute bitwise what fromParameters gives', async () => {
    const { tensors } = await readGptParts(directory, { span: { start: 1, end: 3 }, ends: true })
    const get = (name: string) => tensors.get(name) as Float32Array
    const partial = GptSpan.fromTensors(backend, CONFIG, 1, 3, get)
    const whole = GptSpan.fromParameters(backend, CONFIG, params, 1, 3)
    const endsPartial = GptEnds.fromTensors(backend, CONFIG, get)
    const endsWhole = GptEnds.fromParameters(backend, CONFIG, params)
    const hidden = await endsWhole.embed([72, 105, 33], 0)
    expect(bits(await endsPartial.embed([72, 105, 33], 0)).equals(bits(hidden))).toBe(true)
    const a = await partial.session(8).forward(hidden, 3, 0)
    const b = await whole.session(8).forward(hidden, 3, 0)
    expect(bits(a).equals(bits(b))).toBe(true)
    const last = a.subarray(2 * CONFIG.width)
    expect(bits(await endsPartial.logits(last)).equals(bits(await endsWhole.logits(last)))).toBe(true)
    expect(() => GptSpan.fromTensors(backend, CONFIG, 1, 3, () => new Float32Array(3))).toThrow(
      /h\.1\.ln_1\.weight has 3 values, expected 16/,
    )
    expect(() => GptSpan.fromTensors(backend, CONFIG, 3, 5, get)).toThrow(
      /not a span of the model's 4 blocks/,
    )
    for (const held of [partial, whole, endsPartial, endsWhole]) held.dispose()
  })

  it('refuses a NaN or Inf inside the part, and never reads one outside it', async () => {
    const poisoned = params.slice()
    const fc = gptParameterLayout(CONFIG).find((entry) => entry.name === 'h.3.mlp.c_fc.weight')
    if (fc === undefined) throw new Error('no h.3.mlp.c_fc.weight')
    poisoned[fc.offset + 7] = Number.NaN
    const dir = await modelDir(poisoned)
    expect(await refusal(loadGpt(dir))).toMatch(/h\.3\.mlp\.c_fc\.weight holds a non-finite value/)
    expect((await readGptParts(dir, { span: { start: 0, end: 3 }, ends: true })).tensors.size).toBe(40)
    expect(await refusal(readGptParts(dir, { span: { start: 2, end: 4 } }))).toMatch(
      /h\.3\.mlp\.c_fc\.weight holds a non-finite value \(NaN\) at 7/,
    )
    poisoned[fc.offset + 7] = 0
    poisoned[3] = Number.POSITIVE_INFINITY
    const inf = await modelDir(poisoned)
    expect(await refusal(readGptParts(inf, { ends: true }))).toMatch(
      /wte\.weight holds a non-finite value \(Infinity\)/,
    )
  })

  describe('refuses weights files that lie, with one sentence each', () => {
    const header = (entries: Record<string, unknown>) => JSON.stringify(entries)
    const cases: Array<[string, () => Uint8Array, RegExp]> = [
      [
        'a header length past the file',
        () => rawFile('{}', 0, 1_000_000n),
        /header claims 1000000 bytes but the file has only \d+ after the length \(truncated\?\)/,
      ],
      [
        'a header length past the limit',
        () => rawFile('{}', 0, BigInt(WEIGHTS_HEADER_BYTES_MAX) * 4n),
        /header length \d+ exceeds the limit/,
      ],
      ['a header that is not JSON', () => rawFile('{"wte.weight": ', 0), /header is not valid JSON/],
      [
        'a dtype other than F32',
        () => rawFile(header({ 'wte.weight': { dtype: 'F16', shape: [2], data_offsets: [0, 4] } }), 4),
        /tensor "wte\.weight" has dtype "F16"; only F32 is supported/,
      ],
      [
        'offsets that do not cover the shape',
        () => rawFile(header({ 'wte.weight': { dtype: 'F32', shape: [2], data_offsets: [0, 4] } }), 4),
        /has shape \[2\] but data_offsets cover 4 bytes instead of 8/,
      ],
      [
        'a hole between tensors',
        () =>
          rawFile(
            header({
              a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] },
              b: { dtype: 'F32', shape: [1], data_offsets: [8, 12] },
            }),
            12,
          ),
        /tensor "b" starts at byte 8, expected 4/,
      ],
      [
        'bytes after the last tensor',
        () => rawFile(header({ a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } }), 8),
        /data section has 8 bytes but the tensors cover 4/,
      ],
      [
        'a shape other than config.json implies',
        () =>
          tensorsOf(params, (tensors) =>
            tensors.map(([name, t]): [string, NamedTensor] =>
              name === 'h.2.attn.c_proj.weight' ? [name, { shape: [8, 32], data: t.data }] : [name, t],
            ),
          ),
        /h\.2\.attn\.c_proj\.weight has shape \[8, 32\], config\.json implies \[16, 16\]/,
      ],
      [
        'a missing tensor',
        () => tensorsOf(params, (tensors) => tensors.filter(([name]) => name !== 'h.1.ln_2.bias')),
        /the checkpoint has no tensor h\.1\.ln_2\.bias/,
      ],
      [
        'an extra tensor',
        () =>
          tensorsOf(params, (tensors) => [
            ...tensors,
            ['h.9.ln_1.weight', { shape: [1], data: new Float32Array(1) }],
          ]),
        /holds a tensor config\.json does not describe: h\.9\.ln_1\.weight/,
      ],
      [
        'a tensor twice (with and without the transformer. prefix)',
        () =>
          tensorsOf(params, (tensors) => [
            ...tensors,
            ['transformer.ln_f.bias', { shape: [16], data: new Float32Array(16) }],
          ]),
        /holds ln_f\.bias twice/,
      ],
    ]
    it.each(cases)('%s', async (_, weights, message) => {
      const dir = await modelDir(params)
      await replaceWeights(dir, weights())
      for (const parts of [{ span: { start: 2, end: 4 } }, { ends: true }]) {
        const refused = await refusal(readGptParts(dir, parts))
        expect(refused).toMatch(/the weights file .* does not fit config\.json: /)
        expect(refused).toMatch(message)
      }
    })

    it('a file of another size or sha256 than model.json, and an untied head', async () => {
      const dir = await modelDir(params)
      const weights = new Uint8Array(await readFile(join(dir, WEIGHTS_FILE)))
      await writeFile(join(dir, WEIGHTS_FILE), weights.subarray(0, weights.byteLength - 4))
      expect(await refusal(readGptParts(dir, { ends: true }))).toMatch(
        new RegExp(`is ${weights.byteLength - 4} bytes where model\\.json says ${weights.byteLength}`),
      )
      const changed = weights.slice()
      changed[changed.byteLength - 1] ^= 1
      await writeFile(join(dir, WEIGHTS_FILE), changed)
      expect(await refusal(readGptParts(dir, { ends: true }))).toMatch(
        /does not match model\.json \(sha256 differs\)/,
      )
      // without the hash (a directory checked before), only the tensors asked for are read
      expect((await readGptParts(dir, { ends: true }, { checkSha256: false })).tensors.size).toBe(4)

      const wte = params.slice(0, 256 * 16)
      const untied = wte.slice()
      untied[5] += 1
      const withHead = (head: Float32Array) =>
        tensorsOf(params, (tensors) => [...tensors, ['lm_head.weight', { shape: [256, 16], data: head }]])
      await replaceWeights(dir, withHead(wte))
      expect((await readGptParts(dir, { ends: true })).tensors.size).toBe(4)
      await replaceWeights(dir, withHead(untied))
      expect(await refusal(readGptParts(dir, { ends: true }))).toMatch(
        /lm_head\.weight differs from wte\.weight/,
      )
      // a span does not read the head
      expect((await readGptParts(dir, { span: { start: 0, end: 1 } })).tensors.size).toBe(12)
    })
  })

  it('reads a partial weights file only within the pieces pieces.json names', async () => {
    const dir = await modelDir(params)
    const weights = new Uint8Array(await readFile(join(dir, WEIGHTS_FILE)))
    const pieceBytes = 4096
    const count = Math.ceil(weights.byteLength / pieceBytes)
    // the header's pieces and h.3's present (found from the header's JSON here), the rest zeros
    const headerEnd = 8 + Number(new DataView(weights.buffer).getBigUint64(0, true))
    const header = JSON.parse(new TextDecoder().decode(weights.subarray(8, headerEnd)))
    const wanted = new Set<number>()
    const cover = (begin: number, end: number) => {
      for (let piece = Math.floor(begin / pieceBytes); piece * pieceBytes < end; piece++) wanted.add(piece)
    }
    cover(0, headerEnd)
    for (const [name, entry] of Object.entries(header) as Array<[string, { data_offsets: number[] }]>) {
      if (name.startsWith('h.3.')) cover(headerEnd + entry.data_offsets[0], headerEnd + entry.data_offsets[1])
    }
    const present = [...wanted].sort((a, b) => a - b)
    expect(present.length).toBeLessThan(count / 2)
    const sparse = new Uint8Array(weights.byteLength)
    for (const piece of present)
      sparse.set(weights.subarray(piece * pieceBytes, (piece + 1) * pieceBytes), piece * pieceBytes)
    await writeFile(join(dir, WEIGHTS_FILE), sparse)
    const record = { format: PRESENT_PIECES_FORMAT, bytes: weights.byteLength, pieceBytes, present }
    await writeFile(join(dir, PRESENT_PIECES_FILE), JSON.stringify(record))
    const full = await loadGpt(await modelDir(params))
    const read = await readGptParts(dir, { span: { start: 3, end: 4 } })
    const layout = gptParameterLayout(CONFIG)
    for (const entry of layout.filter((e) => e.name.startsWith('h.3.')))
      expect(
        bits(read.tensors.get(entry.name) as Float32Array).equals(
          bits(full.params.subarray(entry.offset, entry.offset + entry.size)),
        ),
      ).toBe(true)
    expect(await refusal(readGptParts(dir, { span: { start: 0, end: 1 } }))).toMatch(
      /h\.0\.ln_1\.weight of .* is in weights piece \d+, which this cache has not fetched/,
    )
    expect(await refusal(loadGpt(dir))).toMatch(/sha256 differs/)
    await writeFile(join(dir, PRESENT_PIECES_FILE), JSON.stringify({ ...record, present: [count] }))
    expect(await refusal(readGptParts(dir, { ends: true }))).toMatch(
      /is not a record of the weights pieces present/,
    )
    await writeFile(join(dir, PRESENT_PIECES_FILE), '{')
    expect(await refusal(readGptParts(dir, { ends: true }))).toMatch(/pieces\.json is not valid JSON/)
  })

  it('refuses a span outside the model and a directory without a GPT', async () => {
    expect(await refusal(readGptParts(directory, { span: { start: 3, end: 5 } }))).toMatch(
      /blocks \[3, 5\) are not a span of the model's 4 blocks/,
    )
    const empty = await mkdtemp(join(tmpdir(), 'shardnet-tensors-'))
    expect(await refusal(readGptParts(empty, { ends: true }))).toMatch(/model\.json is missing/)
  })
})
