// Proves that a task still looking for workers reaches nodes that join after it was announced: the
// submitter re-announces a staffing task (every reannounceMs, no more often than the gossip validator's
// REANNOUNCE_INTERVAL_MIN_MS), the late joiners hear the re-announcement, claim, and the task is staffed
// and completes with them in its group. The worker that claimed at the first announcement does not
// claim twice.
import { afterAll, describe, expect, it } from 'vitest'
import type { Daemon } from '../../node/daemon.js'
import { REANNOUNCE_INTERVAL_MIN_MS } from '../../protocols/tasks/index.js'
import { startTestDaemon, waitUntil } from './daemon-helpers.js'
import {
  startTaskNetwork,
  stopAll,
  submitTask,
  TASK_DAEMON_TUNING,
  waitForTask,
  waitForTopicMesh,
} from './tasks-helpers.js'

const tuning = {
  ...TASK_DAEMON_TUNING,
  taskService: { ...TASK_DAEMON_TUNING.taskService, reannounceMs: REANNOUNCE_INTERVAL_MIN_MS },
}

describe('a task announced before its workers joined', () => {
  const daemons: Daemon[] = []
  afterAll(async () => stopAll(daemons))

  it('is re-announced while staffing, and nodes that join later claim it and train', async () => {
    daemons.push(...(await startTaskNetwork(2, tuning)))
    const [submitter, early] = daemons
    const task = await submitTask(submitter, {
      kind: 'train',
      model: 'mnist-mlp',
      hiddenSizes: [16],
      groups: 1,
      groupSize: 3,
      steps: 20,
      batchSize: 16,
      learningRate: 0.003,
      seed: 3,
      deadlineMs: 90_000,
    })
    // the one worker on the network claims; the task cannot be staffed yet
    await waitForTask(submitter, task.id, (t) => t.claimants.length >= 1, 'the early worker to claim')
    const published = () => submitter.host.services.tasks.counters().published
    expect(published()).toBe(1)
    expect((await waitForTask(submitter, task.id, () => true, 'a view')).state).toBe('staffing')

    // two nodes join after the announcement went out
    const late = await Promise.all(
      [0, 1].map(() => startTestDaemon({ ...tuning, overrides: { bootstrap: [submitter.addresses()[0]] } })),
    )
    daemons.push(...late)
    await waitForTopicMesh(daemons)
    const done = await waitForTask(
      submitter,
      task.id,
      (t) => t.state === 'completed' || t.state === 'failed',
      'the task to be staffed by the late joiners and complete',
      180_000,
    )
    expect(done.error).toBeUndefined()
    expect(done.state).toBe('completed')
    const members = new Set(done.groups[0].members)
    expect(members).toEqual(new Set([early, ...late].map((d) => d.peerId.toString())))
    expect(done.groups[0].step).toBe(20)
    // it was announced again (the late joiners could not have heard the first copy), and the early
    // worker answered only the first: one claim each
    expect(published()).toBeGreaterThanOrEqual(2)
    expect(done.claimants.length).toBe(3)
    // a finished task is no longer re-announced
    const after = published()
    await new Promise((resolve) => setTimeout(resolve, REANNOUNCE_INTERVAL_MIN_MS + 1_500))
    expect(published()).toBe(after)
    await waitUntil(
      () => late.every((d) => d.host.services.tasks.counters().accepted >= 1),
      'late joiners heard it',
    )
  })
})
