// Storage faults on real filesystems: small tmpfs mounts that fill up (ENOSPC) or are remounted
// read-only (EROFS). Proves that a failed WAL write is cut off and fails the store, so nothing after
// it is acknowledged and a reopen holds exactly the acknowledged records; that a Raft member whose
// disk fills stops and reports the fault; and that a full or read-only data dir is one sentence
// from the daemon and the CLI, not a stack. Mounting needs root (these tests run as root).
import { execFileSync, spawnSync } from 'node:child_process'
import {
  chmodSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterEach, describe, expect, it } from 'vitest'
import { UserError } from '../../node/cli/errors.js'
import { copyPredictionsResult, copyResult } from '../../node/cli/tasks.js'
import { describeArchitecture, loadModel, saveModel } from '../../node/executor/model-files.js'
import { dataDirPaths, ensureDataDir } from '../../node/store/data-dir.js'
import { openDatastore } from '../../node/store/datastore.js'
import { DurableRaftStorage } from '../../node/store/raft-storage.js'
import { StorageFaultError } from '../../node/store/storage-fault.js'
import type { TaskView } from '../../node/tasks/coordinator.js'
import { RecordFolder } from '../../node/tasks/records.js'
import { RaftRunner } from '../../protocols/raft/runner.js'
import type { Entry } from '../../protocols/raft/types.js'
import { apiRequest, startTestDaemon } from './daemon-helpers.js'

const mounts: string[] = []

