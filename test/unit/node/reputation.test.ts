// Proves the reputation book scores peers from their history, survives a restart, stays bounded, refuses
// to trust a damaged file, and applies the adaptive replication rule.
import { mkdtemp, readFile, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import {
  NEUTRAL_SCORE,
  PEER_ID_LENGTH_MAX,
  REPUTATION_FILE_BYTES_MAX,
  ReputationBook,
  TRUSTED_STREAK_DEFAULT,
} from '../../../node/reputation.js'

async function bookPath(): Promise<string> {
  return join(await mkdtemp(join(tmpdir(), 'reputation-')), 'reputation.json')
}

describe('ReputationBook', () => {
  it('gives a newcomer the neutral prior and moves with good and bad events', async () => {
    const book = await ReputationBook.open(await bookPath())
    expect(book.score('a')).toBe(NEUTRAL_SCORE)
    for (let i = 0; i < 8; i++) book.record('a', 'agreed', 1000)
    // Beta(1,1): (8 + 1) / (8 + 2)
    expect(book.score('a')).toBeCloseTo(0.9, 12)
    expect(book.cleanStreak('a')).toBe(8)
    book.record('a', 'lied', 2000)
    // a lie weighs 5: 9 / (8 + 5 + 2)
    expect(book.score('a')).toBeCloseTo(9 / 15, 12)
    expect(book.cleanStreak('a')).toBe(0)
    book.record('a', 'timed-out', 3000)
    expect(book.cleanStreak('a')).toBe(0)
    book.record('b', 'completed', 1000)
    book.record('b', 'timed-out', 1000)
    // a time-out does not break a streak
    expect(book.cleanStreak('b')).toBe(1)
    expect(book.score('b')).toBeCloseTo(2 / 3.5, 12)
    await book.flush()
  })

  it('persists across a reopen and flushes on its own after the delay', async () => {
    const path = await bookPath()
    const book = await ReputationBook.open(path, { flushDelayMs: 20 })
    book.record('peer-1', 'agreed', 5)
    book.record('peer-1', 'disagreed', 6)
    book.record('peer-2', 'completed', 7)
    // no flush() call: the debounced write lands on its own (polled: fsync may be slow on a busy disk)
    const deadline = Date.now() + 10_000
    while ((await readFile(path, 'utf8').catch(() => '')).indexOf('peer-2') < 0) {
      if (Date.now() > deadline) throw new Error('the debounced flush never wrote the book')
      await new Promise((r) => setTimeout(r, 20))
    }
    const reopened = await ReputationBook.open(path)
    expect(reopened.fileProblem).toBeUndefined()
    expect(reopened.score('peer-1')).toBeCloseTo(book.score('peer-1'), 12)
    expect(reopened.counts('peer-1')).toMatchObject({ agreed: 1, disagreed: 1 })
    expect(reopened.cleanStreak('peer-2')).toBe(1)
    expect(reopened.size).toBe(2)
  })

  it('keeps at most maxPeers, evicting the least recently seen', async () => {
    const path = await bookPath()
    const book = await ReputationBook.open(path, { maxPeers: 100 })
    for (let i = 0; i < 1000; i++) {
      book.record(`p${i}`, 'agreed', i)
      // p0 is seen again and again, so it stays
      book.record('p0', 'agreed', i)
    }
    expect(book.size).toBe(100)
    expect(book.evicted).toBe(900)
    expect(book.counts('p0').agreed).toBe(1001)
    expect(book.counts('p901').agreed).toBe(1)
    expect(book.counts('p900').agreed).toBe(0)
    expect(book.counts('p1').agreed).toBe(0)
    book.record('x'.repeat(PEER_ID_LENGTH_MAX + 1), 'agreed')
    expect(book.ignored).toBe(1)
    await book.flush()
    expect((await stat(path)).size).toBeLessThan(100 * 300)
    const reopened = await ReputationBook.open(path, { maxPeers: 100 })
    expect(reopened.size).toBe(100)
    // the order survives: the least recently seen is evicted first after reopening too
    reopened.record('new', 'agreed', 5000)
    expect(reopened.counts('p901').agreed).toBe(0)
    expect(reopened.counts('p902').agreed).toBe(1)
    expect(reopened.counts('p0').agreed).toBe(1001)
  })

  it('never trusts a damaged file and replaces it', async () => {
    for (const [content, problem] of [
      ['{"version":1,"peers":[{"peer":"a","counts":{"agreed":5},"streak":5,"lastBadMs":0', 'malformed'],
      [
        JSON.stringify({ version: 1, peers: [{ peer: 'a', counts: { agreed: -3 }, streak: 0 }] }),
        'malformed',
      ],
      [
        JSON.stringify({
          version: 1,
          peers: [{ peer: 'a', counts: { agreed: 5, lied: 'x' }, streak: 5, lastBadMs: 0, lastSeenMs: 1 }],
        }),
        'malformed',
      ],
      [JSON.stringify({ version: 2, peers: [] }), 'malformed'],
    ] as const) {
      const path = await bookPath()
      await writeFile(path, content)
      const book = await ReputationBook.open(path)
      expect(book.fileProblem).toBe(problem)
      expect(book.size).toBe(0)
      expect(book.score('a')).toBe(NEUTRAL_SCORE)
      // replaced at once with an empty, valid book
      expect(JSON.parse(await readFile(path, 'utf8'))).toEqual({ version: 1, peers: [] })
    }
    const path = await bookPath()
    await writeFile(path, ' '.repeat(REPUTATION_FILE_BYTES_MAX + 1))
    expect((await ReputationBook.open(path)).fileProblem).toBe('oversized')
    // more peers than the cap is also refused
    const small = await bookPath()
    const many = await ReputationBook.open(small)
    for (let i = 0; i < 20; i++) many.record(`p${i}`, 'agreed', i)
    await many.flush()
    expect((await ReputationBook.open(small, { maxPeers: 10 })).fileProblem).toBe('malformed')
  })

  it('replicates more for newcomers and recent disagreement, less for a long clean record', async () => {
    const day = 24 * 3_600_000
    const book = await ReputationBook.open(await bookPath())
    const t0 = 10 * day
    for (let i = 0; i < TRUSTED_STREAK_DEFAULT; i++) {
      book.record('veteran', 'agreed', t0)
      book.record('veteran2', 'agreed', t0)
    }
    book.record('almost', 'agreed', t0)
    expect(book.replicasFor(['veteran', 'veteran2'], 3, t0)).toBe(2)
    // never under 2 (one result and one check) unless the base itself is 1
    expect(book.replicasFor(['veteran', 'veteran2'], 2, t0)).toBe(2)
    expect(book.replicasFor(['veteran'], 1, t0)).toBe(1)
    // a newcomer in the set: one more
    expect(book.replicasFor(['veteran', 'stranger'], 3, t0)).toBe(4)
    expect(book.replicasFor(['veteran', 'almost'], 2, t0)).toBe(3)
    expect(book.replicasFor([], 3, t0)).toBe(3)
    // a recent disagreement: one more, even after the streak is rebuilt, until it is old enough
    book.record('veteran2', 'disagreed', t0)
    for (let i = 0; i < 3 * TRUSTED_STREAK_DEFAULT; i++) book.record('veteran2', 'agreed', t0 + 1)
    expect(book.cleanStreak('veteran2')).toBe(3 * TRUSTED_STREAK_DEFAULT)
    expect(book.replicasFor(['veteran', 'veteran2'], 3, t0 + day - 1)).toBe(4)
    expect(book.replicasFor(['veteran', 'veteran2'], 3, t0 + day)).toBe(2)
    // a liar's score stays under the trusted bar despite a streak
    book.record('liar', 'lied', 0)
    book.record('liar', 'lied', 0)
    for (let i = 0; i < TRUSTED_STREAK_DEFAULT; i++) book.record('liar', 'agreed', 0)
    expect(book.score('liar')).toBeLessThan(0.8)
    expect(book.replicasFor(['veteran', 'liar'], 3, t0 + 2 * day)).toBe(4)
    await book.flush()
  })
})
