// Proves the submitter believes a group's member counts only as far as a majority of the group reports
// them: one lying reporter can neither frame an honest member nor hide a liar, and what a majority agrees
// on is reported once, as it grows.
import { describe, expect, it } from 'vitest'
import { GroupReports, type MemberCountsView } from '../../../protocols/tasks/reports.js'

const view = (entries: Record<string, Partial<MemberCountsView>>) =>
  new Map(
    Object.entries(entries).map(([member, c]) => [
      member,
      { rejected: 0, suspect: 0, distrusted: false, ...c },
    ]),
  )

describe('group reports', () => {
  it('takes a figure once a majority reports at least it', () => {
    const tally = new GroupReports(['a', 'b', 'c'])
    expect(tally.report('a', view({ c: { rejected: 4, suspect: 2 } }))).toEqual([])
    // two of three agree on at least 3 rejected and 2 suspect
    expect(tally.report('b', view({ c: { rejected: 3, suspect: 2 } }))).toEqual([
      { member: 'c', rejected: 3, suspect: 2, distrusted: false },
    ])
    // the same again: nothing new
    expect(tally.report('b', view({ c: { rejected: 3, suspect: 2 } }))).toEqual([])
    // it grows: only the difference
    expect(tally.report('b', view({ c: { rejected: 5, suspect: 2 } }))).toEqual([
      { member: 'c', rejected: 1, suspect: 0, distrusted: false },
    ])
  })

  it('does not let one liar frame an honest member or clear a distrusted one', () => {
    const tally = new GroupReports(['a', 'b', 'c'])
    // c lies about a
    expect(tally.report('c', view({ a: { rejected: 99, distrusted: true } }))).toEqual([])
    expect(tally.report('a', view({ a: {}, c: { distrusted: true } }))).toEqual([])
    // b agrees with a about c, not with c about a
    expect(tally.report('b', view({ a: {}, c: { distrusted: true } }))).toEqual([
      { member: 'c', rejected: 0, suspect: 0, distrusted: true },
    ])
    // c reports itself clean: what a majority said stands, and is not reported twice
    expect(tally.report('c', view({ a: { rejected: 99, distrusted: true }, c: {} }))).toEqual([])
  })

  it('ignores reporters and members outside the group', () => {
    const tally = new GroupReports(['a', 'b', 'c'])
    expect(tally.report('x', view({ a: { rejected: 9 } }))).toEqual([])
    expect(tally.report('a', view({ x: { rejected: 9 } }))).toEqual([])
    expect(tally.report('b', view({ x: { rejected: 9 } }))).toEqual([])
  })
})
