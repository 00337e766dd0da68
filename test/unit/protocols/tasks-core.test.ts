// Proves the pure task core: TaskSpec requests are refused field by field with a sentence naming the
// field, stored specs of both kinds round-trip, a stored spec out of range is refused with a reason
// naming the field and hostile spec bytes are refused with a reason (never a throw),
// claim requests are validated part by part (fuzzed), the dataset block codec checks its sizes,
// assignment prefers faster claimants and balances groups, and the lifecycle state machine staffs,
// stalls, averages outer rounds, finishes and fails as documented.
import { generateKeyPair } from '@libp2p/crypto/keys'
import { peerIdFromPrivateKey } from '@libp2p/peer-id'
import fc from 'fast-check'
import { CID } from 'multiformats/cid'
import * as raw from 'multiformats/codecs/raw'
import { sha256 } from 'multiformats/hashes/sha2'
import { describe, expect, it } from 'vitest'
import { assignGroups, type Claimant } from '../../../protocols/tasks/assignment.js'
import {
  ClaimRefusedError,
  ClaimRequest,
  ClaimResponse,
  finalRefusal,
  progressRefusal,
  validateClaimRequest,
} from '../../../protocols/tasks/claims.js'
import { decodeDatasetBlock, encodeDatasetBlock } from '../../../protocols/tasks/dataset.js'
import {
  INITIAL_STATE,
  isRecruiting,
  newTaskRecord,
  stateWantedFrom,
  stepTask,
  type TaskEffect,
  type TaskEvent,
  type TaskRecord,
} from '../../../protocols/tasks/lifecycle.js'
import {
  decodeTaskSpec,
  encodeTaskSpec,
  type InferTaskSpec,
  parseTaskRequest,
  TASK_SPEC_BYTES_MAX,
  TaskSpecError,
  type TrainTaskSpec,
  unmetRequirement,
  WireTaskSpec,
  workersNeeded,
} from '../../../protocols/tasks/spec.js'

const valid = { kind: 'train', model: 'mnist-mlp', groups: 2, groupSize: 3, steps: 100 }

function refusal(value: unknown): TaskSpecError {
  try {
    parseTaskRequest(value)
  } catch (error) {
    expect(error).toBeInstanceOf(TaskSpecError)
    return error as TaskSpecError
  }
  throw new Error(`accepted ${JSON.stringify(value)}`)
}

async function cidOf(text: string): Promise<CID> {
  return CID.createV1(raw.code, await sha256.digest(new TextEncoder().encode(text)))
}

describe('TaskSpec requests', () => {
  it('fills defaults for a minimal training request', () => {
    const request = parseTaskRequest(valid)
    expect(request).toMatchObject({
      batchSize: 64,
      learningRate: 1e-3,
      seed: 1,
      aggregate: 'median',
      minGradients: 3,
      compress: 'none',
    })
    expect(request.deadlineMs).toBe(60_000)
  })

  it.each([
    [{ ...valid, groupSize: 4 }, 'groupSize', /odd integer/],
    [{ ...valid, groups: 0 }, 'groups', /integer from 1 to 64, got 0/],
    [{ ...valid, minGradients: 0 }, 'minGradients', /integer from 1 to 15, got 0/],
    [{ ...valid, steps: 1.5 }, 'steps', /integer/],
    [{ ...valid, steps: 'NaN' }, 'steps', /must be a number/],
    [{ ...valid, learningRate: -1 }, 'learningRate', /above 0/],
    [{ ...valid, model: 'gpt-5' }, 'model', /one of mnist-mlp/],
    [{ ...valid, aggregate: 'max' }, 'aggregate', /mean, median, trimmed-mean/],
    [{ ...valid, outerEvery: 500 }, 'outerEvery', /must not exceed steps/],
    [{ ...valid, seed: 2 ** 33 }, 'seed', /integer from 0/],
    [
      { ...valid, requirements: { minMemoryBytes: 2 ** 60 } },
      'requirements.minMemoryBytes',
      /integer from 0/,
    ],
    [{ ...valid, extra: 1 }, '', /unknown task field "extra"/],
    [{ kind: 'train', model: 'mnist-mlp', groups: 1, groupSize: 1 }, 'steps', /steps is required/],
    [{ ...valid, kind: 'mine' }, 'kind', /train" or "infer/],
  ])('refuses %j naming %s', (value, field, message) => {
    const error = refusal(value)
    expect(error.field).toBe(field)
    expect(error.message).toMatch(message)
  })

  it('fills a gpt request with the tiny shape and the GPT defaults, and refuses what does not fit', () => {
    const gpt = parseTaskRequest({ ...valid, model: 'gpt' })
    expect(gpt).toMatchObject({
      model: 'gpt',
      gpt: { context: 256, width: 128, layers: 4, heads: 4 },
      hiddenSizes: [],
      batchSize: 4,
      learningRate: 1e-3,
    })
    expect(
      parseTaskRequest({ ...valid, model: 'gpt', gpt: { context: 64, width: 32, layers: 1, heads: 2 } }),
    ).toMatchObject({ gpt: { context: 64, width: 32, layers: 1, heads: 2 } })
    // the MLP's request is unchanged: no gpt field, its own defaults
    expect(parseTaskRequest(valid)).toMatchObject({ hiddenSizes: [256], gpt: undefined })
    const shape = { context: 64, width: 30, layers: 1, heads: 4 }
    expect(refusal({ ...valid, model: 'gpt', gpt: shape }).message).toMatch(
      /width must be a multiple of gpt.heads/,
    )
    expect(refusal({ ...valid, model: 'gpt', gpt: { ...shape, width: 32, context: 0 } }).message).toMatch(
      /gpt.context must be an integer from 1/,
    )
    expect(refusal({ ...valid, model: 'gpt', hiddenSizes: [8] }).message).toMatch(
      /neither hiddenSizes nor dataFile/,
    )
    expect(refusal({ ...valid, gpt: { ...shape, width: 32 } }).message).toMatch(
      /gpt applies to model gpt only/,
    )
  })

  it('refuses what is not an object', () => {
    for (const value of [null, [], 'train', 3]) expect(refusal(value).message).toMatch(/JSON object/)
  })
})

