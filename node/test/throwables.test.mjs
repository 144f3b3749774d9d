// Calls and loaders with every throwable (issue 11): what a loader throws or rejects with,
// the ttlMs it returns, a loader that never settles, and keys that are no UTF-8.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import { Cluster, Group, NotFoundError } from '../lib.mjs'
import { bounded } from './bound.mjs'

const settles = (p, what, ms) => bounded(p, ms, what)

const isLoad = (value) => (e) => {
  assert.equal(e.code, 'MESHCACHE_LOAD')
  assert.ok(Object.is(e.cause, value), `the cause is the very value thrown, not a ${typeof e.cause}`)
  assert.match(e.message, /^loader failed: /)
  return true
}

// Everything JS can throw that is not an Error with a message, and Errors whose `cause`
// or prototype must not be read naively.
function throwables() {
  const revoked = Proxy.revocable({}, {})
  revoked.revoke()
  const getterCause = new Error('cause getter')
  Object.defineProperty(getterCause, 'cause', { get() { throw new Error('the getter ran') } })
  return {
    symbol: Symbol('thrown'),
    number: 42,
    undefined: undefined,
    null: null,
    'frozen object': Object.freeze({ why: 'frozen' }),
    'null-prototype object': Object.create(null),
    'object whose toString throws': { toString() { throw new Error('toString ran') } },
    'empty string': '',
    bigint: 10n,
    'revoked Proxy': revoked.proxy,
    'Error with a throwing cause getter': getterCause,
  }
}

for (const how of ['throws', 'rejects with']) {
  test(`a loader that ${how} any value: MESHCACHE_LOAD with that value as cause, and the key is not stuck`, async () => {
    const values = throwables()
    const fail = new Set([...Object.keys(values), 'class method'])
    const cluster = new Cluster()
    const group = cluster.group('g', {
      loader: (key) => {
        if (!fail.has(key)) return how === 'throws' ? `ok ${key}` : Promise.resolve(`ok ${key}`)
        fail.delete(key) // the next load of this key works
        const value = key === 'class method' ? values.symbol : values[key]
        if (how === 'throws') throw value
        return Promise.reject(value)
      },
    })
    try {
      for (const [key, value] of Object.entries(values)) {
        await assert.rejects(settles(group.get(key), `get after a loader that ${how} ${key}`), isLoad(value), key)
        assert.equal((await settles(group.get(key), `the next get of ${key}`)).toString(), `ok ${key}`, key)
      }
      // the class method too
      await assert.rejects(settles(Group.prototype.get.call(group, 'class method'), 'Group.prototype.get'), isLoad(values.symbol))
      assert.equal(group.stats().load_errors, Object.keys(values).length + 1)
    } finally {
      await cluster.close()
    }
  })
}

test('a loader that throws an Error whose cause is itself: MESHCACHE_LOAD, no crash', async () => {
  const cyclic = new Error('cyclic')
  cyclic.cause = cyclic
  const cluster = new Cluster()
  const group = cluster.group('g', { loader: () => { throw cyclic } })
  try {
    await assert.rejects(settles(group.get('k'), 'get'), (e) => isLoad(cyclic)(e) && /cyclic/.test(e.message))
  } finally {
    await cluster.close()
  }
})

test('a loader returning a ttlMs that is no duration: RangeError MESHCACHE_INVALID_ARGUMENT, never a panic', async () => {
  const ttls = { huge: 1e300, max: Number.MAX_VALUE, inf: Infinity, ninf: -Infinity, neg: -1, nan: NaN }
  const cluster = new Cluster()
  const group = cluster.group('g', {
    loader: (key) => {
      if (key === 'not found') throw new NotFoundError('gone', { ttlMs: 1e300 })
      if (key === 'string ttl') return { value: 'v', ttlMs: '5000' }
      if (key in ttls) return { value: 'v', ttlMs: ttls[key] }
      return { value: `ok ${key}`, ttlMs: 5000 }
    },
  })
  try {
    for (const key of Object.keys(ttls)) {
      await assert.rejects(settles(group.get(key), key), (e) => {
        assert.ok(e instanceof RangeError, `${key}: ${e.constructor.name} ${e.code} ${e.message}`)
        assert.equal(e.code, 'MESHCACHE_INVALID_ARGUMENT')
        assert.match(e.message, /ttlMs/)
        return true
      })
    }
    await assert.rejects(group.get('string ttl'), (e) => e instanceof TypeError && e.code === 'MESHCACHE_INVALID_ARGUMENT')
    // a NotFoundError's ttlMs that is no duration leaves the group's negativeTtlMs, as before
    await assert.rejects(group.get('not found'), (e) => e.code === 'MESHCACHE_NOT_FOUND')
    assert.equal((await group.get('fine')).toString(), 'ok fine')
  } finally {
    await cluster.close()
  }
})

const neverSettles = fileURLToPath(new URL('./fixtures/never-settles.mjs', import.meta.url))

