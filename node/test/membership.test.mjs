// Issue 12: the `membership` option, `cluster.stats().ring` and `cluster.waitForMembers()`.
// The etcd tests need MESHCACHE_TEST_ETCD (`host:port` of an etcd that `make test-node`
// starts with target/debug/with-etcd): without it they fail, never skip. Every wait is on an
// event with a bound; nothing sleeps.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import { Cluster } from '../lib.mjs'
import { bounded } from './bound.mjs'

const isRange = (e) => e instanceof RangeError && e.code === 'MESHCACHE_INVALID_ARGUMENT'
const isType = (e) => e instanceof TypeError && e.code === 'MESHCACHE_INVALID_ARGUMENT'
const isTimeout = (e) => e instanceof Error && e.code === 'MESHCACHE_TIMEOUT'
const isClosed = (e) => e instanceof Error && e.code === 'MESHCACHE_CLOSED'

/** The etcd of this suite, or a failure that says how to get one. */
function etcd() {
  const endpoint = process.env.MESHCACHE_TEST_ETCD
  assert.ok(endpoint, 'MESHCACHE_TEST_ETCD is not set: run the suite with `make test-node` (it starts an etcd)')
  return endpoint
}

/** A membership spec of its own prefix in the suite's etcd, with a short lease. */
const etcdSpec = (name) => `etcd://${etcd()}/meshcache-node-test/${name}-${randomUUID()}?lease_ttl=2`

const RING_KEYS = ['source', 'members', 'epoch', 'changed_at_ms', 'healthy', 'error']

test('two clusters joined through etcd: one ring, one load per key, setPeers refused, a leaver is dropped at once', { timeout: 60_000 }, async () => {
  const spec = etcdSpec('two')
  const loads = []
  const node = (name) => {
    const cluster = new Cluster({ listen: '127.0.0.1:0', membership: spec })
    const group = cluster.group('g', {
      hotSample: 0,
      loader: (key) => (loads.push([name, key]), `${key} from ${name}`),
    })
    return { cluster, group }
  }
  const a = node('a')
  const b = node('b')
  try {
    const both = [a.cluster.localAddr, b.cluster.localAddr].sort()
    const [ma, mb] = await Promise.all([a.cluster.waitForMembers(2), b.cluster.waitForMembers(2)])
    assert.deepEqual(ma, both)
    assert.deepEqual(mb, both)
    for (const c of [a.cluster, b.cluster]) {
      const ring = c.stats().ring
      assert.deepEqual(Object.keys(ring), RING_KEYS)
      assert.equal(ring.source, 'etcd')
      assert.equal(ring.healthy, true)
      assert.equal(ring.error, null)
      assert.deepEqual(ring.members, both)
      assert.ok(ring.epoch >= 2, `epoch ${ring.epoch}`)
      assert.equal(typeof ring.changed_at_ms, 'number')
      assert.ok(ring.changed_at_ms > 0)
      assert.deepEqual(c.members(), both)
    }
    // A key b owns, asked through a first: b's loader runs, once.
    let key
    for (let i = 0; key === undefined; i++) {
      assert.ok(i < 10_000, 'no key owned by b')
      if (a.cluster.ownerOf(`k${i}`) === b.cluster.advertiseAddr) key = `k${i}`
    }
    assert.equal(b.cluster.ownerOf(key), b.cluster.advertiseAddr, 'both rings agree')
    assert.equal((await bounded(a.group.get(key))).toString(), `${key} from b`)
    assert.equal((await bounded(b.group.get(key))).toString(), `${key} from b`)
    assert.equal((await bounded(a.group.get(key))).toString(), `${key} from b`)
    assert.deepEqual(loads, [['b', key]])
    assert.equal(a.group.stats().remote_fetches, 2)

    assert.throws(() => a.cluster.setPeers([a.cluster.localAddr]), isRange)
    assert.throws(() => b.cluster.setPeers([]), isRange)

    // A graceful close revokes b's lease: a sees it leave well within the lease TTL.
    const epoch = a.cluster.stats().ring.epoch
    await bounded(b.cluster.close())
    const started = Date.now()
    assert.deepEqual(await a.cluster.waitForMembers(1, { timeoutMs: 1500 }), [a.cluster.localAddr])
    assert.ok(Date.now() - started < 1500)
    const ring = a.cluster.stats().ring
    assert.ok(ring.epoch > epoch)
    assert.equal(ring.healthy, true)
    // b's ring, as it stopped, is still readable
    assert.equal(b.cluster.stats().ring.source, 'etcd')
  } finally {
    await Promise.all([a.cluster.close(), b.cluster.close()])
  }
})