/** A fresh tmpfs of `bytes` mounted on a new folder; unmounted after the test. */
function mountTmpfs(bytes: number): string {
  const folder = mkdtempSync(join(tmpdir(), 'shardnet-hostile-fs-'))
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${bytes},mode=0755`, 'tmpfs', folder])
  mounts.push(folder)
  return folder
}

function remountReadOnly(folder: string): void {
  execFileSync('mount', ['-o', 'remount,ro', folder])
}

afterEach(() => {
  for (const folder of mounts.splice(0)) {
    execFileSync('umount', ['-l', folder])
    rmSync(folder, { recursive: true, force: true })
  }
})

function entry(index: number, bytes: number): Entry {
  const data = new Uint8Array(bytes)
  for (let i = 0; i < bytes; i++) data[i] = (index * 31 + i) & 0xff
  return { term: 1, index, type: 'normal', data }
}

/** Fills all but `leave` bytes of the filesystem at `folder` with one file; returns its path. */
function fill(folder: string, leave: number): string {
  const path = join(folder, 'filler')
  const free = Number(execFileSync('df', ['--output=avail', '-B1', folder]).toString().split('\n')[1])
  writeFileSync(path, new Uint8Array(Math.max(0, free - leave)))
  return path
}

describe('a WAL on a disk that fills up', () => {
  for (const mode of ['saveAsync', 'save'] as const) {
    it(`${mode}: a failed write is cut off, later saves refused, reopen holds the acknowledged`, async () => {
      const disk = mountTmpfs(4 << 20)
      const directory = join(disk, 'raft')
      const storage = DurableRaftStorage.open(directory)
      storage.bootstrap(['a'])
      const filler = fill(disk, 300_000)
      const acknowledged: Entry[] = []
      let fault: unknown
      for (let index = 2; index < 200 && fault === undefined; index++) {
        const update = {
          entries: [entry(index, 40_000)],
          hardState: { term: 1, vote: 'a', commit: index - 1 },
        }
        try {
          if (mode === 'saveAsync') await storage.saveAsync(update)
          else storage.save(update)
          acknowledged.push(update.entries[0])
        } catch (error) {
          fault = error
        }
      }
      expect(fault).toBeInstanceOf(StorageFaultError)
      expect((fault as StorageFaultError).code).toBe('ENOSPC')
      expect((fault as StorageFaultError).path).toBe(join(directory, 'wal.log'))
      expect((fault as StorageFaultError).message).toContain('is full (ENOSPC)')
      expect(acknowledged.length).toBeGreaterThan(3)
      // the partial record is gone: the file ends with the last acknowledged record
      expect(statSync(join(directory, 'wal.log')).size).toBe(storage.walSizeBytes())
      // with room again, the store still refuses (what it would write next could follow a hole)
      rmSync(filler)
      const next = acknowledged.length + 2
      const later = { entries: [entry(next, 100)], hardState: { term: 1, vote: 'a', commit: next } }
      await expect(storage.saveAsync(later)).rejects.toBe(fault)
      expect(() => storage.save(later)).toThrow(StorageFaultError)
      expect(() => storage.save({ entries: [], hardState: { term: 2, vote: '', commit: 1 } })).toThrow(
        StorageFaultError,
      )
      expect(storage.lastIndex()).toBe(acknowledged.length + 1)
      storage.close()

      const reopened = DurableRaftStorage.open(directory)
      expect(reopened.recovery.tornBytes).toBe(0)
      expect(reopened.lastIndex()).toBe(acknowledged.length + 1)
      const replayed = reopened.entries(2, reopened.lastIndex() + 1)
      expect(replayed.map((e) => e.index)).toEqual(acknowledged.map((e) => e.index))
      for (const [i, e] of replayed.entries())
        expect(Array.from(e.data)).toEqual(Array.from(acknowledged[i].data))
      // and it takes writes again
      await reopened.saveAsync(later)
      expect(reopened.lastIndex()).toBe(next)
      reopened.close()
    })
  }

  it('a snapshot that does not fit leaves the old state and no temp file, and reopens', () => {
    const disk = mountTmpfs(2 << 20)
    const directory = join(disk, 'raft')
    const storage = DurableRaftStorage.open(directory)
    storage.bootstrap(['a'])
    storage.save({ entries: [entry(2, 1000), entry(3, 1000)], hardState: { term: 1, vote: 'a', commit: 3 } })
    fill(disk, 100_000)
    expect(() => storage.createSnapshot(3, { voters: ['a'] }, new Uint8Array(500_000))).toThrow(
      StorageFaultError,
    )
    expect(() => storage.save({ entries: [entry(4, 10)] })).toThrow(StorageFaultError)
    storage.close()
    expect(() => statSync(join(directory, 'snapshot.bin.tmp'))).toThrow(/ENOENT/)
    const reopened = DurableRaftStorage.open(directory)
    expect(reopened.lastIndex()).toBe(3)
    expect(reopened.snapshot().metadata.index).toBe(0)
    reopened.close()
  })

  it('a read-only store opens as a StorageFaultError naming the folder', () => {
    const disk = mountTmpfs(1 << 20)
    const directory = join(disk, 'raft')
    const storage = DurableRaftStorage.open(directory)
    storage.bootstrap(['a'])
    storage.close()
    remountReadOnly(disk)
    let error: unknown
    try {
      DurableRaftStorage.open(directory)
    } catch (caught) {
      error = caught
    }
    expect(error).toBeInstanceOf(StorageFaultError)
    expect((error as StorageFaultError).code).toBe('EROFS')
    expect((error as StorageFaultError).message).toContain(`${directory} is on a read-only filesystem`)
  })
})

describe('a Raft member whose disk fills up', () => {
  it('stops and reports the StorageFaultError through onFatal; its store reopens', async () => {
    const disk = mountTmpfs(4 << 20)
    const directory = join(disk, 'raft')
    const storage = DurableRaftStorage.open(directory)
    storage.bootstrap(['a'])
    const fatal: Error[] = []
    const runner = new RaftRunner({
      group: 'g',
      id: 'a',
      storage,
      transport: { join: () => {}, leave: () => {}, send: () => {} },
      tickMs: 5,
      electionTicks: 4,
      seed: 1,
      onFatal: (error) => fatal.push(error),
    })
    runner.start()
    const deadline = Date.now() + 10_000
    while (!runner.isLeader() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10))
    expect(runner.isLeader()).toBe(true)
    fill(disk, 200_000)
    const committed: number[] = []
    let refused: unknown
    for (let i = 0; i < 100 && fatal.length === 0; i++) {
      try {
        committed.push((await runner.propose(new Uint8Array(30_000).fill(i))).index)
      } catch (error) {
        refused = error
        break
      }
    }
    const until = Date.now() + 5000
    while (fatal.length === 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 10))
    expect(fatal).toHaveLength(1)
    expect(fatal[0]).toBeInstanceOf(StorageFaultError)
    expect((fatal[0] as StorageFaultError).code).toBe('ENOSPC')
    expect(refused ?? fatal[0]).toBeDefined()
    runner.stop()
    storage.close()
    const reopened = DurableRaftStorage.open(directory)
    // every entry the member saw committed is on disk
    for (const index of committed) expect(reopened.entries(index, index + 1)).toHaveLength(1)
    reopened.close()
  })
})

const SHARDNET = fileURLToPath(new URL('../../bin/shardnet.js', import.meta.url))

/** Runs the real CLI in a child process (as `uid` when given); returns its exit code and output. */
function shardnet(args: string[], uid?: number): { code: number | null; stdout: string; stderr: string } {
  const result = spawnSync(process.execPath, [SHARDNET, ...args], {
    encoding: 'utf8',
    env: { ...process.env, HOME: tmpdir(), DEBUG: '' },
    timeout: 60_000,
    ...(uid !== undefined ? { uid, gid: uid } : {}),
  })
  return { code: result.status, stdout: result.stdout, stderr: result.stderr }
}

/** The CLI's answer to a refused data dir: exit 74 and one line, the sentence, no stack. */
function expectOneSentence(result: { code: number | null; stderr: string }, sentence: RegExp): void {
  expect(result.stderr).not.toMatch(/hit a bug|\n\s+at /)
  expect(result.stderr.trim().split('\n')).toHaveLength(1)
  expect(result.stderr.trim()).toMatch(sentence)
  expect(result.code).toBe(74)
}

describe('a data dir the disk refuses', () => {
  it('read-only: the daemon and the CLI (foreground and background) refuse it in one sentence', async () => {
    const disk = mountTmpfs(16 << 20)
    const dataDir = join(disk, 'node')
    // a data dir a daemon used before: identity, token, datastore, blocks
    const first = await startTestDaemon({ dataDir })
    await first.stop()
    remountReadOnly(disk)
    const sentence = new RegExp(
      `^error: ${dataDir} is on a read-only filesystem \\(EROFS\\): remount it read-write, ` +
        'or start the node with --data-dir on a disk that can take it$',
    )
    const refused = await startTestDaemon({ dataDir }).then(
      () => undefined,
      (error: unknown) => error,
    )
    expect(refused).toBeInstanceOf(StorageFaultError)
    expect((refused as StorageFaultError).code).toBe('EROFS')
    expect((refused as StorageFaultError).path).toBe(dataDir)
    expectOneSentence(shardnet(['node', 'start', '--foreground', '--data-dir', dataDir]), sentence)
    expectOneSentence(shardnet(['node', 'start', '--data-dir', dataDir]), sentence)
  })

  it('full: the daemon and the CLI refuse it in one sentence', async () => {
    const disk = mountTmpfs(1 << 20)
    const dataDir = join(disk, 'node')
    fill(disk, 0)
    const refused = await startTestDaemon({ dataDir }).then(
      () => undefined,
      (error: unknown) => error,
    )
    expect(refused).toBeInstanceOf(StorageFaultError)
    expect((refused as StorageFaultError).code).toBe('ENOSPC')
    expectOneSentence(
      shardnet(['node', 'start', '--foreground', '--data-dir', dataDir]),
      new RegExp(`^error: the disk holding ${dataDir} is full \\(ENOSPC\\): free space on it, or start`),
    )
  })

  it('full while the daemon runs: a write through its API is answered with the sentence', async () => {
    const disk = mountTmpfs(32 << 20)
    const dataDir = join(disk, 'node')
    const daemon = await startTestDaemon({ dataDir })
    try {
      fill(disk, 0)
      const response = await apiRequest(daemon, '/v1/blocks', {
        method: 'POST',
        body: { data: Buffer.from(new Uint8Array(200_000).fill(7)).toString('base64') },
      })
      expect(response.status).toBeGreaterThanOrEqual(500)
      const { error } = (await response.json()) as { error: string }
      expect(error).toMatch(
        new RegExp(`the disk holding ${dataDir}/blocks/\\S+ is full \\(ENOSPC\\): free space`),
      )
      expect(error).not.toMatch(/\n\s+at /)
      // the daemon goes on serving
      expect((await apiRequest(daemon, '/v1/status')).status).toBe(200)
    } finally {
      await daemon.stop()
    }
  })

  it('full once the node has started: the datastore and task records fail as StorageFaultError', async () => {
    const disk = mountTmpfs(4 << 20)
    const dataDir = join(disk, 'node')
    await ensureDataDir(dataDirPaths(dataDir))
    const records = new RecordFolder<{ state: string }>(join(dataDir, 'tasks', 'submitted'))
    await records.save('abc', { state: 'running' })
    fill(disk, 0)
    const error = await records.save('abc', { state: 'completed'.repeat(2000) }).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(StorageFaultError)
    expect((error as StorageFaultError).code).toBe('ENOSPC')
    expect((error as StorageFaultError).path).toBe(join(dataDir, 'tasks', 'submitted', 'abc.json'))
    // the old record is intact and no temp file is left
    expect(await records.load('abc')).toEqual({ state: 'running' })
    expect(readdirSync(join(dataDir, 'tasks', 'submitted'))).toEqual(['abc.json'])
  })

  it('full before the datastore opens: the LevelDB I/O error becomes a StorageFaultError', async () => {
    const disk = mountTmpfs(1 << 20)
    const dataDir = join(disk, 'node')
    await ensureDataDir(dataDirPaths(dataDir))
    fill(disk, 0)
    const error = await openDatastore(dataDirPaths(dataDir).datastore).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(StorageFaultError)
    expect((error as StorageFaultError).code).toBe('ENOSPC')
    expect((error as StorageFaultError).path).toBe(dataDirPaths(dataDir).datastore)
  })

  it('forbidden (EACCES, run as another user): the CLI refuses it in one sentence', () => {
    const parent = mkdtempSync(join(tmpdir(), 'shardnet-eacces-'))
    chmodSync(parent, 0o755)
    const dataDir = join(parent, 'node')
    mkdirSync(dataDir, { mode: 0o700 })
    try {
      expectOneSentence(
        shardnet(['node', 'start', '--foreground', '--data-dir', dataDir], 65534),
        new RegExp(`^error: permission denied writing ${dataDir} \\(EACCES\\): give this user write access`),
      )
    } finally {
      rmSync(parent, { recursive: true, force: true })
    }
  })
})

describe('shardnet result --out', () => {
  async function completedTask(): Promise<TaskView> {
    const resultDir = mkdtempSync(join(tmpdir(), 'shardnet-result-'))
    const architecture = { inputSize: 3, hiddenSizes: [2], outputSize: 2 }
    await saveModel(
      resultDir,
      architecture,
      [
        { weight: new Float32Array([1, 2, 3, 4, 5, 6]), bias: new Float32Array([0.5, -0.5]) },
        { weight: new Float32Array([1, 0, 0, 1]), bias: new Float32Array([0, 0]) },
      ],
      {
        ...describeArchitecture(architecture),
        model: 'mnist-mlp',
        dataset: {},
        seed: 1,
        training: {},
        backend: {},
        metrics: {},
        history: [],
        createdAt: new Date(0).toISOString(),
      },
    )
    return { id: 'task1', state: 'completed', resultDir, groups: [], steps: 1 } as unknown as TaskView
  }

  it('copies every file atomically, leaves no temp file, and the copy loads', async () => {
    const task = await completedTask()
    const out = join(mkdtempSync(join(tmpdir(), 'shardnet-out-')), 'new', 'model')
    const copied = await copyResult(task, out)
    expect(readdirSync(out).sort()).toEqual(['model.json', 'model.safetensors'])
    expect(readFileSync(copied.weightsPath)).toEqual(
      readFileSync(join(task.resultDir ?? '', 'model.safetensors')),
    )
    expect((await loadModel(out)).layers[0].bias).toEqual(new Float32Array([0.5, -0.5]))
  })

  it('refuses an output folder that is a symbolic link, and a target file that is one', async () => {
    const task = await completedTask()
    const parent = mkdtempSync(join(tmpdir(), 'shardnet-out-'))
    const real = join(parent, 'real')
    mkdirSync(real)
    symlinkSync(real, join(parent, 'link'))
    await expect(copyResult(task, join(parent, 'link'))).rejects.toThrow(
      new UserError(
        `the output folder ${join(parent, 'link')} is a symbolic link; shardnet never writes through one: ` +
          'give the folder it points to, or another folder',
      ),
    )
    expect(readdirSync(real)).toEqual([])
    // a file an attacker would have the copy write into
    const victim = join(parent, 'victim')
    writeFileSync(victim, 'precious')
    symlinkSync(victim, join(real, 'model.safetensors'))
    await expect(copyResult(task, real)).rejects.toThrow(
      /model\.safetensors is a symbolic link; shardnet never/,
    )
    expect(readFileSync(victim, 'utf8')).toBe('precious')
    expect(readdirSync(real)).toEqual(['model.safetensors'])
  })

  it('an inference task: predictions.json copied atomically, a symlinked target refused', async () => {
    const resultDir = mkdtempSync(join(tmpdir(), 'shardnet-result-'))
    const output = {
      format: 'shardnet-predictions/1',
      count: 2,
      agreement: { results: 4, agreeingResults: 4 },
    }
    writeFileSync(join(resultDir, 'predictions.json'), JSON.stringify(output))
    const task = { id: 'infer1', kind: 'infer', state: 'completed', resultDir } as unknown as TaskView
    const out = mkdtempSync(join(tmpdir(), 'shardnet-out-'))
    const written = await copyPredictionsResult(task, out)
    expect(written.count).toBe(2)
    expect(readdirSync(out)).toEqual(['predictions.json'])
    expect(JSON.parse(readFileSync(join(out, 'predictions.json'), 'utf8'))).toEqual(output)
    const victim = join(out, 'victim')
    writeFileSync(victim, 'precious')
    rmSync(join(out, 'predictions.json'))
    symlinkSync(victim, join(out, 'predictions.json'))
    await expect(copyPredictionsResult(task, out)).rejects.toThrow(/predictions\.json is a symbolic link/)
    expect(readFileSync(victim, 'utf8')).toBe('precious')
    await expect(copyPredictionsResult({ ...task, state: 'running' }, out)).rejects.toThrow(
      new UserError(
        'task infer1 is still running and has no result yet; wait with `shardnet task infer1 --watch`',
      ),
    )
  })

  it('a full output disk is one sentence and leaves no temp file', async () => {
    const task = await completedTask()
    const disk = mountTmpfs(1 << 20)
    fill(disk, 0)
    const out = join(disk, 'out')
    mkdirSync(out)
    await expect(copyResult(task, out)).rejects.toThrow(
      new UserError(`the disk holding ${out} is full (ENOSPC): free space on it, or choose another folder`),
    )
    expect(readdirSync(out)).toEqual([])
  })
})
