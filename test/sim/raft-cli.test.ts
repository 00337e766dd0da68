// Proves `shardnet sim raft` works as a user runs it: the real executable runs seeded simulations,
// prints a JSON summary on stdout, writes one JSONL apply record per applied entry with --log
// (members agree on every index's digest), replays one seed with --seed, and rejects bad flags
// with a clear sentence and a non-zero exit.
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'

const executable = new URL('../../bin/shardnet.js', import.meta.url).pathname
const directory = mkdtempSync(join(tmpdir(), 'shardnet-sim-cli-'))
afterAll(() => rmSync(directory, { recursive: true, force: true }))

function shardnet(...args: string[]) {
  return spawnSync(process.execPath, [executable, ...args], { encoding: 'utf8', timeout: 120_000 })
}

describe('shardnet sim raft', () => {
  it('runs seeds, prints JSON and logs every apply', () => {
    const log = join(directory, 'applies.jsonl')
    const result = shardnet('sim', 'raft', '--seeds', '4', '--members', '3', '--json', '--log', log)
    expect(result.status, result.stderr).toBe(0)
    const summary = JSON.parse(result.stdout)
    expect(summary).toMatchObject({ seeds: 4, members: 3, passed: 4, failures: [] })
    const records = readFileSync(log, 'utf8')
      .trim()
      .split('\n')
      .map(
        (line) =>
          JSON.parse(line) as { seed: number; member: string; index: number; term: number; digest: string },
      )
    expect(records.length).toBe(summary.totals.applies)
    // an independent check of State Machine Safety from the log alone
    const byIndex = new Map<string, string>()
    for (const record of records) {
      const key = `${record.seed}/${record.index}`
      const value = `${record.term}:${record.digest}`
      expect(byIndex.get(key) ?? value, key).toBe(value)
      byIndex.set(key, value)
    }
    expect(new Set(records.map((record) => record.seed))).toEqual(new Set([1, 2, 3, 4]))
  }, 120_000)

  it('replays a single seed', () => {
    const result = shardnet('sim', 'raft', '--seed', '3', '--members', '3')
    expect(result.status, result.stderr).toBe(0)
    expect(result.stdout).toContain('1 seeds, 3 members: 1 passed, 0 failed')
  }, 120_000)

  it('rejects a bad flag with one clear sentence', () => {
    const result = shardnet('sim', 'raft', '--members', 'many')
    expect(result.status).not.toBe(0)
    expect(result.stderr).toContain('--members must be an integer from 1 to 9.')
  }, 120_000)
})
