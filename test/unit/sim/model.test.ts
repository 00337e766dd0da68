// Proves the network simulator takes the trained model's figures from its `model` option: the records
// of model.ts hold the MLP's and the GPT's parameter counts (worked out here from the layer shapes)
// and the GPT's step times from the measured tokens/s; a gpt simulation's group sends gradients of 4
// bytes per GPT parameter (about 1 byte per parameter in int8) and its steps take the GPT's kernel
// time; inference stays on the MLP. `shardnet sim --model gpt` runs one, an unknown model is refused.
import { execFile } from 'node:child_process'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'
import { SeededRandom } from '../../../protocols/raft/random.js'
import { GradientCompressor } from '../../../protocols/training/compression.js'
import { EventKind, EventLoop } from '../../../simulations/network/events.js'
import { Groups } from '../../../simulations/network/groups.js'
import { gradientWireBytes, probeGradient } from '../../../simulations/network/members.js'
import { Metrics } from '../../../simulations/network/metrics.js'
import {
  gptModel,
  MNIST_MLP_MODEL,
  SIMULATED_MODELS,
  type SimulatedModel,
} from '../../../simulations/network/model.js'
import { Network } from '../../../simulations/network/network.js'
import { deriveParameters, type NetworkSimulationOptions } from '../../../simulations/network/parameters.js'
import { BACKEND_CLASSES } from '../../../simulations/network/peers.js'
import { SafetyCheckers } from '../../../simulations/raft/checkers.js'

/** GPT-2's parameters over a byte vocabulary, tied head: embeddings, L blocks, the final LayerNorm. */
function gptParameters(context: number, width: number, layers: number): number {
  const d = width
  const block = 2 * d + (d * 3 * d + 3 * d) + (d * d + d) + 2 * d + (d * 4 * d + 4 * d) + (4 * d * d + d)
  return 256 * d + context * d + layers * block + 2 * d
}

/** The tiny preset's measured training tokens/s by backend class (a real GPU assumed 100x lavapipe). */
const TINY_TOKENS_PER_S = { webgpu: 105_000, 'webgpu-software': 1_050, cpu: 190 }
/** A member's micro-batch: 4 sequences of 256 bytes. */
const TOKENS_PER_STEP = 4 * 256

const OPTIONS: NetworkSimulationOptions = {
  seed: 7,
  peers: 30,
  groups: 1,
  groupSize: 3,
  churnPerHour: 0,
  lossProbability: 0,
  partitions: [],
  durationMs: 3_600_000,
  scenario: 'steady',
}

const PEERS = 30
const MEMBERS = [1, 2, 3]

/**
 * One group of peers 1-3 training the model of `model`, every member on backend class `backend`
 * at normal speed with a 10 Gbit/s uplink; runs `ms` of simulated time.
 */
function trainOneGroup(model: NetworkSimulationOptions['model'], backend: number, ms: number) {
  const parameters = deriveParameters({ ...OPTIONS, model })
  const loop = new EventLoop()
  const metrics = new Metrics(1)
  const network = new Network(parameters, new SeededRandom(OPTIONS.seed), metrics, () => loop.now, PEERS)
  for (let i = 0; i < PEERS; i++) network.markUp(network.createPeer())
  for (let peer = 0; peer < PEERS; peer++) network.dht.buildTable(peer)
  for (const peer of MEMBERS) {
    network.peers.backend[peer] = backend
    network.peers.slowFactor[peer] = 1
    network.peers.uploadBytesPerMs[peer] = 1.25e6
  }
  const groups = new Groups(
    parameters,
    loop,
    network,
    metrics,
    {
      submitterOf: () => 0,
      groupCompleted: () => expect.fail('no group should complete'),
      groupDissolved: () => expect.fail('no group should be dissolved'),
    },
    () => new SafetyCheckers(),
  )
  const group = groups.create({ id: 0, steps: 100_000 }, 0, 1, MEMBERS)
  for (const [position, peer] of MEMBERS.entries()) {
    network.peers.groupSlot[peer] = group.id
    loop.at(0, EventKind.assignmentArrives, group.id, position)
  }
  loop.runUntil(ms)
  const bytesSent = MEMBERS.reduce((sum, peer) => sum + network.peers.bytesSent[peer], 0)
  return { parameters, group, metrics, bytesSent }
}

