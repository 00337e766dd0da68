// The n-gram baseline of the GPT model kind: bits per byte of the linux-doc-6.1 validation split
// under a byte n-gram model with interpolated modified Kneser-Ney smoothing trained on the training
// split (bench/ngram-model.ts), beside the add-one unigram model and `xz -9e` of the same bytes.
//
//   npm run bench:ngram -- [--order 5] [--json]          (--order takes a list: --order 3,5,7)
//
// The validation split is scored as one stream (the context is never reset; its first bytes have a
// shorter context). Each order is trained and scored on its own, and the time and memory of each are
// printed; memory is the heap and table bytes after training plus the process's peak resident size.
import { execFileSync } from 'node:child_process'
import { statSync } from 'node:fs'
import { parseArgs } from 'node:util'
import { ByteCorpus, buildCorpus, defaultCorpusCacheDir } from '../kernels/data/corpus.js'
import { KneserNeyModel, ORDER_MAX, unigramAddOneBitsPerByte } from './ngram-model.js'

const { values: flags } = parseArgs({
  options: {
    order: { type: 'string', default: '5' },
    json: { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
})
if (flags.help) {
  console.log('usage: npm run bench:ngram -- [--order 5 | --order 3,5,7] [--json]')
  process.exit(0)
}
const orders = flags.order.split(',').map(Number)
if (!orders.every((order) => Number.isInteger(order) && order >= 1 && order <= ORDER_MAX)) {
  console.error(`--order takes integers in [1, ${ORDER_MAX}] separated by commas`)
  process.exit(2)
}

const files = await buildCorpus({ cacheDir: defaultCorpusCacheDir() })
const readSplit = (path: string): Uint8Array => {
  const corpus = ByteCorpus.open(path)
  try {
    return corpus.readAll()
  } finally {
    corpus.close()
  }
}
const training = readSplit(files.training.path)
const validation = readSplit(files.validation.path)
const mib = (bytes: number) => bytes / 2 ** 20

interface Row {
  model: string
  bitsPerByte: number
  trainSeconds?: number
  scoreSeconds?: number
  tableMiB?: number
  heapMiB?: number
  peakRssMiB?: number
  ngrams?: number[]
}
const rows: Row[] = []
const print = (row: Row) => {
  if (flags.json) return
  const parts = [`${row.model.padEnd(22)} ${row.bitsPerByte.toFixed(4)} bits/byte`]
  if (row.trainSeconds !== undefined) {
    parts.push(
      `train ${row.trainSeconds.toFixed(1)} s, score ${row.scoreSeconds?.toFixed(1)} s, ` +
        `tables ${row.tableMiB?.toFixed(0)} MiB, heap ${row.heapMiB?.toFixed(0)} MiB, ` +
        `peak RSS ${row.peakRssMiB?.toFixed(0)} MiB`,
    )
  }
  console.log(parts.join('  '))
}

if (!flags.json) {
  console.log(
    `linux-doc-6.1: training ${training.length} bytes, validation ${validation.length} bytes ` +
      `(${files.cacheDir})`,
  )
}
const unigram: Row = {
  model: 'unigram (add-one)',
  bitsPerByte: unigramAddOneBitsPerByte(training, validation),
}
rows.push(unigram)
print(unigram)

for (const order of orders) {
  const trainStart = performance.now()
  let model: KneserNeyModel | undefined = KneserNeyModel.train(training, order)
  const trainSeconds = (performance.now() - trainStart) / 1000
  const scoreStart = performance.now()
  const bits = model.crossEntropyBits(validation)
  const scoreSeconds = (performance.now() - scoreStart) / 1000
  const row: Row = {
    model: `Kneser-Ney order ${order}`,
    bitsPerByte: bits / validation.length,
    trainSeconds,
    scoreSeconds,
    tableMiB: mib(model.byteSize),
    heapMiB: mib(process.memoryUsage().heapUsed + process.memoryUsage().arrayBuffers),
    // maxRSS is in KiB; it is the peak of the whole process so far (earlier orders included)
    peakRssMiB: process.resourceUsage().maxRSS / 1024,
    ngrams: model.statistics().map((statistics) => statistics.ngrams),
  }
  model = undefined
  rows.push(row)
  print(row)
}

// xz -9e of the validation split, for scale (a general-purpose compressor on the same bytes)
try {
  const compressed = execFileSync('xz', ['-9e', '-T1', '-c', files.validation.path], {
    maxBuffer: 64 * 2 ** 20,
  })
  const row: Row = {
    model: 'xz -9e',
    bitsPerByte: (8 * compressed.length) / statSync(files.validation.path).size,
  }
  rows.push(row)
  print(row)
} catch (error) {
  if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error
  if (!flags.json) console.log('xz -9e                 (xz is not installed)')
}

if (flags.json) console.log(JSON.stringify(rows, null, 2))
