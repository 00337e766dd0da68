import { readFileSync } from 'node:fs'
import { readFile, rm } from 'node:fs/promises'
import { writeFileAtomic } from './atomic-file.js'

/** A live daemon already owns the data dir. */
export class DaemonAlreadyRunningError extends Error {
  static override name = 'DaemonAlreadyRunningError'
  readonly pid: number
  constructor(pid: number) {
    super(`a shardnet daemon is already running on this data dir (pid ${pid})`)
    this.name = 'DaemonAlreadyRunningError'
    this.pid = pid
  }
}

/** True when `pid` names a live process that is a shardnet daemon (not a reused pid). */
export function isShardnetProcessAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
  } catch {
    // ESRCH: gone; EPERM: alive but another user's, so not our daemon either
    return false
  }
  // after a SIGKILL and a reboot the pid may belong to an unrelated process: check what it runs
  try {
    const commandLine = readFileSync(`/proc/${pid}/cmdline`, 'utf8')
    return commandLine.includes('shardnet')
  } catch {
    // no /proc (macOS): trust the signal check
    return true
  }
}

/** The pid recorded in the file, or undefined when there is none or it is garbage. */
export async function readPidFile(path: string): Promise<number | undefined> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw error
  }
  const pid = Number.parseInt(text.trim(), 10)
  return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined
}

/**
 * Records this process as the data dir's daemon. A pid file left by a daemon that died (SIGKILL,
 * power cut) is stale and replaced; one naming a live daemon is refused.
 * Returns whether a stale file was replaced.
 */
export async function acquirePidFile(path: string, pid = process.pid): Promise<{ replacedStale: boolean }> {
  const existing = await readPidFile(path)
  if (existing !== undefined && existing !== pid && isShardnetProcessAlive(existing)) {
    throw new DaemonAlreadyRunningError(existing)
  }
  await writeFileAtomic(path, `${pid}\n`, 0o644)
  return { replacedStale: existing !== undefined && existing !== pid }
}

/** Removes the pid file if it still names `pid` (a newer daemon's file is left alone). */
export async function releasePidFile(path: string, pid = process.pid): Promise<void> {
  if ((await readPidFile(path)) === pid) await rm(path, { force: true })
}
