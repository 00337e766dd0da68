// libp2p's TCP transport with each send written to the socket in one system call.
//
// Why: @libp2p/tcp writes every piece of what the connection hands it with its own socket.write():
// Noise gives each frame as two pieces (its 2-byte length, then the ciphertext), and yamux's small
// frames (window updates, stream opens) each make a frame of their own. With TCP_NODELAY every
// write is a system call and a TCP segment: a training group's leader made ~113 writes per step
// for two 800 KB log appends, ~40% of them 2-byte length prefixes, and on loopback the kernel runs
// the receiver's TCP work inside each of them. Corking the socket around one send turns the pieces
// into one writev (the same bytes, in the same order, no copy): ~17 writes per step.
//
// How: the transport's dial and listener hand each new connection to libp2p's upgrader; this wraps
// the upgrader so a connection's `sendData` is replaced before the upgrade (Noise, yamux) starts.
// A connection that is not @libp2p/tcp's socket connection as known (another version) is left as it is.
import { Socket } from 'node:net'
import type { MultiaddrConnection, Transport, Upgrader } from '@libp2p/interface'
import { type TCPComponents, type TCPOptions, tcp } from '@libp2p/tcp'
import type { SendResult } from '@libp2p/utils'

/** What @libp2p/tcp's connection holds: its socket, and the method its message stream sends with. */
interface SocketConnection {
  socket?: unknown
  sendData?: (data: Iterable<Uint8Array> & { byteLength: number }) => SendResult
}

/** Makes `connection` write each send as one writev; returns whether it could. */
export function coalesceWrites(connection: MultiaddrConnection): boolean {
  const target = connection as unknown as SocketConnection
  const socket = target.socket
  if (!(socket instanceof Socket) || typeof target.sendData !== 'function') return false
  target.sendData = (data) => {
    socket.cork()
    for (const piece of data) socket.write(piece)
    socket.uncork()
    // everything is queued in the socket; like @libp2p/tcp, pause the stream until 'drain' when the
    // socket's buffer is over its high-water mark
    return { sentBytes: data.byteLength, canSendMore: !socket.writableNeedDrain }
  }
  return true
}

function coalescingUpgrader(upgrader: Upgrader): Upgrader {
  return new Proxy(upgrader, {
    get(target, key) {
      if (key === 'upgradeInbound' || key === 'upgradeOutbound') {
        const upgrade = target[key].bind(target) as (
          connection: MultiaddrConnection,
          ...rest: unknown[]
        ) => unknown
        return (connection: MultiaddrConnection, ...rest: unknown[]) => {
          coalesceWrites(connection)
          return upgrade(connection, ...rest)
        }
      }
      const value = Reflect.get(target, key, target)
      return typeof value === 'function' ? value.bind(target) : value
    },
  })
}

/** `tcp()` of @libp2p/tcp, with every connection's sends coalesced (see the header). */
export function shardnetTcp(init?: TCPOptions): (components: TCPComponents) => Transport {
  const factory = tcp(init)
  return (components) => {
    const transport = factory(components)
    const dial = transport.dial.bind(transport)
    const createListener = transport.createListener.bind(transport)
    transport.dial = (address, options) =>
      dial(address, { ...options, upgrader: coalescingUpgrader(options.upgrader) })
    transport.createListener = (options) =>
      createListener({ ...options, upgrader: coalescingUpgrader(options.upgrader) })
    return transport
  }
}
