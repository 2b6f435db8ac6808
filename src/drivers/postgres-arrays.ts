/**
 * Array types for postgres.js, looked up by warmconn instead of by postgres.js itself.
 *
 * postgres.js (3.4.9) runs its startup array-type lookup (`fetch_types`) from a socket event
 * handler and drops the promise: a connection reset during exactly that query is an unhandled
 * rejection, which ends a Node process (a Lambda function dies mid-invocation). So warmconn
 * turns `fetch_types` off and runs the same lookup as an ordinary awaited query while opening
 * the connection, where a reset is a connect failure the holder retries. The result is kept per
 * server and database, so a reconnect costs no lookup at all, and installed into each new postgres.js
 * instance's parser and serializer tables (`sql.options`), where postgres.js looks them up.
 *
 * Parsing follows PostgreSQL's text output of arrays; unlike postgres.js 3.4.9, an unquoted NULL
 * element is `null` (postgres.js gives the string 'NULL' for text arrays, NaN for numbers).
 * @module
 */

/** Element type oid → its array type oid, for every array type the server has. */
export type ArrayTypes = ReadonlyArray<readonly [oid: number, typarray: number]>

export const ARRAY_TYPES_QUERY = `select b.oid, b.typarray
  from pg_catalog.pg_type a
  join pg_catalog.pg_type b on b.oid = a.typelem
  where a.typcategory = 'A'
  group by b.oid, b.typarray
  order by b.oid`

type Parser = ((text: string) => unknown) & { array?: boolean }
type Serializer = (value: unknown) => unknown

/** The parts of postgres.js's parsed options (`sql.options`) that hold type handling. */
export interface TypeTables {
  parsers: Record<number, Parser | undefined>
  serializers: Record<number, Serializer | undefined>
  shared?: { typeArrayMap?: Record<number, number> }
  transform?: { undefined?: unknown }
}

/**
 * Array types already looked up, by server and database (`host:port/database`). Module scope, so
 * a holder made per request (Workers) or a new holder for another role pays the lookup once per
 * process or isolate, not once per connection. Plain data, never I/O, so sharing it across
 * Workers requests is allowed. Bounded: the oldest entry goes first.
 */
const known = new Map<string, ArrayTypes>()
const KNOWN_MAX = 64

export function knownArrayTypes(server: string): ArrayTypes | undefined {
  return known.get(server)
}

export function rememberArrayTypes(server: string, types: ArrayTypes): void {
  known.delete(server)
  known.set(server, types)
  if (known.size > KNOWN_MAX) known.delete(known.keys().next().value!)
}

/** Only box (1020) separates its elements with ';'. */
const BOX_ARRAY = 1020

/** Adds a parser and a serializer for each array type, leaving any the caller defined alone. */
export function installArrayTypes(tables: TypeTables, types: ArrayTypes): void {
  const map = tables.shared?.typeArrayMap
  for (const [oid, typarray] of types) {
    if (tables.parsers[typarray] && tables.serializers[typarray]) continue
    const delimiter = typarray === BOX_ARRAY ? ';' : ','
    if (map) map[oid] = typarray
    const parser: Parser = (text) => parseArray(text, tables.parsers[oid], delimiter)
    // postgres.js hands an `array` parser the text after its opening brace.
    parser.array = true
    tables.parsers[typarray] = parser
    tables.serializers[typarray] = (value) => serializeArray(value, tables.serializers[oid], delimiter, tables)
  }
}

/**
 * Parses the text form of an array, `{a,"b c",NULL,{1,2}}`, given without its opening brace (as
 * postgres.js passes it). Elements go through `element`, except NULL, which is null.
 */
export function parseArray(body: string, element: Parser | undefined, delimiter = ','): unknown[] {
  const state = { i: 0 }
  return parseList(body, state, element, delimiter)
}

function parseList(text: string, at: { i: number }, element: Parser | undefined, delimiter: string): unknown[] {
  const out: unknown[] = []
  while (at.i < text.length) {
    const c = text[at.i]
    if (c === '}') {
      at.i++
      return out
    }
    if (c === delimiter) {
      at.i++
      continue
    }
    if (c === '{') {
      at.i++
      out.push(parseList(text, at, element, delimiter))
      continue
    }
    if (c === '"') {
      let value = ''
      at.i++
      while (at.i < text.length && text[at.i] !== '"') {
        if (text[at.i] === '\\') at.i++
        value += text[at.i++] ?? ''
      }
      at.i++ // the closing quote
      // A quoted "NULL" is the four-letter string, never SQL NULL.
      out.push(element ? element(value) : value)
      continue
    }
    let end = at.i
    while (end < text.length && text[end] !== delimiter && text[end] !== '}') end++
    const raw = text.slice(at.i, end)
    at.i = end
    out.push(raw === 'NULL' ? null : element ? element(raw) : raw)
  }
  return out
}

/** The text form of a (nested) array, every element quoted and escaped; null as NULL. */
export function serializeArray(value: unknown, element: Serializer | undefined, delimiter: string, tables: Pick<TypeTables, 'transform'>): unknown {
  if (!Array.isArray(value)) return value
  if (value.length === 0) return '{}'
  // A nested array (not a postgres.js typed parameter, which carries `type`) is a sub-array.
  if (Array.isArray(value[0]) && !(value[0] as { type?: unknown }).type) {
    return `{${value.map((inner) => serializeArray(inner, element, delimiter, tables)).join(delimiter)}}`
  }
  const items = value.map((item: unknown) => {
    if (item === undefined) item = tables.transform?.undefined
    if (item === undefined) throw Object.assign(new Error('Undefined values are not allowed'), { code: 'UNDEFINED_VALUE' })
    if (item === null) return 'NULL'
    const typed = item as { type?: unknown; value?: unknown }
    const text = String(element ? element(typed.type ? typed.value : item) : item)
    return `"${text.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`
  })
  return `{${items.join(delimiter)}}`
}
