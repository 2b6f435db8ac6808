/**
 * Array types, looked up by warmconn's postgres.js driver instead of by postgres.js (whose own
 * lookup can crash the process on a reset; see src/drivers/postgres-arrays.ts). Results are
 * compared with plain postgres.js reading the same server, and parameters are checked by what
 * the server stored.
 */
import fc from 'fast-check'
import postgres from 'postgres'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parseArray, serializeArray } from '../src/drivers/postgres-arrays.js'
import { ARRAY_TYPES_QUERY, BUILT_IN_ARRAY_TYPES } from '../src/drivers/postgres-arrays.js'
import type { Holder } from '../src/index.js'
import type { Sql } from '../src/drivers/postgres.js'
import { startPostgres, type TestPg } from './harness/pg.js'
import { appName, makeHolder } from './helpers/core.js'

describe('array text format (no server)', () => {
  const text = fc.oneof(fc.string(), fc.constantFrom('NULL', 'null', '', ' ', '"', '\\', '{', '}', ',', 'a,b', '{x}', '\\"'))
  const item = fc.option(text, { nil: null })

  it('parse(serialize(x)) is x for nested arrays of any strings and nulls', () => {
    const flat = fc.array(item, { minLength: 1, maxLength: 6 })
    const nested = fc.integer({ min: 1, max: 3 }).chain((n) => fc.array(fc.array(item, { minLength: n, maxLength: n }), { minLength: 1, maxLength: 3 }))
    fc.assert(
      fc.property(fc.oneof(flat, nested), (value) => {
        const literal = serializeArray(value, undefined, ',', {}) as string
        expect(parseArray(literal.slice(1), undefined)).toEqual(value)
      }),
      { numRuns: 500 },
    )
  })

  it('an unquoted NULL is null, a quoted one the string; box arrays split on ;', () => {
    expect(parseArray('NULL,"NULL",a}', undefined)).toEqual([null, 'NULL', 'a'])
    expect(parseArray('}', undefined)).toEqual([])
    expect(parseArray('(1,1),(0,0);(2,2),(1,1)}', undefined, ';')).toEqual(['(1,1),(0,0)', '(2,2),(1,1)'])
    expect(serializeArray([], undefined, ',', {})).toBe('{}')
    expect(() => serializeArray([undefined], undefined, ',', {})).toThrow(/Undefined/)
    expect(serializeArray([undefined], undefined, ',', { transform: { undefined: null } })).toBe('{NULL}')
  })
})

