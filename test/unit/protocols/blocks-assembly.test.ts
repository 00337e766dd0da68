// Proves a received block is put together and hashed right, inline and on the worker thread: pieces of any
// size (split across the worker's transfer buffers), several blocks at once, the bytes handed to a sink in
// order (or written by the worker into the sink's file), an incomplete block refused, and an aborted one
// leaving the worker fit for the next (and no file behind). Checked
// against node:crypto's sha2-256 of the whole block, on random bytes (fast-check).
import { createHash } from 'node:crypto'
import { mkdtemp, readdir, readFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import fc from 'fast-check'
import { afterAll, describe, expect, it } from 'vitest'
import {
  type AssemblySink,
  type BlockAssembly,
  HashWorker,
  InlineAssembly,
} from '../../../protocols/blocks/hasher.js'

function sha256(bytes: Uint8Array): Uint8Array {
  return new Uint8Array(createHash('sha256').update(bytes).digest())
}

/**
 * A sink that keeps a copy of what it got, and releases each piece a little later
 * (as a file write would).
 */
class CollectingSink implements AssemblySink {
  readonly pieces: Uint8Array[] = []
  async write(bytes: Uint8Array): Promise<void> {
    this.pieces.push(bytes.slice())
    await new Promise((resolve) => setTimeout(resolve, 1))
  }
  bytes(): Uint8Array {
    return new Uint8Array(Buffer.concat(this.pieces))
  }
}

function feed(assembly: BlockAssembly, block: Uint8Array, pieceSizes: number[]): void {
  let offset = 0
  let i = 0
  while (offset < block.byteLength) {
    const size = Math.max(1, pieceSizes[i++ % pieceSizes.length])
    assembly.append(block.subarray(offset, offset + size))
    offset += size
  }
}

describe('block assembly', () => {
  // small transfer buffers, so one block spans many of them and pieces straddle their edges
  const worker = new HashWorker({ bufferBytes: 4096, pooledBuffersMax: 4 })
  afterAll(() => worker.close())

  it('assembles and hashes random blocks from random pieces, inline and on the worker', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.uint8Array({ minLength: 1, maxLength: 50_000 }),
        fc.array(fc.integer({ min: 1, max: 9000 }), { minLength: 1, maxLength: 8 }),
        async (block, pieceSizes) => {
          for (const make of [
            (sink: AssemblySink) => new InlineAssembly(block.byteLength, sink, 3000),
            (sink: AssemblySink) => worker.assemble(block.byteLength, sink),
          ]) {
            const sink = new CollectingSink()
            const assembly = make(sink)
            feed(assembly, block, pieceSizes)
            const { block: assembled, digest } = await assembly.finish()
            expect(Buffer.from(assembled).equals(block)).toBe(true)
            expect(digest).toEqual(sha256(block))
            expect(Buffer.from(sink.bytes()).equals(block)).toBe(true)
          }
        },
      ),
      { numRuns: 40 },
    )
  })

  it(
    "writes the block into the sink's file on the " + 'worker, and removes the file of an aborted one',
    async () => {
      const folder = await mkdtemp(join(tmpdir(), 'shardnet-assembly-'))
      const block = new Uint8Array(30_000).map((_, i) => (i * 13) & 0xff)
      const sink: AssemblySink = {
        // flushed every 5000 bytes: background fdatasyncs run while the pieces arrive
        file: { path: join(folder, 'block.tmp'), syncBytes: 5000 },
        write: () => {
          throw new Error('a sink with a file gets no write()')
        },
      }
      const assembly = worker.assemble(block.byteLength, sink)
      feed(assembly, block, [3000, 7000, 1])
      const result = await assembly.finish()
      expect(result.fileError).toBeUndefined()
      expect(result.digest).toEqual(sha256(block))
      expect(Buffer.from(await readFile(join(folder, 'block.tmp'))).equals(block)).toBe(true)

      const aborted = worker.assemble(block.byteLength, {
        ...sink,
        file: { path: join(folder, 'gone.tmp'), syncBytes: 5000 },
      })
      aborted.append(block.subarray(0, 10_000))
      aborted.abort()
      // the worker handles messages in order: once a later block is finished, the abort has been seen; it
      // then removes the file as soon as its flush in flight, if any, is done
      const later = worker.assemble(10)
      later.append(new Uint8Array(10))
      await later.finish()
      const deadline = Date.now() + 5000
      while ((await readdir(folder)).includes('gone.tmp') && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 10))
      }
      expect(await readdir(folder)).toEqual(['block.tmp'])
    },
  )

  it('keeps several blocks apart on one worker', async () => {
    const blocks = [1, 2, 3].map((n) => new Uint8Array(20_000 + n).map((_, i) => (i * n * 31) & 0xff))
    const assemblies = blocks.map((b) => worker.assemble(b.byteLength))
    // interleaved appends, as concurrent fetches would make them
    for (let offset = 0; offset < 20_003; offset += 1000) {
      for (const [i, b] of blocks.entries()) {
        if (offset < b.byteLength) assemblies[i].append(b.subarray(offset, offset + 1000))
      }
    }
    const results = await Promise.all(assemblies.map((a) => a.finish()))
    for (const [i, { block, digest }] of results.entries()) {
      expect(Buffer.from(block).equals(blocks[i])).toBe(true)
      expect(digest).toEqual(sha256(blocks[i]))
    }
  })

  it('refuses an incomplete block, and an aborted one leaves the worker fit for the next', async () => {
    const inline = new InlineAssembly(10)
    inline.append(new Uint8Array(5))
    await expect(inline.finish()).rejects.toThrow(RangeError)
    expect(() => new InlineAssembly(4).append(new Uint8Array(5))).toThrow(RangeError)

    const short = worker.assemble(10_000)
    short.append(new Uint8Array(5000))
    await expect(short.finish()).rejects.toThrow(/incomplete/)

    const aborted = worker.assemble(10_000)
    aborted.append(new Uint8Array(7000))
    aborted.abort()
    const next = new Uint8Array(9000).fill(7)
    const assembly = worker.assemble(next.byteLength)
    assembly.append(next)
    expect((await assembly.finish()).digest).toEqual(sha256(next))
  })
})
