// Replays member transcripts (testdata/*.txt) against real MemberCores: a tiny group (a handful of
// parameters) whose members' effects the interpreter carries out by hand, so a transcript shows every
// decision of the training-member protocol in order. Commands:
//
//   init members=a,b,c params=4 steps=3 [compression=int8] [speculate=false] [aggregate=median]
//        [straggler=250] [resend=1000] [outer-every=2] [min-contributors=3]
//   leader a term=1            every member learns the leader (a leadership input each)
//   tick +N                    the clock moves N ms; every member gets a tick
//   compute [b=nan c=x100 d=skip]
//                              every member with a compute-gradient outstanding gets its gradient
//                              (deterministic from member, step and parameter index; nan: a NaN in it,
//                              xK: scaled by K, skip: left outstanding)
//   deliver [drop=b]           every outstanding send-gradient reaches its leader (dropped: 'failed')
//   append [b c]               the leader's newest proposal joins the log: the leader and the named
//                              followers (default all) get entries-appending / -appended
//   commit                     every appended, uncommitted entry is committed on every member
//   outer-params round=1       the leader's outstanding outer step is answered with its params x 0.5
//   transfer a to b            b receives a's state (as the answer to a state request)
//   snapshot a to b            b installs a Raft snapshot of a's state (pushed by a leader to a lagging b)
//   diverge b                  b's params change under its digest (its next applied step mismatches)
//   share [drop=b]             every outstanding share-gradient (all-to-all) reaches its members
//   validate b c [lie=update|contributors|forge|digest-after]
//                              the named followers check the leader's newest proposal (not yet
//                              appended) as the Raft runner's validate hook would; lie= tampers with it
//                              first: flips an update byte, drops a contributor, names a gradient that
//                              does not exist, or claims another params digest after the step
//   fetch                      every outstanding fetch-gradient is answered from the asked member's pool
//   check-outer round=1        every outstanding check-outer is answered with the params x 0.5
//   wake                       each member's nextWakeMs
//   status                     each member's step, digest and counters
//
// Continue effects are carried out at once (as the driver would after the microtask or turn) and
// printed as '(continue)'. Digests print as their first 8 hex digits.
import type { Entry } from '../../../protocols/raft/types.js'
import {
  MEMBER_RULE_DEFAULTS,
  MemberCore,
  type MemberEffect,
  type MemberInput,
} from '../../../protocols/training/member.js'
import { toHex } from '../../../protocols/training/params.js'
import {
  createTrainingState,
  decodeEntry,
  encodeEntry,
  encodeState,
} from '../../../protocols/training/state.js'
import type { AggregateRule } from '../../../protocols/training/types.js'

interface Member {
  id: string
  index: number
  core: MemberCore
  computes: Array<Extract<MemberEffect, { type: 'compute-gradient' }>>
  sends: Array<Extract<MemberEffect, { type: 'send-gradient' }>>
  shares: Array<Extract<MemberEffect, { type: 'share-gradient' }>>
  fetches: Array<Extract<MemberEffect, { type: 'fetch-gradient' }>>
  outer: Extract<MemberEffect, { type: 'outer-step' }> | undefined
  checkOuter: Extract<MemberEffect, { type: 'check-outer' }> | undefined
}

interface Proposal {
  from: string
  term: number
  data: Uint8Array
}

const short = (bytes: Uint8Array) => toHex(bytes).slice(0, 8)
const after = (digest: Uint8Array) => `digest-after=${short(digest)}`
const encoding = (effect: Extract<MemberEffect, { type: 'send-gradient' }>) => effect.message.encoding
const number = (value: number) =>
  Number.isFinite(value) ? String(Number(value.toPrecision(4))) : String(value)

export class MemberInterpreter {
  private members: Member[] = []
  private nowMs = 0
  private proposals: Proposal[] = []
  private log: Entry[] = []
  private committed = 0
  private lines: string[] = []

