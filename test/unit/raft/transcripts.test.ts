// Proves the Raft core's behaviour step by step: each testdata/*.txt scenario (etcd-style) is replayed
// through the interpreter against real RaftNodes and every command's output must equal the transcript.
// Set REWRITE_TRANSCRIPTS=1 to regenerate them after an intended change (then review the diff).
import { transcriptSuite } from '../transcripts.js'
import { TranscriptInterpreter } from './interpreter.js'

transcriptSuite(
  'raft transcripts',
  new URL('./testdata/', import.meta.url),
  () => new TranscriptInterpreter(),
)
