/**
 * The README is true as pasted. Every TypeScript/JavaScript block of README.md
 * (test/helpers/readme-blocks.ts finds them, so a new block is covered without editing this file)
 * is written, unchanged, into an application folder that has warmconn installed from its packed
 * tarball (test/harness/packed.ts) and the packages the block imports linked from this project,
 * and type-checked there with `tsc --strict` as a user's project would:
 *   Node blocks     @types/node, NodeNext modules
 *   Workers blocks  @cloudflare/workers-types as the global types, no Node types
 *   Bun, Deno       @types/node plus the few runtime globals the examples call (BUN_DENO_GLOBALS;
 *                   the runtimes' own types are not installed here); Deno's `npm:x` is `x`
 * A block marked partial (`// You fill in: ...`) may miss exactly the names it lists, nothing else;
 * where the test can supply a fill-in as the reader would (PROVIDED: Prisma's generated client),
 * it does, and the block is then checked and run in full.
 * The Workers blocks run in Miniflare (workerd), bundled from the application folder as wrangler
 * would, with the bindings they name (DATABASE_URL, the WARMCONN Durable Object, HYPERDRIVE): one
 * request must answer 200 from PostgreSQL.
 * The Bun and Deno blocks (servers) run, as pasted, in Bun and Deno from .ci/runtimes (skipped
 * with a note without them, a failure on CI): one request must answer from PostgreSQL, and on
 * SIGTERM the Bun one, which closes its server and calls closeAll(), must exit by itself.
 * Then every complete Node block runs in a child Node process of its own against the test
 * PostgreSQL (DATABASE_URL): its top-level code, then what EXERCISES calls of its exports (a
 * query that must return the table's row), then `closeAll()`: it must end with code 0, nothing
 * on stderr, and the process must exit by itself.
 */
import { execFileSync, spawn } from 'node:child_process'
import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { packAndInstall, ROOT, type Packed } from './harness/packed.js'
import { startPostgres, type TestPg } from './harness/pg.js'
import { freePort } from './harness/ports.js'
import { runtime, runtimeRequirement } from './harness/runtimes.js'
import { requires } from './helpers/requires.js'
import { eventually } from './helpers/core.js'
import { startWorker } from './harness/worker.js'
import { readmeBlocks, type BlockRuntime, type ReadmeBlock } from './helpers/readme-blocks.js'

const blocks = readmeBlocks(readFileSync(join(ROOT, 'README.md'), 'utf8'))
/** Types a user installs beside the packages (the README says which: @types/aws-lambda, @cloudflare/workers-types...). */
const TYPE_PACKAGES = ['@types/node', '@types/pg', '@types/ws', '@types/aws-lambda', '@cloudflare/workers-types']
const TSC = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc')
/**
 * What a run does with a block's exports after loading it, for the blocks that export something
 * to call (by block id; a block without an entry is loaded, which runs its top-level code, and
 * closed). Each prints what it got; the users table holds one row, Ada.
 */
const EXERCISES: Record<string, string> = {
  'ten-lines': 'console.log(JSON.stringify(await m.handler({ id: 1 })))',
  // The handler's own query (select now()) answered: a 200 with its rows.
  'aws-lambda': "console.log(JSON.stringify(await m.handler({ rawPath: '/' }, {})))",
  'node-postgres-pg': 'console.log(JSON.stringify(await m.user(1)))',
  drizzle: "const { sql } = await import('drizzle-orm'); console.log(JSON.stringify(await m.db.execute(sql`select name from users where id = 1`)))",
  kysely: "console.log(JSON.stringify(await m.db.selectFrom('users').select('name').execute())); await m.db.destroy()",
  prisma: 'console.log(JSON.stringify(await m.prisma.user.findMany())); await m.prisma.$disconnect()',
}
const EXPECTED_OUTPUT: Record<string, string> = { 'ten-lines': 'Ada', 'aws-lambda': '"statusCode":200,"body":"{\\"path\\":\\"/\\",\\"rows\\":[{\\"now\\"', 'node-postgres-pg': 'Ada', drizzle: 'Ada', kysely: 'Ada', prisma: 'Ada' }
/** From SIGTERM to the Bun example's exit (server.stop(), closeAll(), then nothing left). */
const BUN_EXIT_BOUND_MS = 2_000
/** A hang detector for one block's run, not a speed figure. */
const RUN_TIMEOUT_MS = 30_000

