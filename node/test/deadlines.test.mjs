// Issue 11: a group's loadTimeoutMs and a call's timeoutMs (get, getMany).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { Cluster, Group } from '../lib.mjs'
import { bounded } from './bound.mjs'

const isTimeout = (e) => e instanceof Error && e.code === 'MESHCACHE_TIMEOUT'
const isRange = (e) => e instanceof RangeError && e.code === 'MESHCACHE_INVALID_ARGUMENT'
const isType = (e) => e instanceof TypeError && e.code === 'MESHCACHE_INVALID_ARGUMENT'

// A loader whose calls hang until `release(value)`.
function hung() {
  const calls = []
  let release
  const gate = new Promise((resolve) => (release = resolve))
  return { calls, release: (v) => release(v), loader: (key) => (calls.push(key), gate) }
}

test('loadTimeoutMs: every get waiting on a hung loader times out, and the next get loads again', async () => {
  const cluster = new Cluster()
  try {
    let calls = 0
    // The first call never answers (and holds nothing that keeps the process alive).
    const g = cluster.group('g', {
      loadTimeoutMs: 50,
      loader: (key) => (++calls === 1 ? new Promise(() => {}) : `second ${key}`),
    })
    const waiting = [g.get('k'), g.get('k'), Group.prototype.get.call(g, 'k'), g.getMany(['k'])]
    for (const r of await bounded(Promise.allSettled(waiting))) {
      assert.equal(r.status, 'rejected')
      assert.ok(isTimeout(r.reason), String(r.reason))
    }
    assert.equal(calls, 1)
    assert.equal((await bounded(g.get('k'))).toString(), 'second k')
    assert.equal(calls, 2)
  } finally {
    await cluster.close()
  }
})

test('timeoutMs: only that caller stops waiting; the load goes on for the others', async () => {
  const cluster = new Cluster()
  try {
    const h = hung()
    const g = cluster.group('g', { loader: h.loader })
    const deadlined = g.get('k', { timeoutMs: 30 })
    const patient = g.get('k')
    const viaClass = Group.prototype.get.call(g, 'k', { timeoutMs: 30 })
    const many = g.getMany(['k', 'j'], { timeoutMs: 30 })
    for (const r of await bounded(Promise.allSettled([deadlined, viaClass, many]))) {
      assert.equal(r.status, 'rejected')
      assert.ok(isTimeout(r.reason), String(r.reason))
    }
    h.release('loaded')
    assert.equal((await bounded(patient)).toString(), 'loaded')
    assert.deepEqual(h.calls.sort(), ['j', 'k'])
    // A hit answers whatever the deadline.
    assert.equal((await g.get('k', { timeoutMs: 1 })).toString(), 'loaded')
    const m = await bounded(g.getMany(['k', 'j'], { timeoutMs: 5000 }))
    assert.equal(m.get('j').toString(), 'loaded')
  } finally {
    await cluster.close()
  }
})

test('zero, negative or non-numeric deadlines are refused', async () => {
  const cluster = new Cluster()
  try {
    for (const bad of [0, -1, NaN, Infinity]) {
      assert.throws(() => cluster.group(`lt${bad}`, { loadTimeoutMs: bad }), isRange)
    }
    assert.throws(() => cluster.group('lts', { loadTimeoutMs: '5' }), isType)
    const h = hung()
    const g = cluster.group('g', { loader: h.loader })
    for (const bad of [0, -1, NaN, Infinity]) {
      await assert.rejects(g.get('k', { timeoutMs: bad }), isRange)
      await assert.rejects(Group.prototype.get.call(g, 'k', { timeoutMs: bad }), isRange)
      await assert.rejects(g.getMany(['k'], { timeoutMs: bad }), isRange)
    }
    await assert.rejects(g.get('k', { timeoutMs: '5' }), isType)
    await assert.rejects(g.get('k', 5), isType)
    await assert.rejects(g.getMany(['k'], { timeoutMs: '5' }), isType)
    // Refused before waiting: the loader was never called.
    assert.deepEqual(h.calls, [])
    h.release('v')
  } finally {
    await cluster.close()
  }
})

test('a get with a deadline keeps the process alive until it times out, even on a JS loader', () => {
  const script = fileURLToPath(new URL('./fixtures/deadline-alive.mjs', import.meta.url))
  const r = spawnSync(process.execPath, [script], { timeout: 10_000, encoding: 'utf8' })
  assert.equal(r.status, 0, r.stderr)
  assert.equal(r.stdout.trim(), 'MESHCACHE_TIMEOUT MESHCACHE_TIMEOUT MESHCACHE_TIMEOUT')
})

const isAbort = (e, reason) => e instanceof Error && e.name === 'AbortError' && e.code === 'ABORT_ERR' && e.cause === reason

test('signal: aborting rejects the waiting calls with AbortError; the load goes on for the others', async () => {
  const { getEventListeners } = await import('node:events')
  const cluster = new Cluster()
  try {
    const h = hung()
    const g = cluster.group('g', { loader: h.loader })
    const ac = new AbortController()
    const signal = ac.signal
    const aborted = [
      g.get('k', { signal }),
      Group.prototype.get.call(g, 'k', { signal }),
      g.getMany(['k', 'j'], { signal, timeoutMs: 60_000 }),
    ]
    const patient = g.get('k')
    const reason = new Error('user went away')
    ac.abort(reason)
    for (const r of await bounded(Promise.allSettled(aborted))) {
      assert.equal(r.status, 'rejected')
      assert.ok(isAbort(r.reason, reason), String(r.reason))
    }
    h.release('v')
    assert.equal((await bounded(patient)).toString(), 'v')
    assert.deepEqual(h.calls.sort(), ['j', 'k'])
    // An aborted signal refuses at once, even a hit, and starts no load.
    await assert.rejects(g.get('k', { signal }), (e) => isAbort(e, reason))
    await assert.rejects(g.get('new', { signal }), (e) => isAbort(e, reason))
    assert.deepEqual(h.calls.sort(), ['j', 'k'])
    // A live signal changes nothing, and leaves no listener behind once the call settles.
    const live = new AbortController().signal
    assert.equal((await g.get('k', { signal: live })).toString(), 'v')
    assert.equal((await g.get('fresh', { signal: live })).toString(), 'v')
    assert.equal((await g.getMany(['k'], { signal: live })).get('k').toString(), 'v')
    assert.equal(getEventListeners(live, 'abort').length, 0)
  } finally {
    await cluster.close()
  }
})

test('signal: anything but an AbortSignal is a TypeError rejection', async () => {
  const cluster = new Cluster()
  try {
    const g = cluster.group('g', { loader: (k) => k })
    for (const signal of [{ aborted: true }, 'abort', 1]) {
      await assert.rejects(g.get('k', { signal }), isType)
      await assert.rejects(g.getMany(['k'], { signal }), isType)
    }
  } finally {
    await cluster.close()
  }
})
