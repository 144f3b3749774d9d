// Issue 13: a group's `replicas` and `replicateLoads`, a cluster's `warmWindowMs`,
// `handoffTimeoutMs` and `handoffMaxBytes`, and the counters that show them at work.
// The handoff tests join through the etcd of `make test-node` (MESHCACHE_TEST_ETCD):
// without it they fail, never skip. Every wait is on an event with a bound; nothing sleeps.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { Cluster } from '../lib.mjs'
import { bounded } from './bound.mjs'

const isRange = (e) => e instanceof RangeError && e.code === 'MESHCACHE_INVALID_ARGUMENT'
const isType = (e) => e instanceof TypeError && e.code === 'MESHCACHE_INVALID_ARGUMENT'

/** `n` nodes of one static cluster, each with group `g` (`options`) and a counting loader. */
function nodes(n, options, clusterOptions = {}) {
  const loads = []
  const all = Array.from({ length: n }, (_, i) => {
    const cluster = new Cluster({ listen: '127.0.0.1:0', ...clusterOptions })
    const group = cluster.group('g', {
      hotSample: 0,
      ...options,
      loader: (key) => (loads.push([i, key]), `loaded ${key}`),
    })
    return { cluster, group }
  })
  const addrs = all.map((x) => x.cluster.advertiseAddr)
  for (const { cluster } of all) cluster.setPeers(addrs)
  return { all, addrs, loads }
}

const closeAll = (all) => Promise.all(all.map((x) => x.cluster.close()))

const keys = (n) => Array.from({ length: n }, (_, i) => `key-${i}`)
const value = (key) => `value of ${key}`

test('replicas: 2: the keys of a dead owner are read from their replica, never loaded', { timeout: 60_000 }, async () => {
  const { all, addrs, loads } = nodes(3, { replicas: 2 })
  const [n0, n1, n2] = all
  try {
    for (const k of keys(200)) await bounded(n0.group.set(k, value(k)))
    const s0 = n0.group.stats()
    // Every set reached its second owner (this node itself, or another): one each.
    assert.equal(s0.replica_writes, 200)
    assert.equal(s0.replica_write_errors, 0)

    const orphans = keys(200).filter((k) => n0.cluster.ownerOf(k) === addrs[2])
    assert.ok(orphans.length >= 20, `only ${orphans.length} keys owned by node 2`)
    // Each one's replica is node 0 or node 1 (peek: the local store, never loads).
    const on0 = orphans.filter((k) => n0.group.peek(k) !== undefined)
    const on1 = orphans.filter((k) => n1.group.peek(k) !== undefined)
    assert.deepEqual([...on0, ...on1].sort(), [...orphans].sort(), 'each key is on exactly one survivor')

    await bounded(n2.cluster.close())
    for (const { group } of [n0, n1]) {
      for (const k of orphans) assert.equal((await bounded(group.get(k))).toString(), value(k), k)
    }
    assert.deepEqual(loads, [])
    // A survivor holding the replica answers from its own store; the other one asks it.
    const [r0, r1] = [n0.group.stats(), n1.group.stats()]
    assert.equal(r0.replica_reads, on1.length)
    assert.equal(r1.replica_reads, on0.length)
    assert.ok(r0.replica_reads + r1.replica_reads > 0)
    assert.equal(r0.fallback_loads + r1.fallback_loads, 0)
  } finally {
    await closeAll(all)
  }
})

test('replicas: 1 (the default): a dead owner\'s keys are loaded again', { timeout: 60_000 }, async () => {
  const { all, addrs, loads } = nodes(2, {})
  const [n0, n1] = all
  try {
    const theirs = keys(100).filter((k) => n0.cluster.ownerOf(k) === addrs[1])
    assert.ok(theirs.length > 0)
    for (const k of theirs) await bounded(n0.group.set(k, value(k)))
    assert.equal(n0.group.stats().replica_writes, 0)
    await bounded(n1.cluster.close())
    for (const k of theirs) assert.equal((await bounded(n0.group.get(k))).toString(), `loaded ${k}`)
    assert.equal(loads.length, theirs.length)
    assert.equal(n0.group.stats().replica_reads, 0)
  } finally {
    await closeAll(all)
  }
})

test('replicateLoads: a loaded value reaches the replica too', { timeout: 60_000 }, async () => {
  for (const replicateLoads of [true, false]) {
    const { all, addrs } = nodes(2, { replicas: 2, replicateLoads })
    const [n0, n1] = all
    try {
      const mine = keys(100).filter((k) => n0.cluster.ownerOf(k) === addrs[0])
      for (const k of mine) await bounded(n0.group.get(k))
      // Background writes: done once the replica has counted them, within a bound.
      const deadline = Date.now() + 5000
      const want = replicateLoads ? mine.length : 0
      while (n0.group.stats().replica_writes < want && Date.now() < deadline) await new Promise(setImmediate)
      assert.equal(n0.group.stats().replica_writes, want, `replicateLoads: ${replicateLoads}`)
      const held = mine.filter((k) => n1.group.peek(k) !== undefined).length
      assert.equal(held, want, `replicateLoads: ${replicateLoads}`)
    } finally {
      await closeAll(all)
    }
  }
})

