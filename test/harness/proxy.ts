/**
 * A TCP proxy on a loopback address (127.0.0.1 unless told) that can misbehave like the networks
 * serverless functions sit behind: go silent (a NAT that dropped its state), reset every
 * connection, or add latency.
 */
import net, { type Socket } from 'node:net'

export interface FaultProxy {
  readonly port: number
  /** Client connections currently open, blackholed ones included until their client closes them. */
  connections(): number
  /**
   * From now on forward nothing, in either direction, on existing and new connections, and close
   * nothing: new connections are accepted but never reach the server, so a client's handshake
   * hangs; a server's FIN or RST never reaches the client either.
   */
  blackhole(): void
  /**
   * New connections are forwarded again. Connections that were blackholed stay silent but open,
   * as after a NAT lost their state; their server side stays open until the server drops it or
   * close() is called.
   */
  heal(): void
  /** Destroys every current connection with a TCP RST on both sides (clients see ECONNRESET). */
  resetAll(): void
  /**
   * Resets (RST on both sides) every connection a blackhole silenced, and only those: what a NAT
   * that lost a flow's state does when the client sends on it again after the network is back.
   */
  resetSilenced(): void
  /**
   * One shot: the first time a client sends bytes containing `marker`, that connection is reset
   * (RST on both sides) instead of forwarding them. Pins a reset to one moment of a protocol,
   * e.g. `resetWhenClientSends('typarray')` for postgres.js's array-type query at startup.
   */
  resetWhenClientSends(marker: string): void
  /** Round-trip delay: each direction gets ms/2, byte order per connection preserved. */
  setLatencyMs(ms: number): void
  /**
   * Client-to-server flights so far, over every connection: a flight is a burst of client bytes
   * sent after the server last spoke on that connection (or the connection's first). So a
   * statement pipelined behind a check is one flight; a check, its answer, then the statement is two.
   * A claim of "one round trip" is counted here, not inferred from a latency.
   */
  flights(): number
  close(): Promise<void>
}

/** One client connection and its upstream; `dead` once blackholed, for good. */
interface Link {
  dead: boolean
  /** The client socket, and the upstream once there is one. */
  sockets: Socket[]
}

export interface ProxyOptions {
  /** Initial round-trip delay (see setLatencyMs). */
  latencyMs?: number
  /**
   * Address to listen on, default 127.0.0.1. Another loopback address such as 127.0.0.2 looks
   * like a remote host to a client that treats only localhost/127.0.0.1/::1 as local (TLS tests).
   */
  host?: string
}