const BUN_DENO_GLOBALS = `
declare namespace Bun {
  interface Server { stop(closeActiveConnections?: boolean): Promise<void> }
  function serve(options: { port?: number; fetch(request: Request): Response | Promise<Response> }): Server
}
declare namespace Deno {
  const env: { get(key: string): string | undefined }
  function serve(handler: (request: Request) => Response | Promise<Response>): unknown
}
`

/**
 * Fill-ins the test can supply the way the reader would, so that the block is checked and run in
 * full: Prisma's generated client, from a schema for the users table, by the project's own
 * `prisma generate` (offline, as test/orm/prisma-client.ts runs it). Keyed by the fill-in's name;
 * `dir` is the folder of the block's file.
 */
const PROVIDED: Record<string, (dir: string) => void> = {
  './generated/prisma/client.js': (dir) => {
    const work = join(dir, '.prisma-schema')
    mkdirSync(work, { recursive: true })
    const schema = join(work, 'schema.prisma')
    writeFileSync(
      schema,
      `generator client {\n  provider = "prisma-client"\n  output = "${join(dir, 'generated', 'prisma')}"\n  moduleFormat = "esm"\n  importFileExtension = "js"\n}\n` +
        `datasource db {\n  provider = "postgresql"\n}\n` +
        `model User {\n  id   Int    @id\n  name String\n  @@map("users")\n}\n`,
    )
    // The CLI would download a schema engine it does not need for `generate` unless one is named.
    const engineStub = join(work, 'schema-engine-stub')
    writeFileSync(engineStub, '#!/bin/sh\nexit 1\n', { mode: 0o755 })
    execFileSync(process.execPath, [join(ROOT, 'node_modules', 'prisma', 'build', 'index.js'), 'generate', '--schema', schema], {
      cwd: packed.app,
      env: { ...process.env, PRISMA_SCHEMA_ENGINE_BINARY: engineStub, PRISMA_ENGINES_CHECKSUM_IGNORE_MISSING: '1', PRISMA_HIDE_UPDATE_MESSAGE: '1', CHECKPOINT_DISABLE: '1' },
      stdio: 'pipe',
      timeout: 60_000,
    })
  },
}
const PROVIDED_PACKAGES = ['@prisma/client']

