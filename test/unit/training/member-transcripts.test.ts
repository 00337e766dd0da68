// Proves the training member's protocol step by step: each testdata/*.txt scenario is replayed through
// the interpreter against real MemberCores (the pure core of protocols/training/member.ts) and every
// command's output must equal the transcript. Set REWRITE_TRANSCRIPTS=1 to regenerate them after an
// intended change (then review the diff).
import { transcriptSuite } from '../transcripts.js'
import { MemberInterpreter } from './member-interpreter.js'

transcriptSuite(
  'training member transcripts',
  new URL('./testdata/', import.meta.url),
  () => new MemberInterpreter(),
)
