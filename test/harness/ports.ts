import { createServer } from 'node:net'

/**
 * A TCP port on 127.0.0.1 that nothing listens on right now. Inherently racy (another process may
 * bind it before the caller does), so call it right before binding, not ahead of slow work.
 */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.unref()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      if (address === null || typeof address === 'string') {
        server.close()
        reject(new Error(`unexpected listen address: ${String(address)}`))
        return
      }
      server.close(() => resolve(address.port))
    })
  })
}