const COMMON = { strict: true, target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', skipLibCheck: true, esModuleInterop: true, noEmit: true }
const CONFIGS: Record<BlockRuntime, Record<string, unknown>> = {
  node: { ...COMMON, lib: ['ES2023'], types: ['node'], noEmit: false, outDir: 'out/node', rootDir: 'blocks/node' },
  workers: { ...COMMON, lib: ['ES2023'], types: ['@cloudflare/workers-types'] },
  bun: { ...COMMON, lib: ['ES2023', 'DOM'], types: ['node'] },
  deno: { ...COMMON, lib: ['ES2023', 'DOM'], types: ['node'] },
}

let packed: Packed
let pg: TestPg
/** tsc's diagnostics per block id; and those in no block's file (a .d.ts of warmconn or a peer). */
const diagnostics = new Map<string, string[]>()
const elsewhere: string[] = []

beforeAll(async () => {
  const wanted = new Set([...blocks.flatMap((b) => b.packages), ...TYPE_PACKAGES, ...PROVIDED_PACKAGES])
  wanted.delete('warmconn')
  packed = packAndInstall([...wanted])
  // A package that ships no code of its own for types (`aws-lambda`) is its @types package.
  const typesOf = (name: string) => `@types/${name.startsWith('@') ? name.slice(1).replace('/', '__') : name}`
  const missing = [...wanted].filter((name) => !packed.link(name) && !packed.link(typesOf(name)))
  if (missing.length > 0) throw new Error(`README examples import packages this project does not install: ${missing.join(', ')}`)
  for (const runtime of Object.keys(CONFIGS) as BlockRuntime[]) {
    const mine = blocks.filter((b) => b.runtime === runtime)
    if (mine.length === 0) continue
    const dir = join(packed.app, 'blocks', runtime)
    mkdirSync(dir, { recursive: true })
    for (const block of mine) writeFileSync(join(dir, `${block.id}.ts`), runtime === 'deno' ? block.code.replace(/(from\s+['"])npm:/g, '$1') : block.code)
    const files = mine.map((b) => `blocks/${runtime}/${b.id}.ts`)
    for (const name of new Set(mine.flatMap((b) => b.fillIns))) PROVIDED[name]?.(dir)
    // The README says a Workers block's types may equally be the globals (`wrangler types`): the same block without its type import.
    for (const block of mine.filter(hasTypeImport)) {
      writeFileSync(join(dir, `${block.id}--global-types.ts`), block.code.replace(TYPE_IMPORT, ''))
      files.push(`blocks/${runtime}/${block.id}--global-types.ts`)
    }
    if (runtime === 'bun' || runtime === 'deno') {
      writeFileSync(join(packed.app, 'blocks', `${runtime}-globals.d.ts`), BUN_DENO_GLOBALS)
      files.push(`blocks/${runtime}-globals.d.ts`)
    }
    writeFileSync(join(packed.app, `tsconfig.${runtime}.json`), JSON.stringify({ compilerOptions: CONFIGS[runtime], files }, null, 2))
    for (const line of tsc(`tsconfig.${runtime}.json`)) {
      const file = /^blocks\/\w+\/([\w-]+)\.ts\(/.exec(line)?.[1]
      if (file) diagnostics.set(file, [...(diagnostics.get(file) ?? []), line])
      else elsewhere.push(`${runtime}: ${line}`)
    }
  }
  pg = await startPostgres()
  await pg.admin`create table users (id int primary key, name text not null)`
  await pg.admin`insert into users values (1, 'Ada')`
  await pg.admin`grant all on users to app`
}, 240_000)

afterAll(async () => {
  await pg?.stop()
  packed?.remove()
})

/** tsc's error lines (continuation lines joined), empty when it passes. */
function tsc(config: string): string[] {
  try {
    execFileSync(process.execPath, [TSC, '-p', config, '--pretty', 'false'], { cwd: packed.app, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
    return []
  } catch (error) {
    const out = String((error as { stdout?: unknown }).stdout ?? '') + String((error as { stderr?: unknown }).stderr ?? '')
    return out.split(/\n(?=\S)/).map((l) => l.trim()).filter(Boolean)
  }
}

/** A diagnostic a partial block is allowed: a name or module it says the reader fills in is missing. */
function isFillIn(block: ReadmeBlock, line: string): boolean {
  if (block.fillIns.every((name) => name in PROVIDED)) return false
  if (!/error TS(2304|2307|2552|2503|2580|2792):/.test(line)) return false
  return block.fillIns.some((name) => line.includes(`'${name}'`) || line.includes(`"${name}"`))
}

const TYPE_IMPORT = /^import type \{[^}]*\} from '@cloudflare\/workers-types'\n/m
function hasTypeImport(block: ReadmeBlock): boolean {
  return block.runtime === 'workers' && TYPE_IMPORT.test(block.code)
}

/** Complete as pasted, or completed with what PROVIDED supplies. */
function complete(block: ReadmeBlock): boolean {
  return block.fillIns.every((name) => name in PROVIDED)
}

function runnable(block: ReadmeBlock): boolean {
  return block.runtime === 'node' && complete(block)
}

describe('README.md examples', () => {
  it('has examples, and warmconn\'s own type declarations and the linked packages type-check under --strict (no diagnostic outside the examples)', () => {
    expect(blocks.length).toBeGreaterThanOrEqual(10)
    expect(elsewhere).toEqual([])
    // An exercise for a block that is gone or renamed would silently stop running.
    expect(Object.keys(EXERCISES).filter((id) => !blocks.some((b) => b.id === id && runnable(b)))).toEqual([])
  })

  it.each(blocks.map((b) => [`${b.id} (line ${b.line}, ${b.runtime}${b.fillIns.length > 0 ? `, reader fills in ${b.fillIns.join(', ')}` : ''})`, b] as const))(
    '%s: type-checks under --strict as pasted',
    (_, block) => {
      const errors = diagnostics.get(block.id) ?? []
      expect(errors.filter((line) => !isFillIn(block, line))).toEqual([])
      // A fill-in the block no longer needs is a stale mark: the reader would look for it in vain.
      for (const name of block.fillIns.filter((n) => !(n in PROVIDED))) expect(errors.some((line) => line.includes(`'${name}'`) || line.includes(`"${name}"`)), `fill-in ${name} is not missing`).toBe(true)
    },
  )

  it.each(blocks.filter(hasTypeImport).map((b) => [`${b.id} (line ${b.line})`, b] as const))(
    '%s: type-checks as well with the global @cloudflare/workers-types names instead of its type import (an Env from wrangler types)',
    (_, block) => {
      expect(diagnostics.get(`${block.id}--global-types`) ?? []).toEqual([])
    },
  )

  it.each(blocks.filter(runnable).map((b) => [`${b.id} (line ${b.line})`, b] as const))(
    '%s: runs on Node against PostgreSQL, and the process ends by itself after closeAll()',
    async (_, block) => {
      expect(diagnostics.get(block.id) ?? []).toEqual([])
      const file = join(packed.app, 'out', 'node', `${block.id}.js`)
      const script = `const m = await import(${JSON.stringify(file)}); ${EXERCISES[block.id] ?? ''}; const { closeAll } = await import('warmconn'); await closeAll(); console.log('done')`
      const result = await new Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>((resolve, reject) => {
        const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
          cwd: packed.app,
          // The user's environment: a URL, nothing of the test run's.
          env: { PATH: process.env.PATH ?? '', HOME: packed.dir, DATABASE_URL: pg.appUrl },
          stdio: ['ignore', 'pipe', 'pipe'],
        })
        let stdout = ''
        let stderr = ''
        child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c))
        child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c))
        const hang = setTimeout(() => child.kill('SIGKILL'), RUN_TIMEOUT_MS)
        child.once('error', reject)
        child.once('exit', (code, signal) => {
          clearTimeout(hang)
          resolve({ code, signal, stdout, stderr })
        })
      })
      expect(result.stderr).toBe('')
      expect(result).toMatchObject({ code: 0, signal: null })
      expect(result.stdout).toContain('done')
      if (EXPECTED_OUTPUT[block.id]) expect(result.stdout).toContain(EXPECTED_OUTPUT[block.id])
    },
  )
})

/** How each other runtime runs a server block on a port of our choosing (PORT / DENO_SERVE_ADDRESS: the runtimes' own). */
const SERVERS = {
  bun: {
    command: (file: string): [string, string[]] => [runtime('bun').bin!, [file]],
    env: (port: number) => ({ PORT: String(port), BUN_RUNTIME_TRANSPILER_CACHE_PATH: '0' }),
  },
  deno: {
    // -A: network, environment and file reads; --no-lock: no deno.lock written. `npm:` resolves from node_modules.
    command: (file: string): [string, string[]] => [runtime('deno').bin!, ['run', '-A', '--no-lock', file]],
    env: (port: number) => ({ DENO_SERVE_ADDRESS: `tcp:127.0.0.1:${port}`, DENO_NO_UPDATE_CHECK: '1', DENO_NO_PROMPT: '1', DENO_DIR: join(packed.dir, 'deno-cache') }),
  },
} as const

for (const id of ['bun', 'deno'] as const) {
  describe(`README.md examples in ${runtime(id).label}`, requires(runtimeRequirement(id)), () => {
    it.each(blocks.filter((b) => b.runtime === id).map((b) => [`${b.id} (line ${b.line})`, b] as const))(
      '%s: serves a request from PostgreSQL, as pasted' + (id === 'bun' ? ', and exits by itself on SIGTERM' : ''),
      async (_, block) => {
        const file = join(packed.app, `${block.id}.ts`)
        writeFileSync(file, block.code)
        const port = await freePort()
        const child = spawn(SERVERS[id].command(file)[0], SERVERS[id].command(file)[1], {
          cwd: packed.app,
          env: { PATH: process.env.PATH ?? '', HOME: packed.dir, DATABASE_URL: pg.appUrl, ...SERVERS[id].env(port) },
          stdio: ['ignore', 'pipe', 'pipe'],
        })
        let output = ''
        child.stdout.setEncoding('utf8').on('data', (c: string) => (output += c))
        child.stderr.setEncoding('utf8').on('data', (c: string) => (output += c))
        const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })))
        const hang = setTimeout(() => child.kill('SIGKILL'), RUN_TIMEOUT_MS)
        try {
          let body: { now?: unknown } | undefined
          for (let i = 0; i < 200 && body === undefined && child.exitCode === null; i++) {
            body = await fetch(`http://127.0.0.1:${port}/`).then(
              async (res) => (res.status === 200 ? ((await res.json()) as { now?: unknown }) : { now: `status ${res.status}` }),
              () => new Promise<undefined>((resolve) => setTimeout(resolve, 100)),
            )
          }
          expect(body, output).toBeDefined()
          expect(Number.isNaN(Date.parse(String(body!.now))), output).toBe(false)
          child.kill('SIGTERM')
          const termAt = performance.now()
          const exit = await exited
          if (id === 'bun') {
            expect(exit, output).toEqual({ code: 0, signal: null })
            // A bound on process exit, not a speed figure: a timer left by the close kept it up closeTimeoutMs (5 s).
            expect(performance.now() - termAt).toBeLessThan(BUN_EXIT_BOUND_MS)
          }
          else expect(exit.code !== null || exit.signal !== null).toBe(true)
        } finally {
          clearTimeout(hang)
          if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
          await exited
        }
      },
    )
  })
}

