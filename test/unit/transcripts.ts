// Transcript tests (etcd's testdata style): a file of commands, each followed by `----` and the
// output it must produce. A suite replays every file of a folder through a fresh interpreter and
// compares each command's output; REWRITE_TRANSCRIPTS=1 writes the actual outputs back instead (review
// the diff after an intended change).
import { readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'

/** Runs one command of a transcript and returns its output. */
export interface TranscriptRunner {
  run(command: string): string
}

/** One vitest case per testdata/*.txt file of `directory`, each replayed through `create()`. */
export function transcriptSuite(name: string, directory: URL, create: () => TranscriptRunner): void {
  const files = readdirSync(directory)
    .filter((file) => file.endsWith('.txt'))
    .sort()
  describe(name, () => {
    it('has scenarios', () => expect(files.length).toBeGreaterThan(0))
    for (const file of files) {
      it(file, () => {
        const path = new URL(file, directory)
        const cases = parseTranscript(readFileSync(path, 'utf8'))
        const interpreter = create()
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
}

/** One command with its expected output, as read from a transcript file. */
export interface TranscriptCase {
  line: number
  command: string
  expected: string
  /** Comment lines preceding the command, kept when rewriting. */
  comments: string[]
}

export function parseTranscript(text: string): TranscriptCase[] {
  const lines = text.split('\n')
  const cases: TranscriptCase[] = []
  let comments: string[] = []
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]
    if (line.trim() === '') continue
    if (line.startsWith('#')) {
      comments.push(line)
      continue
    }
    const command = line
    if (lines[i + 1] !== '----') throw new Error(`line ${i + 2}: expected ---- after the command`)
    const expected: string[] = []
    let j = i + 2
    while (j < lines.length && lines[j] !== '') expected.push(lines[j++])
    cases.push({ line: i + 1, command, expected: expected.join('\n'), comments })
    comments = []
    i = j
  }
  return cases
}

export function formatTranscript(cases: Array<TranscriptCase & { actual: string }>): string {
  return `${cases.map((c) => [...c.comments, c.command, '----', c.actual].join('\n')).join('\n\n')}\n`
}
