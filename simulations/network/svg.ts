// Hand-written SVG charts (line, step-CDF, bar, scatter) with axes, ticks, labels, a title and a
// legend: small, dependency-free and byte-for-byte deterministic (numbers are printed with fixed
// precision), which a plotting library's output is not guaranteed to be.

export interface Series {
  name: string
  points: [number, number][]
}

export interface ChartOptions {
  title: string
  xLabel: string
  yLabel: string
  /** Start the y axis at zero. @default true */
  yFromZero?: boolean
  xMin?: number
  xMax?: number
  yMax?: number
  /** Log10 x axis (values must be positive). */
  xLog?: boolean
}

const WIDTH = 760
const HEIGHT = 440
const MARGIN = { left: 78, right: 170, top: 46, bottom: 58 }
const COLORS = [
  '#1f77b4',
  '#ff7f0e',
  '#2ca02c',
  '#d62728',
  '#9467bd',
  '#8c564b',
  '#e377c2',
  '#7f7f7f',
  '#bcbd22',
  '#17becf',
  '#393b79',
  '#637939',
]
/** Series drawn in one chart at most (legend space). */
export const CHART_SERIES_MAX = 12

function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
}

function fmt(value: number): string {
  return (Math.round(value * 100) / 100).toString()
}

/** About `count` round tick values covering [min, max]. */
export function niceTicks(min: number, max: number, count = 6): number[] {
  if (!(max > min)) return [min]
  const raw = (max - min) / count
  const magnitude = 10 ** Math.floor(Math.log10(raw))
  const step = [1, 2, 2.5, 5, 10].map((m) => m * magnitude).find((s) => s >= raw) ?? 10 * magnitude
  const ticks: number[] = []
  for (let v = Math.ceil(min / step) * step; v <= max + step * 1e-9; v += step)
    ticks.push(Math.round(v / step) * step)
  return ticks
}

function tickLabel(value: number): string {
  const abs = Math.abs(value)
  if (abs >= 1e9) return `${fmt(value / 1e9)}G`
  if (abs >= 1e6) return `${fmt(value / 1e6)}M`
  if (abs >= 1e4) return `${fmt(value / 1e3)}k`
  return fmt(value)
}

interface Frame {
  x: (v: number) => number
  y: (v: number) => number
  parts: string[]
}

function frame(options: ChartOptions, xs: number[], ys: number[]): Frame {
  const plotW = WIDTH - MARGIN.left - MARGIN.right
  const plotH = HEIGHT - MARGIN.top - MARGIN.bottom
  const log = options.xLog === true
  const tx = (v: number) => (log ? Math.log10(Math.max(v, 1e-9)) : v)
  let xMin = options.xMin ?? Math.min(...xs.map(tx))
  let xMax = options.xMax ?? Math.max(...xs.map(tx))
  if (options.xMin !== undefined && log) xMin = tx(options.xMin)
  if (options.xMax !== undefined && log) xMax = tx(options.xMax)
  if (!(xMax > xMin)) xMax = xMin + 1
  let yMin = options.yFromZero === false ? Math.min(...ys) : 0
  let yMax = options.yMax ?? Math.max(...ys)
  if (!Number.isFinite(yMin)) yMin = 0
  if (!(yMax > yMin)) yMax = yMin + 1
  const yTicks = niceTicks(yMin, yMax)
  yMax = Math.max(yMax, yTicks[yTicks.length - 1])
  const x = (v: number) => MARGIN.left + ((tx(v) - xMin) / (xMax - xMin)) * plotW
  const y = (v: number) => MARGIN.top + plotH - ((v - yMin) / (yMax - yMin)) * plotH
  const parts: string[] = []
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" viewBox="0 0 ${WIDTH} ` +
      `${HEIGHT}" font-family="sans-serif" font-size="12">`,
  )
  parts.push(`<rect width="${WIDTH}" height="${HEIGHT}" fill="white"/>`)
  parts.push(
    `<text x="${MARGIN.left + plotW / 2}" y="24" text-anchor="middle" font-size="16" ` +
      `font-weight="bold">${escapeXml(options.title)}</text>`,
  )
  for (const tick of yTicks) {
    const py = fmt(y(tick))
    parts.push(
      `<line x1="${MARGIN.left}" x2="${MARGIN.left + plotW}" y1="${py}" y2="${py}" stroke="#e5e5e5"/>`,
    )
    parts.push(
      `<text x="${MARGIN.left - 6}" y="${py}" text-anchor="end" ` +
        `dominant-baseline="middle">${tickLabel(tick)}</text>`,
    )
  }
  const xTicks = log
    ? niceTicks(Math.floor(xMin), Math.ceil(xMax), Math.ceil(xMax) - Math.floor(xMin)).filter(
        (t) => t >= xMin && t <= xMax,
      )
    : niceTicks(xMin, xMax)
  for (const tick of xTicks) {
    const value = log ? 10 ** tick : tick
    const px = fmt(x(value))
    parts.push(`<line x1="${px}" x2="${px}" y1="${MARGIN.top}" y2="${MARGIN.top + plotH}" stroke="#f0f0f0"/>`)
    parts.push(
      `<text x="${px}" y="${MARGIN.top + plotH + 18}" text-anchor="middle">${tickLabel(value)}</text>`,
    )
  }
  parts.push(
    `<rect x="${MARGIN.left}" y="${MARGIN.top}" width="${plotW}" height="${plotH}" fill="none" ` +
      `stroke="#333"/>`,
  )
  parts.push(
    `<text x="${MARGIN.left + plotW / 2}" y="${HEIGHT - 14}" text-anchor="middle" ` +
      `font-size="13">${escapeXml(options.xLabel)}</text>`,
  )
  parts.push(
    `<text transform="translate(18 ${MARGIN.top + plotH / 2}) rotate(-90)" text-anchor="middle" ` +
      `font-size="13">${escapeXml(options.yLabel)}</text>`,
  )
  return { x, y, parts }
}

