/**
 * A throwaway certificate authority and server certificate for the TLS benchmark rows, made with
 * the openssl CLI. Clients verify against the CA (verification stays on, as in production).
 */
import { execFileSync } from 'node:child_process'
import { chownSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export interface TlsFiles {
  dir: string
  ca: string
  settings: Record<string, string>
  cleanup(): void
}

export function makeTls(): TlsFiles {
  const dir = mkdtempSync(join(tmpdir(), 'warmconn-bench-tls-'))
  const run = (args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' })
  run(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=warmconn bench CA', '-keyout', 'ca.key', '-out', 'ca.crt'])
  writeFileSync(join(dir, 'ext.cnf'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n')
  run(['req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost', '-keyout', 'server.key', '-out', 'server.csr'])
  run(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '1', '-extfile', 'ext.cnf', '-out', 'server.crt'])
  // The server runs as the `postgres` OS user and insists its key is private to it.
  const uid = Number(execFileSync('id', ['-u', 'postgres']).toString().trim())
  const gid = Number(execFileSync('id', ['-g', 'postgres']).toString().trim())
  for (const f of ['server.key', 'server.crt']) chownSync(join(dir, f), uid, gid)
  execFileSync('chmod', ['600', join(dir, 'server.key')])
  execFileSync('chmod', ['755', dir])
  return {
    dir,
    ca: readFileSync(join(dir, 'ca.crt'), 'utf8'),
    settings: { ssl: 'on', ssl_cert_file: join(dir, 'server.crt'), ssl_key_file: join(dir, 'server.key') },
    cleanup: () => rmSync(dir, { recursive: true, force: true }),
  }
}
