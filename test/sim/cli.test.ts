// Proves `shardnet sim` through the real executable: a small run prints the seed and its derived
// parameters, writes report.json and the SVG plots, and --json puts the report on stdout; bad flags
// exit non-zero with one clear sentence.
import { execFile } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, describe, expect, it } from 'vitest'

const run = promisify(execFile)
const bin = join(import.meta.dirname, '../../bin/shardnet.js')
const directory = mkdtempSync(join(tmpdir(), 'shardnet-sim-'))
afterAll(() => rmSync(directory, { recursive: true, force: true }))

describe('shardnet sim', () => {
  it('runs a seeded scenario, prints its parameters and writes the report', {
    timeout: 120_000,
  }, async () => {
    const report = join(directory, 'report')
    const { stdout } = await run(
      bin,
      [
        'sim',
        '--peers',
        '200',
        '--groups',
        '4',
        '--duration',
        '3m',
        '--seed',
        '9',
        '--inference',
        '600',
        '--report',
        report,
        '--json',
      ],
      { env: { ...process.env, NO_COLOR: '1' } },
    )
    const json = JSON.parse(stdout)
    expect(json.seed).toBe(9)
    expect(json.parameters.peers).toBe(200)
    expect(json.safety.ok).toBe(true)
    expect(json.parameters.inferencePerHour).toBe(600)
    expect(json.inference.completed).toBeGreaterThan(0)
    expect(json.replay).toContain('--inference 600')
    const files = readdirSync(report).sort()
    expect(files).toContain('report.json')
    expect(files.filter((f) => f.endsWith('.svg')).length).toBe(7)
    expect(JSON.parse(readFileSync(join(report, 'report.json'), 'utf8'))).toEqual(json)
    expect(readFileSync(join(report, 'dht-lookup-hops.svg'), 'utf8')).toContain('DHT lookup hops')
  })

  it('refuses bad flags with one sentence and a non-zero exit', { timeout: 60_000 }, async () => {
    const cases = [
      ['--scenario', 'nope'],
      ['--partition', 'region:mars@1m+1m'],
      ['--group-size', '4'],
      ['--peers', '10', '--groups', '100'],
      ['--inference', 'many'],
    ]
    const failures = await Promise.all(
      cases.map((args) =>
        run(bin, ['sim', '--duration', '1m', ...args]).then(
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