function legend(parts: string[], names: string[]): void {
  names.slice(0, CHART_SERIES_MAX).forEach((name, i) => {
    const ly = MARGIN.top + 10 + i * 18
    const lx = WIDTH - MARGIN.right + 14
    parts.push(`<rect x="${lx}" y="${ly - 6}" width="14" height="4" fill="${COLORS[i % COLORS.length]}"/>`)
    parts.push(`<text x="${lx + 20}" y="${ly}" dominant-baseline="middle">${escapeXml(name)}</text>`)
  })
}

function empty(options: ChartOptions): string {
  const f = frame(options, [0, 1], [0, 1])
  f.parts.push(
    `<text x="${WIDTH / 2}" y="${HEIGHT / 2}" text-anchor="middle" fill="#888">no data in this run</text>`,
  )
  return `${f.parts.join('\n')}\n</svg>\n`
}

/** Lines through each series' points (sorted by x). `step` draws a staircase (CDFs). */
export function lineChart(options: ChartOptions, series: Series[], step = false): string {
  const shown = series.slice(0, CHART_SERIES_MAX).filter((s) => s.points.length > 0)
  const xs = shown.flatMap((s) => s.points.map((p) => p[0]))
  const ys = shown.flatMap((s) => s.points.map((p) => p[1]))
  if (xs.length === 0) return empty(options)
  const f = frame(options, xs, ys)
  shown.forEach((s, i) => {
    let d = ''
    let previousY: number | undefined
    for (const [px, py] of s.points) {
      const sx = fmt(f.x(px))
      const sy = fmt(f.y(py))
      if (d === '') d = `M${sx},${sy}`
      else if (step && previousY !== undefined) d += ` L${sx},${fmt(f.y(previousY))} L${sx},${sy}`
      else d += ` L${sx},${sy}`
      previousY = py
    }
    f.parts.push(`<path d="${d}" fill="none" stroke="${COLORS[i % COLORS.length]}" stroke-width="2"/>`)
  })
  if (shown.length > 1 || shown[0].name !== '')
    legend(
      f.parts,
      shown.map((s) => s.name),
    )
  return `${f.parts.join('\n')}\n</svg>\n`
}

/** Vertical bars at category positions, labelled below. */
export function barChart(options: ChartOptions, bars: { label: string; value: number }[]): string {
  if (bars.length === 0) return empty(options)
  const f = frame(
    { ...options, xMin: -0.5, xMax: bars.length - 0.5 },
    [0],
    bars.map((b) => b.value),
  )
  // frame() drew numeric x ticks: replace with category labels
  const kept = f.parts.filter(
    (part) =>
      !(part.includes('text-anchor="middle">') && part.includes(`y="${HEIGHT - MARGIN.bottom + 18}"`)),
  )
  const width = ((WIDTH - MARGIN.left - MARGIN.right) / bars.length) * 0.7
  bars.forEach((bar, i) => {
    const cx = f.x(i)
    const top = f.y(bar.value)
    const bottom = f.y(0)
    kept.push(
      `<rect x="${fmt(cx - width / 2)}" y="${fmt(top)}" width="${fmt(width)}" ` +
        `height="${fmt(bottom - top)}" fill="${COLORS[0]}"/>`,
    )
    kept.push(
      `<text x="${fmt(cx)}" y="${HEIGHT - MARGIN.bottom + 18}" ` +
        `text-anchor="middle">${escapeXml(bar.label)}</text>`,
    )
    if (bar.value > 0)
      kept.push(
        `<text x="${fmt(cx)}" y="${fmt(top - 4)}" text-anchor="middle" ` +
          `font-size="10">${tickLabel(bar.value)}</text>`,
      )
  })
  return `${kept.join('\n')}\n</svg>\n`
}

/** Dots, one series per colour. */
export function scatterChart(options: ChartOptions, series: Series[]): string {
  const shown = series.filter((s) => s.points.length > 0)
  const xs = shown.flatMap((s) => s.points.map((p) => p[0]))
  const ys = shown.flatMap((s) => s.points.map((p) => p[1]))
  if (xs.length === 0) return empty(options)
  const f = frame(
    { ...options, xMin: options.xMin ?? Math.min(0, ...xs), xMax: options.xMax ?? Math.max(1, ...xs) },
    xs,
    ys,
  )
  shown.forEach((s, i) => {
    for (const [px, py] of s.points) {
      f.parts.push(
        `<circle cx="${fmt(f.x(px))}" cy="${fmt(f.y(py))}" r="3.5" fill="${COLORS[i % COLORS.length]}" ` +
          `fill-opacity="0.7"/>`,
      )
    }
  })
  legend(
    f.parts,
    shown.map((s) => s.name),
  )
  return `${f.parts.join('\n')}\n</svg>\n`
}