describe('stored TaskSpec blocks', () => {
  async function spec(): Promise<TrainTaskSpec> {
    const submitter = peerIdFromPrivateKey(await generateKeyPair('Ed25519'))
    return {
      version: 1,
      kind: 'train',
      requirements: { backend: 'any', minMemoryBytes: 0, minGflops: 0 },
      staffingDeadlineMs: 60_000,
      createdMs: 1_700_000_000_000,
      submitter,
      nonce: new Uint8Array(16).fill(7),
      train: {
        model: 'mnist-mlp',
        hiddenSizes: [64],
        groups: 2,
        groupSize: 3,
        steps: 100,
        batchSize: 32,
        learningRate: 0.002,
        seed: 9,
        aggregate: 'trimmed-mean',
        minGradients: 2,
        outerEvery: 50,
        compress: 'int8',
        dataset: {
          name: 'mnist',
          shardCids: [await cidOf('a'), await cidOf('b')],
          testCid: await cidOf('t'),
          trainCount: 8004,
          testCount: 1996,
        },
      },
    }
  }

  async function inferSpec(): Promise<InferTaskSpec> {
    const { train: _train, ...common } = await spec()
    return {
      ...common,
      kind: 'infer',
      requirements: { backend: 'cpu', minMemoryBytes: 1024, minGflops: 0.5 },
      infer: {
        modelCid: await cidOf('m'),
        inputCid: await cidOf('i'),
        inputCount: 80,
        replicas: 3,
        shards: 4,
      },
    }
  }

  it('round-trips a training spec', async () => {
    const original = await spec()
    const decoded = decodeTaskSpec(encodeTaskSpec(original))
    if (!decoded.ok) throw new Error(decoded.reason)
    expect(decoded.spec.kind).toBe('train')
    if (decoded.spec.kind !== 'train') return
    expect(decoded.spec.train).toEqual(original.train)
    expect(decoded.spec.submitter.equals(original.submitter)).toBe(true)
    expect(workersNeeded(decoded.spec)).toBe(6)
  })

  it('round-trips a gpt training spec: its shape and the corpus by the raw CIDs of its splits', async () => {
    const original = await spec()
    const training = await cidOf('training split')
    original.train = {
      ...original.train,
      model: 'gpt',
      hiddenSizes: [],
      gpt: { context: 64, width: 32, layers: 2, heads: 2 },
      dataset: {
        name: 'linux-doc-6.1',
        shardCids: [training, training],
        testCid: await cidOf('validation split'),
        trainCount: 23_273_214,
        testCount: 887_860,
      },
    }
    const decoded = decodeTaskSpec(encodeTaskSpec(original))
    if (!decoded.ok) throw new Error(decoded.reason)
    if (decoded.spec.kind !== 'train') throw new Error('not a training spec')
    expect(decoded.spec.train).toEqual(original.train)
    // a gpt without its shape, or an MLP with one, or a gpt on MNIST, is refused
    const noShape = { ...original.train, gpt: undefined }
    expect(() => encodeTaskSpec({ ...original, train: noShape })).toThrow(/train.gpt must be present/)
    const mnist = { ...original.train, dataset: { ...original.train.dataset, name: 'mnist' as const } }
    expect(() => encodeTaskSpec({ ...original, train: mnist })).toThrow(/linux-doc-6.1 exactly for model gpt/)
  })

  it('round-trips an inference spec', async () => {
    const original = await inferSpec()
    const decoded = decodeTaskSpec(encodeTaskSpec(original))
    if (!decoded.ok) throw new Error(decoded.reason)
    expect(decoded.spec).toMatchObject({ kind: 'infer', requirements: original.requirements })
    expect(decoded.spec).not.toHaveProperty('train')
    if (decoded.spec.kind !== 'infer') return
    expect(decoded.spec.infer).toEqual(original.infer)
    expect(workersNeeded(decoded.spec)).toBe(3)
  })

  // stored blocks are written by other nodes: each field is checked again, and the reason names it
  it.each([
    ['train.groupSize', (w: WireTaskSpec) => ({ ...w, train: { ...w.train!, groupSize: 4 } }), /odd integer/],
    ['train.steps', (w: WireTaskSpec) => ({ ...w, train: { ...w.train!, steps: 0 } }), /integer from 1/],
    [
      'train.outerEvery',
      (w: WireTaskSpec) => ({ ...w, train: { ...w.train!, outerEvery: 101 } }),
      /must not exceed steps/,
    ],
    [
      'train.dataset.shardCids',
      (w: WireTaskSpec) => ({
        ...w,
        train: { ...w.train!, dataset: { ...w.train!.dataset!, shardCids: [new Uint8Array(36)] } },
      }),
      /is not a sha2-256 CIDv1/,
    ],
    [
      'train.dataset',
      (w: WireTaskSpec) => ({ ...w, train: { ...w.train!, dataset: undefined } }),
      /required/,
    ],
    [
      'requirements.minMemoryBytes',
      (w: WireTaskSpec) => ({ ...w, requirements: { ...w.requirements!, minMemoryBytes: 2 ** 51 } }),
      /integer from 0/,
    ],
    ['version', (w: WireTaskSpec) => ({ ...w, version: 2 }), /version 2 is not supported/],
    ['submitter', (w: WireTaskSpec) => ({ ...w, submitter: new Uint8Array([1, 2, 3]) }), /not a peer id/],
    ['nonce', (w: WireTaskSpec) => ({ ...w, nonce: new Uint8Array(4) }), /8 to 32 bytes/],
    ['kind', (w: WireTaskSpec) => ({ ...w, kind: WireTaskSpec.Kind.KIND_UNSPECIFIED }), /TRAIN or INFER/],
    [
      'infer',
      (w: WireTaskSpec) => ({ ...w, infer: { ...w.train!, modelCid: new Uint8Array(0) } }),
      /must not carry infer/,
    ],
  ])('refuses a stored spec whose %s is wrong, naming it', async (field, mutate, message) => {
    const wire = WireTaskSpec.decode(encodeTaskSpec(await spec()))
    const decoded = decodeTaskSpec(WireTaskSpec.encode(mutate(wire) as WireTaskSpec))
    expect(decoded.ok).toBe(false)
    if (decoded.ok) return
    expect(decoded.reason.startsWith(field)).toBe(true)
    expect(decoded.reason).toMatch(message)
  })

  it('refuses oversized, garbage and inconsistent specs with a reason, never a throw', async () => {
    expect(decodeTaskSpec(new Uint8Array(TASK_SPEC_BYTES_MAX + 1))).toEqual({
      ok: false,
      reason: 'oversized',
    })
    const bytes = encodeTaskSpec(await spec())
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), fc.nat(bytes.length - 1), (noise, at) => {
        const mutated = new Uint8Array(bytes)
        mutated.set(noise.subarray(0, bytes.length - at), at)
        const result = decodeTaskSpec(mutated)
        expect(typeof result.ok).toBe('boolean')
      }),
      { numRuns: 300 },
    )
    const wrong = await spec()
    wrong.train.dataset.shardCids = [wrong.train.dataset.shardCids[0]]
    expect(() => encodeTaskSpec(wrong)).toThrow(expect.objectContaining({ field: 'train.dataset.shardCids' }))
    expect(() => encodeTaskSpec(wrong)).toThrow(TaskSpecError)
  })
})

