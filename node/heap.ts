// The garbage collector's setting for a process that trains (the daemon, the consensus benchmark).
//
// A training step allocates a dozen buffers of the model's size outside the JS heap (the gradient, its
// message, the log entry and its WAL record, the decrypted frames, the AdamW result: about 10 MB a
// member and a step for the 784-256-10 MLP). V8 counts such memory against the old generation's
// allocation limit, which it sets from the live JS heap: a daemon's heap is small (about 20 MB), its
// limit about 2.4x that, and with V8's default growth a training member ran a full mark-compact every
// 1-3 steps (473 in a benchmark run of three groups of three members, 100 steps each; 8-12 ms of GC in
// a 70 ms step, and the leader's GC is on the step's critical path). Letting the limit grow to 3x the
// live heap cuts that to 137 and the group trains 20-40% faster (bench/RESULTS.md, Consensus).
// The cost is memory: at most about 2x the live JS heap more before a collection, tens of MB here.
import { setFlagsFromString } from 'node:v8'

/** V8's old-generation growth factor as a percentage above 1 (V8 picks 1.1x-4x by itself when unset). */
export const HEAP_GROWING_PERCENT = 200

/** Sets the heap growth for this whole process (every thread); setting it again changes nothing. */
export function tuneHeapForTraining(): void {
  setFlagsFromString(`--heap-growing-percent=${HEAP_GROWING_PERCENT}`)
}
