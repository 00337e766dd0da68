// Showing a task: a one-screen summary, and a live view (`--watch`) that polls the daemon and draws one
// progress bar per group on a terminal (step, loss, accuracy, samples/s, leader) or prints a line per
// change otherwise. Used by `submit --watch`, `task ID --watch` and `demo`.
import cliProgress from 'cli-progress'
import pc from 'picocolors'
import type { TaskView } from '../tasks/coordinator.js'
import type { DaemonClient } from './daemon-client.js'
import { UserError } from './errors.js'

export const TERMINAL = ['completed', 'failed', 'cancelled']

export function shortId(id: string): string {
  return id.length > 16 ? `${id.slice(0, 6)}…${id.slice(-8)}` : id
}

export function shortPeer(peer: string): string {
  return peer === '' ? '-' : `…${peer.slice(-6)}`
}

function percent(value: number | undefined): string {
  return value === undefined ? '-' : `${(value * 100).toFixed(2)}%`
}

/** The task's model metric: validation bits per byte (a GPT) or test accuracy (a classifier). */
export function scoreText(task: Pick<TaskView, 'accuracy' | 'bitsPerByte'>): string {
  if (task.bitsPerByte !== undefined) return `${task.bitsPerByte.toFixed(3)} bits/byte`
  return `acc ${percent(task.accuracy)}`
}

function lossText(loss: number | null | undefined): string {
  return typeof loss === 'number' && Number.isFinite(loss) ? loss.toFixed(4) : '-'
}

export function formatTaskLine(task: TaskView): string {
  const step = task.groups.length > 0 ? Math.min(...task.groups.map((g) => g.step)) : 0
  return (
    `${task.id}  ${task.kind.padEnd(5)} ${task.state.padEnd(9)} ` +
    `${String(step).padStart(6)}/${task.steps} steps  ${task.groupCount}x${task.groupSize}  ` +
    `${scoreText(task)}  ${new Date(task.createdMs).toISOString()}`
  )
}

export function formatTask(task: TaskView): string {
  const lines = [
    `task       ${task.id}`,
    `kind       ${task.kind}, ${task.groupCount} group${task.groupCount === 1 ? '' : 's'} of ` +
      `${task.groupSize}, ${task.steps} steps`,
    `state      ${task.state}${task.error !== undefined ? ` (${task.error})` : ''}`,
    `workers    ${task.claimants.length} claimed, ${task.needed} ` +
      `needed${task.declined.length > 0 ? `, ${task.declined.length} declined` : ''}`,
    `score      ${scoreText(task)}${task.state === 'completed' ? '' : ' (last outer round)'}`,
    `outer      ${task.outerRound} round${task.outerRound === 1 ? '' : 's'} averaged`,
  ]
  for (const group of task.groups) {
    lines.push(
      `group ${group.group}    ${group.status.padEnd(9)} step ${group.step}/${task.steps}  loss ` +
        `${lossText(group.loss)}  ${Math.round(group.samplesPerSecond)} samples/s  leader ` +
        `${shortPeer(group.leader)}`,
      `           members ${group.members.join(', ')}`,
    )
    if (group.vacated !== undefined)
      lines.push(
        `           waiting for ${group.vacated.length} new member(s) to replace ${group.vacated.join(', ')}`,
      )
    for (const re of group.reformed ?? []) {
      lines.push(
        `           re-formed at step ${re.step} (incarnation ${re.incarnation}): ` +
          `${re.joined.join(', ')} replaced ${re.vacated.join(', ')}`,
      )
    }
  }
  if (task.resultDir !== undefined) lines.push(`result     ${task.resultDir}`)
  return lines.join('\n')
}

export async function fetchTask(client: DaemonClient, id: string): Promise<TaskView> {
  return client.get<TaskView>(`/v1/task?id=${encodeURIComponent(id)}`)
}

export const WATCH_INTERVAL_MS_DEFAULT = 500

export interface WatchOptions {
  /** how often the task is fetched. @default WATCH_INTERVAL_MS_DEFAULT */
  intervalMs?: number
  /** print nothing (the caller prints the end result) */
  quiet?: boolean
  /** give up after this long (the task keeps running) */
  timeoutMs?: number
}