describe('array types through warmconn (real server)', () => {
  let pg: TestPg
  let plain: postgres.Sql
  const holders: Holder<Sql>[] = []
  const make = (name: string) => {
    const holder = makeHolder(pg.url, { applicationName: name })
    holders.push(holder)
    return holder
  }
  beforeAll(async () => {
    pg = await startPostgres()
    plain = postgres(pg.url, { max: 1, onnotice: () => {} }) // fetch_types on: postgres.js's own lookup
    await pg.admin`create table arrays_stored (id serial primary key, tags text[], grid int4[], flags bool[])`
  })
  afterAll(async () => {
    await Promise.all(holders.map((h) => h.close({ timeoutMs: 500 })))
    await plain?.end({ timeout: 1 })
    await pg?.stop()
  })

  it('array columns of every common type read as plain postgres.js reads them (nulls aside: null, not "NULL")', async () => {
    const holder = make(appName('arrays-read'))
    const query = `select array[1,2,3]::int4[] as i4, array[[1,2],[3,4]]::int4[] as grid, array[10000000000]::int8[] as i8,
      array['a','b c','x,y','q"b','b\\s','{}','']::text[] as t, array[true,false] as b, array[1.5,-2]::float8[] as f,
      array[1.25]::numeric[] as n, array['2026-11-25'::date] as d, array['2026-11-25 10:00:00+00'::timestamptz] as ts,
      array['{"a":[1,{"b":null}]}'::json, '"s"'::json] as j, array['{"k":"v,w"}'::jsonb] as jb, array['\\x0102ff'::bytea] as by,
      array['00000000-0000-0000-0000-000000000001'::uuid] as u, array[box '((1,1),(0,0))', box '((3,3),(2,2))'] as bx,
      '{}'::int4[] as empty`
    const [ours] = await holder.run((sql) => sql.unsafe(query))
    const [theirs] = await plain.unsafe(query)
    expect(ours).toEqual(theirs)
    expect(ours!.grid).toEqual([[1, 2], [3, 4]])
    expect(ours!.t).toEqual(['a', 'b c', 'x,y', 'q"b', 'b\\s', '{}', ''])

    // Where postgres.js 3.4.9 turns SQL NULL into the string 'NULL' (text) or false (bool).
    const [nulls] = await holder.run((sql) => sql`select array['a', null, 'NULL']::text[] as t, array[1, null]::int4[] as i, array[true, null] as b`)
    expect(nulls).toEqual({ t: ['a', null, 'NULL'], i: [1, null], b: [true, null] })
  })

  it('array parameters reach the server element by element, for any strings', async () => {
    const holder = make(appName('arrays-write'))
    const tags = fc.array(fc.option(fc.string({ unit: 'grapheme' }).filter((s) => !s.includes('\u0000')), { nil: null }), { maxLength: 5 })
    await fc.assert(
      fc.asyncProperty(tags, async (value) => {
        const [row] = await holder.run((sql) => sql`insert into arrays_stored (tags) values (${value}::text[]) returning id`)
        // Read back element by element on the server's side, by another client.
        const stored = await pg.admin`select t.v, t.n from arrays_stored, unnest(tags) with ordinality as t(v, n) where id = ${row!.id} order by t.n`
        expect(stored.map((r) => r.v)).toEqual(value)
      }),
      { numRuns: 40 },
    )
    // sql.array(values, elementOid) finds the array type through the installed element -> array map.
    const [row] = await holder.run((sql) => sql`insert into arrays_stored (grid, flags) values (${[[1, 2], [3, 4]]}::int4[], ${sql.array([true, null, false], 16)}) returning id`)
    const [stored] = await pg.admin`select grid[2][1] as g21, array_length(grid, 1) as rows, flags[2] is null as null2, flags[3] as f3 from arrays_stored where id = ${row!.id}`
    expect(stored).toEqual({ g21: 3, rows: 2, null2: true, f3: false })
  })

  it('the array-type lookup runs once per server and database: a reconnect and a second holder send none', async () => {
    await pg.admin.unsafe('create database arrays_fresh')
    const url = pg.urlFor({ database: 'arrays_fresh' })
    const name = appName('arrays-once')
    const holder = makeHolder(url, { applicationName: name })
    const other = makeHolder(url, { applicationName: appName('arrays-other') })
    holders.push(holder, other)
    const mark = await pg.mark()
    await holder.run((sql) => sql`select ${[1, 2]}::int4[] as a`)
    // The lookup runs on the idle connection after that first call; the next call waits for it.
    await holder.run(() => undefined)
    await pg.terminate({ applicationName: name })
    const [row] = await holder.run((sql) => sql`select ${[3, 4]}::int4[] as a`, { idempotent: true })
    const [second] = await other.run((sql) => sql`select array['x', null]::text[] as t`)
    expect(row!.a).toEqual([3, 4])
    expect(second!.t).toEqual(['x', null])
    expect(holder.stats().opened).toBe(2)
    const lookups = (await pg.statements({ since: mark })).filter((s) => s.includes('typarray'))
    expect(lookups).toEqual([ARRAY_TYPES_QUERY])
  })

  it("the built-in array table is exactly the server's built-in array types (oids below 10000)", async () => {
    const rows = await pg.admin<Array<{ oid: number; typarray: number }>>`
      select distinct b.oid, b.typarray from pg_catalog.pg_type a join pg_catalog.pg_type b on b.oid = a.typelem
      where a.typcategory = 'A' and a.oid < 10000 and b.oid < 10000 order by b.oid`
    expect(rows.map((r) => [Number(r.oid), Number(r.typarray)])).toEqual([...BUILT_IN_ARRAY_TYPES].sort((x, y) => x[0] - y[0]))
  })

  it("a database's own array types (an enum): parsed from the second statement by default, from the first with fetch_types: true", async () => {
    await pg.admin.unsafe('create database arrays_enum')
    const url = pg.urlFor({ database: 'arrays_enum' })
    const setup = makeHolder(url, { applicationName: appName('arrays-enum-setup') }, { fetch_types: false })
    holders.push(setup)
    await setup.run((sql) => sql.unsafe("create type mood as enum ('happy', 'sad')"))
    await setup.close()
    await pg.admin.unsafe('create database arrays_enum_eager template arrays_enum')
    // Default: the lookup goes behind the first statement, so that one statement still reads
    // postgres.js's text form; every later one, on any connection, the array.
    const lazy = makeHolder(url, { applicationName: appName('arrays-enum') })
    holders.push(lazy)
    const query = "select array['happy', 'sad']::mood[] as m"
    const [first] = await lazy.run((sql) => sql.unsafe(query))
    const [next] = await lazy.run((sql) => sql.unsafe(query))
    expect(first!.m).toBe('{happy,sad}')
    expect(next!.m).toEqual(['happy', 'sad'])

    const eager = makeHolder(pg.urlFor({ database: 'arrays_enum_eager' }), { applicationName: appName('arrays-enum-eager') }, { fetch_types: true })
    holders.push(eager)
    const [eagerFirst] = await eager.run((sql) => sql.unsafe(query))
    expect(eagerFirst!.m).toEqual(['happy', 'sad'])
  })

  it('fetch_types: false is honoured: no lookup, and arrays stay text as in postgres.js', async () => {
    const name = appName('arrays-off')
    const holder = makeHolder(pg.url, { applicationName: name }, { fetch_types: false })
    holders.push(holder)
    const mark = await pg.mark()
    const [row] = await holder.run((sql) => sql`select array[1,2]::int4[] as a`)
    expect(row!.a).toBe('{1,2}')
    expect((await pg.statements({ applicationName: name, since: mark })).filter((s) => s.includes('typarray'))).toEqual([])
  })
})
