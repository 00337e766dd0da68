/**
 * What a submitter believes of the per-member counts its training groups report (MemberCounts in each
 * GroupProgress). The counts live in the group's replicated state, so every honest member reports the
 * same; a member's own distrust of a peer is its own view. A figure is believed only as far as a
 * majority of the group's members report at least it, so one lying reporter can neither frame an honest
 * member nor hide a liar. Believed figures only grow; what grew since the last report is returned, for
 * the submitter to record as reputation events.
 *
 * ```ts
 * const tally = new GroupReports(group.members)
 * for (const news of tally.report(reporter, counts)) book.record(news.member, 'rejected') // x news.rejected
 * ```
 */

/** One member's counts as one reporter sees them. */
export interface MemberCountsView {
  /** gradients refused by screening */
  rejected: number
  /** steps with too low an agreement score */
  suspect: number
  /** the reporter distrusts the member (suspected, or caught in a lie) */
  distrusted: boolean
}

/** What a majority now agrees on beyond what it agreed on before. */
export interface ReportNews {
  member: string
  rejected: number
  suspect: number
  /** a majority distrusts the member, for the first time */
  distrusted: boolean
}

export class GroupReports {
  private readonly members: readonly string[]
  private readonly byReporter = new Map<string, Map<string, MemberCountsView>>()
  private readonly believed = new Map<string, MemberCountsView>()

  constructor(members: readonly string[]) {
    this.members = [...members]
  }

  /** Takes `reporter`'s latest view (reporters and members outside the group are ignored). */
  report(reporter: string, counts: ReadonlyMap<string, MemberCountsView>): ReportNews[] {
    if (!this.members.includes(reporter)) return []
    const view = new Map<string, MemberCountsView>()
    for (const [member, c] of counts) if (this.members.includes(member)) view.set(member, { ...c })
    this.byReporter.set(reporter, view)
    const majority = Math.floor(this.members.length / 2) + 1
    const news: ReportNews[] = []
    for (const member of this.members) {
      const views = [...this.byReporter.values()].map((m) => m.get(member)).filter((v) => v !== undefined)
      if (views.length < majority) continue
      // the largest figure that at least `majority` reporters report (or exceed)
      const agreed = (field: 'rejected' | 'suspect') =>
        views.map((v) => v[field]).sort((a, b) => b - a)[majority - 1]
      const before = this.believed.get(member) ?? { rejected: 0, suspect: 0, distrusted: false }
      const now = {
        rejected: Math.max(before.rejected, agreed('rejected')),
        suspect: Math.max(before.suspect, agreed('suspect')),
        distrusted: before.distrusted || views.filter((v) => v.distrusted).length >= majority,
      }
      this.believed.set(member, now)
      const item = {
        member,
        rejected: now.rejected - before.rejected,
        suspect: now.suspect - before.suspect,
        distrusted: now.distrusted && !before.distrusted,
      }
      if (item.rejected > 0 || item.suspect > 0 || item.distrusted) news.push(item)
    }
    return news
  }
}
