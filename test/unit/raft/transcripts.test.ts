// Proves the Raft core's behaviour step by step: each testdata/*.txt scenario (etcd-style) is replayed
// through the interpreter against real RaftNodes and every command's output must equal the transcript.
// Set REWRITE_TRANSCRIPTS=1 to regenerate them after an intended change (then review the diff).
import { readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { formatTranscript, parseTranscript, TranscriptInterpreter } from './interpreter.js'

const directory = new URL('./testdata/', import.meta.url)
const files = readdirSync(directory)
  .filter((name) => name.endsWith('.txt'))
  .sort()

describe('raft transcripts', () => {
  for (const file of files) {
    it(file, () => {
      const path = new URL(file, directory)
      const cases = parseTranscript(readFileSync(path, 'utf8'))
      const interpreter = new TranscriptInterpreter()
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