test('peers with an etcd membership are refused', () => {
  assert.throws(() => new Cluster({ membership: etcdSpec('peers'), peers: ['127.0.0.1:1'] }), isRange)
})

test('a membership spec that cannot work is a RangeError (MESHCACHE_INVALID_ARGUMENT), not a crash', () => {
  for (const membership of ['consul://x', 'etcd://h:1', 'etcd://h/p', 'etcd://h:1/p?bogus=1', 'dns://name', 'dns://name:0', 'nonsense']) {
    assert.throws(() => new Cluster({ membership }), (e) => isRange(e) && /membership/.test(e.message), membership)
  }
  // The password of a bad spec is never shown.
  assert.throws(() => new Cluster({ membership: 'etcd://u:s3cret@h/p' }), (e) => isRange(e) && !e.message.includes('s3cret'))
  assert.throws(() => new Cluster({ membership: 42 }), isType)
})

test('a static cluster: ring source static, healthy, error null; waitForMembers follows setPeers', async () => {
  for (const membership of [undefined, 'static']) {
    const cluster = new Cluster(membership === undefined ? {} : { membership })
    try {
      const addr = cluster.localAddr
      const ring = cluster.stats().ring
      assert.deepEqual(Object.keys(ring), RING_KEYS)
      assert.equal(ring.source, 'static')
      assert.equal(ring.healthy, true)
      assert.equal(ring.error, null)
      assert.deepEqual(ring.members, [addr])
      assert.equal(ring.epoch, 1)
      assert.deepEqual(await bounded(cluster.waitForMembers(1)), [addr])
      // Waiting first: resolved by the change, not by a poll.
      const two = cluster.waitForMembers(2, { timeoutMs: 5000 })
      cluster.setPeers([addr, '127.0.0.1:1'])
      assert.deepEqual(await bounded(two), [addr, '127.0.0.1:1'].sort())
      assert.equal(cluster.stats().ring.epoch, 2)
    } finally {
      await cluster.close()
    }
  }
})

test('waitForMembers: MESHCACHE_TIMEOUT after timeoutMs; bad arguments reject; MESHCACHE_CLOSED on close', async () => {
  const cluster = new Cluster()
  try {
    const started = Date.now()
    await assert.rejects(bounded(cluster.waitForMembers(3, { timeoutMs: 50 })), isTimeout)
    assert.ok(Date.now() - started >= 45)
    await assert.rejects(cluster.waitForMembers(-1), isRange)
    await assert.rejects(cluster.waitForMembers(1.5), isRange)
    await assert.rejects(cluster.waitForMembers(NaN), isRange)
    await assert.rejects(cluster.waitForMembers('2'), isType)
    await assert.rejects(cluster.waitForMembers(2, { timeoutMs: 0 }), isRange)
    await assert.rejects(cluster.waitForMembers(2, { timeoutMs: -1 }), isRange)
    await assert.rejects(cluster.waitForMembers(2, 'soon'), isType)
    // A long wait ends with the cluster, not at its deadline.
    const waiting = cluster.waitForMembers(5, { timeoutMs: 60_000 })
    const rejected = assert.rejects(waiting, isClosed)
    await bounded(cluster.close())
    await bounded(rejected)
    await assert.rejects(cluster.waitForMembers(1), isClosed)
    assert.equal(cluster.stats().ring.source, 'static')
  } finally {
    await cluster.close()
  }
})

for (const [how, args, code] of [
  ['left to time out', [], 'MESHCACHE_TIMEOUT'],
  ['ended by close()', ['--close'], 'MESHCACHE_CLOSED'],
  ['whose Cluster object is collected', ['--expose-gc', '--collect'], 'MESHCACHE_TIMEOUT'],
]) {
  test(`a pending waitForMembers ${how} never keeps the process alive beyond its timeout`, () => {
    const script = fileURLToPath(new URL('./fixtures/wait-members.mjs', import.meta.url))
    const argv = args[0] === '--expose-gc' ? ['--expose-gc', script, ...args.slice(1)] : [script, ...args]
    const r = spawnSync(process.execPath, argv, { timeout: 10_000, encoding: 'utf8' })
    assert.equal(r.error, undefined, 'did not exit within 10 s')
    assert.equal(r.status, 0, r.stderr)
    assert.equal(r.stdout.trim(), code)
  })
}