/**
 * Runs the fixture; resolves with its exit code and output once it exits, within `ms`
 * (a bound, not a wait). `onOut` sees the child's stdout so far, each time it grows.
 */
async function run(args, ms = 10_000, onOut = () => {}) {
  const child = spawn(process.execPath, [neverSettles, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  let err = ''
  child.stdout.on('data', (d) => onOut((out += d)))
  child.stderr.on('data', (d) => (err += d))
  const exited = once(child, 'exit')
  let code
  try {
    ;[code] = await bounded(exited, ms, 'the fixture')
  } catch {
    child.kill('SIGKILL')
    await exited
    assert.fail(`still running after ${ms} ms (stdout: ${out}; stderr: ${err})`)
  }
  return { code, out, err }
}

test('a get whose loader never settles does not keep the process alive', { timeout: 30_000 }, async () => {
  const r = await run([])
  assert.equal(r.code, 0, r.err)
  assert.match(r.out, /end of script/)
  assert.doesNotMatch(r.out, /stuck/)
})

for (const what of ['cluster', 'group']) {
  test(`...and closing the ${what} then rejects those gets with MESHCACHE_CLOSED before the process exits`, { timeout: 30_000 }, async () => {
    const r = await run(['--close', what])
    assert.equal(r.code, 0, r.err)
    assert.match(r.out, /stuck failed: MESHCACHE_CLOSED/)
    assert.match(r.out, /stuck too failed: MESHCACHE_CLOSED/)
    assert.match(r.out, /stuck many failed: MESHCACHE_CLOSED/)
  })
}

test('...but a loader on a timer still answers before the process exits', { timeout: 30_000 }, async () => {
  const r = await run(['--with-timer'])
  assert.equal(r.code, 0, r.err)
  assert.match(r.out, /timer: after a timer/)
  assert.doesNotMatch(r.out, /stuck/)
})

test('...and so does a get waiting for another node', { timeout: 30_000 }, async () => {
  // The owner is this process: its loader answers only once the child's script has ended,
  // which the child, with nothing else pending, must wait for.
  let scriptEnded
  const ended = new Promise((resolve) => (scriptEnded = resolve))
  const owner = new Cluster({ listen: '127.0.0.1:0' })
  owner.group('g', { loader: async (key) => { await ended; return `owner's ${key}` } })
  try {
    const r = await run(['--remote', owner.advertiseAddr], 10_000, (out) => out.includes('end of script') && scriptEnded())
    assert.equal(r.code, 0, r.err)
    assert.match(r.out, /end of script\n[^]*remote: owner's remote \d+/)
  } finally {
    scriptEnded()
    await owner.close()
  }
})

test('keys with a lone surrogate are TypeErrors (MESHCACHE_INVALID_ARGUMENT) in every method; U+FFFD is a key of its own', async () => {
  const cluster = new Cluster()
  const loads = []
  const group = cluster.group('g', { loader: (key) => { loads.push(key); return `loaded ${key}` } })
  const isType = (e) => e instanceof TypeError && e.code === 'MESHCACHE_INVALID_ARGUMENT' && /surrogate/.test(e.message)
  try {
    await group.set('\ufffd', 'replacement character')
    for (const key of ['\ud800', '\udbff', '\udc00', 'a\ud800b', 'x\udfff', '\ud800\ud800']) {
      const what = escape(key)
      await assert.rejects(group.get(key), isType, `get ${what}`)
      await assert.rejects(Group.prototype.get.call(group, key), isType, `Group.prototype.get ${what}`)
      assert.throws(() => group.peek(key), isType, `peek ${what}`)
      assert.throws(() => Group.prototype.peek.call(group, key), isType, `Group.prototype.peek ${what}`)
      await assert.rejects(group.set(key, 'v'), isType, `set ${what}`)
      await assert.rejects(group.delete(key), isType, `delete ${what}`)
      await assert.rejects(group.getMany(['fine', key]), isType, `getMany ${what}`)
      assert.throws(() => cluster.ownerOf(key), isType, `ownerOf ${what}`)
    }
    assert.equal(group.peek('\ufffd').toString(), 'replacement character')
    assert.equal((await group.get('\ufffd')).toString(), 'replacement character')
    // well-formed keys with U+FFFD or surrogate pairs are keys like any other
    for (const key of ['a\ufffdb', '\ud83d\ude00', '\ufffd\ud83d\ude00\ufffd']) {
      assert.equal((await group.get(key)).toString(), `loaded ${key}`)
      assert.equal(group.peek(key).toString(), `loaded ${key}`)
    }
    assert.deepEqual(loads, ['a\ufffdb', '\ud83d\ude00', '\ufffd\ud83d\ude00\ufffd'])
    const many = await group.getMany(['\ufffd', '\ud83d\ude00'])
    assert.deepEqual([...many.keys()], ['\ufffd', '\ud83d\ude00'])
  } finally {
    await cluster.close()
  }
})
