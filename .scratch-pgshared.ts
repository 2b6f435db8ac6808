import { Holder } from '../work/main/src/index.js'
import { pgDriver } from '../work/main/src/drivers/pg.js'
const h = new Holder(pgDriver('postgres://postgres@127.0.0.1:55432/postgres'), { maxConnections: 2 })
await h.shared((c) => c.query('select 1'))
const t = performance.now()
const r = await Promise.all(Array.from({ length: 200 }, (_, i) => h.shared((c) => c.query('select $1::int as n, pg_backend_pid() as pid', [i]))))
console.log(performance.now() - t, new Set(r.map((x: any) => x.rows[0].pid)).size, r[199].rows[0].n)
const e = await h.shared((c) => c.query('set search_path = x')).catch((e) => e)
console.log(e.name, e.message)
console.log(h.stats())
const x = await h.run(async (c) => { await c.query('begin'); const r = await c.query('select 1 as one'); await c.query('commit'); return r.rows })
console.log(x)
await h.close()
