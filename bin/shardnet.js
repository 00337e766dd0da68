#!/usr/bin/env node
// The `shardnet` executable: loads TypeScript through tsx, then the polyfill, then the CLI.
import { register } from 'tsx/esm/api'

register()
await import('../node/polyfill.ts')
const { main } = await import('../node/cli/main.ts')
process.exitCode = await main(process.argv)
