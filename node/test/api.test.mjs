// Every API of the package, in one process.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createRequire } from 'node:module'
import { readFileSync } from 'node:fs'
import { Cluster, Group, NotFoundError } from '../lib.mjs'
import { bounded } from './bound.mjs'

const require = createRequire(import.meta.url)

function fixture(loader) {
  const cluster = new Cluster({ listen: '127.0.0.1:0' })
  const calls = []
  const group = cluster.group('users', {
    capacity: '16MiB',
    ttlMs: 60_000,
    loader: async (key) => {
      calls.push(key)
      return loader ? loader(key) : Buffer.from(`user ${key}`)
    },
  })
  return { cluster, group, calls }
}

test('CommonJS and ESM entries export the same classes', () => {
  const cjs = require('../lib.cjs')
  assert.equal(cjs.Cluster, Cluster)
  assert.equal(cjs.NotFoundError, NotFoundError)
  assert.equal(require('meshcache').Cluster, Cluster)
})

test('get loads once, then peek and get hit', async () => {
  const { cluster, group, calls } = fixture()
  try {
    assert.equal(group.peek('42'), undefined)
    const v = await group.get('42')
    assert.ok(Buffer.isBuffer(v))
    assert.equal(v.toString(), 'user 42')
    assert.equal(group.peek('42').toString(), 'user 42')
    assert.equal((await group.get('42')).toString(), 'user 42')
    assert.deepEqual(calls, ['42'])
    const s = group.stats()
    assert.equal(s.loads, 1)
    assert.equal(s.hits, 2)
    assert.equal(s.main.items, 1)
    assert.equal(s.capacity, 16 * 1024 * 1024)
    assert.equal(group.name, 'users')
    assert.ok(group instanceof Group)
  } finally {
    await cluster.close()
  }
})

test('loader results: Buffer, Uint8Array, string, { value, ttlMs }', async () => {
  const { cluster, group } = fixture((key) => {
    switch (key) {
      case 'u8': return new Uint8Array([1, 2, 3])
      case 'str': return 'héllo'
      case 'obj': return { value: 'with ttl', ttlMs: 5000 }
      case 'sync': return Buffer.from('b')
    }
  })
  try {
    assert.deepEqual([...(await group.get('u8'))], [1, 2, 3])
    assert.equal((await group.get('str')).toString(), 'héllo')
    assert.equal((await group.get('obj')).toString(), 'with ttl')
    assert.equal((await group.get('sync')).toString(), 'b')
  } finally {
    await cluster.close()
  }
  const c2 = new Cluster()
  const g2 = c2.group('sync-loader', { loader: (key) => `plain ${key}` })
  assert.equal((await g2.get('k')).toString(), 'plain k')
  await c2.close()
})

test('NotFoundError: rejects with MESHCACHE_NOT_FOUND and is cached', async () => {
  const { cluster, group, calls } = fixture(() => {
    throw new NotFoundError('no such user')
  })
  try {
    for (let i = 0; i < 2; i++) {
      await assert.rejects(group.get('ghost'), (e) => e instanceof Error && e.code === 'MESHCACHE_NOT_FOUND')
    }
    assert.equal(calls.length, 1, 'the absence is cached')
    assert.equal(group.peek('ghost'), undefined)
    const m = await group.getMany(['ghost'])
    assert.equal(m.size, 0)
  } finally {
    await cluster.close()
  }
})

test("a loader's error is the rejection's cause, and is not cached", async () => {
  const boom = new Error('db down')
  boom.code = 'E_DB'
  const { cluster, group, calls } = fixture(() => {
    throw boom
  })
  try {
    await assert.rejects(group.get('k'), (e) => {
      assert.equal(e.code, 'MESHCACHE_LOAD')
      assert.equal(e.cause, boom, 'the very object the loader threw')
      assert.match(e.message, /db down/)
      return true
    })
    await assert.rejects(group.get('k'), (e) => e.cause === boom)
    assert.equal(calls.length, 2)
    assert.equal(group.stats().load_errors, 2)
  } finally {
    await cluster.close()
  }
})