  run(command: string): string {
    this.lines = []
    const [name, ...words] = command.trim().split(/\s+/)
    const args = new Map<string, string>()
    const positional: string[] = []
    for (const word of words) {
      const at = word.indexOf('=')
      if (at > 0) args.set(word.slice(0, at), word.slice(at + 1))
      else positional.push(word)
    }
    switch (name) {
      case 'init':
        this.init(args)
        break
      case 'leader':
        this.leader(positional[0], Number(args.get('term') ?? 1))
        break
      case 'tick':
        this.nowMs += Number(positional[0] ?? '+0')
        for (const member of this.members) this.feed(member, { type: 'tick', nowMs: this.nowMs })
        break
      case 'compute':
        this.compute(args)
        break
      case 'deliver':
        this.deliver(new Set((args.get('drop') ?? '').split(',').filter(Boolean)))
        break
      case 'append':
        this.append(positional)
        break
      case 'commit':
        this.commit()
        break
      case 'outer-params':
        this.outerParams(Number(args.get('round')))
        break
      case 'transfer':
        this.transfer(positional[0], positional[2])
        break
      case 'snapshot':
        this.snapshot(positional[0], positional[2])
        break
      case 'diverge': {
        // models a member whose arithmetic went wrong (memory corruption, a bad backend): its params
        // change under the digest it reports, so the next entry it applies gives another digest
        const state = this.member(positional[0]).core.current()
        state.params[0] += 1
        break
      }
      case 'share':
        this.share(new Set((args.get('drop') ?? '').split(',').filter(Boolean)))
        break
      case 'validate':
        this.validate(positional, args.get('lie'))
        break
      case 'fetch':
        this.fetch()
        break
      case 'check-outer':
        this.checkOuter(Number(args.get('round')))
        break
      case 'wake':
        for (const member of this.members) {
          const wake = member.core.nextWakeMs()
          this.lines.push(`${member.id}: ${wake === undefined ? 'none' : `at ${wake}`}`)
        }
        break
      case 'status':
        for (const member of this.members) {
          const state = member.core.current()
          const c = member.core.counters
          this.lines.push(
            `${member.id}: step=${state.step} outer=${state.outerRounds} digest=${short(state.digest)} ` +
              `precomputed=${c.stepsPrecomputed} ahead=${c.gradientsAhead} wasted=${c.speculationsWasted} ` +
              `received-ahead=${c.gradientsReceivedAhead} sent=${c.gradientsSent}` +
              ` checked=${c.entriesChecked} refused=${c.entriesRefused} fetched=${c.gradientsFetched}`,
          )
        }
        break
      default:
        throw new Error(`unknown command ${name}`)
    }
    return this.lines.join('\n')
  }

  private member(id: string): Member {
    const member = this.members.find((m) => m.id === id)
    if (!member) throw new Error(`no member ${id}`)
    return member
  }

  private init(args: Map<string, string>): void {
    const ids = (args.get('members') ?? 'a,b,c').split(',')
    const count = Number(args.get('params') ?? 4)
    const params = Float32Array.from({ length: count }, (_, i) => 0.1 * (i + 1))
    this.members = ids.map((id, index) => ({
      id,
      index,
      core: new MemberCore(
        {
          ...MEMBER_RULE_DEFAULTS,
          self: id,
          members: ids,
          training: {
            parameterCount: count,
            steps: Number(args.get('steps') ?? 3),
            learningRate: 0.1,
            schedule: 'constant',
            weightDecay: 0,
            outerEvery: Number(args.get('outer-every') ?? 0),
          },
          aggregate: (args.get('aggregate') ?? 'mean') as AggregateRule,
          compression: args.get('compression') === 'int8' ? 'int8' : 'none',
          compressionBlockSize: 2,
          speculate: args.get('speculate') !== 'false',
          stragglerTimeoutMs: Number(args.get('straggler') ?? 250),
          resendMs: Number(args.get('resend') ?? 1000),
          outerSteps: args.has('outer-every'),
          minContributors: Number(args.get('min-contributors') ?? MEMBER_RULE_DEFAULTS.minContributors),
        },
        createTrainingState(params, ids),
      ),
      computes: [],
      sends: [],
      shares: [],
      fetches: [],
      outer: undefined,
      checkOuter: undefined,
    }))
    this.lines.push(`${ids.join(' ')} at step 0 digest=${short(this.members[0].core.current().digest)}`)
  }

  private leader(id: string, term: number): void {
    for (const member of this.members) {
      this.feed(member, {
        type: 'leadership',
        leader: id,
        isLeader: member.id === id,
        term,
        nowMs: this.nowMs,
      })
    }
  }

  private compute(args: Map<string, string>): void {
    for (const member of this.members) {
      const how = args.get(member.id) ?? ''
      if (how === 'skip') continue
      const computes = member.computes
      member.computes = []
      for (const effect of computes) {
        const gradient = Float32Array.from(
          { length: effect.params.length },
          (_, k) => (member.index + 1) * 0.01 * (k + 1) + 0.001 * effect.step,
        )
        if (how === 'nan') gradient[0] = Number.NaN
        if (how.startsWith('x')) for (let k = 0; k < gradient.length; k++) gradient[k] *= Number(how.slice(1))
        this.feed(member, {
          type: 'gradient-computed',
          step: effect.step,
          digest: effect.digest,
          gradient,
          loss: 1 / (effect.step + 1) + 0.01 * member.index,
          nowMs: this.nowMs,
        })
      }
    }
  }

