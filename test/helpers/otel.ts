/**
 * The real OpenTelemetry SDK for tests: a MeterProvider whose PeriodicExportingMetricReader
 * exports into an InMemoryMetricExporter only when asked (forceFlush), and a reading of the last
 * export by instrument name and attributes. Plain data, so it also crosses a Durable Object's RPC.
 */
import { AggregationTemporality, DataPointType, InMemoryMetricExporter, MeterProvider, PeriodicExportingMetricReader, type ResourceMetrics } from '@opentelemetry/sdk-metrics'

export interface Point {
  attributes: Record<string, unknown>
  /** A sum's value. */
  value?: number
  /** A histogram's. */
  count?: number
  sum?: number
  min?: number
  max?: number
}

export interface Instrument {
  unit: string
  /** As the conventions name instrument types: counter, updowncounter, histogram. */
  type: 'counter' | 'updowncounter' | 'histogram' | 'other'
  points: Point[]
}

/** Instrument name -> what was exported for it. */
export type Reading = Record<string, Instrument>

export interface TestMeter {
  provider: MeterProvider
  /** Collects and exports once, and returns what the exporter received. */
  read(): Promise<Reading>
  shutdown(): Promise<void>
}

export function testMeter(): TestMeter {
  const exporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE)
  // An hour: nothing is exported unless read() asks.
  const reader = new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 3_600_000, exportTimeoutMillis: 30_000 })
  const provider = new MeterProvider({ readers: [reader] })
  return {
    provider,
    async read() {
      await reader.forceFlush()
      const exported = exporter.getMetrics()
      exporter.reset()
      return toReading(exported.at(-1))
    },
    shutdown: () => provider.shutdown(),
  }
}

export function toReading(resource: ResourceMetrics | undefined): Reading {
  const out: Reading = {}
  for (const scope of resource?.scopeMetrics ?? []) {
    for (const metric of scope.metrics) {
      const points: Point[] = metric.dataPoints.map((p: { attributes: Record<string, unknown>; value: unknown }) => {
        if (metric.dataPointType === DataPointType.HISTOGRAM) {
          const h = p.value as { count: number; sum?: number; min?: number; max?: number }
          return { attributes: { ...p.attributes }, count: h.count, sum: h.sum, min: h.min, max: h.max }
        }
        return { attributes: { ...p.attributes }, value: p.value as number }
      })
      const type = metric.dataPointType === DataPointType.SUM ? (metric.isMonotonic ? 'counter' : 'updowncounter') : metric.dataPointType === DataPointType.HISTOGRAM ? 'histogram' : 'other'
      out[metric.descriptor.name] = { unit: metric.descriptor.unit, type, points }
    }
  }
  return out
}

/** The one point of `name` whose attributes include `match`; undefined when none was exported. */
export function pointOf(reading: Reading, name: string, match: Record<string, unknown>): Point | undefined {
  const found = (reading[name]?.points ?? []).filter((p) => Object.entries(match).every(([k, v]) => p.attributes[k] === v))
  if (found.length > 1) throw new Error(`${found.length} points of ${name} match ${JSON.stringify(match)}`)
  return found[0]
}
