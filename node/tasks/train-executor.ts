// Runs one training assignment: gets the group's data through its model kind (the shard block,
// verified by CID, or a corpus built here and checked against the task's content ids), opens the
// durable Raft log of this member in the data dir, and runs one member of the group through the
// training protocol's startGroupMember. Progress goes to the submitter; at each DiLoCo outer round
// the group's leader publishes its params as a block, reports it, and continues from the average
// the submitter sends back. At the end this member serves its final params until the submitter releases it.
// While the group has no leader (it lost its majority) the member publishes its TrainingState as a
// block and reports it, so that the submitter can re-form the group around the survivors; a re-formed
// group (incarnation > 0) is a new Raft group whose members all start from that state.
import { logger } from '@libp2p/logger'
import { CID } from 'multiformats/cid'
import type { TrainTaskSpec } from '../../protocols/tasks/spec.js'
import { startGroupMember } from '../../protocols/training/group.js'
import { bytesToFloats, floatsToBytes } from '../../protocols/training/params.js'
import { decodeState, type TrainingState } from '../../protocols/training/state.js'
import type { GroupMemberComponents, StepEvent } from '../../protocols/training/types.js'
import { DurableRaftStorage } from '../store/raft-storage.js'
import { findStorageFault } from '../store/storage-fault.js'
import { TASK_MODELS } from './task-models.js'
import type { ExecutionContext, TaskExecutor } from './worker.js'

const log = logger('shardnet:tasks:train')

export interface TrainExecutorInit {
  components: GroupMemberComponents
  /** how often the member's status is reported even without new steps. @default STATUS_INTERVAL_MS_DEFAULT */
  statusIntervalMs?: number
  /**
   * how long a finished member keeps serving its params and its log if the submitter never releases it
   * @default LINGER_MS_DEFAULT
   */
  lingerMs?: number
  /** Raft tuning for the group (tests use shorter elections) */
  raft?: { tickMs?: number; electionTicks?: number }
  /**
   * how long the group must have had no leader before this member publishes its state
   * @default LEADERLESS_STATE_MS_DEFAULT
   */
  leaderlessStateMs?: number
}

export const STATUS_INTERVAL_MS_DEFAULT = 1000
export const LINGER_MS_DEFAULT = 300_000
export const LEADERLESS_STATE_MS_DEFAULT = 3000

/** The Raft group id of a group's incarnation (each re-formation runs as a new Raft group). */
export function trainingGroupId(taskId: string, group: number, incarnation: number): string {
  return `${taskId}/g${group}${incarnation > 0 ? `/i${incarnation}` : ''}`
}

/** One member's samples per second over the last steps it saw committed. */
class Throughput {
  private readonly points: Array<{ step: number; timeMs: number }> = []
  constructor(private readonly samplesPerStep: number) {}

  add(step: number, timeMs: number): number {
    this.points.push({ step, timeMs })
    if (this.points.length > 20) this.points.shift()
    const first = this.points[0]
    const seconds = (timeMs - first.timeMs) / 1000
    return seconds > 0 ? ((step - first.step) * this.samplesPerStep) / seconds : 0
  }
}

