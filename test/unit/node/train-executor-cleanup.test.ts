// Proves the train executor closes what it opened when a later step of its start fails: the Raft
// store (its WAL file descriptor), the backend and the group's data, whether opening the backend or
// starting the group member is what fails; and that a member stopped by a storage fault ends the run
// with the StorageFaultError (the submitter hears the cause) and everything closed.

import { EventEmitter } from 'node:events'
import { mkdtempSync, readdirSync, readlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { StorageFaultError } from '../../../node/store/storage-fault.js'

const dataClosed = vi.fn()
const startGroupMember = vi.fn()

vi.mock('../../../node/tasks/task-models.js', () => ({
  TASK_MODELS: {
    'mnist-mlp': {
      parameterCount: () => 10,
      trainingModel: async () => ({ model: {}, close: dataClosed }),
    },
  },
}))
vi.mock('../../../protocols/training/group.js', () => ({ startGroupMember }))

const { trainExecutor } = await import('../../../node/tasks/train-executor.js')

/** Open file descriptors of this process on files under `folder`. */
function openFilesUnder(folder: string): string[] {
  const open: string[] = []
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      const target = readlinkSync(join('/proc/self/fd', fd))
      if (target.startsWith(folder)) open.push(target)
    } catch {
      // closed while listing
    }
  }
  return open
}

function context(folder: string, openBackend: () => Promise<never> | Promise<{ destroy(): void }>) {
  return {
    taskId: 'task',
    spec: {
      kind: 'train',
      train: { model: 'mnist-mlp', groups: 1, outerEvery: 0, steps: 5, batchSize: 4 },
    },
    assignment: { group: 0, members: ['a', 'b', 'c'] },
    folder,
    openBackend,
    fetchBlock: async () => new Uint8Array(),
    putBlock: async () => {
      throw new Error('unused')
    },
    report: () => {},
    takeStateRequest: () => false,
    outerUpdate: async () => {
      throw new Error('unused')
    },
    recordOutcome: async () => {},
    signal: new AbortController().signal,
    // biome-ignore lint/suspicious/noExplicitAny: a minimal context for the parts run() touches first
  } as any
}

afterEach(() => {
  vi.clearAllMocks()
})

describe('the train executor on a failed start', () => {
  it('closes the Raft store and the data when the backend does not open', async () => {
    const folder = mkdtempSync(join(tmpdir(), 'shardnet-train-cleanup-'))
    const executor = trainExecutor({ components: {} as never })
    await expect(
      executor.run(context(folder, () => Promise.reject(new Error('no adapter')))),
    ).rejects.toThrow('no adapter')
    expect(readdirSync(folder)).toContain('wal.log')
    expect(openFilesUnder(folder)).toEqual([])
    expect(dataClosed).toHaveBeenCalledTimes(1)
  })

  it('closes the Raft store, the backend and the data when the member does not start', async () => {
    const folder = mkdtempSync(join(tmpdir(), 'shardnet-train-cleanup-'))
    const destroy = vi.fn()
    startGroupMember.mockRejectedValueOnce(new Error('bad group'))
    const executor = trainExecutor({ components: {} as never })
    await expect(executor.run(context(folder, async () => ({ destroy })))).rejects.toThrow('bad group')
    expect(startGroupMember).toHaveBeenCalledTimes(1)
    expect(openFilesUnder(folder)).toEqual([])
    expect(destroy).toHaveBeenCalledTimes(1)
    expect(dataClosed).toHaveBeenCalledTimes(1)
  })

  it('ends the run with the StorageFaultError that stopped the member, and closes everything', async () => {
    const folder = mkdtempSync(join(tmpdir(), 'shardnet-train-cleanup-'))
    const destroy = vi.fn()
    const member = Object.assign(new EventEmitter(), {
      finished: () => new Promise(() => {}),
      status: () => ({ step: 0, leader: '', finished: false, lastLoss: Number.NaN, outerRounds: 0 }),
      stop: vi.fn(),
    })
    startGroupMember.mockResolvedValueOnce(member)
    const executor = trainExecutor({ components: {} as never })
    const running = executor.run(context(folder, async () => ({ destroy })))
    await vi.waitFor(() => expect(startGroupMember).toHaveBeenCalledTimes(1))
    await new Promise((resolve) => setTimeout(resolve, 10))
    const fault = new StorageFaultError('ENOSPC', join(folder, 'wal.log'))
    member.emit('error', new Error(`the member's Raft store failed: ${fault.message}`, { cause: fault }))
    await expect(running).rejects.toBe(fault)
    expect(member.stop).toHaveBeenCalledTimes(1)
    expect(openFilesUnder(folder)).toEqual([])
    expect(destroy).toHaveBeenCalledTimes(1)
    expect(dataClosed).toHaveBeenCalledTimes(1)
  })
})
