// Child process of test/integration/hostile-inference.test.ts, run with node --max-old-space-size=512:
// two real daemons (a submitter and a worker) in this one process, an inference task on the input file
// given as argv[3], waited for; prints one JSON line with the task's state, the predictions' count and
// the highest heap and resident memory seen (sampled every 50 ms).
import '../../node/polyfill.js'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { InferenceOutput } from '../../node/tasks/infer-files.js'
import { PREDICTIONS_FILE } from '../../node/tasks/infer-files.js'
import { writeTestModel } from './inference-helpers.js'
import { startTaskNetwork, stopAll, submitTask, waitForTask } from './tasks-helpers.js'

const [folder, inputFile] = process.argv.slice(2)
const MiB = 1024 * 1024
let heapUsedMax = 0
let rssMax = 0
const sample = () => {
  const m = process.memoryUsage()
  heapUsedMax = Math.max(heapUsedMax, m.heapUsed)
  rssMax = Math.max(rssMax, m.rss)
}
const timer = setInterval(sample, 50)
const daemons = await startTaskNetwork(2)
try {
  const [submitter] = daemons
  const modelDir = await writeTestModel(join(folder, 'big-model'), [16], 5)
  const started = Date.now()
  const task = await submitTask(submitter, {
    kind: 'infer',
    model: modelDir,
    inputFile,
    replicas: 1,
    shards: 4,
    deadlineMs: 120_000,
  })
  const done = await waitForTask(submitter, task.id, (t) => t.state !== 'running', 'the inference', 500_000)
  let count = 0
  if (done.state === 'completed') {
    const output = JSON.parse(
      await readFile(join(done.resultDir!, PREDICTIONS_FILE), 'utf8'),
    ) as InferenceOutput
    count = output.count
  }
  sample()
  console.log(
    JSON.stringify({
      state: done.state,
      error: done.error,
      count,
      seconds: (Date.now() - started) / 1000,
      heapUsedMaxMiB: Math.round(heapUsedMax / MiB),
      rssMaxMiB: Math.round(rssMax / MiB),
    }),
  )
} finally {
  clearInterval(timer)
  await stopAll(daemons)
}
