// Proves `shardnet sim chains` through the real executable: a small run prints its parameters and
// summary, writes chains.json, --json puts the same report on stdout, the replay command it prints
// gives the same bytes again; bad flags exit non-zero with one clear sentence.
import { execFile } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, describe, expect, it } from 'vitest'

const run = promisify(execFile)
const bin = join(import.meta.dirname, '../../bin/shardnet.js')
const directory = mkdtempSync(join(tmpdir(), 'shardnet-sim-chains-'))
afterAll(() => rmSync(directory, { recursive: true, force: true }))
const env = { ...process.env, NO_COLOR: '1' }

describe('shardnet sim chains', () => {
  it('runs a seeded chain simulation, writes chains.json and replays it', { timeout: 120_000 }, async () => {
    const report = join(directory, 'report')
    const args = ['sim', 'chains', '--seed', '5', '--servers', '28', '--sessions', '240', '--duration', '10m']
    const { stdout, stderr } = await run(bin, [...args, '--churn', '4', '--report', report, '--json'], {
      env,
    })
    const json = JSON.parse(stdout)
    expect(json.seed).toBe(5)
    expect(json.parameters.servers).toBe(28)
    expect(json.parameters.model.name).toBe('bloom-176b')
    expect(json.sessions.started).toBeGreaterThan(10)
    expect(json.sessions.completed).toBeGreaterThan(0)
    expect(json.replay).toContain('--churn 4')
    expect(stderr).toContain('seed=5')
    expect(stderr).toMatch(/completed share/)
    expect(JSON.parse(readFileSync(join(report, 'chains.json'), 'utf8'))).toEqual(json)
    // the printed replay command, run again, gives the same report
    const replay = (json.replay as string).split(' ').slice(1)
    const again = await run(bin, [...replay, '--json'], { env })
    expect(again.stdout).toBe(stdout)
  })

  it('refuses bad flags with one sentence and a non-zero exit', { timeout: 60_000 }, async () => {
    const cases = [
      ['--model', 'gpt-9'],
      ['--prompt', '2000', '--tokens', '100'],
      ['--value-bytes', '3'],
      ['--churn', '-1'],
      ['--servers', '0'],
      ['--stall-timeout', 'soon'],
    ]
    const failures = await Promise.all(
      cases.map((args) =>
        run(bin, ['sim', 'chains', '--duration', '1m', ...args], { env }).then(
          () => undefined,
          (error: { code: number; stderr: string }) => error,
        ),
      ),
    )
    failures.forEach((failure, i) => {
      expect(failure, cases[i].join(' ')).toBeDefined()
      expect(failure?.code).not.toBe(0)
      expect(failure?.stderr.trim().split('\n').length, failure?.stderr).toBeLessThanOrEqual(2)
    })
  })
})
