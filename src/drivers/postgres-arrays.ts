/**
 * Array types for postgres.js, looked up by warmconn instead of by postgres.js itself.
 *
 * postgres.js (3.4.9) runs its startup array-type lookup (`fetch_types`) from a socket event
 * handler and drops the promise: a connection reset during exactly that query is an unhandled
 * rejection, which ends a Node process (a Lambda function dies mid-invocation). It also costs a
 * round trip before the first statement of every connection. So warmconn turns `fetch_types`
 * off, installs the built-in array types from a table, and runs the lookup for the rest once per
 * server and database, as an ordinary query whose failure is handled. The result is installed
 * into each new postgres.js instance's parser and serializer tables (`sql.options`), where
 * postgres.js looks them up.
 *
 * Parsing follows PostgreSQL's text output of arrays; unlike postgres.js 3.4.9, an unquoted NULL
 * element is `null` (postgres.js gives the string 'NULL' for text arrays, NaN for numbers).
 * @module
 */

/** Element type oid → its array type oid, for every array type the server has. */
export type ArrayTypes = ReadonlyArray<readonly [oid: number, typarray: number]>

/**
 * PostgreSQL's built-in array types, element oid then array oid. Oids below 10000 are assigned
 * by hand in PostgreSQL's catalog source (pg_type.dat) and never change between versions (these
 * 81 are the same in 15 and 18; a test compares them with the test server), so they need no
 * lookup at all: only types created in a database (enums, domains, extensions: oid >= 16384)
 * have to be looked up, which is done after the first statement instead of before it.
 */
// prettier-ignore
const BUILT_IN: readonly number[] = [
  16,1000, 17,1001, 18,1002, 19,1003, 20,1016, 21,1005, 22,1006, 23,1007, 24,1008, 25,1009,
  26,1028, 27,1010, 28,1011, 29,1012, 30,1013, 71,210, 75,270, 81,272, 83,273, 114,199, 142,143,
  600,1017, 601,1018, 602,1019, 603,1020, 604,1027, 628,629, 650,651, 700,1021, 701,1022, 718,719,
  774,775, 790,791, 829,1040, 869,1041, 1033,1034, 1042,1014, 1043,1015, 1082,1182, 1083,1183,
  1114,1115, 1184,1185, 1186,1187, 1266,1270, 1560,1561, 1562,1563, 1700,1231, 1790,2201,
  2202,2207, 2203,2208, 2204,2209, 2205,2210, 2206,2211, 2275,1263, 2950,2951, 2970,2949,
  3220,3221, 3614,3643, 3615,3645, 3642,3644, 3734,3735, 3769,3770, 3802,3807, 3904,3905,
  3906,3907, 3908,3909, 3910,3911, 3912,3913, 3926,3927, 4072,4073, 4089,4090, 4096,4097,
  4191,4192, 4451,6150, 4532,6151, 4533,6152, 4534,6153, 4535,6155, 4536,6157, 5038,5039, 5069,271,
]
export const BUILT_IN_ARRAY_TYPES: ArrayTypes = Array.from({ length: BUILT_IN.length / 2 }, (_, i) => [BUILT_IN[2 * i]!, BUILT_IN[2 * i + 1]!] as const)

/** The array types the built-in table does not have: the database's own, and catalog row types. */
export const ARRAY_TYPES_QUERY = `select b.oid, b.typarray
  from pg_catalog.pg_type a
  join pg_catalog.pg_type b on b.oid = a.typelem
  where a.typcategory = 'A' and (a.oid >= 10000 or b.oid >= 10000)
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