test('a loader returning the wrong type rejects with a TypeError', async () => {
  // (a ttlMs that is a number but no duration is a RangeError: see throwables.test.mjs)
  const { cluster, group } = fixture((key) => (key === 'num' ? 42 : key === 'obj' ? { value: 7 } : { value: 'x', ttlMs: '5s' }))
  try {
    for (const k of ['num', 'obj', 'ttl']) {
      await assert.rejects(group.get(k), (e) => e instanceof TypeError && e.code === 'MESHCACHE_INVALID_ARGUMENT')
    }
  } finally {
    await cluster.close()
  }
})

test('1000 concurrent gets of one key call the loader once', async () => {
  let release
  const gate = new Promise((r) => (release = r))
  let called
  const loading = new Promise((r) => (called = r))
  // One worker thread: the gets' tasks then run in the order they were spawned, so that a
  // get spawned after them shows when they all ran (see below).
  const cluster = new Cluster({ listen: '127.0.0.1:0', workerThreads: 1 })
  const calls = []
  const group = cluster.group('users', {
    capacity: '16MiB',
    ttlMs: 60_000,
    loader: async (key) => {
      calls.push(key)
      called()
      await gate
      return Buffer.from(`v ${key}`)
    },
  })
  let sentinelCalled
  const sentinelLoading = new Promise((r) => (sentinelCalled = r))
  const sentinel = cluster.group('sentinel', { loader: (key) => { sentinelCalled(); return key } })
  try {
    const all = Array.from({ length: 1000 }, () => group.get('hot'))
    // The gets' tasks join the load when the runtime first runs them; one that runs after
    // the load ended finds the value cached, and is not counted as deduplicated. Nothing
    // shows a get joining (deduplicated is counted when the load ends), so a get of
    // another group, spawned after the 1000: its loader is called once the one worker
    // has run every task before it, i.e. once all 1000 have joined. Then the load ends.
    const last = sentinel.get('after the 1000')
    await bounded(Promise.all([loading, sentinelLoading]), 5000, 'the loads to start')
    release()
    const values = await Promise.all(all)
    await last
    assert.equal(calls.length, 1)
    assert.ok(values.every((v) => v.toString() === 'v hot'))
    assert.equal(group.stats().loads, 1)
    assert.equal(group.stats().deduplicated, 999)
  } finally {
    await cluster.close()
  }
})

test('getMany returns a Map of the keys that exist', async () => {
  const { cluster, group } = fixture((key) => {
    if (key === 'none') throw new NotFoundError()
    return `v${key}`
  })
  try {
    await group.get('1')
    const m = await group.getMany(['1', '2', 'none', '2'])
    assert.ok(m instanceof Map)
    assert.deepEqual([...m.keys()].sort(), ['1', '2'])
    assert.equal(m.get('2').toString(), 'v2')
  } finally {
    await cluster.close()
  }
})

test('set, delete, ttl options', async () => {
  const { cluster, group, calls } = fixture()
  try {
    assert.equal(await group.set('a', Buffer.from('A'), { ttlMs: 10_000 }), undefined)
    assert.equal(group.peek('a').toString(), 'A')
    await group.set('s', 'string value')
    await group.set('u', new Uint8Array([9]))
    assert.equal((await group.get('s')).toString(), 'string value')
    assert.deepEqual([...group.peek('u')], [9])
    await group.delete('a')
    assert.equal(group.peek('a'), undefined)
    assert.equal((await group.get('a')).toString(), 'user a')
    assert.deepEqual(calls, ['a'])
  } finally {
    await cluster.close()
  }
})

test('cluster accessors and stats', async () => {
  const cluster = new Cluster({ listen: '127.0.0.1:0', peerTimeoutMs: 500, vnodes: 64, workerThreads: 1 })
  try {
    assert.match(cluster.localAddr, /^127\.0\.0\.1:\d+$/)
    assert.equal(cluster.advertiseAddr, cluster.localAddr)
    assert.deepEqual(cluster.members(), [cluster.localAddr])
    assert.equal(cluster.ownerOf('k'), cluster.localAddr)
    cluster.setPeers([cluster.localAddr, '127.0.0.1:1'])
    assert.equal(cluster.members().length, 2)
    const s = cluster.stats()
    assert.equal(s.node, cluster.localAddr)
    assert.equal(s.peers.length, 1)
    assert.equal(s.peers[0].breaker, 'closed')
    assert.equal(cluster.closed, false)
  } finally {
    await cluster.close()
  }
  assert.equal(cluster.closed, true)
  await cluster.close() // idempotent
})

