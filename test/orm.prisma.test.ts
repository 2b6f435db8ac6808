/**
 * Prisma 7 (@prisma/client with @prisma/adapter-pg) over warmPool: every ORM scenario
 * (test/orm/scenarios.ts). PrismaPg takes warmPool as its pool (it checks instanceof pg.Pool);
 * Prisma runs plain queries with pool.query and interactive transactions on pool.connect().
 * The client is generated at test time (test/orm/prisma-client.ts). Reads are marked idempotent.
 */
import { PrismaPg } from '@prisma/adapter-pg'
import { expect } from 'vitest'
import { generatePrisma, type GeneratedPrisma } from './orm/prisma-client.js'
import { ormScenarios } from './orm/scenarios.js'

let prisma: GeneratedPrisma

ormScenarios({
  name: 'Prisma',
  setup: async () => void (prisma = await generatePrisma()),
  teardown: async () => prisma?.remove(),
  poolOptions: { idempotent: (query) => /^\s*select\b/i.test(query.text) },
  // Prisma's adapter maps the driver's error (by `code` with `syscall`/`errno`, or with `severity`)
  // to its own kinds; Prisma throws its PrismaClientKnownRequestError carrying that mapping.
  connectionError(err, code) {
    expect((err as Error).name).toBe('PrismaClientKnownRequestError')
    const mapped = (err as { meta?: { driverAdapterError?: { cause?: Record<string, unknown> } } }).meta?.driverAdapterError?.cause
    if (code === 'ECONNREFUSED') expect(mapped).toMatchObject({ kind: 'DatabaseNotReachable', host: '127.0.0.1' })
    else expect(mapped).toMatchObject({ kind: 'postgres', originalCode: '57P01', severity: 'FATAL' })
  },
  open(pool) {
    const client = new prisma.PrismaClient({ adapter: new PrismaPg(pool) })
    return {
      pid: async () => Number((await client.$queryRaw<Array<{ pid: number }>>`select pg_backend_pid() as pid`)[0]!.pid),
      insert: (note) => client.note.create({ data: { note } }),
      failingTransaction: (note) =>
        client.$transaction(async (tx) => {
          await tx.note.create({ data: { note } })
          if ((await tx.note.count({ where: { note } })) !== 1) throw new Error('the insert should be visible inside its transaction')
          throw new Error('handler failed inside the transaction')
        }),
      close: async () => {
        await client.$disconnect()
        await pool.end()
      },
    }
  },
})
