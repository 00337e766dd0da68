// handleReady: the one order in which every driver handles a Ready (the runner, the Raft fault
// simulator, the network simulator). protocols/raft/README.md, "The Ready order", gives each step
// and why it sits where it does.
import type { RaftNode, Ready } from './node.js'
import type { StorageUpdate } from './storage.js'
import type { Entry, Message } from './types.js'

/** What a driver does with a Ready; handleReady decides when. */
export interface ReadyDriver {
  /**
   * Makes the update durable. Returns once it is, or returns a promise that resolves once it is
   * (the runner's write off the event loop). A simulated crash happens here: write a part of the
   * update, take the member down, and have halted() answer true.
   */
  save(update: StorageUpdate): void | Promise<void>
  send(messages: Message[]): void
  /** Loads ready.snapshot into the state machine (if any), then applies ready.committedEntries in order. */
  apply(ready: Ready): void
  /** The Ready's entries were handed to storage, not yet durable (for work that may overlap the write). */
  appending?(entries: Entry[]): void
  /** The entries of this Ready are durable and the acknowledgement of them has been sent. */
  appended?(entries: Entry[]): void
  /** After advance(): snapshots and compaction, which see the configuration the Ready's entries applied. */
  advanced?(ready: Ready): void
  /** True once the member crashed or stopped during save: the rest of the Ready never happens. */
  halted?(): boolean
}

/** Messages only a leader sends, which may leave before its own write completes. */
function sendsEarly(m: Message): boolean {
  return m.type === 'MsgApp' || m.type === 'MsgHeartbeat' || m.type === 'MsgSnap'
}

/**
 * Takes the node's next Ready and handles it: early messages, apply, save, then (once durable)
 * late messages and advance(). Returns a promise when driver.save did (await it before taking the
 * next Ready), nothing otherwise.
 */
export function handleReady(node: RaftNode, driver: ReadyDriver): void | Promise<void> {
  const ready = node.ready()
  // a snapshot must be durable before anything is sent or loaded
  let late = ready.messages
  if (!ready.snapshot) {
    if (node.state === 'leader' && late.length > 0) {
      const early: Message[] = []
      late = []
      for (const m of ready.messages) (sendsEarly(m) ? early : late).push(m)
      if (early.length > 0) driver.send(early)
    }
    driver.apply(ready) // committed on a quorum: this member's write need not come first
  }
  const saving = driver.save({ snapshot: ready.snapshot, entries: ready.entries, hardState: ready.hardState })
  if (ready.entries.length > 0) driver.appending?.(ready.entries)
  if (saving) return saving.then(() => durable(node, driver, ready, late))
  durable(node, driver, ready, late)
}

/** The rest of the Ready, once its write is durable. */
function durable(node: RaftNode, driver: ReadyDriver, ready: Ready, late: Message[]): void {
  if (driver.halted?.()) return
  if (late.length > 0) driver.send(late)
  if (ready.snapshot) driver.apply(ready)
  if (ready.entries.length > 0) driver.appended?.(ready.entries)
  node.advance()
  driver.advanced?.(ready)
}