test('bad input: TypeErrors and RangeErrors with MESHCACHE_INVALID_ARGUMENT', async () => {
  const { cluster, group } = fixture()
  try {
    const isType = (e) => e instanceof TypeError && e.code === 'MESHCACHE_INVALID_ARGUMENT'
    const isRange = (e) => e instanceof RangeError && e.code === 'MESHCACHE_INVALID_ARGUMENT'
    assert.throws(() => group.peek(42), isType)
    await assert.rejects(group.get(42), isType)
    await assert.rejects(group.get(''), isRange)
    await assert.rejects(group.get('x'.repeat(2000)), isRange)
    assert.throws(() => group.peek('x'.repeat(2000)), isRange)
    await assert.rejects(group.getMany('nope'), isType)
    await assert.rejects(group.set('k', 42), isType)
    await assert.rejects(group.set('k', 'v', { ttlMs: -5 }), isRange)
    await assert.rejects(group.delete(null), isType)
    assert.throws(() => cluster.group('users'), isRange) // name in use
    assert.throws(() => cluster.group('g2', { capacity: 'lots' }), isRange)
    assert.throws(() => cluster.group('g3', { capacity: 0 }), isRange)
    assert.throws(() => cluster.group('g4', { loader: 'not a function' }), isType)
    assert.throws(() => new Cluster({ listen: 'not an address' }), isRange)
    // values that can never work are refused by the core, not adjusted here
    assert.throws(() => new Cluster({ workerThreads: 0 }), isRange)
    assert.throws(() => new Cluster({ vnodes: 0 }), isRange)
    assert.throws(() => new Cluster({ breakerThreshold: 0 }), isRange)
  } finally {
    await cluster.close()
  }
})

test('after close: MESHCACHE_CLOSED', async () => {
  const { cluster, group } = fixture()
  await group.get('a')
  const addr = cluster.localAddr
  await cluster.close()
  const isClosed = (e) => e.code === 'MESHCACHE_CLOSED'
  await assert.rejects(group.get('a'), isClosed)
  assert.throws(() => group.peek('a'), isClosed)
  await assert.rejects(group.set('a', 'b'), isClosed)
  assert.throws(() => cluster.group('x'), isClosed)
  assert.throws(() => cluster.localAddr, isClosed)
  assert.equal(group.closed, true)
  // stats() still answers: the counters as the node stopped
  assert.equal(cluster.stats().node, addr)
  assert.equal(cluster.stats().server.closed_at_shutdown, 0)
})

test('a get in flight when the cluster closes rejects with MESHCACHE_CLOSED', { timeout: 20_000 }, async () => {
  let started
  const loading = new Promise((resolve) => { started = resolve })
  // The loader never answers: without settle-on-drop this get would never settle and
  // its thread-safe function would keep the process alive.
  const { cluster, group } = fixture(() => { started(); return new Promise(() => {}) })
  const get = group.get('stuck')
  // The expectation is attached before closing: the get may reject while close() is still
  // running, and a rejection without a handler by then fails the test.
  const rejected = assert.rejects(get, (e) => e.code === 'MESHCACHE_CLOSED')
  await loading
  await cluster.close()
  await rejected
})

test('an astronomically large ttlMs is a RangeError, not a crash', async () => {
  const { cluster, group } = fixture()
  await assert.rejects(group.set('a', 'b', { ttlMs: 1e30 }), (e) => e.code === 'MESHCACHE_INVALID_ARGUMENT')
  assert.throws(() => cluster.group('big', { ttlMs: Number.MAX_VALUE }), (e) => e.code === 'MESHCACHE_INVALID_ARGUMENT')
  await cluster.close()
})

test('group.close closes one group', async () => {
  const { cluster, group } = fixture()
  try {
    const other = cluster.group('other')
    group.close()
    assert.equal(group.closed, true)
    await assert.rejects(group.get('a'), (e) => e.code === 'MESHCACHE_CLOSED')
    await other.set('k', 'v')
    assert.equal(other.peek('k').toString(), 'v')
  } finally {
    await cluster.close()
  }
})