test('warmWindowMs: a node that newly owns a key asks its previous owner first; 0 turns it off', { timeout: 60_000 }, async () => {
  for (const warmWindowMs of [undefined, 0]) {
    const { all, addrs, loads } = nodes(3, {}, warmWindowMs === undefined ? {} : { warmWindowMs })
    const [n0, n1] = all
    try {
      for (const k of keys(100)) await bounded(n0.group.set(k, value(k)))
      const moved = keys(100).filter((k) => n0.cluster.ownerOf(k) === addrs[2])
      assert.ok(moved.length > 0)
      // Node 2 leaves the ring of the others, still up and holding its keys.
      for (const { cluster } of [n0, n1]) cluster.setPeers(addrs.slice(0, 2))
      for (const k of moved) await bounded(n0.group.get(k))
      const warm = n0.group.stats().warm_takeovers + n1.group.stats().warm_takeovers
      if (warmWindowMs === 0) {
        assert.equal(warm, 0)
        assert.equal(loads.length, moved.length)
      } else {
        assert.equal(warm, moved.length)
        assert.deepEqual(loads, [])
        for (const k of moved) assert.equal((await n0.group.get(k)).toString(), value(k))
      }
    } finally {
      await closeAll(all)
    }
  }
})

/** The etcd of this suite, or a failure that says how to get one. */
function etcdSpec(name) {
  const endpoint = process.env.MESHCACHE_TEST_ETCD
  assert.ok(endpoint, 'MESHCACHE_TEST_ETCD is not set: run the suite with `make test-node` (it starts an etcd)')
  return `etcd://${endpoint}/meshcache-node-test/${name}-${randomUUID()}?lease_ttl=2`
}

test('handoff: a graceful close hands its entries to their new owner; handoffTimeoutMs 0 turns it off', { timeout: 60_000 }, async () => {
  for (const handoffTimeoutMs of [undefined, 0]) {
    const membership = etcdSpec('handoff')
    const loads = []
    const node = (options) => {
      const cluster = new Cluster({ listen: '127.0.0.1:0', membership, ...options })
      const group = cluster.group('g', { hotSample: 0, loader: (key) => (loads.push(key), `loaded ${key}`) })
      return { cluster, group }
    }
    // Without warm takeover, a key that was not handed off is loaded, not peeked.
    const a = node({ warmWindowMs: 0 })
    const b = node({ handoffTimeoutMs, handoffMaxBytes: '16MiB' })
    try {
      await Promise.all([a.cluster.waitForMembers(2), b.cluster.waitForMembers(2)].map((p) => bounded(p)))
      const theirs = keys(100).filter((k) => a.cluster.ownerOf(k) === b.cluster.advertiseAddr)
      assert.ok(theirs.length > 0)
      for (const k of theirs) await bounded(a.group.set(k, value(k)))
      await bounded(b.cluster.close(), 15_000)
      await bounded(a.cluster.waitForMembers(1))
      const sent = b.group.stats().handoff_sent
      const received = a.group.stats().handoff_received
      for (const k of theirs) await bounded(a.group.get(k))
      if (handoffTimeoutMs === 0) {
        assert.equal(sent, 0)
        assert.equal(received, 0)
        assert.equal(loads.length, theirs.length)
      } else {
        assert.equal(sent, theirs.length)
        assert.equal(received, theirs.length)
        assert.deepEqual(loads, [])
      }
    } finally {
      await Promise.all([a.cluster.close(), b.cluster.close()])
    }
  }
})

test('replicas must be a whole number >= 1; the new cluster options are checked', async () => {
  const cluster = new Cluster()
  try {
    for (const replicas of [0, -1, 1.5, NaN, Infinity]) {
      assert.throws(() => cluster.group(`r${replicas}`, { replicas }), isRange, String(replicas))
    }
    assert.throws(() => cluster.group('r0', { replicas: 0 }), /replicas must be at least 1/)
    assert.throws(() => cluster.group('rs', { replicas: 'two' }), isType)
    assert.throws(() => cluster.group('rl', { replicateLoads: 'yes' }), isType)
    const g = cluster.group('ok', { replicas: 3, replicateLoads: true, loader: (k) => k })
    // Alone, the key's only owner is this node: more replicas than nodes is fine.
    await g.set('k', 'v')
    assert.equal((await g.get('k')).toString(), 'v')
    assert.equal((await g.get('j')).toString(), 'j')
  } finally {
    await cluster.close()
  }
  for (const bad of [{ warmWindowMs: -1 }, { warmWindowMs: NaN }, { handoffTimeoutMs: -5 },
    { handoffMaxBytes: -1 }, { handoffMaxBytes: 'lots' }]) {
    assert.throws(() => new Cluster(bad), isRange, JSON.stringify(bad))
  }
  for (const bad of [{ warmWindowMs: '1s' }, { handoffTimeoutMs: true }, { handoffMaxBytes: true }]) {
    assert.throws(() => new Cluster(bad), isType, JSON.stringify(bad))
  }
  // Zero turns each off; a node built so works.
  const off = new Cluster({ warmWindowMs: 0, handoffTimeoutMs: 0, handoffMaxBytes: 0 })
  try {
    const g = off.group('g', { loader: (k) => `loaded ${k}` })
    assert.equal((await g.get('k')).toString(), 'loaded k')
  } finally {
    await off.close()
  }
})