/**
 * A wrangler.toml block of the README that configures the Workers block right above it (its
 * `main` is that block's file): the pair must bundle with the project's wrangler, bindings and all.
 */
const tomls = [...readFileSync(join(ROOT, 'README.md'), 'utf8').matchAll(/^```toml\n([\s\S]*?)^```/gm)].map((m) => ({
  code: m[1]!,
  line: readFileSync(join(ROOT, 'README.md'), 'utf8').slice(0, m.index).split('\n').length,
}))
const configured = tomls.flatMap((toml) => {
  const block = blocks.filter((b) => b.runtime === 'workers' && b.line < toml.line).at(-1)
  const main = /^main\s*=\s*"([^"]+)"/m.exec(toml.code)?.[1]
  return block && main ? [{ toml, block, main }] : []
})

describe('README.md Workers examples in Miniflare', () => {
  it.each(blocks.filter((b) => b.runtime === 'workers' && complete(b)).map((b) => [`${b.id} (line ${b.line})`, b] as const))(
    '%s: answers a request from PostgreSQL, as pasted',
    async (_, block) => {
      const entry = join(packed.app, 'blocks', 'workers', `${block.id}.ts`)
      const durableObject = /export\s*\{\s*WarmconnDurableObject\s*\}/.test(block.code)
      // With the README's own wrangler.toml for it, where there is one: its date and flags.
      const toml = configured.find((c) => c.block === block)?.toml.code
      const date = toml && /^compatibility_date\s*=\s*"([^"]+)"/m.exec(toml)?.[1]
      const flags = toml && (JSON.parse(/^compatibility_flags\s*=\s*(\[[^\]]*\])/m.exec(toml)?.[1] ?? '[]') as string[])
      const worker = await startWorker({
        entry,
        ...(date ? { compatibilityDate: date } : {}),
        ...(flags ? { compatibilityFlags: flags } : {}),
        bindings: { DATABASE_URL: pg.appUrl },
        hyperdrives: /\bHYPERDRIVE\b/.test(block.code) ? { HYPERDRIVE: pg.appUrl } : {},
        durableObjects: durableObject ? { WARMCONN: 'WarmconnDurableObject' } : {},
      })
      try {
        const res = await worker.fetch('GET', '/')
        expect(res.status, `${res.text}\n${worker.output()}`).toBe(200)
        expect(res.text).toMatch(/Ada|\d{4}-\d\d-\d\d/)
        // A per-request connection is closed through ctx.waitUntil after the response: let that
        // finish (the server sees it go) before the runtime is torn down under it.
        if (!durableObject) expect(await eventually(async () => (await pg.backends()).length === 0, 10_000)).toBe(true)
      } finally {
        await worker.dispose()
      }
    },
  )
})

