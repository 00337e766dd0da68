// Proves the `shardnet` executable starts from the repo root and answers --help and --version.
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'

const run = promisify(execFile)

describe('shardnet executable', () => {
  it('prints help listing its commands', async () => {
    const { stdout } = await run('node', ['bin/shardnet.js', '--help'])
    expect(stdout).toContain('Usage: shardnet')
  })
  it('prints the package version', async () => {
    const { stdout } = await run('node', ['bin/shardnet.js', '--version'])
    expect(stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/)
  })
  it('fails with a non-zero code on an unknown command', async () => {
    await expect(run('node', ['bin/shardnet.js', 'no-such-command'])).rejects.toMatchObject({ code: 1 })
  })
})
