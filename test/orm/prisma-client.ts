/**
 * Prisma 7's client for the ORM tests, generated at test time (never committed) into a
 * git-ignored directory under .tmp/, from a schema for orm_notes. `prisma generate` runs offline:
 * it does not use the schema engine, but the CLI would try to download one unless
 * PRISMA_SCHEMA_ENGINE_BINARY names an executable, so it names a stub that exits 1.
 */
import { execFile } from 'node:child_process'
import { chmodSync, mkdirSync, rmSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { join, resolve } from 'node:path'
import { promisify } from 'node:util'

/** The generated client's surface the tests use (its own types live in the generated files). */
export interface NotesPrisma {
  note: {
    create(args: { data: { note: string } }): Promise<{ id: number; note: string }>
    count(args: { where: { note: string } }): Promise<number>
  }
  $queryRaw<T = unknown>(query: TemplateStringsArray, ...values: unknown[]): Promise<T>
  $transaction<T>(fn: (tx: Omit<NotesPrisma, '$transaction' | '$disconnect'>) => Promise<T>): Promise<T>
  $disconnect(): Promise<void>
}

export interface GeneratedPrisma {
  PrismaClient: new (options: { adapter: unknown }) => NotesPrisma
  /** Deletes the generated files. */
  remove(): void
}

const SCHEMA = `
generator client {
  provider     = "prisma-client"
  output       = "./generated"
  moduleFormat = "esm"
}

datasource db {
  provider = "postgresql"
}

model Note {
  id   Int    @id @default(autoincrement())
  note String

  @@map("orm_notes")
}
`

export async function generatePrisma(): Promise<GeneratedPrisma> {
  // Inside the project, so the generated code resolves @prisma/client from node_modules.
  const dir = resolve('.tmp', `prisma-${process.pid}-${Date.now()}`)
  mkdirSync(dir, { recursive: true })
  try {
    const schema = join(dir, 'schema.prisma')
    const engineStub = join(dir, 'schema-engine-stub')
    writeFileSync(schema, SCHEMA)
    writeFileSync(engineStub, '#!/bin/sh\nexit 1\n')
    chmodSync(engineStub, 0o755)
    const cli = createRequire(import.meta.url).resolve('prisma/build/index.js')
    await promisify(execFile)(process.execPath, [cli, 'generate', '--schema', schema], {
      env: {
        ...process.env,
        PRISMA_SCHEMA_ENGINE_BINARY: engineStub,
        PRISMA_ENGINES_CHECKSUM_IGNORE_MISSING: '1',
        PRISMA_HIDE_UPDATE_MESSAGE: '1',
        CHECKPOINT_DISABLE: '1', // no version check over the network
      },
      timeout: 60_000,
    })
    const { PrismaClient } = (await import(join(dir, 'generated', 'client.ts'))) as { PrismaClient: GeneratedPrisma['PrismaClient'] }
    return { PrismaClient, remove: () => rmSync(dir, { recursive: true, force: true }) }
  } catch (err) {
    rmSync(dir, { recursive: true, force: true })
    throw err
  }
}