describe("README.md's wrangler.toml with its Worker", () => {
  it('there is one, for the Durable Object example', () => {
    expect(configured.map((c) => c.block.id)).toContain('durable-object-mode')
  })

  it.each(configured.map((c) => [`${c.block.id} (line ${c.block.line}) with the wrangler.toml at line ${c.toml.line}`, c] as const))(
    '%s: wrangler deploy --dry-run (the project\'s wrangler) bundles it with the bindings it names',
    (_, { toml, block, main }) => {
      const dir = join(packed.dir, `wrangler-${block.id}`)
      mkdirSync(join(dir, dirname(main)), { recursive: true })
      writeFileSync(join(dir, 'wrangler.toml'), toml.code)
      writeFileSync(join(dir, main), block.code)
      symlinkSync(join(packed.app, 'node_modules'), join(dir, 'node_modules'), 'dir')
      const out = execFileSync(process.execPath, [join(ROOT, 'node_modules', 'wrangler', 'bin', 'wrangler.js'), 'deploy', '--dry-run', '--outdir', join(dir, 'out')], {
        cwd: dir,
        encoding: 'utf8',
        env: { ...process.env, HOME: dir, XDG_CONFIG_HOME: join(dir, 'config'), WRANGLER_SEND_METRICS: 'false', CI: 'true', NO_COLOR: '1' },
        stdio: ['ignore', 'pipe', 'pipe'],
        timeout: 120_000,
      })
      for (const binding of toml.code.matchAll(/^name\s*=\s*"([A-Z_]+)"/gm)) expect(out).toContain(`env.${binding[1]}`)
      expect(out).toContain('--dry-run: exiting now')
    },
    120_000,
  )
})
