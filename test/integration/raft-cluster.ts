// A minimal real Raft group for integration tests and bench/raft.ts: each member is its own libp2p
// node (TCP on 127.0.0.1, noise, yamux) with the raft transport service, a DurableRaftStorage in a
// temp directory and a RaftRunner. No daemon: just what the group needs.
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { generateKeyPair } from '@libp2p/crypto/keys'
import type { PrivateKey } from '@libp2p/interface'
import { noise } from '@libp2p/noise'
import { yamux } from '@libp2p/yamux'
import { createLibp2p, type Libp2p } from 'libp2p'
import { DurableRaftStorage } from '../../node/store/raft-storage.js'
import { shardnetTcp } from '../../node/tcp.js'
import { RaftRunner, type RaftRunnerInit } from '../../protocols/raft/runner.js'
import { type RaftTransport, type RaftTransportInit, raftTransport } from '../../protocols/raft/transport.js'
import type { Entry } from '../../protocols/raft/types.js'

export interface RaftClusterMember {
  id: string
  privateKey: PrivateKey
  libp2p: Libp2p<{ raft: RaftTransport }>
  transport: RaftTransport
  storage: DurableRaftStorage
  runner: RaftRunner
  appliedCount: number
  lastApplied: number
  alive: boolean
  /** Kills the member: stops runner and libp2p node and closes its store (as a crash would). */
  kill(): Promise<void>
}

export interface RaftClusterInit {
  size: number
  directory: string
  group?: string
  transport?: RaftTransportInit
  runner?: Partial<Omit<RaftRunnerInit, 'group' | 'id' | 'storage' | 'transport'>>
  /** Per-member runner options (e.g. each member's own state machine), merged over `runner`. */
  runnerFor?: (id: string) => Partial<Omit<RaftRunnerInit, 'group' | 'id' | 'storage' | 'transport'>>
}

export async function createRaftNode(
  transportInit: RaftTransportInit = {},
  privateKey?: PrivateKey,
): Promise<Libp2p<{ raft: RaftTransport }>> {
  return createLibp2p({
    privateKey: privateKey ?? (await generateKeyPair('Ed25519')),
    addresses: { listen: ['/ip4/127.0.0.1/tcp/0'] },
    transports: [shardnetTcp()],
    connectionEncrypters: [noise()],
    streamMuxers: [yamux()],
    connectionManager: { allow: ['/ip4/127.0.0.0/ipcidr/8'] },
    services: { raft: raftTransport(transportInit) },
  })
}

/**
 * Starts a new member with an empty store that joins `group` once the leader adds it: its node
 * dials the live members, and it learns the configuration by replaying the group's log.
 */
export async function addRaftMember(
  members: RaftClusterMember[],
  init: RaftClusterInit,
): Promise<RaftClusterMember> {
  const key = await generateKeyPair('Ed25519')
  const libp2p = await createRaftNode(init.transport, key)
  const alive = members.filter((other) => other.alive)
  for (const other of alive) await libp2p.dial(other.libp2p.getMultiaddrs())
  // the daemon adding a member tells it who is in the group (etcd's --initial-cluster)
  return startMember(
    libp2p,
    { ...init, runner: { ...init.runner, knownPeers: alive.map((other) => other.id) } },
    undefined,
    key,
  )
}

function startMember(
  libp2p: Libp2p<{ raft: RaftTransport }>,
  init: RaftClusterInit,
  founders: string[] | undefined,
  privateKey: PrivateKey,
): RaftClusterMember {
  const group = init.group ?? 'test-group'
  const id = libp2p.peerId.toString()
  const directory = join(init.directory, id)
  mkdirSync(directory, { recursive: true })
  const storage = DurableRaftStorage.open(directory)
  if (founders && storage.lastIndex() === 0) storage.bootstrap(founders)
  const member: RaftClusterMember = {
    id,
    privateKey,
    libp2p,
    transport: libp2p.services.raft,
    storage,
    runner: undefined as unknown as RaftRunner,
    appliedCount: 0,
    lastApplied: 0,
    alive: true,
    async kill() {
      if (!member.alive) return
      member.alive = false
      member.runner.stop()
      await libp2p.stop()
      storage.close()
    },
  }
  const options = { ...init.runner, ...init.runnerFor?.(id) }
  member.runner = new RaftRunner({
    group,
    id,
    storage,
    transport: libp2p.services.raft,
    ...options,
    apply: (entries: Entry[]) => {
      member.appliedCount += entries.length
      member.lastApplied = entries[entries.length - 1].index
      options.apply?.(entries)
    },
  })
  member.runner.start()
  return member
}

export async function startRaftCluster(init: RaftClusterInit): Promise<RaftClusterMember[]> {
  const keys = await Promise.all(Array.from({ length: init.size }, () => generateKeyPair('Ed25519')))
  const nodes = await Promise.all(keys.map((key) => createRaftNode(init.transport, key)))
  // a full mesh of connections up front; streams then open on them
  for (const a of nodes) {
    for (const b of nodes) {
      if (a !== b && a.getConnections(b.peerId).length === 0) await a.dial(b.getMultiaddrs())
    }
  }
  const ids = nodes.map((node) => node.peerId.toString())
  return nodes.map((libp2p, i) => startMember(libp2p, init, ids, keys[i]))
}

/** Polls until `predicate` holds (robust to a loaded machine), or fails naming `what`. */
export async function waitFor<T>(
  predicate: () => T | undefined | false,
  timeoutMs: number,
  what: string,
): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = predicate()
    if (value) return value
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

/** The live member that is leader of the highest term, if any. */
export function currentLeader(members: RaftClusterMember[]): RaftClusterMember | undefined {
  let best: RaftClusterMember | undefined
  for (const member of members) {
    if (!member.alive || !member.runner.isLeader()) continue
    if (!best || member.runner.status().term > best.runner.status().term) best = member
  }
  return best
}

export async function stopRaftCluster(members: RaftClusterMember[]): Promise<void> {
  await Promise.all(members.map((member) => member.kill()))
}

/** Restarts a killed member from its data dir under the same identity (a process restart). */
export async function restartRaftMember(
  member: RaftClusterMember,
  members: RaftClusterMember[],
  init: RaftClusterInit,
): Promise<RaftClusterMember> {
  if (member.alive) throw new Error('restart of a live member')
  const libp2p = await createRaftNode(init.transport, member.privateKey)
  for (const other of members) if (other.alive) await libp2p.dial(other.libp2p.getMultiaddrs())
  return startMember(libp2p, init, undefined, member.privateKey)
}