  private deliver(dropped: Set<string>): void {
    for (const member of this.members) {
      const sends = member.sends
      member.sends = []
      for (const send of sends) {
        if (dropped.has(member.id)) {
          this.lines.push(`${member.id}> (dropped)`)
          this.feed(member, {
            type: 'gradient-sent',
            outcome: 'failed',
            reason: 'dropped',
            bytes: 0,
            nowMs: this.nowMs,
          })
          continue
        }
        const leader = this.member(send.to)
        const effects = this.feed(leader, {
          type: 'gradient-received',
          from: member.id,
          gradient: send.message,
          nowMs: this.nowMs,
        })
        const reply = effects[0]
        if (reply?.type !== 'reply') throw new Error('a gradient-received input must reply first')
        this.feed(member, {
          type: 'gradient-sent',
          outcome: reply.status,
          reason: reply.reason,
          bytes: send.message.values.byteLength,
          nowMs: this.nowMs,
        })
      }
    }
  }

  private share(dropped: Set<string>): void {
    for (const member of this.members) {
      const shares = member.shares
      member.shares = []
      for (const share of shares) {
        if (dropped.has(member.id)) {
          this.lines.push(`${member.id}> (share dropped)`)
          continue
        }
        for (const to of share.to) {
          this.feed(this.member(to), {
            type: 'gradient-received',
            from: member.id,
            gradient: share.message,
            nowMs: this.nowMs,
          })
        }
      }
    }
  }

  private validations = 0

  private validate(names: string[], lie: string | undefined): void {
    const proposal = this.proposals[0]
    if (!proposal) throw new Error('nothing proposed')
    let data = proposal.data
    if (lie !== undefined) {
      const entry = decodeEntry(data)
      if (!entry) throw new Error('the proposal is not a training entry')
      const update = entry.update.slice()
      const lied = { ...entry, update, contributors: [...entry.contributors] }
      lied.gradientDigests = [...(entry.gradientDigests ?? [])]
      if (lie === 'update') update[0] ^= 0x40
      else if (lie === 'contributors') {
        lied.contributors.pop()
        lied.gradientDigests.pop()
        if (lied.agreement.length > 0) lied.agreement = lied.agreement.slice(0, -1)
      } else if (lie === 'forge') lied.gradientDigests[0] = new Uint8Array(32).fill(7)
      else if (lie === 'digest-after') lied.digestAfter = new Uint8Array(32).fill(9)
      else throw new Error(`unknown lie ${lie}`)
      data = encodeEntry(lied)
    }
    const entry: Entry = { index: this.log.length + 1, term: proposal.term, type: 'normal', data }
    for (const name of names) {
      this.feed(this.member(name), {
        type: 'validate',
        id: ++this.validations,
        entries: [entry],
        leader: proposal.from,
        nowMs: this.nowMs,
      })
    }
  }

  private fetch(): void {
    for (const member of this.members) {
      const fetches = member.fetches
      member.fetches = []
      for (const fetch of fetches) {
        const held = this.member(fetch.from).core.gradientFor(fetch.digest)
        this.feed(member, {
          type: 'gradient-fetched',
          digest: fetch.digest,
          author: held?.author ?? '',
          gradient: held?.message,
          nowMs: this.nowMs,
        })
      }
    }
  }

  private checkOuter(round: number): void {
    for (const member of this.members) {
      const check = member.checkOuter
      if (!check || check.round !== round) continue
      member.checkOuter = undefined
      const params = check.params.map((value) => value * 0.5)
      this.feed(member, { type: 'outer-checked', round, params, nowMs: this.nowMs })
    }
  }

  private append(names: string[]): void {
    const proposal = this.proposals.shift()
    if (!proposal) throw new Error('nothing proposed')
    const entry: Entry = {
      index: this.log.length + 1,
      term: proposal.term,
      type: 'normal',
      data: proposal.data,
    }
    this.log.push(entry)
    const leader = this.member(proposal.from)
    this.lines.push(`log ${entry.index}/${entry.term}`)
    this.feed(leader, { type: 'entries-appending', entries: [entry], nowMs: this.nowMs })
    this.feed(leader, { type: 'entries-appended', entries: [entry], nowMs: this.nowMs })
    for (const member of this.members) {
      if (member === leader || (names.length > 0 && !names.includes(member.id))) continue
      this.feed(member, { type: 'entries-appending', entries: [entry], nowMs: this.nowMs })
      this.feed(member, { type: 'entries-appended', entries: [entry], nowMs: this.nowMs })
    }
  }

  private commit(): void {
    const entries = this.log.slice(this.committed)
    this.committed = this.log.length
    for (const member of this.members)
      this.feed(member, { type: 'entries-committed', entries, nowMs: this.nowMs })
  }

