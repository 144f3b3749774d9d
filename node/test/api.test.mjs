// Every API of the package, in one process.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createRequire } from 'node:module'
import { Cluster, Group, NotFoundError } from '../lib.mjs'

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
    assert.equal(group.stats().loadErrors, 2)
  } finally {
    await cluster.close()
  }
})

test('a loader returning the wrong type rejects with a TypeError', async () => {
  const { cluster, group } = fixture((key) => (key === 'num' ? 42 : key === 'obj' ? { value: 7 } : { value: 'x', ttlMs: -1 }))
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
  const { cluster, group, calls } = fixture(async (key) => {
    await gate
    return Buffer.from(`v ${key}`)
  })
  try {
    const all = Array.from({ length: 1000 }, () => group.get('hot'))
    release()
    const values = await Promise.all(all)
    assert.equal(calls.length, 1)
    assert.ok(values.every((v) => v.toString() === 'v hot'))
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
  } finally {
    await cluster.close()
  }
})

test('after close: MESHCACHE_CLOSED', async () => {
  const { cluster, group } = fixture()
  await group.get('a')
  await cluster.close()
  const isClosed = (e) => e.code === 'MESHCACHE_CLOSED'
  await assert.rejects(group.get('a'), isClosed)
  assert.throws(() => group.peek('a'), isClosed)
  await assert.rejects(group.set('a', 'b'), isClosed)
  assert.throws(() => cluster.group('x'), isClosed)
  assert.equal(group.closed, true)
})

test('a get in flight when the cluster closes rejects with MESHCACHE_CLOSED', { timeout: 20_000 }, async () => {
  let started
  const loading = new Promise((resolve) => { started = resolve })
  // The loader never answers: without settle-on-drop this get would never settle and
  // its thread-safe function would keep the process alive.
  const { cluster, group } = fixture(() => { started(); return new Promise(() => {}) })
  const get = group.get('stuck')
  await loading
  await cluster.close()
  await assert.rejects(get, (e) => e.code === 'MESHCACHE_CLOSED')
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
