// peek and await get hit cost vs lru-cache's get, varying keys, interleaved rounds.
// Run with a release addon: `npm run build && node bench/bench.mjs` (make bench-node).
import { LRUCache } from 'lru-cache'
import { Cluster } from '../lib.mjs'

const N = 10_000
const keys = Array.from({ length: N }, (_, i) => `user:${i}`)
const value = Buffer.alloc(100, 1)
const lru = new LRUCache({ max: 2 * N })
const cluster = new Cluster({ listen: '127.0.0.1:0' })
const g = cluster.group('bench', { capacity: '64MiB' })
for (const k of keys) { lru.set(k, value); await g.set(k, value) }

function timeSync(fn, iters) {
  const t = process.hrtime.bigint()
  let sink = 0
  for (let i = 0; i < iters; i++) sink += fn(keys[i % N]) ? 1 : 0
  if (sink !== iters) throw new Error('miss')
  return Number(process.hrtime.bigint() - t) / iters
}
async function timeAsync(fn, iters) {
  const t = process.hrtime.bigint()
  for (let i = 0; i < iters; i++) await fn(keys[i % N])
  return Number(process.hrtime.bigint() - t) / iters
}
const best = { lru: Infinity, peek: Infinity, lruAwait: Infinity, get: Infinity }
for (let round = 0; round < 5; round++) {
  best.lru = Math.min(best.lru, timeSync((k) => lru.get(k), 1_000_000))
  best.peek = Math.min(best.peek, timeSync((k) => g.peek(k), 1_000_000))
  best.lruAwait = Math.min(best.lruAwait, await timeAsync(async (k) => lru.get(k), 200_000))
  best.get = Math.min(best.get, await timeAsync((k) => g.get(k), 200_000))
}
const f = (x) => x.toFixed(0).padStart(6)
console.log(`hit, 10k varying keys, 100-byte values, best of 5 rounds (ns/op)`)
console.log(`lru-cache get        ${f(best.lru)}`)
console.log(`meshcache peek       ${f(best.peek)}   ${(best.peek / best.lru).toFixed(1)}x lru-cache`)
console.log(`await lru-cache get  ${f(best.lruAwait)}`)
console.log(`await meshcache get  ${f(best.get)}   ${(best.get / best.lruAwait).toFixed(1)}x await lru-cache, ${(best.get / best.lru).toFixed(1)}x lru-cache get`)
await cluster.close()
