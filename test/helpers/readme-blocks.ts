/**
 * The TypeScript and JavaScript examples of README.md, as test/readme.test.ts checks them. Every
 * fenced block whose language is ts, typescript, js, javascript, mts or mjs is one example; a
 * block added to the README is picked up without editing the test.
 *
 * A block that is deliberately partial says so in its first line, for the reader as much as for
 * the test: `// You fill in: \`Name\` (what it is), \`./module.js\` (where it comes from)`. The
 * back-quoted names outside parentheses are what the reader supplies; the test then accepts exactly "cannot find name
 * / module" for those names and checks everything else in the block.
 *
 * Where a block runs comes from what it uses: `warmconn/workers`, `ExecutionContext` or a
 * Cloudflare type means Workers; `Bun.` means Bun; `Deno.` or an `npm:` import means Deno;
 * anything else is Node.
 * @module
 */

export type BlockRuntime = 'node' | 'workers' | 'bun' | 'deno'

export interface ReadmeBlock {
  /** 1-based line of the opening fence in README.md. */
  line: number
  /** The nearest heading above it. */
  heading: string
  lang: string
  code: string
  runtime: BlockRuntime
  /** What the reader fills in (names and module specifiers), from the block's first line. */
  fillIns: string[]
  /** Bare package names the block imports (`drizzle-orm`, `warmconn`, `@vercel/functions`). */
  packages: string[]
  /** A file-name-safe label from its heading, numbered when a heading has several: `ten-lines`, `bun-2`. */
  id: string
}

const LANGS = new Set(['ts', 'typescript', 'js', 'javascript', 'mts', 'mjs'])
export const FILL_IN_MARK = '// You fill in:'

export function readmeBlocks(markdown: string): ReadmeBlock[] {
  const lines = markdown.split('\n')
  const blocks: ReadmeBlock[] = []
  const seen = new Map<string, number>()
  let heading = ''
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!
    const h = /^#{1,6}\s+(.*)$/.exec(line)
    if (h) heading = h[1]!.trim()
    const fence = /^(`{3,}|~{3,})\s*([\w-]*)/.exec(line)
    if (!fence) continue
    const close = fence[1]!
    const lang = fence[2]!.toLowerCase()
    let end = i + 1
    while (end < lines.length && !lines[end]!.startsWith(close)) end++
    const code = lines.slice(i + 1, end).join('\n') + '\n'
    if (LANGS.has(lang)) {
      const first = code.split('\n', 1)[0]!
      // The names are the back-quoted words outside parentheses; what is in them explains.
      const named = first.slice(FILL_IN_MARK.length).replace(/\([^)]*\)/g, '')
      const fillIns = first.startsWith(FILL_IN_MARK) ? [...named.matchAll(/`([^`]+)`/g)].map((m) => m[1]!) : []
      const slug = heading.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '').slice(0, 40) || 'top'
      const n = (seen.get(slug) ?? 0) + 1
      seen.set(slug, n)
      blocks.push({ line: i + 1, heading, lang, code, runtime: runtimeOf(code), fillIns, packages: importedPackages(code), id: n === 1 ? slug : `${slug}-${n}` })
    }
    i = end
  }
  return blocks
}

function runtimeOf(code: string): BlockRuntime {
  if (/from ['"]warmconn\/workers['"]|\bExecutionContext\b|@cloudflare\/workers-types|cloudflare:workers/.test(code)) return 'workers'
  if (/\bBun\./.test(code)) return 'bun'
  if (/\bDeno\./.test(code) || /from ['"]npm:/.test(code)) return 'deno'
  return 'node'
}

/** Package names of the bare specifiers a block imports (relative imports and node: builtins left out). */
export function importedPackages(code: string): string[] {
  const names = new Set<string>()
  for (const m of code.matchAll(/(?:^|\n)\s*(?:import|export)\s[^'"]*?from\s+['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g)) {
    let spec = (m[1] ?? m[2])!
    if (spec.startsWith('npm:')) spec = spec.slice(4)
    if (spec.startsWith('.') || spec.startsWith('/') || spec.startsWith('node:') || spec.startsWith('cloudflare:')) continue
    const parts = spec.split('/')
    names.add(spec.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0]!)
  }
  return [...names]
}