test('a wrong type inside an options object is a TypeError with MESHCACHE_INVALID_ARGUMENT', async () => {
  const { cluster, group } = fixture()
  try {
    const isType = (e) => e instanceof TypeError && e.code === 'MESHCACHE_INVALID_ARGUMENT'
    assert.throws(() => cluster.group('g1', { ttlMs: '60s' }), isType)
    assert.throws(() => cluster.group('g2', { hotSample: 'often' }), isType)
    assert.throws(() => cluster.group('g3', 'not options'), isType)
    assert.throws(() => cluster.group(42), isType)
    assert.throws(() => new Cluster({ listen: 5 }), isType)
    assert.throws(() => new Cluster({ peers: 'a:1' }), isType)
    assert.throws(() => cluster.setPeers('a:1'), isType)
    assert.throws(() => cluster.ownerOf(7), isType)
    // async methods reject, never throw
    const p = group.set('k', 'v', { ttlMs: 'soon' })
    await assert.rejects(p, isType)
    await assert.rejects(group.set('k', 'v', 5), isType)
    // and null/undefined still mean "no options"
    await group.set('k', 'v', undefined)
    await group.set('k', 'v', null)
    assert.ok(cluster.group('g4', null) instanceof Group)
  } finally {
    await cluster.close()
  }
})

test('peek and get hits: fresh Buffers from the pool, large values, many pools', async () => {
  const cluster = new Cluster({ listen: '127.0.0.1:0' })
  try {
    const group = cluster.group('pool')
    const values = new Map()
    // ~2000 values of 1..300 bytes fill several 64 KiB pools
    for (let i = 0; i < 2000; i++) values.set(`k${i}`, Buffer.alloc(1 + (i % 300), i % 251))
    values.set('big', Buffer.alloc(5000, 9)) // above the pooled size: a Buffer of its own
    values.set('empty', Buffer.alloc(0))
    await Promise.all([...values].map(([k, v]) => group.set(k, v)))
    const got = []
    for (const [k, v] of values) {
      const a = group.peek(k)
      const b = await group.get(k)
      assert.ok(Buffer.isBuffer(a) && Buffer.isBuffer(b), k)
      assert.ok(a.equals(v) && b.equals(v), k)
      got.push([v, a, b])
    }
    // every result is its own copy: writing one changes nothing else
    for (const [, a, b] of got) { a.fill(0xee); b.fill(0xdd) }
    for (const [k, v] of values) assert.ok(group.peek(k).equals(v), k)
    for (const [v, a, b] of got) {
      assert.ok(a.every((x) => x === 0xee) && b.every((x) => x === 0xdd) && a.length === v.length)
    }
    // the fast paths are own, non-enumerable properties; the class methods answer alike
    assert.deepEqual(Object.keys(group), [])
    assert.ok(Group.prototype.peek.call(group, 'k1').equals(values.get('k1')))
    assert.ok((await Group.prototype.get.call(group, 'k1')).equals(values.get('k1')))
    const { peek, get } = group // plain calls work too
    assert.ok(peek('k2').equals(values.get('k2')))
    assert.ok((await get('k2')).equals(values.get('k2')))
    assert.equal(peek('missing'), undefined)
    await assert.rejects(get('missing'), (e) => e.code === 'MESHCACHE_NOT_FOUND')
  } finally {
    await cluster.close()
  }
})

// The names of core's `GroupStats::counters()`, `TierStats::fields()`,
// `PeerStats::fields()`, `ServerStats::fields()` and `RingStats::fields()`, in order:
// every language shows exactly these (snake_case).
const GROUP_COUNTERS = ['gets', 'hits', 'hot_hits', 'deduplicated', 'loads', 'load_errors', 'not_found',
  'remote_fetches', 'remote_not_found', 'remote_errors', 'fallback_loads', 'hot_inserts', 'served',
  'invalidation_errors', 'invalidations_retried', 'invalidations_dropped', 'replica_writes', 'replica_write_errors',
  'replica_reads', 'handoff_sent', 'handoff_received', 'warm_takeovers', 'capacity']
const TIER_FIELDS = ['items', 'bytes', 'gets', 'hits', 'evictions', 'expirations']
const PEER_FIELDS = ['requests', 'successes', 'failures', 'timeouts', 'retries', 'rejected', 'breaker_opened']
const SERVER_FIELDS = ['rejected_unauthenticated', 'rejected_overloaded', 'rejected_too_many_keys', 'accept_errors',
  'handshake_timeouts', 'idle_closed', 'closed_at_shutdown', 'rejected_protocol_mismatch']
const RING_FIELDS = ['source', 'members', 'epoch', 'changed_at_ms', 'healthy', 'error']

