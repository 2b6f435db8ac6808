/**
 * What a password from `rdsIamPassword` costs (README, IAM and DSQL): the first token of a
 * process (loading @aws-sdk/rds-signer included), each later signing, and a cached token.
 * Offline: static example credentials, nothing is sent. Run: npx tsx bench/password-sign.ts
 */
import { rdsIamPassword } from '../src/aws/index.js'

const credentials = { accessKeyId: 'AKIAIOSFODNN7EXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY' }
const make = () => rdsIamPassword({ hostname: 'db.example.com', port: 5432, username: 'app', region: 'eu-west-1', credentials })

const first = make()
let t = performance.now()
await first()
console.log(`first token of the process (signer loaded): ${(performance.now() - t).toFixed(1)} ms`)

const N = 200
let total = 0
for (let i = 0; i < N; i++) {
  const fresh = make() // a new cache each time: every call signs
  const s = performance.now()
  await fresh()
  total += performance.now() - s
}
console.log(`signing, signer loaded: ${(total / N).toFixed(2)} ms each (mean of ${N})`)

const M = 100_000
t = performance.now()
for (let i = 0; i < M; i++) await first()
console.log(`cached token: ${(((performance.now() - t) / M) * 1000).toFixed(2)} µs each (mean of ${M})`)