describe('requirements', () => {
  const offer = { backend: 'cpu', maxBufferBytes: 2 ** 30, gflops: 3 } as const
  it.each([
    [{ backend: 'any', minMemoryBytes: 0, minGflops: 0 }, undefined],
    [{ backend: 'cpu', minMemoryBytes: 2 ** 30, minGflops: 3 }, undefined],
    [{ backend: 'webgpu', minMemoryBytes: 0, minGflops: 0 }, 'needs a webgpu backend, this worker has cpu'],
    [
      { backend: 'any', minMemoryBytes: 2 ** 45, minGflops: 0 },
      'needs 32 TiB of memory, the most this worker has is 1.0 GiB',
    ],
    [{ backend: 'any', minMemoryBytes: 0, minGflops: 3.5 }, 'needs 3.5 GFLOP/s, this worker measured 3.00'],
  ] as const)('%j against a cpu worker with 1 GiB and 3 GFLOP/s: %s', (requirements, refusal) => {
    expect(unmetRequirement(requirements, offer)).toBe(refusal)
  })
})

describe('claim requests', () => {
  it('accept exactly one part, each field checked', async () => {
    const taskCid = (await cidOf('task')).bytes as Uint8Array<ArrayBuffer>
    const capability = { backend: 'cpu', gflops: 2, maxBufferBytes: 1024, memoryBytes: 4096 }
    const claim = { taskCid, eligible: true, reason: '', capability }
    expect(validateClaimRequest({ claim })).toBeUndefined()
    expect(validateClaimRequest({})).toBe('a request carries exactly one part')
    expect(validateClaimRequest({ claim, cancel: { taskCid, reason: '' } })).toBe(
      'a request carries exactly one part',
    )
    expect(validateClaimRequest({ claim: { ...claim, taskCid: new Uint8Array([1, 2]) } })).toBe(
      'claim.taskCid',
    )
    expect(
      validateClaimRequest({ claim: { ...claim, capability: { ...capability, gflops: Number.NaN } } }),
    ).toBe('claim.capability.gflops')
    expect(validateClaimRequest({ claim: { ...claim, reason: 'x'.repeat(5000) } })).toBe('claim.reason')
    expect(validateClaimRequest({ outer: { taskCid, group: 0, round: 0, paramsCid: taskCid } })).toBe(
      'outer.round',
    )
    // a re-formed group's assignment names the state it starts from; the first one names none
    const members = [peerIdFromPrivateKey(await generateKeyPair('Ed25519')).toMultihash().bytes]
    const none = new Uint8Array(0)
    const assignment = { taskCid, group: 0, members, shardCid: taskCid, incarnation: 0, stateCid: none }
    expect(validateClaimRequest({ assignment })).toBeUndefined()
    expect(
      validateClaimRequest({ assignment: { ...assignment, incarnation: 1, stateCid: taskCid } }),
    ).toBeUndefined()
    expect(validateClaimRequest({ assignment: { ...assignment, incarnation: 1 } })).toBe(
      'assignment.stateCid',
    )
    expect(validateClaimRequest({ assignment: { ...assignment, stateCid: taskCid } })).toBe(
      'assignment.stateCid',
    )
    expect(
      validateClaimRequest({
        assignment: { ...assignment, incarnation: 2, stateCid: new Uint8Array([1, 2]) },
      }),
    ).toBe('assignment.stateCid')
  })

  it('tell a member from the refusal of its progress whether its part is over', () => {
    const refused = (reason: string) => new ClaimRefusedError(ClaimResponse.Status.REFUSED, reason)
    expect(finalRefusal(refused(progressRefusal.ended('completed')))).toBe('completed')
    expect(finalRefusal(refused(progressRefusal.ended('cancelled')))).toBe('ended')
    expect(finalRefusal(refused(progressRefusal.ended('failed')))).toBe('ended')
    expect(finalRefusal(refused(progressRefusal.notMember))).toBe('ended')
    expect(finalRefusal(refused(progressRefusal.reformed(2)))).toBe('ended')
    expect(finalRefusal(refused('internal error'))).toBeUndefined()
    // matched by class: an error that only carries the name is not a refusal
    const impostor = new Error(`refused (REFUSED): ${progressRefusal.ended('completed')}`)
    impostor.name = 'ClaimRefusedError'
    expect(finalRefusal(impostor)).toBeUndefined()
  })

  it('decode-then-validate never throws on arbitrary bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 512 }), (bytes) => {
        let request: ClaimRequest
        try {
          request = ClaimRequest.decode(bytes)
        } catch {
          return
        }
        const reason = validateClaimRequest(request)
        expect(reason === undefined || typeof reason === 'string').toBe(true)
      }),
      { numRuns: 500 },
    )
  })
})

