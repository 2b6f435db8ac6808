/**
 * Draws the benchmark as a grouped bar chart in plain SVG (no dependency): one group per
 * environment and distance, one bar per pattern, p50 on a log scale so a 1 ms warm query and a
 * 60 ms connect are both readable.
 */
export interface ChartRow {
  group: string
  pattern: string
  p50: number
}

const COLORS: Record<string, string> = {}
const PALETTE = ['#d1495b', '#edae49', '#00798c', '#30638e', '#66a182', '#8d6a9f', '#003d5b', '#c98b5b', '#7a7a7a']

export function chart(rows: ChartRow[], title: string): string {
  const groups = [...new Set(rows.map((r) => r.group))]
  const patterns = [...new Set(rows.map((r) => r.pattern))]
  patterns.forEach((p, i) => (COLORS[p] = PALETTE[i % PALETTE.length]!))
  const bar = 14
  const gap = 18
  // Each group is as wide as the patterns it has, so the Workers groups are not pushed aside.
  const inGroup = (g: string) => patterns.filter((p) => rows.some((r) => r.group === g && r.pattern === p))
  const groupWidth = Math.max(...groups.map((g) => inGroup(g).length)) * bar + gap
  const left = 60
  const top = 40
  const height = 260
  const width = left + groups.length * groupWidth + 200
  const max = Math.max(...rows.map((r) => r.p50), 1) * 1.2
  const min = 0.1
  const y = (v: number) => top + height - (height * Math.log10(Math.max(v, min) / min)) / Math.log10(max / min)
  const out: string[] = []
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${top + height + 90}" font-family="sans-serif" font-size="11">`)
  out.push(`<rect width="100%" height="100%" fill="white"/>`)
  out.push(`<text x="${left}" y="20" font-size="14" font-weight="bold">${escape(title)}</text>`)
  for (const tick of [0.1, 1, 10, 100, 1000].filter((t) => t <= max * 1.5)) {
    out.push(`<line x1="${left}" x2="${left + groups.length * groupWidth}" y1="${y(tick)}" y2="${y(tick)}" stroke="#ddd"/>`)
    out.push(`<text x="${left - 6}" y="${y(tick) + 4}" text-anchor="end">${tick} ms</text>`)
  }
  groups.forEach((g, gi) => {
    const x0 = left + gi * groupWidth + gap / 2
    const present = inGroup(g)
    present.forEach((p, pi) => {
      const row = rows.find((r) => r.group === g && r.pattern === p)!
      const x = x0 + pi * bar
      out.push(`<rect x="${x}" y="${y(row.p50)}" width="${bar - 2}" height="${top + height - y(row.p50)}" fill="${COLORS[p]}"><title>${escape(`${g} ${p}: ${row.p50.toFixed(2)} ms`)}</title></rect>`)
    })
    const lines = g.split(' / ')
    lines.forEach((line, li) => out.push(`<text x="${x0 + (present.length * bar) / 2}" y="${top + height + 16 + li * 13}" text-anchor="middle">${escape(line)}</text>`))
  })
  patterns.forEach((p, i) => {
    const lx = left + groups.length * groupWidth + 16
    out.push(`<rect x="${lx}" y="${top + i * 18}" width="12" height="12" fill="${COLORS[p]}"/>`)
    out.push(`<text x="${lx + 18}" y="${top + i * 18 + 10}">${escape(p)}</text>`)
  })
  out.push(`<text x="${left}" y="${top + height + 70}" fill="#555">p50 per invocation, log scale; lower is better</text>`)
  out.push('</svg>')
  return out.join('\n')
}

function escape(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
}
