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
// ROUNDS interleaved rounds (default 7); best and median of the rounds per contender.
const ROUNDS = Number(process.env.ROUNDS ?? 7)
const runs = { lru: [], peek: [], lruAwait: [], get: [] }
for (let round = 0; round < ROUNDS; round++) {
  runs.lru.push(timeSync((k) => lru.get(k), 1_000_000))
  runs.peek.push(timeSync((k) => g.peek(k), 1_000_000))
  runs.lruAwait.push(await timeAsync(async (k) => lru.get(k), 200_000))
  runs.get.push(await timeAsync((k) => g.get(k), 200_000))
}
const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1]
const best = Object.fromEntries(Object.entries(runs).map(([k, v]) => [k, Math.min(...v)]))
const med = Object.fromEntries(Object.entries(runs).map(([k, v]) => [k, median(v)]))
const f = (x) => x.toFixed(0).padStart(6)
const row = (name, k, vs, also = '') => console.log(`${name.padEnd(20)} ${f(best[k])} ${f(med[k])}` +
  (vs ? `   ${(best[k] / best[vs]).toFixed(1)}x / ${(med[k] / med[vs]).toFixed(1)}x ${also}` : ''))
console.log(`hit, 10k varying keys, 100-byte values, ${ROUNDS} interleaved rounds (ns/op)`)
console.log(`${''.padEnd(20)}   best median  ratio best / median`)
row('lru-cache get', 'lru')
row('meshcache peek', 'peek', 'lru', 'lru-cache get')
row('await lru-cache get', 'lruAwait')
row('await meshcache get', 'get', 'lruAwait', 'await lru-cache get')
await cluster.close()