describe('dataset blocks', () => {
  it('round-trips and refuses truncated or lying headers', () => {
    const block = {
      images: new Float32Array([0, 0.5, 1, 0.25]),
      labels: new Uint8Array([3, 7]),
      count: 2,
      features: 2,
    }
    const bytes = encodeDatasetBlock(block)
    const decoded = decodeDatasetBlock(bytes)
    expect(decoded.ok && [...decoded.value.images]).toEqual([0, 0.5, 1, 0.25])
    expect(decodeDatasetBlock(bytes.subarray(0, bytes.length - 1)).ok).toBe(false)
    const lying = new Uint8Array(bytes)
    new DataView(lying.buffer).setUint32(8, 1_000_000, true)
    expect(decodeDatasetBlock(lying)).toEqual({
      ok: false,
      reason: 'dataset length does not match its header',
    })
    const nan = new Uint8Array(bytes)
    new DataView(nan.buffer).setFloat32(16, Number.NaN, true)
    expect(decodeDatasetBlock(nan).ok).toBe(false)
  })
})

describe('assignment', () => {
  const claimant = (peerId: string, gflops: number): Claimant => ({
    peerId,
    backend: 'cpu',
    gflops,
    maxBufferBytes: 1,
  })

  it('takes the fastest claimants and deals them so groups are balanced', () => {
    const claims = [
      claimant('a', 1),
      claimant('b', 9),
      claimant('c', 5),
      claimant('d', 7),
      claimant('e', 3),
      claimant('f', 8),
      claimant('g', 0.5),
    ]
    const result = assignGroups(claims, 2, 3)
    expect(result.ok).toBe(true)
    if (!result.ok) return
    // ranked b f d c e a; snake order: g0 b, g1 f, g1 d, g0 c, g0 e, g1 a
    expect(result.groups).toEqual([
      { group: 0, members: ['b', 'c', 'e'] },
      { group: 1, members: ['f', 'd', 'a'] },
    ])
    expect(result.spare.map((c) => c.peerId)).toEqual(['g'])
  })

  it('says how many it found and needed, counting a peer once', () => {
    expect(assignGroups([claimant('a', 1), claimant('a', 2), claimant('b', 1)], 1, 3)).toEqual({
      ok: false,
      found: 2,
      needed: 3,
    })
  })
})

