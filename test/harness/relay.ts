/**
 * A local stand-in for Neon's WebSocket proxy: each WebSocket at `/v1?address=host:port` carries
 * raw PostgreSQL wire bytes, in binary frames, to and from one TCP connection to that address.
 * Like Neon's proxy it accepts the WebSocket first and dials the database after, so a database
 * that refuses shows up as a WebSocket closed before any byte came back.
 */
import { createServer, type IncomingMessage } from 'node:http'
import net, { type Socket } from 'node:net'
import type { Duplex } from 'node:stream'
import { WebSocket, WebSocketServer } from 'ws'
import type { NeonConfigOverrides } from '../../src/drivers/neon.js'

export interface Relay {
  readonly port: number
  close(): Promise<void>
  /** WebSocket connections open now. */
  connections(): number
  /** Closes every open WebSocket and its TCP side, as a proxy restart or a dropped tunnel would. */
  dropAll(): void
  /** The per-client settings that route @neondatabase/serverless through this relay. */
  neonConfig(): NeonConfigOverrides
}

// A test fixture must not become an open proxy to the rest of the network.
const LOOPBACK = new Set(['127.0.0.1', 'localhost'])

export async function startRelay(): Promise<Relay> {
  const pairs = new Map<WebSocket, Socket>()
  const http = createServer((_, res) => res.writeHead(426).end('WebSocket only\n'))
  const wss = new WebSocketServer({ noServer: true })

  http.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const target = targetOf(req)
    if (typeof target === 'string') {
      socket.end(`HTTP/1.1 ${target}\r\nConnection: close\r\n\r\n`)
      return
    }
    wss.handleUpgrade(req, socket, head, (ws) => pipe(ws, target))
  })

  const pipe = (ws: WebSocket, target: { host: string; port: number }): void => {
    // Frames that arrive before the TCP connect completes are buffered by net.Socket.
    const tcp = net.connect(target.port, target.host)
    tcp.setNoDelay(true)
    pairs.set(ws, tcp)
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (isBinary) tcp.write(data)
    })
    tcp.on('data', (chunk) => ws.readyState === WebSocket.OPEN && ws.send(chunk, { binary: true }))
    // 1011 carries the reason (e.g. ECONNREFUSED) for whoever reads close frames; neon does not.
    tcp.on('error', (err: NodeJS.ErrnoException) => ws.close(1011, err.code ?? 'tcp error'))
    tcp.on('close', () => {
      pairs.delete(ws)
      if (ws.readyState === WebSocket.OPEN) ws.close(1000)
    })
    ws.on('close', () => tcp.end())
    ws.on('error', () => tcp.destroy())
  }

  await new Promise<void>((resolve, reject) => {
    http.once('error', reject)
    http.listen(0, '127.0.0.1', () => resolve())
  })
  const address = http.address()
  if (address === null || typeof address === 'string') throw new Error(`relay: unexpected listen address ${String(address)}`)
  const port = address.port

  const dropAll = (): void => {
    for (const [ws, tcp] of pairs) {
      ws.terminate()
      tcp.destroy()
    }
    pairs.clear()
  }

  return {
    port,
    connections: () => pairs.size,
    dropAll,
    neonConfig: () => ({
      webSocketConstructor: WebSocket,
      wsProxy: (host, targetPort) => `127.0.0.1:${port}/v1?address=${host}:${targetPort}`,
      useSecureWebSocket: false,
      pipelineTLS: false,
      pipelineConnect: false,
    }),
    async close() {
      dropAll()
      wss.close()
      await new Promise<void>((resolve) => http.close(() => resolve()))
    },
  }
}

/** The loopback target of an upgrade request, or the HTTP status line to refuse it with. */
function targetOf(req: IncomingMessage): { host: string; port: number } | string {
  const url = new URL(req.url ?? '/', 'http://relay')
  if (url.pathname !== '/v1') return '404 Not Found'
  const match = /^(.+):(\d{1,5})$/.exec(url.searchParams.get('address') ?? '')
  if (!match) return '400 Bad Request'
  const [, host = '', port = ''] = match
  if (!LOOPBACK.has(host)) return '403 Forbidden'
  return { host, port: Number(port) }
}
