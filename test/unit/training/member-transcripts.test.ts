// Proves the training member's protocol step by step: each testdata/*.txt scenario is replayed through
// the interpreter against real MemberCores (the pure core of protocols/training/member.ts) and every
// command's output must equal the transcript. Set REWRITE_TRANSCRIPTS=1 to regenerate them after an
// intended change (then review the diff).
import { readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { formatTranscript, parseTranscript } from '../raft/interpreter.js'
import { MemberInterpreter } from './member-interpreter.js'

const directory = new URL('./testdata/', import.meta.url)
const files = readdirSync(directory)
  .filter((name) => name.endsWith('.txt'))
  .sort()

describe('training member transcripts', () => {
  it('has scenarios', () => {
    expect(files.length).toBeGreaterThanOrEqual(5)
  })
  for (const file of files) {
    it(file, () => {
      const path = new URL(file, directory)
      const cases = parseTranscript(readFileSync(path, 'utf8'))
      const interpreter = new MemberInterpreter()
      const results = cases.map((c) => ({ ...c, actual: interpreter.run(c.command) }))
      if (process.env.REWRITE_TRANSCRIPTS === '1') {
        writeFileSync(path, formatTranscript(results))
        return
      }
      for (const result of results) {
        expect(result.actual, `${file}:${result.line} ${result.command}`).toBe(result.expected)
      }
    })
  }
})