describe('the simulated model follows the model option', () => {
  it('holds the parameter count and step compute time of each kind', () => {
    expect(MNIST_MLP_MODEL.parameterCount).toBe(784 * 256 + 256 + 256 * 10 + 10)
    expect(MNIST_MLP_MODEL.inputRowBytes).toBe(784 * 4)
    const gpt = SIMULATED_MODELS.gpt
    expect(gpt.parameterCount).toBe(gptParameters(256, 128, 4))
    expect(gpt.parameterCount).toBe(858_880)
    expect(gpt.inputRowBytes).toBe(256)
    for (const [index, backend] of BACKEND_CLASSES.entries())
      expect(gpt.stepComputeMsByBackend[index]).toBeCloseTo(
        (1000 * TOKENS_PER_STEP) / TINY_TOKENS_PER_S[backend],
        9,
      )
    // the network serves no GPT: inference figures only for the MLP
    expect(gpt.inference).toBeUndefined()
    // another shape: its own parameter count, slower steps than the tiny preset's on every class
    const wider = gptModel({ context: 256, width: 256, layers: 4, heads: 4 })
    expect(wider.parameterCount).toBe(gptParameters(256, 256, 4))
    for (const [index, ms] of wider.stepComputeMsByBackend.entries())
      expect(ms).toBeGreaterThan(3 * gpt.stepComputeMsByBackend[index])
  })

  it('derives the trained model from the option, the served one stays the MLP', () => {
    const plain = deriveParameters(OPTIONS)
    expect(plain.model).toBe(MNIST_MLP_MODEL)
    expect(plain.inferenceModel).toBe(MNIST_MLP_MODEL)
    expect(plain.inferenceClasses).toBe(10)
    const gpt = deriveParameters({ ...OPTIONS, model: 'gpt' })
    expect(gpt.model.kind).toBe('gpt')
    expect(gpt.model.parameterCount).toBe(858_880)
    expect(gpt.inferenceModel).toBe(MNIST_MLP_MODEL)
    expect(gpt.inferenceClasses).toBe(10)
  })

  it('sizes gradients at the GPT parameter count: 4 bytes a parameter in float32, about 1 in int8', () => {
    const count = SIMULATED_MODELS.gpt.parameterCount
    const gradient = probeGradient(1)
    const float32 = new GradientCompressor('none').encode(gradient, 0, new Uint8Array(32), 1).message
    expect(gradientWireBytes(float32, count)).toBeGreaterThanOrEqual(4 * count)
    expect(gradientWireBytes(float32, count)).toBeLessThan(4 * count + 1024)
    const int8 = new GradientCompressor('int8').encode(gradient, 0, new Uint8Array(32), 1).message
    // one byte a value and one float32 scale per block of 256
    expect(gradientWireBytes(int8, count)).toBeGreaterThanOrEqual(count + Math.ceil(count / 256) * 4)
    expect(gradientWireBytes(int8, count)).toBeLessThan(1.02 * count + 1024)
  })

  it('a gpt group sends GPT-sized gradients and its steps take the GPT compute time', () => {
    const lavapipe = BACKEND_CLASSES.indexOf('webgpu-software')
    const stepMs = (1000 * TOKENS_PER_STEP) / TINY_TOKENS_PER_S['webgpu-software']
    const runMs = 60_000
    const gpt = trainOneGroup('gpt', lavapipe, runMs)
    const count = gpt.parameters.model.parameterCount
    // what the members sent is their gradients (Raft messages add a few hundred bytes a step)
    const sent = gpt.metrics.counters.gradientsSent
    expect(sent).toBeGreaterThan(0)
    expect(gpt.bytesSent / sent).toBeGreaterThanOrEqual(4 * count)
    expect(gpt.bytesSent / sent).toBeLessThan(4 * count * 1.01)
    // a member computes one step at a time, each taking 0.9-1.1 x the GPT's kernel time; the links
    // (10 Gbit/s, under 0.2 s a round trip) and Raft add little to it
    const steps = gpt.group.committedStep
    expect(steps).toBeLessThanOrEqual(Math.floor(runMs / (0.9 * stepMs)))
    expect(steps).toBeGreaterThanOrEqual(Math.floor(runMs / (1.1 * stepMs + 500)))
    // the same group on the MLP: its own figures
    const mlp = trainOneGroup('mnist-mlp', lavapipe, runMs)
    const model: SimulatedModel = mlp.parameters.model
    expect(mlp.bytesSent / mlp.metrics.counters.gradientsSent).toBeLessThan(4 * model.parameterCount * 1.01)
    expect(mlp.group.committedStep).toBeGreaterThan(3 * steps)
  })

  it('shardnet sim --model gpt trains the GPT; an unknown model is refused with a sentence', {
    timeout: 120_000,
  }, async () => {
    const run = promisify(execFile)
    const bin = join(import.meta.dirname, '../../../bin/shardnet.js')
    const env = { ...process.env, NO_COLOR: '1' }
    const flags = ['sim', '--peers', '40', '--groups', '2', '--duration', '2m', '--seed', '3', '--json']
    const { stdout } = await run(bin, [...flags, '--model', 'gpt'], { env })
    const json = JSON.parse(stdout)
    expect(json.parameters.model.kind).toBe('gpt')
    expect(json.parameters.model.parameterCount).toBe(858_880)
    expect(json.parameters.inferenceModel.kind).toBe('mnist-mlp')
    expect(json.replay).toContain('--model gpt')
    expect(json.safety.ok).toBe(true)
    const refused = await run(bin, [...flags, '--model', 'resnet'], { env }).then(
      () => undefined,
      (error: { code: number; stderr: string }) => error,
    )
    expect(refused?.code).not.toBe(0)
    expect(refused?.stderr).toContain('--model must be one of mnist-mlp, gpt.')
  })
})
