// Remote get: meshcache `await group.get(k)` of a key another node owns (a child process;
// `hotSample: 0`, so nothing is mirrored and every get is a round trip to the owner) vs
// ioredis `await redis.getBuffer(k)` against a redis-server started here (127.0.0.1, a
// free port, no persistence). Same 100-byte values, same process, interleaved rounds,
// medians. Sequential latency, then throughput with 16 and 50 concurrent callers, each
// caller on keys of its own.
// Run with a release addon: `npm run build && node bench/remote.mjs` (make bench-node).
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import net from 'node:net'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import Redis from 'ioredis'
import { Cluster } from '../lib.mjs'

const ROUNDS = Number(process.env.ROUNDS ?? 7)
const KEYS = 2000
const value = Buffer.alloc(100, 7)
const children = []
process.on('exit', () => { for (const c of children) c.kill('SIGKILL') })

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer().once('error', reject)
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)) })
  })
}

/** One PING: resolves true on +PONG, false on any error (not up yet). */
function ping(port) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1')
    let buf = ''
    const done = (ok) => { s.destroy(); resolve(ok) }
    s.setTimeout(500, () => done(false))
    s.on('error', () => done(false))
    s.on('connect', () => s.write('PING\r\n'))
    s.on('data', (d) => { buf += d; if (buf.includes('\r\n')) done(buf.startsWith('+PONG')) })
  })
}

async function startRedis() {
  const port = await freePort()
  const p = spawn('redis-server', ['--bind', '127.0.0.1', '--port', String(port), '--save', '', '--appendonly', 'no'],
    { stdio: 'ignore' })
  children.push(p)
  const failed = new Promise((_, reject) => {
    p.once('error', (e) => reject(new Error(`redis-server did not start (apt-get install -y redis-server): ${e.message}`)))
    p.once('exit', (code) => reject(new Error(`redis-server exited with ${code}`)))
  })
  failed.catch(() => {})
  for (let i = 0; i < 250; i++) { // at most ~5 s
    if (await Promise.race([ping(port), failed])) return { port, proc: p }
    await new Promise((r) => setTimeout(r, 20))
  }
  throw new Error(`redis-server on port ${port} did not answer PING within the bound`)
}

async function startOwner() {
  const p = spawn(process.execPath, [fileURLToPath(new URL('owner.cjs', import.meta.url))],
    { stdio: ['pipe', 'pipe', 'inherit'] })
  children.push(p)
  const lines = createInterface({ input: p.stdout })[Symbol.asyncIterator]()
  const next = async () => { const r = await lines.next(); if (r.done) throw new Error('the owner process exited'); return r.value }
  const { addr } = JSON.parse(await next())
  return { addr, proc: p, next }
}

// --- the two contenders --------------------------------------------------------------

const [redisSrv, owner] = await Promise.all([startRedis(), startOwner()])
const redis = new Redis({ host: '127.0.0.1', port: redisSrv.port, lazyConnect: true, maxRetriesPerRequest: 0 })
await redis.connect()

const reader = new Cluster({ listen: '127.0.0.1:0', peers: [owner.addr], workerThreads: Number(process.env.WT ?? 2) })
const group = reader.group('remote', { capacity: '64MiB', hotSample: 0 })
owner.proc.stdin.write(`${JSON.stringify({ reader: reader.advertiseAddr })}\n`)
if ((await owner.next()) !== 'ready') throw new Error('owner not ready')

// Keys the owner owns (from the reader's ring), the same keys in Redis.
const keys = []
for (let i = 0; keys.length < KEYS; i++) {
  const k = `user:${i}`
  if (reader.ownerOf(k) === owner.addr) keys.push(k)
}
await Promise.all(keys.map((k) => group.set(k, value)))
const pipe = redis.pipeline()
for (const k of keys) pipe.set(k, value)
await pipe.exec()
// Sanity: both answer the value, and the reader holds no copy (every get is remote).
for (const k of keys.slice(0, 10)) {
  if (!(await group.get(k)).equals(value) || !(await redis.getBuffer(k)).equals(value)) throw new Error('wrong value')
}
if (group.stats().main.items + group.stats().hot.items !== 0) throw new Error('the reader cached a copy')