export function trainExecutor(init: TrainExecutorInit): TaskExecutor<TrainTaskSpec> {
  const statusIntervalMs = init.statusIntervalMs ?? STATUS_INTERVAL_MS_DEFAULT
  const lingerMs = init.lingerMs ?? LINGER_MS_DEFAULT
  const leaderlessStateMs = init.leaderlessStateMs ?? LEADERLESS_STATE_MS_DEFAULT
  return {
    kind: 'train',
    async run(context: ExecutionContext<TrainTaskSpec>): Promise<void> {
      const train = context.spec.train
      const { assignment } = context
      const taskModel = TASK_MODELS[train.model]
      const incarnation = assignment.incarnation ?? 0
      // a re-formed group starts from the state the submitter holds (verified by CID on fetch)
      let initialState: TrainingState | undefined
      if (assignment.stateCid !== undefined) {
        const bytes = await context.fetchBlock(CID.parse(assignment.stateCid))
        initialState = decodeState(bytes, taskModel.parameterCount(train))
        if (initialState === undefined) throw new Error('the state the group re-forms from is unusable')
      }
      // the group's data (a shard block, or an open corpus file) after the re-formation state checks out
      const data = await taskModel.trainingModel(train, assignment.group, (cid) => context.fetchBlock(cid))
      const outerEvery = train.groups > 1 ? train.outerEvery || train.steps : 0
      const throughput = new Throughput(train.batchSize * assignment.members.length)
      // everything opened from here on is closed in the finally, also if opening the next part fails
      let storage: DurableRaftStorage | undefined
      let backend: Awaited<ReturnType<typeof context.openBackend>> | undefined
      let member: Awaited<ReturnType<typeof startGroupMember>> | undefined
      let statusTimer: NodeJS.Timeout | undefined
      try {
        storage = DurableRaftStorage.open(context.folder)
        backend = await context.openBackend()
        member = await startGroupMember({
          components: init.components,
          groupId: trainingGroupId(context.taskId, assignment.group, incarnation),
          members: assignment.members,
          model: data.model,
          seed: train.seed,
          batchSize: train.batchSize,
          learningRate: train.learningRate,
          steps: train.steps,
          ...(initialState !== undefined ? { initialState } : {}),
          aggregate: train.aggregate,
          minContributors: train.minGradients,
          compression: train.compress,
          storage,
          backend,
          outerEvery,
          outerStep:
            outerEvery > 0
              ? async (request) => {
                  const cid = await context.putBlock(floatsToBytes(request.params))
                  context.report({ outerRound: request.round, paramsCid: cid, step: request.step }, true)
                  const averaged = await context.outerUpdate(request.round)
                  const params = bytesToFloats(await context.fetchBlock(averaged))
                  if (params.length !== request.params.length)
                    throw new Error('the averaged params have the wrong length')
                  context.report({ outerRound: 0, paramsCid: null, appliedRound: request.round })
                  return params
                }
              : undefined,
          ...(init.raft !== undefined ? { raft: init.raft } : {}),
        })
        const running = member
        running.on('step', (event: StepEvent) => {
          context.report({
            step: event.step,
            loss: event.loss,
            leader: event.leader,
            samplesPerSecond: throughput.add(event.step, Date.now()),
          })
        })
        running.on('outer', (event) => context.report({ appliedRound: event.round }))
        // a storage fault stopped the member (its Raft store refuses further writes): this run ends
        // with it, so the submitter hears the one-sentence cause instead of a member gone silent
        let rejectStorageFault: (error: Error) => void = () => {}
        const storageFault = new Promise<never>((_, reject) => {
          rejectStorageFault = reject
        })
        storageFault.catch(() => {})
        running.on('error', (error) => {
          log('member error: %s', error.message)
          const fault = findStorageFault(error)
          if (fault !== undefined) rejectStorageFault(fault)
        })
        let leaderSeenMs = Date.now()
        let published: { step: number; outerRounds: number } | undefined
        let publishing = false
        /** Stores this member's state as a block and reports it, for a re-formation of its group. */
        const publishState = (status: ReturnType<typeof running.status>): void => {
          publishing = true
          context
            .putBlock(running.encodedState())
            .then((cid) => {
              published = { step: status.step, outerRounds: status.outerRounds }
              context.report({ stateCid: cid, step: status.step }, true)
            })
            .catch((error: unknown) => log('publishing the state failed: %s', (error as Error).message))
            .finally(() => {
              publishing = false
            })
        }
        statusTimer = setInterval(() => {
          const status = running.status()
          context.report({
            step: status.step,
            leader: status.leader,
            ...(Number.isFinite(status.lastLoss) ? { loss: status.lastLoss } : {}),
            // what this member's group holds of each member: the submitter believes a count a majority
            // of the group reports, and keeps it in its reputation book. Distrusted means caught in a
            // lie (an entry that did not check out), not the noisy agreement verdict `suspected`
            reports: status.reports.map((r) => ({
              member: r.member,
              accepted: r.accepted,
              rejected: r.rejected,
              suspect: r.suspect,
              distrusted: status.distrusted.some((d) => d.peer === r.member),
            })),
          })
          const nowMs = Date.now()
          // the submitter asked for it: the group trains on without members that went silent
          if (context.takeStateRequest() && !status.finished && !publishing) {
            publishState(status)
            return
          }
          if (status.leader !== '' || status.finished) {
            leaderSeenMs = nowMs
            if (published !== undefined) context.report({ stateCid: null })
            published = undefined
            return
          }
          // leaderless for a while: offer this member's state for a re-formation (once per state)
          const stale = published?.step !== status.step || published.outerRounds !== status.outerRounds
          if (nowMs - leaderSeenMs < leaderlessStateMs || !stale || publishing) return
          publishState(status)
        }, statusIntervalMs)
        statusTimer.unref()
        const aborted = new Promise<never>((_, reject) => {
          if (context.signal.aborted) reject(context.signal.reason)
          context.signal.addEventListener('abort', () => reject(context.signal.reason), { once: true })
        })
        aborted.catch(() => {})
        const finished = await Promise.race([running.finished(), aborted, storageFault])
        await context.recordOutcome({ step: finished.step, digest: finished.digest })
        const cid = await context.putBlock(floatsToBytes(finished.params))
        context.report({ step: finished.step, done: true, paramsCid: cid, outerRound: 0 }, true)
        log('task %s group %d finished at step %d', context.taskId, assignment.group, finished.step)
        // keep serving the params and the log until the submitter releases this member
        await Promise.race([aborted, new Promise((resolve) => setTimeout(resolve, lingerMs).unref())]).catch(
          () => {},
        )
      } finally {
        clearInterval(statusTimer)
        member?.stop()
        storage?.close()
        backend?.destroy()
        data.close()
      }
    },
  }
}