/** The names a core function lists as `("name", self.name)`, read from its source. */
function coreNames(file, fn) {
  const src = readFileSync(new URL(`../../core/src/${file}`, import.meta.url), 'utf8')
  const body = src.slice(src.indexOf(`pub fn ${fn}(`))
  return [...body.slice(0, body.indexOf('\n    }\n')).matchAll(/\("([a-z_]+)", self\.\1\)/g)].map((m) => m[1])
}

/** The names a core function returns as an array of string literals, read from its source. */
function coreList(file, type, fn) {
  const src = readFileSync(new URL(`../../core/src/${file}`, import.meta.url), 'utf8')
  const impl = src.slice(src.indexOf(`impl ${type} {`))
  const body = impl.slice(impl.indexOf(`pub fn ${fn}(`))
  return [...body.slice(0, body.indexOf('\n    }\n')).matchAll(/"([a-z_]+)"/g)].map((m) => m[1])
}

test("err.code: MESHCACHE_ and core's kind names, the same list as the ErrorCode type", () => {
  const src = readFileSync(new URL('../../core/src/error.rs', import.meta.url), 'utf8')
  const kinds = [...src.matchAll(/ErrorKind::\w+ => "([A-Z_]+)"/g)].map((m) => `MESHCACHE_${m[1]}`)
  assert.ok(kinds.includes('MESHCACHE_INVALID_ARGUMENT'))
  const dts = readFileSync(new URL('../index.d.ts', import.meta.url), 'utf8')
  const union = dts.slice(dts.indexOf('export type ErrorCode ='), dts.indexOf('\n\n', dts.indexOf('export type ErrorCode =')))
  assert.deepEqual([...union.matchAll(/'(MESHCACHE_[A-Z_]+)'/g)].map((m) => m[1]), kinds)
})

test("the lists above are core's", () => {
  assert.deepEqual(coreNames('group/stats.rs', 'counters'), GROUP_COUNTERS)
  assert.deepEqual(coreNames('store/mod.rs', 'fields'), TIER_FIELDS)
  assert.deepEqual(coreNames('peer/client.rs', 'fields'), PEER_FIELDS)
  assert.deepEqual(coreNames('peer/server.rs', 'fields'), SERVER_FIELDS)
  assert.deepEqual(coreList('cluster/membership.rs', 'RingStats', 'fields'), RING_FIELDS)
})

test("the RingStats type in index.d.ts names core's ring fields", () => {
  const dts = readFileSync(new URL('../index.d.ts', import.meta.url), 'utf8')
  const start = dts.indexOf('export interface RingStats {')
  assert.ok(start >= 0, 'index.d.ts declares RingStats')
  const body = dts.slice(start, dts.indexOf('\n}', start))
  assert.deepEqual([...body.matchAll(/^  ([a-z_]+): /gm)].map((m) => m[1]), RING_FIELDS)
})

test("the ServerStats type in index.d.ts names core's server counters", () => {
  const dts = readFileSync(new URL('../index.d.ts', import.meta.url), 'utf8')
  const start = dts.indexOf('export interface ServerStats {')
  const body = dts.slice(start, dts.indexOf('\n}', start))
  assert.deepEqual([...body.matchAll(/^  ([a-z_]+): number$/gm)].map((m) => m[1]), SERVER_FIELDS)
})

test('stats: the keys are core\'s names, snake_case, in core\'s order', async () => {
  const { cluster, group } = fixture()
  try {
    await group.get('a')
    const s = group.stats()
    assert.deepEqual(Object.keys(s), [...GROUP_COUNTERS, 'main', 'hot'])
    assert.deepEqual(Object.keys(s.main), TIER_FIELDS)
    assert.deepEqual(Object.keys(s.hot), TIER_FIELDS)
    for (const k of GROUP_COUNTERS) assert.equal(typeof s[k], 'number', k)
    assert.equal(s.loads, 1)
    assert.equal(s.main.items, 1)
    cluster.setPeers([cluster.localAddr, '127.0.0.1:1'])
    const c = cluster.stats()
    assert.deepEqual(Object.keys(c), ['node', 'peers', 'server', 'ring'])
    assert.deepEqual(Object.keys(c.server), SERVER_FIELDS)
    assert.deepEqual(Object.keys(c.ring), RING_FIELDS)
    assert.deepEqual(c.ring.members, [cluster.localAddr, '127.0.0.1:1'].sort())
    for (const k of SERVER_FIELDS) assert.equal(c.server[k], 0, k)
    assert.equal(c.peers.length, 1)
    assert.deepEqual(Object.keys(c.peers[0]), ['addr', 'breaker', ...PEER_FIELDS])
    assert.equal(c.peers[0].addr, '127.0.0.1:1')
    assert.equal(c.peers[0].breaker, 'closed')
  } finally {
    await cluster.close()
  }
})