const contenders = {
  meshcache: (k) => group.get(k),
  ioredis: (k) => redis.getBuffer(k),
}
// ONLY=meshcache (or ioredis) times one contender, e.g. under `perf record`; WT=1 gives
// the reader one runtime worker thread (default 2).
const only = process.env.ONLY

/** Sequential: ns per awaited get. */
async function latency(get, n) {
  const t = process.hrtime.bigint()
  for (let i = 0; i < n; i++) await get(keys[i % KEYS])
  return Number(process.hrtime.bigint() - t) / n
}

/** `c` callers, each awaiting gets of its own keys in turn: gets per second. */
async function throughput(get, c, n) {
  const per = Math.ceil(n / c)
  const t = process.hrtime.bigint()
  await Promise.all(Array.from({ length: c }, async (_, j) => {
    for (let i = 0; i < per; i++) await get(keys[(j + i * c) % KEYS])
  }))
  return (per * c) / (Number(process.hrtime.bigint() - t) / 1e9)
}

const runs = [
  { name: 'latency, 1 caller', unit: 'us/get', run: (g) => latency(g, 3000).then((ns) => ns / 1000), better: 'lower' },
  { name: 'throughput, 16 callers', unit: 'k gets/s', run: (g) => throughput(g, 16, 30000).then((x) => x / 1000), better: 'higher' },
  { name: 'throughput, 50 callers', unit: 'k gets/s', run: (g) => throughput(g, 50, 40000).then((x) => x / 1000), better: 'higher' },
]

// Warm-up (connections, JIT), then interleaved rounds; the order alternates per round.
for (const get of Object.values(contenders)) { await latency(get, 1000); await throughput(get, 50, 5000) }
if (only) for (const name of Object.keys(contenders)) if (name !== only) contenders[name] = async () => {}
const results = runs.map(() => ({ meshcache: [], ioredis: [] }))
for (let round = 0; round < ROUNDS; round++) {
  const order = round % 2 === 0 ? ['meshcache', 'ioredis'] : ['ioredis', 'meshcache']
  for (const [i, r] of runs.entries()) {
    for (const name of order) results[i][name].push(await r.run(contenders[name]))
  }
}

const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[s.length >> 1] }
const fmt = (x) => (x >= 100 ? x.toFixed(0) : x.toFixed(1)).padStart(7)
console.log(`remote get, ${KEYS} keys, 100-byte values, loopback, ${ROUNDS} interleaved rounds, median (min..max)`)
for (const [i, r] of runs.entries()) {
  const m = median(results[i].meshcache)
  const x = median(results[i].ioredis)
  const span = (xs) => `(${Math.min(...xs).toFixed(1)}..${Math.max(...xs).toFixed(1)})`
  // ratio: how many times better meshcache is (>1: faster than ioredis)
  const ratio = r.better === 'lower' ? x / m : m / x
  console.log(`${r.name.padEnd(24)} ${r.unit.padEnd(9)} meshcache ${fmt(m)} ${span(results[i].meshcache).padEnd(15)}` +
    ` ioredis ${fmt(x)} ${span(results[i].ioredis).padEnd(15)} meshcache ${ratio.toFixed(2)}x as fast`)
}
const s = group.stats()
console.log(`reader: ${s.remote_fetches} remote fetches, ${s.hits + s.hot_hits} local hits (must be 0)`)

redis.disconnect()
await reader.close()
owner.proc.stdin.end()
redisSrv.proc.kill('SIGTERM')
await Promise.all([once(owner.proc, 'exit'), once(redisSrv.proc, 'exit')])
