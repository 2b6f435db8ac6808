/**
 * What warmconn/otel registers: the database client connection-pool instruments of the
 * OpenTelemetry semantic conventions, with their names, units and attributes as written there,
 * and warmconn's own counters under `warmconn.*`.
 * @module
 */

// Checked against two texts: docs/database/database-metrics.md of open-telemetry/semantic-conventions
// (pool metrics Experimental, db.client.operation.duration Release Candidate there), and the
// constants of @opentelemetry/semantic-conventions 1.45.0, where db.client.connection.max is
// deprecated for db.client.connection.limit: both are emitted, so either dashboard works.

export const POOL_NAME = 'db.client.connection.pool.name'
export const STATE = 'db.client.connection.state'

/** UpDownCounters: observed from `holder.stats()` and the holder's options when the SDK collects. */
export const GAUGES = {
  count: { name: 'db.client.connection.count', unit: '{connection}', description: 'The number of connections that are currently in state described by the state attribute' },
  idleMax: { name: 'db.client.connection.idle.max', unit: '{connection}', description: 'The maximum number of idle open connections allowed' },
  idleMin: { name: 'db.client.connection.idle.min', unit: '{connection}', description: 'The minimum number of idle open connections allowed' },
  max: { name: 'db.client.connection.max', unit: '{connection}', description: 'The maximum number of open connections allowed' },
  limit: { name: 'db.client.connection.limit', unit: '{connection}', description: 'The maximum number of open connections allowed' },
  pending: { name: 'db.client.connection.pending_requests', unit: '{request}', description: 'The number of current pending requests for an open connection' },
} as const

export const TIMEOUTS = { name: 'db.client.connection.timeouts', unit: '{timeout}', description: 'The number of connection timeouts that have occurred trying to obtain a connection from the pool' } as const

/** Histograms in seconds, recorded from the holder's events. */
export const DURATIONS = {
  create: { name: 'db.client.connection.create_time', unit: 's', description: 'The time it took to create a new connection' },
  wait: { name: 'db.client.connection.wait_time', unit: 's', description: 'The time it took to obtain an open connection from the pool' },
  use: { name: 'db.client.connection.use_time', unit: 's', description: 'The time between borrowing a connection and returning it to the pool' },
} as const

/**
 * The conventions give no buckets for these; the SDK's default ones (0, 5, 10, 25 ... 10000) are
 * meant for milliseconds and would put every sample in seconds into the first two. These are the
 * conventions' own for db.client.operation.duration, with two below a millisecond added, where a
 * warm wait (no I/O at all) and a warm call on a nearby server fall.
 */
export const SECONDS_BUCKETS = [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10]

/** warmconn's own counters: cumulative `holder.stats()` counters, read when the SDK collects. */
export const OWN_COUNTERS = {
  calls: { stat: 'runs', unit: '{call}', description: 'Calls and leases started' },
  reuses: { stat: 'reused', unit: '{call}', description: 'Calls served by a connection that was already open (with or without a ping)' },
  revalidations: { stat: 'revalidated', unit: '{check}', description: 'Stale connections that answered their liveness check and were used' },
  revalidation_failures: { stat: 'revalidateFailures', unit: '{check}', description: 'Stale connections that failed or timed out their liveness check and were destroyed' },
  reconnects: { stat: 'reconnected', unit: '{connection}', description: 'Connections opened to replace one that died' },
  replays: { stat: 'replays', unit: '{call}', description: 'Calls run again on a new connection after theirs died' },
  session_resets: { stat: 'sessionResets', unit: '{reset}', description: 'Transactions left open by a caller and rolled back before reuse' },
  call_timeouts: { stat: 'callTimeouts', unit: '{timeout}', description: 'Calls cut off at their deadline (callTimeoutMs), their connection destroyed' },
  connect_retries: { stat: 'connectRetries', unit: '{attempt}', description: 'Transient connect failures that were retried' },
  connect_failures: { stat: 'connectFailures', unit: '{connect}', description: 'Connects that failed for good' },
} as const

/** Connections closed, by `warmconn.close.reason`: read from the same counters. */
export const CLOSES = { name: 'warmconn.closes', unit: '{connection}', description: 'Connections closed, by reason: idle (idleTimeoutMs), lifetime (maxLifetimeMs), broken (died or could not be trusted)' } as const
export const CLOSE_REASON = 'warmconn.close.reason'

/** Seen as events: a server's own idle-session close (SQLSTATE 57P05), counted when the driver reports the code. */
export const SERVER_IDLE_CLOSES = { name: 'warmconn.server_idle_closes', unit: '{connection}', description: 'Connections the server ended for idling (idle_session_timeout, SQLSTATE 57P05)' } as const
