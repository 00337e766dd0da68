// Test helper for task integration tests: a small network of real in-process daemons on loopback
// (node/daemon.ts, the composition the CLI runs), one submitter and several workers, all on the cpu
// backend, joined through the first node, with short Raft timings so failures resolve quickly.
import type { Daemon } from '../../node/daemon.js'
import type { TaskView } from '../../node/tasks/coordinator.js'
import { apiRequest, startTestDaemon, type TestDaemonInit, waitUntil } from './daemon-helpers.js'

export const TASK_DAEMON_TUNING: TestDaemonInit = {
  taskService: { stallMs: 4_000, progressIntervalMs: 300, trainRaft: { tickMs: 20, electionTicks: 10 } },
}

/** Starts `count` daemons that all bootstrap from the first; resolves once each sees all task-topic peers. */
export async function startTaskNetwork(count: number, init: TestDaemonInit = {}): Promise<Daemon[]> {
  const first = await startTestDaemon({ ...TASK_DAEMON_TUNING, ...init })
  const others = await Promise.all(
    Array.from({ length: count - 1 }, () =>
      startTestDaemon({ ...TASK_DAEMON_TUNING, ...init, overrides: { bootstrap: [first.addresses()[0]] } }),
    ),
  )
  const daemons = [first, ...others]
  await waitForTopicMesh(daemons)
  return daemons
}

/** Waits until every daemon has every other one as a task-topic subscriber (gossip reaches all). */
export async function waitForTopicMesh(daemons: Daemon[], timeoutMs = 60_000): Promise<void> {
  await waitUntil(
    () =>
      daemons.every(
        (d) =>
          d.host.services.pubsub.getSubscribers(d.host.services.tasks.topic).length >=
          Math.min(daemons.length - 1, 1),
      ),
    'every daemon to see task-topic peers',
    timeoutMs,
  )
  // the submitter must reach every worker through gossip: wait for direct connections to all
  await waitUntil(
    () => daemons.every((d) => d.host.getPeers().length >= daemons.length - 1),
    'a full mesh of connections',
    timeoutMs,
  )
}

export async function submitTask(daemon: Daemon, body: unknown): Promise<TaskView> {
  const response = await apiRequest(daemon, '/v1/tasks', { method: 'POST', body })
  const json = (await response.json()) as TaskView & { error?: string }
  if (!response.ok) throw new Error(`submit refused (${response.status}): ${json.error}`)
  return json
}

export async function getTask(daemon: Daemon, id: string): Promise<TaskView> {
  const response = await apiRequest(daemon, `/v1/task?id=${id}`)
  const json = (await response.json()) as TaskView & { error?: string }
  if (!response.ok) throw new Error(`task lookup failed (${response.status}): ${json.error}`)
  return json
}

export async function waitForTask(
  daemon: Daemon,
  id: string,
  condition: (task: TaskView) => boolean,
  what: string,
  timeoutMs = 240_000,
): Promise<TaskView> {
  let last: TaskView | undefined
  try {
    await waitUntil(
      async () => {
        last = await getTask(daemon, id)
        return condition(last)
      },
      what,
      timeoutMs,
      200,
    )
  } catch (error) {
    throw new Error(
      `${(error as Error).message}; last state: ${JSON.stringify(last, null, 1)?.slice(0, 3000)}`,
    )
  }
  return last!
}

export async function stopAll(daemons: Daemon[]): Promise<void> {
  await Promise.all(daemons.map((d) => d.stop().catch(() => {})))
}