test('breaker states read as core names them: open, then half_open', { timeout: 20_000 }, async () => {
  const cluster = new Cluster({
    listen: '127.0.0.1:0', peerTimeoutMs: 200, connectTimeoutMs: 100, retries: 0, breakerThreshold: 1, breakerCooldownMs: 1000,
  })
  try {
    const group = cluster.group('b', { loader: (k) => `local ${k}` })
    cluster.setPeers([cluster.localAddr, '127.0.0.1:1'])
    let key = 'k0'
    for (let i = 0; cluster.ownerOf(key) !== '127.0.0.1:1'; i++) key = `k${i}`
    // the owner is unreachable: loaded here instead, and the breaker opens
    assert.equal((await group.get(key)).toString(), `local ${key}`)
    const [peer] = cluster.stats().peers
    assert.equal(peer.breaker, 'open')
    assert.equal(peer.breaker_opened, 1)
    assert.ok(peer.failures >= 1)
    // after the cooldown, one probe may go: half open (the state is read off the clock:
    // polled, each turn of the event loop, until it leaves 'open', within 5 s)
    const deadline = Date.now() + 5000
    while (cluster.stats().peers[0].breaker === 'open' && Date.now() < deadline) await new Promise(setImmediate)
    assert.equal(cluster.stats().peers[0].breaker, 'half_open')
  } finally {
    await cluster.close()
  }
})

test("a loader's get of the key it is loading rejects with MESHCACHE_INVALID_ARGUMENT", { timeout: 20_000 }, async () => {
  const cluster = new Cluster({ listen: '127.0.0.1:0' })
  const seen = []
  const group = cluster.group('self', {
    loader: async (key) => {
      if (key === 'other') return 'other value'
      if (key.startsWith('before')) {
        // before any await: still the loader's own synchronous call
        await group.get(key).catch((e) => { seen.push([key, e]); throw e })
      }
      // a real turn of the event loop (not only a microtask): the loader's synchronous call is over
      await new Promise(setImmediate)
      if (key.startsWith('after')) {
        await group.get(key).catch((e) => { seen.push([key, e]); throw e })
      }
      if (key === 'many') await group.getMany(['other', 'many']).catch((e) => { seen.push([key, e]); throw e })
      if (key === 'class') await Group.prototype.get.call(group, key).catch((e) => { seen.push([key, e]); throw e })
      // another key of the same group is fine, before and after awaits
      return `${key}: ${(await group.get('other')).toString()}`
    },
  })
  try {
    for (const key of ['before', 'after', 'many', 'class']) {
      await assert.rejects(bounded(group.get(key)), (e) => {
        // the table in docs/ARCHITECTURE.md: the loader failed (MESHCACHE_LOAD), and its
        // error, the refused get, is the cause
        assert.equal(e.code, 'MESHCACHE_LOAD', key)
        assert.equal(e.cause.code, 'MESHCACHE_INVALID_ARGUMENT', key)
        assert.ok(e.cause instanceof RangeError, key)
        return true
      })
      const [k, inner] = seen.at(-1)
      assert.equal(k, key)
      assert.equal(inner.code, 'MESHCACHE_INVALID_ARGUMENT')
      assert.match(inner.message, /loading/)
    }
    // a loader asking for another key works; the scope does not leak out of the loader
    assert.equal((await bounded(group.get('fine'))).toString(), 'fine: other value')
    assert.equal((await group.getMany(['fine', 'other'])).size, 2)
    assert.equal(group.stats().load_errors, 4)
  } finally {
    await cluster.close()
  }
})

test('workerThreads 0 is refused by the core with MESHCACHE_INVALID_ARGUMENT', () => {
  assert.throws(() => new Cluster({ workerThreads: 0 }), (e) => e.code === 'MESHCACHE_INVALID_ARGUMENT' && /worker_threads/.test(e.message))
})