describe('task lifecycle', () => {
  const start = (): TaskRecord =>
    newTaskRecord({
      id: 'task',
      kind: 'train',
      createdMs: 0,
      deadlineMs: 1000,
      groupCount: 2,
      groupSize: 1,
      steps: 10,
      needed: 2,
      summary: {},
    })
  const claim = (peerId: string, nowMs = 1): TaskEvent => ({
    type: 'claim',
    claimant: { peerId, backend: 'cpu', gflops: 1, maxBufferBytes: 1 },
    nowMs,
  })
  const progress = (
    from: string,
    group: number,
    fields: Partial<Extract<TaskEvent, { type: 'progress' }>>,
  ): TaskEvent => ({
    type: 'progress',
    from,
    group,
    step: 0,
    loss: 1,
    samplesPerSecond: 1,
    leader: from,
    waitingRound: 0,
    paramsCid: '',
    appliedRound: 0,
    done: false,
    nowMs: 10,
    ...fields,
  })

  function run(record: TaskRecord, events: TaskEvent[]) {
    const effects = []
    for (const event of events) {
      const result = stepTask(record, event)
      record = result.record
      effects.push(...result.effects.filter((e) => e.type !== 'persist'))
    }
    return { record, effects }
  }

  it(
    'fails staffing at the deadline saying how many ' + 'workers it found, needed and why others declined',
    () => {
      const { record } = run(start(), [
        claim('a'),
        { type: 'decline', peerId: 'b', reason: 'needs 1 TiB of memory', nowMs: 2 },
        { type: 'tick', nowMs: 1000, stallMs: 100 },
      ])
      expect(record.state).toBe('failed')
      expect(record.error).toBe(
        'could not staff the task before its deadline: found 1 eligible worker, needed 2 (1 declined: ' +
          'needs 1 TiB of memory)',
      )
    },
  )

  it('assigns, waits for every group at an outer round, marks stalls, finishes', () => {
    let { record, effects } = run(start(), [claim('a'), claim('b')])
    expect(record.state).toBe('running')
    expect(effects).toEqual([
      {
        type: 'assign',
        groups: [
          { group: 0, members: ['a'] },
          { group: 1, members: ['b'] },
        ],
      },
    ])
    ;({ record, effects } = run(record, [
      progress('a', 0, { step: 5, waitingRound: 1, paramsCid: 'pa' }),
      progress('b', 1, { step: 3 }),
    ]))
    expect(effects).toEqual([])
    expect(record.groups.map((g) => g.status)).toEqual(['waiting', 'running'])
    ;({ record, effects } = run(record, [
      progress('b', 1, { step: 5, waitingRound: 1, paramsCid: 'pb', nowMs: 20 }),
    ]))
    expect(effects).toEqual([
      {
        type: 'outer-round',
        round: 1,
        sources: [
          { group: 0, paramsCid: 'pa', from: 'a' },
          { group: 1, paramsCid: 'pb', from: 'b' },
        ],
      },
    ])
    ;({ record } = run(record, [
      { type: 'outer-sent', round: 1, paramsCid: 'avg', accuracy: 0.5, nowMs: 30 },
    ]))
    expect(record.outerRound).toBe(1)
    expect(record.accuracy).toBe(0.5)
    // a new leader asking again for round 1 gets it again
    ;({ effects } = run(record, [
      progress('a', 0, { step: 5, waitingRound: 1, paramsCid: 'pa2', nowMs: 31 }),
    ]))
    expect(effects).toEqual([{ type: 'resend-outer', round: 1, paramsCid: 'avg', to: 'a', group: 0 }])
    ;({ record } = run(record, [{ type: 'tick', nowMs: 1000, stallMs: 100 }]))
    expect(record.groups.map((g) => g.status)).toEqual(['stalled', 'stalled'])
    ;({ record } = run(record, [progress('a', 0, { step: 7, nowMs: 1001 })]))
    expect(record.groups[0].status).toBe('running')
    ;({ record, effects } = run(record, [
      progress('a', 0, { step: 10, done: true, paramsCid: 'fa', nowMs: 1002 }),
      progress('b', 1, { step: 10, done: true, paramsCid: 'fb', nowMs: 1003 }),
    ]))
    expect(record.state).toBe('finishing')
    expect(effects).toEqual([
      {
        type: 'finalize',
        sources: [
          { group: 0, paramsCid: 'fa', from: 'a' },
          { group: 1, paramsCid: 'fb', from: 'b' },
        ],
      },
    ])
    ;({ record, effects } = run(record, [
      { type: 'finished', accuracy: 0.9, testLoss: 0.3, resultDir: '/r', nowMs: 1004 },
    ]))
    expect(record.state).toBe('completed')
    expect(effects).toEqual([{ type: 'release', reason: 'completed' }])
    // late messages about a finished task change nothing
    expect(stepTask(record, progress('a', 0, { step: 11 })).record).toBe(record)
  })

  it('counts the last outer round when every group applied it and finished before it was recorded', () => {
    let { record } = run(start(), [
      claim('a'),
      claim('b'),
      progress('a', 0, { step: 10, waitingRound: 1, paramsCid: 'pa' }),
      progress('b', 1, { step: 10, waitingRound: 1, paramsCid: 'pb' }),
    ])
    expect(record.averagingRound).toBe(1)
    // the submitter sent round 1 (the groups applied it and finished) but had not recorded it yet
    ;({ record } = run(record, [
      progress('a', 0, { step: 10, done: true, appliedRound: 1, paramsCid: 'fa', nowMs: 20 }),
      progress('b', 1, { step: 10, done: true, appliedRound: 1, paramsCid: 'fb', nowMs: 21 }),
    ]))
    expect(record.state).toBe('finishing')
    expect(record.outerRound).toBe(1)
    // the record of the sending, when it comes after all, still keeps the round's params and score
    ;({ record } = run(record, [
      { type: 'outer-sent', round: 1, paramsCid: 'avg', accuracy: 0.7, nowMs: 22 },
    ]))
    expect(record).toMatchObject({
      outerRound: 1,
      outerParamsCids: ['avg'],
      accuracy: 0.7,
      averagingRound: 0,
    })
    // but a round already recorded is not recorded twice
    expect(stepTask(record, { type: 'outer-sent', round: 1, paramsCid: 'x', nowMs: 23 }).record).toBe(record)
  })

  it('ignores progress from non-members and marks a leaderless group stalled', () => {
    let { record } = run(start(), [claim('a'), claim('b'), progress('a', 0, { step: 3 })])
    expect(stepTask(record, progress('x', 0, { step: 9 })).record).toBe(record)
    ;({ record } = run(record, [progress('a', 0, { step: 3, leader: '' })]))
    expect(record.groups[0].status).toBe('stalled')
  })

  /** A task of one group of three, steps 10 unless told. */
  const oneGroupOfThree = (fields: Partial<Parameters<typeof newTaskRecord>[0]> = {}) =>
    newTaskRecord({
      id: 't',
      kind: 'train',
      createdMs: 0,
      deadlineMs: 1000,
      groupCount: 1,
      groupSize: 3,
      steps: 10,
      needed: 3,
      summary: {},
      ...fields,
    })

  it('runs on when a minority of a group fails and fails when its majority is gone', () => {
    let { record } = run(oneGroupOfThree(), [claim('a'), claim('b'), claim('c')])
    ;({ record } = run(record, [
      { type: 'assignment-failed', peerId: 'b', group: 0, reason: 'unreachable', nowMs: 2 },
    ]))
    expect(record.state).toBe('running')
    expect(record.groups[0].failed).toEqual([{ peerId: 'b', reason: 'could not be assigned: unreachable' }])
    const { record: ended, effects } = run(record, [
      { type: 'member-error', peerId: 'c', group: 0, error: 'shard unusable', nowMs: 3 },
    ])
    expect(ended.state).toBe('failed')
    expect(ended.error).toBe(
      'group 0 lost its majority: b could not be assigned: unreachable; c shard unusable',
    )
    expect(effects[0]).toEqual({ type: 'release', reason: ended.error })
  })

  describe('membership change', () => {
    const STALL = 100
    const REPLACE = 1000
    const three = () =>
      run(oneGroupOfThree({ steps: 50, replaceAfterMs: REPLACE }), [
        claim('a'),
        claim('b'),
        claim('c'),
        progress('a', 0, { step: 5, leader: 'a', nowMs: 20 }),
      ]).record
    const tick = (nowMs: number): TaskEvent => ({ type: 'tick', nowMs, stallMs: STALL })
    // a and b are gone after step 5; c lives on without a leader and offers its state at step 4
    const stalledWithState = () => {
      let { record, effects } = run(three(), [
        progress('c', 0, { step: 4, leader: '', stateCid: 'state-c', nowMs: 30 }),
        tick(200),
      ])
      expect(record.groups[0].status).toBe('stalled')
      expect(effects).toEqual([
        { type: 'fetch-state', group: 0, incarnation: 0, stateCid: 'state-c', from: 'c', step: 4 },
      ])
      ;({ record, effects } = run(record, [
        { type: 'state-stored', group: 0, incarnation: 0, stateCid: 'state-c', step: 4, nowMs: 40 },
        progress('c', 0, { step: 4, leader: '', stateCid: 'state-c', nowMs: 1100 }),
      ]))
      expect(effects).toEqual([]) // the same state is not fetched twice
      return record
    }

    it('replaces the silent members of a stalled group with new claimants, from a survivor state', () => {
      let record = stalledWithState()
      expect(isRecruiting(record)).toBe(false)
      // not before replaceAfterMs has passed on top of the stall
      ;({ record } = run(record, [tick(20 + STALL + REPLACE - 1)]))
      expect(record.groups[0].status).toBe('stalled')
      ;({ record } = run(record, [tick(20 + STALL + REPLACE + 1)]))
      expect(record.groups[0].status).toBe('replacing')
      expect(record.groups[0].vacated).toEqual(['a', 'b'])
      expect(isRecruiting(record)).toBe(true)
      // a member and a known spare claim nothing; two newcomers fill the places, the fastest first
      let effects: TaskEffect[]
      ;({ record, effects } = run(record, [
        claim('c', 1200),
        {
          type: 'claim',
          claimant: { peerId: 'd', backend: 'cpu', gflops: 5, maxBufferBytes: 1 },
          nowMs: 1201,
        },
        claim('d', 1202),
      ]))
      expect(record.spares?.map((c) => c.peerId)).toEqual(['d'])
      expect(effects).toEqual([])
      ;({ record, effects } = run(record, [claim('e', 1300), claim('f', 1301)]))
      const group = record.groups[0]
      expect(effects).toEqual([
        {
          type: 'reform',
          group: 0,
          members: ['c', 'd', 'e'],
          incarnation: 1,
          stateCid: 'state-c',
          vacated: ['a', 'b'],
        },
      ])
      expect(group).toMatchObject({
        status: 'running',
        members: ['c', 'd', 'e'],
        incarnation: 1,
        step: 4,
      })
      expect(group.reformed).toEqual([
        { incarnation: 1, vacated: ['a', 'b'], joined: ['d', 'e'], step: 4, timeMs: 1300 },
      ])
      expect(group.stateCid).toBeUndefined()
      expect(isRecruiting(record)).toBe(false)
      // f came too late: the task takes no claims once every group is staffed
      expect(record.spares).toEqual([])
      // the old members are no longer members; the new incarnation runs on (leaderless at its start step
      // is its first election, not a stall)
      expect(stepTask(record, progress('a', 0, { step: 9, nowMs: 1400 })).record).toBe(record)
      ;({ record } = run(record, [progress('d', 0, { step: 4, leader: '', nowMs: 1400 })]))
      expect(record.groups[0].status).toBe('running')
      ;({ record } = run(record, [
        progress('d', 0, { step: 50, leader: 'd', done: true, paramsCid: 'p', nowMs: 1500 }),
      ]))
      expect(record.state).toBe('finishing')
    })

    it('goes on with its own members when they come back before the replacement is complete', () => {
      const { record: replacing } = run(stalledWithState(), [
        tick(20 + STALL + REPLACE + 1),
        claim('d', 1200),
      ])
      expect(replacing.groups[0].status).toBe('replacing')
      const { record, effects } = run(replacing, [progress('a', 0, { step: 6, leader: 'a', nowMs: 1300 })])
      expect(record.groups[0]).toMatchObject({ status: 'running', members: ['a', 'b', 'c'], incarnation: 0 })
      expect(record.groups[0].vacated).toBeUndefined()
      expect(effects).toEqual([{ type: 'dismiss', peers: ['d'], reason: 'not selected' }])
      expect(isRecruiting(record)).toBe(false)
    })

    it('does not replace without a state, when nobody is silent, or when replaceAfterMs is 0', () => {
      // no state was offered (c still reports)
      let { record } = run(three(), [progress('c', 0, { step: 4, leader: '', nowMs: 4990 }), tick(5000)])
      expect(record.groups[0].status).toBe('stalled')
      expect(record.groups[0].stateFetching).toBeUndefined()
      // everyone still reports (no leader, but nobody is gone)
      ;({ record } = run(stalledWithState(), [
        progress('a', 0, { step: 4, leader: '', nowMs: 4990 }),
        progress('b', 0, { step: 4, leader: '', nowMs: 4990 }),
        progress('c', 0, { step: 4, leader: '', nowMs: 4990 }),
        tick(5000),
      ]))
      expect(record.groups[0].status).toBe('stalled')
      const never = run({ ...stalledWithState(), replaceAfterMs: 0 }, [tick(50_000)])
      expect(never.record.groups[0].status).toBe('stalled')
      expect(never.effects).toEqual([])
    })

    it('starts a group over from step 0 when every member is gone without leaving a state', () => {
      // a, b and c all went silent after step 5; none published a state
      let { record, effects } = run(three(), [tick(20 + STALL + REPLACE - 1)])
      expect(record.groups[0].status).toBe('stalled')
      expect(effects).toEqual([])
      ;({ record, effects } = run(record, [tick(20 + STALL + REPLACE + 1)]))
      expect(effects).toEqual([{ type: 'initial-state', group: 0, incarnation: 0 }])
      expect(record.groups[0].stateFetching).toBe(INITIAL_STATE)
      // asked once while it is being built; a failure asks again on the next tick
      ;({ record, effects } = run(record, [tick(1200)]))
      expect(effects).toEqual([])
      ;({ record, effects } = run(record, [
        { type: 'state-unavailable', group: 0, stateCid: INITIAL_STATE, nowMs: 1210 },
        tick(1300),
      ]))
      expect(effects).toEqual([{ type: 'initial-state', group: 0, incarnation: 0 }])
      ;({ record } = run(record, [
        {
          type: 'state-stored',
          group: 0,
          incarnation: 0,
          stateCid: 'initial-cid',
          step: 0,
          initial: true,
          nowMs: 1310,
        },
        tick(1400),
      ]))
      expect(record.groups[0]).toMatchObject({ status: 'replacing', vacated: ['a', 'b', 'c'], stateStep: 0 })
      expect(record.groups[0].stateFetching).toBeUndefined()
      ;({ record, effects } = run(record, [claim('d', 1500), claim('e', 1501), claim('f', 1502)]))
      expect(effects).toEqual([
        {
          type: 'reform',
          group: 0,
          members: ['d', 'e', 'f'],
          incarnation: 1,
          stateCid: 'initial-cid',
          vacated: ['a', 'b', 'c'],
        },
      ])
      expect(record.groups[0]).toMatchObject({ status: 'running', step: 0, incarnation: 1 })
      expect(record.groups[0].reformed).toEqual([
        { incarnation: 1, vacated: ['a', 'b', 'c'], joined: ['d', 'e', 'f'], step: 0, timeMs: 1502 },
      ])
    })

    it('a group started over is resent the rounds already averaged and finishes with the others', () => {
      // two groups of one; round 1 averaged at step 5; a dies at step 7, b finishes
      let effects: TaskEffect[]
      let { record } = run({ ...start(), replaceAfterMs: REPLACE }, [
        claim('a'),
        claim('b'),
        progress('a', 0, { step: 5, waitingRound: 1, paramsCid: 'pa', nowMs: 10 }),
        progress('b', 1, { step: 5, waitingRound: 1, paramsCid: 'pb', nowMs: 10 }),
        { type: 'outer-sent', round: 1, paramsCid: 'avg', nowMs: 20 },
        progress('a', 0, { step: 7, appliedRound: 1, nowMs: 30 }),
        progress('b', 1, { step: 10, done: true, appliedRound: 1, paramsCid: 'fb', nowMs: 40 }),
        tick(30 + STALL + REPLACE + 1),
      ])
      expect(record.groups[0].stateFetching).toBe(INITIAL_STATE)
      ;({ record, effects } = run(record, [
        {
          type: 'state-stored',
          group: 0,
          incarnation: 0,
          stateCid: 'init',
          step: 0,
          initial: true,
          nowMs: 1200,
        },
        tick(1201),
        claim('c', 1202),
      ]))
      expect(effects).toEqual([
        { type: 'reform', group: 0, members: ['c'], incarnation: 1, stateCid: 'init', vacated: ['a'] },
      ])
      // c trains again from step 0 and, at the boundary, is handed round 1 as it was averaged
      ;({ record, effects } = run(record, [
        progress('c', 0, { step: 5, waitingRound: 1, paramsCid: 'pc', nowMs: 1300 }),
      ]))
      expect(effects).toEqual([{ type: 'resend-outer', round: 1, paramsCid: 'avg', to: 'c', group: 0 }])
      expect(record.groups[0].status).toBe('running')
      ;({ record, effects } = run(record, [
        progress('c', 0, { step: 10, done: true, appliedRound: 1, paramsCid: 'fc', nowMs: 1400 }),
      ]))
      expect(record.state).toBe('finishing')
      expect(effects).toEqual([
        {
          type: 'finalize',
          sources: [
            { group: 0, paramsCid: 'fc', from: 'c' },
            { group: 1, paramsCid: 'fb', from: 'b' },
          ],
        },
      ])
    })

    it('re-forms a group that trains on its majority without a silent member, from a fresh state', () => {
      // b goes silent after time 20; a and c go on training
      let effects: TaskEffect[]
      let { record } = run(three(), [progress('b', 0, { step: 5, leader: 'a', nowMs: 20 })])
      const both = (step: number, nowMs: number, fields = {}) => [
        progress('a', 0, { step, leader: 'a', nowMs, ...fields }),
        progress('c', 0, { step, leader: 'a', nowMs, ...fields }),
      ]
      ;({ record, effects } = run(record, [...both(9, 1100), tick(20 + STALL + REPLACE)]))
      expect(record.groups[0].stateWanted).toBeUndefined()
      // past stallMs + replaceAfterMs: a state is wanted (an old one from a leaderless spell is dropped)
      record.groups[0].stateCid = 'old-state'
      ;({ record, effects } = run(record, [tick(20 + STALL + REPLACE + 1)]))
      expect(record.groups[0]).toMatchObject({ status: 'running', stateWanted: true })
      expect(record.groups[0].stateCid).toBeUndefined()
      // the reply to the leader's report asks for it, the reply to a follower's does not
      expect(stateWantedFrom(record, 0, 'a', 'a')).toBe(true)
      expect(stateWantedFrom(record, 0, 'c', 'a')).toBe(false)
      expect(isRecruiting(record)).toBe(false)
      ;({ record, effects } = run(record, [
        ...both(12, 1200, { stateCid: 'state-a' }),
        { type: 'state-stored', group: 0, incarnation: 0, stateCid: 'state-a', step: 12, nowMs: 1210 },
        tick(1220),
      ]))
      expect(effects).toEqual([
        { type: 'fetch-state', group: 0, incarnation: 0, stateCid: 'state-a', from: 'a', step: 12 },
      ])
      expect(record.groups[0]).toMatchObject({ status: 'running', vacated: ['b'] })
      expect(isRecruiting(record)).toBe(true)
      // the group trains on while it waits for a newcomer
      ;({ record, effects } = run(record, [...both(15, 1300), claim('d', 1400)]))
      expect(effects).toEqual([
        {
          type: 'reform',
          group: 0,
          members: ['a', 'c', 'd'],
          incarnation: 1,
          stateCid: 'state-a',
          vacated: ['b'],
        },
      ])
      expect(record.groups[0]).toMatchObject({ status: 'running', step: 12, incarnation: 1 })
      expect(record.groups[0].stateWanted).toBeUndefined()
      expect(isRecruiting(record)).toBe(false)
    })

    it('keeps a silent member that reports again before a newcomer takes its place', () => {
      let { record } = run(three(), [
        progress('b', 0, { step: 5, leader: 'a', nowMs: 20 }),
        progress('a', 0, { step: 9, leader: 'a', nowMs: 1100 }),
        progress('c', 0, { step: 9, leader: 'a', nowMs: 1100 }),
        tick(20 + STALL + REPLACE + 1),
        progress('a', 0, { step: 12, leader: 'a', stateCid: 'state-a', nowMs: 1200 }),
        { type: 'state-stored', group: 0, incarnation: 0, stateCid: 'state-a', step: 12, nowMs: 1210 },
        tick(1220),
      ])
      expect(record.groups[0].vacated).toEqual(['b'])
      const back = run(record, [progress('b', 0, { step: 13, leader: 'a', nowMs: 1240 })])
      record = back.record
      expect(record.groups[0].vacated).toBeUndefined()
      expect(record.groups[0].stateWanted).toBeUndefined()
      expect(isRecruiting(record)).toBe(false)
      expect(back.effects).toEqual([])
      // silent members that report again before the state arrives are not asked for one any more
      ;({ record } = run(three(), [
        progress('b', 0, { step: 5, leader: 'a', nowMs: 20 }),
        progress('a', 0, { step: 9, leader: 'a', nowMs: 1100 }),
        progress('c', 0, { step: 9, leader: 'a', nowMs: 1100 }),
        tick(20 + STALL + REPLACE + 1),
        progress('b', 0, { step: 10, leader: 'a', nowMs: 1150 }),
        tick(1160),
      ]))
      expect(record.groups[0].stateWanted).toBeUndefined()
    })

    it('ignores a state fetched for another incarnation', () => {
      const record = stalledWithState()
      const { record: after } = run(record, [
        { type: 'state-stored', group: 0, incarnation: 1, stateCid: 'other', step: 9, nowMs: 1200 },
      ])
      expect(after.groups[0].stateCid).toBe('state-c')
    })
  })
})