/** Polls until the task ends; draws progress on stderr; returns the final view. */
export async function watchTask(
  client: DaemonClient,
  id: string,
  options: WatchOptions = {},
): Promise<TaskView> {
  const interactive = process.stderr.isTTY === true && options.quiet !== true
  const multi = interactive
    ? new cliProgress.MultiBar(
        {
          stream: process.stderr,
          format:
            'group {group} {bar} {value}/{total} | {status} | loss {loss} | {accuracy} | {speed} ' +
            'samples/s | leader {leader}',
          hideCursor: true,
          clearOnComplete: false,
        },
        cliProgress.Presets.shades_classic,
      )
    : undefined
  const bars = new Map<number, cliProgress.SingleBar>()
  let lastLine = ''
  let lastPrintMs = 0
  let lastState = ''
  const deadline = options.timeoutMs !== undefined ? Date.now() + options.timeoutMs : Number.POSITIVE_INFINITY
  try {
    for (;;) {
      const task = await fetchTask(client, id)
      if (task.state !== lastState && options.quiet !== true) {
        if (multi !== undefined) multi.log(`task ${shortId(task.id)}: ${task.state}\n`)
        else process.stderr.write(`task ${shortId(task.id)}: ${task.state}\n`)
        if (task.state === 'running' && lastState === 'staffing') {
          for (const group of task.groups) {
            const line = `group ${group.group}: ${group.members.map(shortPeer).join(', ')}\n`
            if (multi !== undefined) multi.log(line)
            else process.stderr.write(line)
          }
        }
        lastState = task.state
      }
      for (const group of task.groups) {
        const payload = {
          group: group.group,
          status: group.status.padEnd(9),
          loss: lossText(group.loss),
          accuracy: scoreText(task),
          speed: Math.round(group.samplesPerSecond),
          leader: shortPeer(group.leader),
        }
        if (multi !== undefined) {
          let bar = bars.get(group.group)
          if (bar === undefined) {
            bar = multi.create(task.steps, group.step, payload)
            bars.set(group.group, bar)
          }
          bar.update(group.step, payload)
        }
      }
      if (multi === undefined && options.quiet !== true && task.groups.length > 0) {
        const line = task.groups
          .map(
            (g) =>
              `group ${g.group} ${g.status} step ${g.step}/${task.steps} loss ${lossText(g.loss)} ` +
              `${Math.round(g.samplesPerSecond)} samples/s leader ${shortPeer(g.leader)}`,
          )
          .join(' | ')
        const full = `${line} | ${scoreText(task)}`
        if (full !== lastLine && Date.now() - lastPrintMs > 2000) {
          process.stderr.write(`${full}\n`)
          lastLine = full
          lastPrintMs = Date.now()
        }
      }
      if (TERMINAL.includes(task.state)) return task
      if (Date.now() > deadline) {
        throw new UserError(
          `task ${task.id} is still ${task.state} after ` +
            `${Math.round((options.timeoutMs ?? 0) / 1000)} s; follow it with \`shardnet task ` +
            `${task.id} --watch\``,
        )
      }
      await new Promise((resolve) => setTimeout(resolve, options.intervalMs ?? WATCH_INTERVAL_MS_DEFAULT))
    }
  } finally {
    multi?.stop()
  }
}

export function describeEnd(task: TaskView): string {
  if (task.state === 'completed' && task.kind === 'infer') {
    // inference figures (node/tasks/infer-coordinator.ts puts them in the summary)
    const i = task.summary.inference as {
      agreeingResults: number
      results: number
      reruns: number
      outliers: string[]
    }
    return (
      `${pc.bold(`${i.agreeingResults}/${i.results} replica results agreed`)} over ${task.groupCount} ` +
      `shard${task.groupCount === 1 ? '' : 's'} of ${task.groupSize} replicas, ` +
      `${i.reruns} ` +
      `re-runs${i.outliers.length > 0 ? `, outliers ${i.outliers.join(', ')}` : ''}\npredictions ` +
      `written to ${task.resultDir} (copy them with \`shardnet result ${task.id} --out DIR\`)`
    )
  }
  if (task.state === 'completed') {
    const score =
      task.bitsPerByte !== undefined
        ? `validation ${scoreText(task)}`
        : `test accuracy ${percent(task.accuracy)}`
    return (
      `${pc.bold(score)} ` +
      `after ${task.steps} steps in ` +
      `${task.groupCount} group${task.groupCount === 1 ? '' : 's'} of ${task.groupSize}\nmodel written ` +
      `to ${task.resultDir} (copy it with \`shardnet result ${task.id} --out DIR\`)`
    )
  }
  return `task ${task.id} ${task.state}${task.error !== undefined ? `: ${task.error}` : ''}`
}
