// Network simulator throughput: one simulated hour of an active network (announcements, claims,
// 100 Raft groups training, 5%/h churn) at 1k, 10k and 100k peers, each in its own process so peak
// RSS is that run's. Prints events/s, wall time and peak RSS, and the event queue's pops/s against
// an object-based binary heap (the baseline, measured in the same run), and the events/s of the
// simulator's typed event loop around it.
//   npm run bench:sim                     # 1k, 10k, 100k peers, 1 h each
//   npm run bench:sim -- --peers 10000    # one size
//   npm run bench:sim -- --duration 15m   # shorter simulated time
import { execFileSync } from 'node:child_process'
import { EventKind, EventLoop } from '../simulations/network/events.js'
import { parseDurationMs } from '../simulations/network/links.js'
import { EventQueue } from '../simulations/network/queue.js'
import { simulateNetwork } from '../simulations/network/simulator.js'

function flag(name: string): string | undefined {
  const at = process.argv.indexOf(name)
  return at >= 0 ? process.argv[at + 1] : undefined
}

function child(peers: number, durationMs: number): void {
  const cpuBeforeMs = (process.cpuUsage().user + process.cpuUsage().system) / 1000
  const started = performance.now()
  const result = simulateNetwork({
    seed: 1,
    peers,
    groups: 100,
    groupSize: 3,
    churnPerHour: 0.05,
    lossProbability: 0.001,
    partitions: [],
    durationMs,
    scenario: 'steady',
  })
  const wallMs = performance.now() - started
  process.stdout.write(
    `${JSON.stringify({
      peers,
      durationMs,
      events: result.events,
      wallMs: Math.round(wallMs),
      eventsPerSecond: Math.round(result.events / (wallMs / 1000)),
      cpuMs: Math.round((process.cpuUsage().user + process.cpuUsage().system) / 1000 - cpuBeforeMs),
      maxRssMiB: Math.round(process.resourceUsage().maxRSS / 1024),
      stepsCommitted: result.counters.stepsCommitted,
      announcements: result.counters.announcements,
      lookups: result.counters.lookups,
      tasksCompleted: result.counters.tasksCompleted,
      safe: result.violation === undefined,
    })}\n`,
  )
}

/** The baseline: a textbook binary heap of event objects. */
class ObjectHeap {
  private items: { time: number; sequence: number; kind: number; a: number; b: number }[] = []
  private sequence = 0
  push(time: number, kind: number, a: number, b: number): void {
    const item = { time, sequence: this.sequence++, kind, a, b }
    const items = this.items
    items.push(item)
    let i = items.length - 1
    while (i > 0) {
      const parent = (i - 1) >> 1
      const p = items[parent]
      if (p.time < time || (p.time === time && p.sequence < item.sequence)) break
      items[i] = p
      i = parent
    }
    items[i] = item
  }
  pop(): { time: number } | undefined {
    const items = this.items
    const top = items[0]
    const last = items.pop()
    if (items.length > 0 && last) {
      let i = 0
      while (true) {
        let c = 2 * i + 1
        if (c >= items.length) break
        if (c + 1 < items.length) {
          const r = items[c + 1]
          const l = items[c]
          if (r.time < l.time || (r.time === l.time && r.sequence < l.sequence)) c++
        }
        const ch = items[c]
        if (last.time < ch.time || (last.time === ch.time && last.sequence < ch.sequence)) break
        items[i] = ch
        i = c
      }
      items[i] = last
    }
    return top
  }
}

function queueBench(): void {
  const pending = 100_000
  const operations = 3_000_000
  const run = (push: (t: number) => void, pop: () => number) => {
    let now = 0
    let x = 12345
    const next = () => {
      x = (Math.imul(x, 1103515245) + 12345) >>> 0
      return x / 0x1_0000_0000
    }
    for (let i = 0; i < pending; i++) push(next() * 1000)
    const started = performance.now()
    for (let i = 0; i < operations; i++) {
      now = pop()
      push(now + next() * 1000)
    }
    return operations / ((performance.now() - started) / 1000)
  }
  const typed = new EventQueue()
  const objects = new ObjectHeap()
  // interleave two rounds each so machine load hits both alike
  const rates = { typed: 0, objects: 0 }
  for (let round = 0; round < 2; round++) {
    rates.typed += run(
      (t) => typed.push(t, 1, 2, 3),
      () => {
        typed.pop()
        return typed.time
      },
    )
    rates.objects += run(
      (t) => objects.push(t, 1, 2, 3),
      () => objects.pop()?.time ?? 0,
    )
  }
  console.log(
    `event queue (${pending} pending, pop+push): typed-array heap ` +
      `${Math.round(rates.typed / 2 / 1000)}k ops/s, object heap ` +
      `${Math.round(rates.objects / 2 / 1000)}k ops/s, ratio ${(rates.typed / rates.objects).toFixed(2)}x`,
  )
  // the same through the simulator's EventLoop: typed `at`, the handler table, microtask check
  const loop = new EventLoop()
  let x = 12345
  let handled = 0
  const next = () => {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0
    return x / 0x1_0000_0000
  }
  loop.handle({
    [EventKind.restart]: (peer) => {
      handled++
      loop.at(loop.now + next() * 1000, EventKind.restart, peer)
    },
  })
  for (let i = 0; i < pending; i++) loop.at(next() * 1000, EventKind.restart, i)
  const started = performance.now()
  // about `operations` events: each handled one schedules the next
  loop.runUntil((operations / pending) * 1000)
  const loopRate = handled / ((performance.now() - started) / 1000)
  console.log(`event loop (${pending} pending, handle+at): ${Math.round(loopRate / 1000)}k events/s`)
}

if (flag('--child') !== undefined) {
  child(Number(flag('--child')), Number(flag('--duration-ms')))
} else {
  const durationMs = parseDurationMs(flag('--duration') ?? '1h')
  const sizes = flag('--peers') ? [Number(flag('--peers'))] : [1000, 10_000, 100_000]
  console.log(
    `node ${process.version}, ${process.arch}; load average ${(await import('node:os'))
      .loadavg()
      .map((l) => l.toFixed(1))
      .join(' ')}`,
  )
  queueBench()
  for (const peers of sizes) {
    const output = execFileSync(
      process.execPath,
      [
        '--import',
        'tsx',
        import.meta.filename,
        '--child',
        String(peers),
        '--duration-ms',
        String(durationMs),
      ],
      { encoding: 'utf8', maxBuffer: 1 << 20 },
    )
    const result = JSON.parse(output.trim().split('\n').at(-1) ?? '{}')
    console.log(
      `${peers} peers, ${durationMs / 60_000} simulated min: ${result.events} events in ` +
        `${(result.wallMs / 1000).toFixed(1)} s wall = ${result.eventsPerSecond} events/s (CPU ` +
        `time ${(result.cpuMs / 1000).toFixed(1)} s = ` +
        `${Math.round(result.events / (result.cpuMs / 1000))} events per CPU-second), load ` +
        `average now ${(await import('node:os')).loadavg()[0].toFixed(1)}, peak RSS ` +
        `${result.maxRssMiB} MiB; ${result.stepsCommitted} steps, ${result.announcements} ` +
        `announcements, ${result.lookups} lookups, ${result.tasksCompleted} tasks completed, ` +
        `safety ${result.safe ? 'ok' : 'VIOLATED'}`,
    )
  }
}