  private outerParams(round: number): void {
    for (const member of this.members) {
      const outer = member.outer
      if (!outer || outer.round !== round) continue
      member.outer = undefined
      const params = outer.params.map((value) => value * 0.5)
      this.feed(member, { type: 'outer-params', round, step: outer.step, params, nowMs: this.nowMs })
    }
  }

  private transfer(fromId: string, toId: string): void {
    const from = this.member(fromId)
    const state = encodeState(from.core.current())
    this.feed(this.member(toId), { type: 'state-received', from: fromId, state, nowMs: this.nowMs })
  }

  /** a Raft snapshot of `fromId`'s state installed at `toId` (the leader pushed it: toId lagged) */
  private snapshot(fromId: string, toId: string): void {
    const data = encodeState(this.member(fromId).core.current())
    this.feed(this.member(toId), { type: 'snapshot', data, nowMs: this.nowMs })
  }

  /** Feeds one input, prints and records its effects, and carries out its continue effects. */
  private feed(member: Member, input: MemberInput, depth = 0): MemberEffect[] {
    if (depth > 8) throw new Error('continue effects do not settle')
    const effects = member.core.step(input)
    const prefix = `${'  '.repeat(depth)}${member.id}>${depth > 0 ? ' (continue)' : ''}`
    for (const effect of effects) {
      const line = this.describe(member, effect, input)
      if (line !== undefined) this.lines.push(`${prefix} ${line}`)
    }
    for (const effect of effects) {
      if (effect.type === 'continue') this.feed(member, { ...effect.input, nowMs: this.nowMs }, depth + 1)
    }
    return effects
  }

  private describe(member: Member, effect: MemberEffect, input: MemberInput): string | undefined {
    switch (effect.type) {
      case 'reply': {
        const from = input.type === 'gradient-received' ? input.from : '?'
        return `reply to ${from}: ${effect.status}${effect.reason ? ` (${effect.reason})` : ''}`
      }
      case 'compute-gradient':
        member.computes.push(effect)
        return `compute step=${effect.step} on=${short(effect.digest)}`
      case 'send-gradient':
        member.sends.push(effect)
        return (
          `send step=${effect.step} to=${effect.to} on=${short(effect.message.baseDigest)}` +
          ` ${encoding(effect)}`
        )
      case 'propose': {
        this.proposals.push({ from: member.id, term: effect.term, data: effect.data })
        const entry = decodeEntry(effect.data)
        if (!entry) return 'propose (undecodable)'
        if (entry.kind === 'outer')
          return `propose outer round=${entry.outerRound} step=${entry.step} ${after(entry.digestAfter)}`
        const rejected = entry.rejected.map((r) => `${r.member}:${r.reason}`).join(',')
        return (
          `propose step=${entry.step} term=${effect.term} contributors=${entry.contributors.join(',')}` +
          (rejected ? ` rejected=${rejected}` : '') +
          (entry.suspects.length ? ` suspects=${entry.suspects.join(',')}` : '') +
          ` loss=${number(entry.loss)} ${entry.updateEncoding} ${after(entry.digestAfter)}`
        )
      }
      case 'request-state':
        return `request-state from=${effect.from}`
      case 'share-gradient':
        member.shares.push(effect)
        return undefined // every step has them; \`share\` delivers them
      case 'fetch-gradient':
        member.fetches.push(effect)
        return `fetch step=${effect.step} gradient=${short(effect.digest)} from=${effect.from}`
      case 'validated': {
        const verdict = effect.verdict
        if (verdict.ok) return `validated #${effect.id}: ok`
        return `validated #${effect.id}: ${verdict.retry ? 'retry' : 'REFUSED'} (${verdict.reason})`
      }
      case 'check-outer':
        member.checkOuter = effect
        return `check-outer round=${effect.round} step=${effect.step}`
      case 'outer-step':
        member.outer = effect
        return `outer-step round=${effect.round} step=${effect.step}`
      case 'continue':
        return undefined
      case 'step-applied':
        return (
          `applied step=${effect.event.step} loss=${number(effect.event.loss)} ` +
          `contributors=${effect.event.contributors.join(',')}`
        )
      case 'outer-applied':
        return `applied outer round=${effect.round} at step=${effect.step}`
      case 'leader-changed':
        return `leader ${effect.leader || '(none)'}${effect.isLeader ? ' (self)' : ''}`
      case 'resynced':
        return `resynced to step=${effect.step} (${effect.reason})`
      case 'finished':
        return `finished step=${effect.event.step} digest=${effect.event.digest.slice(0, 8)}`
      case 'error':
        return `error: ${effect.error.message}`
      case 'log':
        return `log: ${effect.message}`
    }
  }
}
