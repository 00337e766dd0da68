// Proves the node config is validated at the edge: unknown keys, wrong types and unsafe API hosts are
// refused with an error naming the key, and flags override the file, which overrides the defaults.
import { mkdtemp, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import {
  ConfigError,
  LISTEN_DEFAULT,
  parseConfigFile,
  readConfigFile,
  resolveNodeConfig,
} from '../../../node/config.js'

const peer = '/ip4/127.0.0.1/tcp/4001/p2p/12D3KooWMPmWnTSjFW9DwwgY37131AadmQHzr1PnnbXEUikzpdWo'

describe('node config', () => {
  it('uses loopback-only defaults', () => {
    const config = resolveNodeConfig('/tmp/x', {}, {})
    expect(config.listen).toEqual(LISTEN_DEFAULT)
    expect(config.listen[0]).toContain('/ip4/127.0.0.1/')
    expect(config.apiHost).toBe('127.0.0.1')
    expect(config.allowRemoteApi).toBe(false)
  })

  it('computes on the fastest backend unless the file or a flag pins a backend or cpu engine', () => {
    const auto = resolveNodeConfig('/tmp/x', {}, {})
    expect(auto.backend).toBe('auto')
    expect(auto.cpuEngine).toBeUndefined()
    const file = parseConfigFile({ backend: 'cpu', cpuEngine: 'reference' })
    const pinned = resolveNodeConfig('/tmp/x', file, {})
    expect([pinned.backend, pinned.cpuEngine]).toEqual(['cpu', 'reference'])
    const flagged = resolveNodeConfig('/tmp/x', file, { backend: 'webgpu', cpuEngine: 'native' })
    expect([flagged.backend, flagged.cpuEngine]).toEqual(['webgpu', 'native'])
    expect(() => parseConfigFile({ cpuEngine: 'blas' })).toThrow(/key "cpuEngine"/)
    expect(() => resolveNodeConfig('/tmp/x', {}, { cpuEngine: 'gpu' as 'native' })).toThrow(
      /flags: key "cpuEngine"/,
    )
  })

  it('names an unknown key', () => {
    expect(() => parseConfigFile({ lisen: ['/ip4/127.0.0.1/tcp/0'] }, 'config file c.json')).toThrow(
      /config file c\.json: unknown key "lisen"/,
    )
  })

  it('names a key of the wrong type or out of range', () => {
    expect(() => parseConfigFile({ apiPort: 'eighty' })).toThrow(/key "apiPort" expected number/)
    expect(() => parseConfigFile({ apiPort: 70_000 })).toThrow(/key "apiPort"/)
    expect(() => parseConfigFile({ backend: 'tpu' })).toThrow(/key "backend"/)
  })

  it('names the element of a list that is not a multiaddr', () => {
    expect(() => parseConfigFile({ listen: ['/ip4/127.0.0.1/tcp/0', 'not-an-address'] })).toThrow(
      /key "listen\.1" is not a valid multiaddr/,
    )
    expect(() => parseConfigFile({ bootstrap: ['/ip4/127.0.0.1/tcp/4001'] })).toThrow(/bootstrap\.0.*\/p2p\//)
  })

  it('checks flags like the file', () => {
    expect(() => resolveNodeConfig('/tmp/x', {}, { listen: ['garbage'] })).toThrow(/flags: key "listen\.0"/)
  })

  it('lets flags override the file', () => {
    const file = parseConfigFile({ listen: ['/ip4/127.0.0.1/tcp/4001'], bootstrap: [peer], apiPort: 5001 })
    const config = resolveNodeConfig('/tmp/x', file, { apiPort: 6001 })
    expect(config.listen).toEqual(['/ip4/127.0.0.1/tcp/4001'])
    expect(config.bootstrap).toEqual([peer])
    expect(config.apiPort).toBe(6001)
  })

  it('refuses a non-loopback API host unless explicitly allowed', () => {
    expect(() => resolveNodeConfig('/tmp/x', {}, { apiHost: '0.0.0.0' })).toThrow(ConfigError)
    expect(() => resolveNodeConfig('/tmp/x', {}, { apiHost: '0.0.0.0' })).toThrow(/--allow-remote-api/)
    expect(resolveNodeConfig('/tmp/x', {}, { apiHost: '0.0.0.0', allowRemoteApi: true }).apiHost).toBe(
      '0.0.0.0',
    )
  })

  it('takes allow-lists of peer ids and names a malformed one', () => {
    const id = '12D3KooWMPmWnTSjFW9DwwgY37131AadmQHzr1PnnbXEUikzpdWo'
    const config = resolveNodeConfig(
      '/tmp/x',
      parseConfigFile({ allowedWorkers: [id], allowedSubmitters: [], claimTimeoutMs: 5_000 }),
      {},
    )
    expect(config.allowedWorkers).toEqual([id])
    // empty: anyone
    expect(config.allowedSubmitters).toEqual([])
    expect(config.claimTimeoutMs).toBe(5_000)
    expect(resolveNodeConfig('/tmp/x', {}, {}).allowedWorkers).toEqual([])
    expect(() => parseConfigFile({ allowedWorkers: [id, 'not-a-peer'] }, 'config file c.json')).toThrow(
      /config file c\.json: key "allowedWorkers\.1" is not a valid peer id/,
    )
    // a multiaddr is not a peer id
    expect(() => parseConfigFile({ allowedSubmitters: [`/ip4/127.0.0.1/tcp/1/p2p/${id}`] })).toThrow(
      /key "allowedSubmitters\.0" is not a valid peer id/,
    )
    expect(() => parseConfigFile({ allowedSubmitters: id })).toThrow(/key "allowedSubmitters"/)
    expect(() => parseConfigFile({ claimTimeoutMs: 10 })).toThrow(/key "claimTimeoutMs"/)
    expect(() => resolveNodeConfig('/tmp/x', {}, { allowedWorkers: ['x'] })).toThrow(
      /flags: key "allowedWorkers\.0" is not a valid peer id/,
    )
  })

  it('reports unreadable and non-JSON files clearly', async () => {
    const folder = await mkdtemp(join(tmpdir(), 'shardnet-config-'))
    const path = join(folder, 'bad.json')
    await writeFile(path, '{ "listen": [')
    await expect(readConfigFile(path)).rejects.toThrow(/is not valid JSON/)
    await expect(readConfigFile(join(folder, 'missing.json'))).rejects.toThrow(/cannot be read \(ENOENT\)/)
  })
})
