// Proves at the file-system call layer that what a task record points at is durable before the call
// that writes it resolves: every file is fsynced under its temp name before the rename that makes it
// visible, the folder is fsynced after the last rename, and a folder created for it is fsynced into
// its parent. Covers the model files (weights, config.json, model.json last), task records, and the
// atomic copy `result --out` uses.

import { mkdtempSync } from 'node:fs'
import * as fsp from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { basename, dirname, join } from 'node:path'
import { beforeEach, describe, expect, it, vi } from 'vitest'

type Event = { op: 'sync' | 'rename' | 'mkdir'; path: string; to?: string }
const events: Event[] = []

vi.mock('node:fs/promises', async (importOriginal) => {
  const actual = await importOriginal<typeof import('node:fs/promises')>()
  const open: typeof actual.open = async (path, ...rest) => {
    const handle = await actual.open(path, ...rest)
    const sync = handle.sync.bind(handle)
    handle.sync = async () => {
      await sync()
      events.push({ op: 'sync', path: String(path) })
    }
    return handle
  }
  const rename: typeof actual.rename = async (from, to) => {
    await actual.rename(from, to)
    events.push({ op: 'rename', path: String(from), to: String(to) })
  }
  const mkdir = (async (path: string, options?: unknown) => {
    const made = await actual.mkdir(path, options as never)
    events.push({ op: 'mkdir', path: String(path) })
    return made
  }) as typeof actual.mkdir
  const mocked = { ...actual, open, rename, mkdir }
  return { ...mocked, default: mocked }
})

const { copyFileAtomic } = await import('../../../node/store/atomic-file.js')
const { describeArchitecture, saveGptModel, saveModel } = await import(
  '../../../node/executor/model-files.js'
)
const { RecordFolder } = await import('../../../node/tasks/records.js')
const { gptParameterCount } = await import('../../../kernels/models/gpt/config.js')

beforeEach(() => {
  events.length = 0
})

function indexOf(predicate: (event: Event) => boolean): number {
  return events.findIndex(predicate)
}

/** `path` was written to a temp file that was fsynced, then renamed to `path`; returns the rename's index. */
function expectDurablyRenamed(path: string): number {
  const renamed = indexOf((e) => e.op === 'rename' && e.to === path)
  expect(renamed, `${path} renamed into place`).toBeGreaterThanOrEqual(0)
  const temporary = events[renamed].path
  expect(dirname(temporary)).toBe(dirname(path))
  const synced = indexOf((e) => e.op === 'sync' && e.path === temporary)
  expect(synced, `${basename(temporary)} fsynced`).toBeGreaterThanOrEqual(0)
  expect(synced).toBeLessThan(renamed)
  return renamed
}

/** `folder` was fsynced after the event at `after`. */
function expectFolderSyncedAfter(folder: string, after: number): void {
  const synced = events.findIndex((e, i) => i > after && e.op === 'sync' && e.path === folder)
  expect(synced, `${folder} fsynced after event ${after}`).toBeGreaterThan(after)
}

const manifest = {
  model: 'test',
  dataset: {},
  seed: 1,
  training: {},
  backend: {},
  metrics: {},
  history: [],
  createdAt: new Date(0).toISOString(),
}

describe('durable writes', () => {
  it('an MLP model: weights then model.json, each fsynced before its rename, folders fsynced', async () => {
    const parent = mkdtempSync(join(tmpdir(), 'shardnet-durable-'))
    const directory = join(parent, 'results', 'task')
    const architecture = { inputSize: 2, hiddenSizes: [], outputSize: 2 }
    await saveModel(
      directory,
      architecture,
      [{ weight: new Float32Array([1, 2, 3, 4]), bias: new Float32Array([0, 1]) }],
      { ...describeArchitecture(architecture), ...manifest },
    )
    const weights = expectDurablyRenamed(join(directory, 'model.safetensors'))
    const manifestRename = expectDurablyRenamed(join(directory, 'model.json'))
    expect(weights).toBeLessThan(manifestRename)
    expectFolderSyncedAfter(directory, manifestRename)
    // the two folders created for it are in their parents' entries durably, before any file lands
    const firstRename = Math.min(weights, manifestRename)
    for (const folder of [parent, join(parent, 'results')]) {
      const synced = indexOf((e) => e.op === 'sync' && e.path === folder)
      expect(synced, `${folder} fsynced`).toBeGreaterThanOrEqual(0)
      expect(synced).toBeLessThan(firstRename)
    }
  })

  it('a GPT model: weights, config.json, then model.json, each fsynced before its rename', async () => {
    const directory = mkdtempSync(join(tmpdir(), 'shardnet-durable-'))
    const config = { vocabSize: 8, context: 4, width: 4, layers: 1, heads: 1, layerNormEpsilon: 1e-5 }
    await saveGptModel(directory, config, new Float32Array(gptParameterCount(config)), manifest)
    const weights = expectDurablyRenamed(join(directory, 'model.safetensors'))
    const hfConfig = expectDurablyRenamed(join(directory, 'config.json'))
    const manifestRename = expectDurablyRenamed(join(directory, 'model.json'))
    expect(Math.max(weights, hfConfig)).toBeLessThan(manifestRename)
    expectFolderSyncedAfter(directory, manifestRename)
  })

  it('a task record: fsynced before its rename, its folder after', async () => {
    const root = mkdtempSync(join(tmpdir(), 'shardnet-durable-'))
    const folder = join(root, 'tasks', 'submitted')
    await new RecordFolder<{ state: string }>(folder).save('abc', { state: 'completed' })
    const renamed = expectDurablyRenamed(join(folder, 'abc.json'))
    expectFolderSyncedAfter(folder, renamed)
    expect(indexOf((e) => e.op === 'sync' && e.path === join(root, 'tasks'))).toBeLessThan(renamed)
  })

  it('an atomic copy: the copy fsynced before its rename, the folder after', async () => {
    const folder = mkdtempSync(join(tmpdir(), 'shardnet-durable-'))
    await fsp.writeFile(join(folder, 'source'), 'bytes')
    await copyFileAtomic(join(folder, 'source'), join(folder, 'copy'))
    const renamed = expectDurablyRenamed(join(folder, 'copy'))
    expectFolderSyncedAfter(folder, renamed)
    expect(await fsp.readFile(join(folder, 'copy'), 'utf8')).toBe('bytes')
  })
})