export async function startProxy(target: { host: string; port: number }, opts: ProxyOptions = {}): Promise<FaultProxy> {
  let oneWayDelayMs = (opts.latencyMs ?? 0) / 2
  let blackholed = false
  let tripwire: Buffer | undefined
  let flights = 0
  const links = new Set<Link>()
  const clients = new Set<Socket>()
  const sockets = new Set<Socket>() // clients and upstreams, for resetAll() and close()

  const track = (socket: Socket): void => {
    sockets.add(socket)
    // No Nagle in the proxy: PostgreSQL sends with TCP_NODELAY, and a network does not hold a
    // second packet back for the first one's ACK. Without this, a server answer that came in two
    // writes (a check's, then the statement's) sat in the proxy for a delayed ACK (~40 ms).
    socket.setNoDelay(true)
    socket.on('close', () => sockets.delete(socket))
    socket.on('error', () => {}) // every error is followed by 'close', handled below
  }

  // allowHalfOpen: a FIN from one side must not close the other before delayed bytes are delivered.
  const server = net.createServer({ allowHalfOpen: true }, (client) => {
    track(client)
    const link: Link = { dead: blackholed, sockets: [client] }
    clients.add(client)
    links.add(link)
    client.on('close', () => {
      clients.delete(client)
      links.delete(link)
    })
    // A client that closes a silenced connection has let go of it: its FIN goes nowhere, but it
    // no longer counts as open (so tests can see a client destroy a connection stuck in silence).
    client.on('end', () => {
      if (link.dead) client.destroy()
    })
    if (link.dead) {
      client.resume() // read and drop, like packets into the void
      return
    }
    const upstream = net.connect({ host: target.host, port: target.port, allowHalfOpen: true })
    track(upstream)
    link.sockets.push(upstream)
    // Registered before forward(), so a tripped chunk is dropped (the link is dead) before it is queued.
    client.on('data', (chunk: Buffer) => {
      if (!tripwire || !chunk.includes(tripwire)) return
      tripwire = undefined
      link.dead = true
      client.resetAndDestroy()
      upstream.resetAndDestroy()
    })
    // An abortive close on one side (error/RST) becomes a RST on the other; a clean FIN travels
    // through forward() in order with the data. Dead links propagate nothing.
    client.on('close', (hadError) => {
      if (hadError && !link.dead) upstream.resetAndDestroy()
    })
    upstream.on('close', (hadError) => {
      if (hadError && !link.dead) client.resetAndDestroy()
    })
    // Counted as bytes reach the proxy, before any delay: what the client did, not the network.
    let serverSpoke = true
    client.on('data', () => {
      if (serverSpoke && !link.dead) flights++
      serverSpoke = false
    })
    upstream.on('data', () => void (serverSpoke = true))
    forward(client, upstream, link, () => oneWayDelayMs)
    forward(upstream, client, link, () => oneWayDelayMs)
  })

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, opts.host ?? '127.0.0.1', resolve)
  })
  const address = server.address()
  if (address === null || typeof address === 'string') throw new Error(`unexpected listen address: ${String(address)}`)

  return {
    port: address.port,
    connections: () => clients.size,
    blackhole() {
      blackholed = true
      for (const link of links) link.dead = true
    },
    heal() {
      blackholed = false
    },
    resetAll() {
      for (const socket of sockets) socket.resetAndDestroy()
    },
    resetSilenced() {
      for (const link of links) if (link.dead) for (const socket of link.sockets) socket.resetAndDestroy()
    },
    resetWhenClientSends(marker) {
      tripwire = Buffer.from(marker)
    },
    setLatencyMs(ms) {
      oneWayDelayMs = ms / 2
    },
    flights: () => flights,
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()))
      for (const socket of sockets) socket.destroy()
      await closed
    },
  }
}

/** Copies src to dst after delayMs(), in order, dropping everything once the link is dead. */
function forward(src: Socket, dst: Socket, link: Link, delayMs: () => number): void {
  let queue: Array<{ due: number; chunk: Buffer | null }> = [] // null chunk: src ended, send FIN
  let timer: NodeJS.Timeout | undefined

  const deliver = (): void => {
    timer = undefined
    if (link.dead) {
      queue = []
      return
    }
    while (queue[0] && queue[0].due <= performance.now()) {
      const { chunk } = queue.shift()!
      if (chunk === null) dst.end()
      else if (!dst.write(chunk) && !src.isPaused()) {
        src.pause() // backpressure: read no more until dst's buffer drains
        dst.once('drain', () => src.resume())
      }
    }
    if (queue[0]) timer = setTimeout(deliver, queue[0].due - performance.now())
  }

  const enqueue = (chunk: Buffer | null): void => {
    if (link.dead) return
    // Never due before the previous chunk, so a lowered latency cannot reorder bytes.
    // A sub-millisecond clock: with Date.now() two chunks 0.1 ms apart could be due a whole
    // millisecond apart, which is the proxy's rounding, not the network's.
    const due = Math.max(performance.now() + delayMs(), queue.at(-1)?.due ?? 0)
    queue.push({ due, chunk })
    if (!timer) deliver()
  }

  src.on('data', (chunk: Buffer) => enqueue(chunk))
  src.on('end', () => enqueue(null))
}
