'use strict'
// The CommonJS entry point: the addon (loaded by the generated index.js), plus what is
// JavaScript by nature: NotFoundError, the adapter that turns whatever a loader returns
// into the one shape the addon reads, and the loader's context.
const native = require('./index.js')
// The global `Buffer` is an accessor: a binding of our own is one load less per call.
const { Buffer } = require('node:buffer')
const { AsyncLocalStorage } = require('node:async_hooks')

// The load scope of the loader running in this async context (an opaque External the
// addon hands the adapter), across its awaits. A `get` that misses (and every `getMany`)
// hands it back to the addon, so that the core refuses a loader's get of the very key it
// is loading (MESHCACHE_INVALID_ARGUMENT) instead of letting it wait for itself.
const als = new AsyncLocalStorage()
// JS loaders running in `als`. While none is, `als` is disabled: on Node 20 an enabled
// AsyncLocalStorage hooks the creation of every promise in the process (measured: an
// `await group.get()` hit ~270 -> ~430 ns), and outside a load nothing needs a scope.
let loading = 0

class NotFoundError extends Error {
  constructor(message = 'not found', options = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.name = 'NotFoundError'
    this.code = 'MESHCACHE_NOT_FOUND'
    if (options.ttlMs !== undefined) this.ttlMs = options.ttlMs
  }
}

function describe(v) {
  if (v === null) return 'null'
  if (Array.isArray(v)) return 'an array'
  if (typeof v === 'object') return `an object (${v.constructor ? v.constructor.name : 'no prototype'})`
  return `${typeof v} ${String(v).slice(0, 40)}`
}

const validTtl = (t) => t === undefined || (typeof t === 'number' && Number.isFinite(t) && t >= 0)

/**
 * Normalises a loader's result to `{ value, ttlMs }`, `{ notFound, ttlMs }` or `{ invalid }`.
 * A `ttlMs` that is a number goes to the addon as it is: one that is no duration (negative,
 * NaN, infinite, too large) rejects there with a RangeError, as `set`'s does.
 */
function reply(r) {
  if (r instanceof Uint8Array) return { value: r }
  if (typeof r === 'string') return { value: Buffer.from(r) }
  if (r !== null && typeof r === 'object' && 'value' in r) {
    if (r.ttlMs !== undefined && typeof r.ttlMs !== 'number') {
      return { invalid: `loader returned ttlMs ${describe(r.ttlMs)}: want a number of ms >= 0` }
    }
    const v = r.value
    if (v instanceof Uint8Array) return { value: v, ttlMs: r.ttlMs }
    if (typeof v === 'string') return { value: Buffer.from(v), ttlMs: r.ttlMs }
    return { invalid: `loader returned { value: ${describe(v)} }: want a Buffer, Uint8Array or string` }
  }
  return { invalid: `loader returned ${describe(r)}: want a Buffer, Uint8Array, string or { value, ttlMs }` }
}

// `instanceof` runs the thrown value's prototype lookup, which a Proxy can make throw: then
// it is not a NotFoundError, and is rethrown as it is.
function isNotFound(e) {
  try {
    return e instanceof NotFoundError
  } catch {
    return false
  }
}

function adapt(loader) {
  if (typeof loader !== 'function') {
    const e = new TypeError(`loader must be a function, not ${describe(loader)}`)
    e.code = 'MESHCACHE_INVALID_ARGUMENT'
    throw e
  }
  return async function meshcacheLoader(key, scope) {
    let r
    try {
      if (scope == null) {
        r = await loader(key)
      } else {
        loading++
        try {
          r = await als.run(scope, loader, key)
        } finally {
          if (--loading === 0) als.disable()
        }
      }
    } catch (e) {
      if (isNotFound(e)) {
        return validTtl(e.ttlMs) ? { notFound: true, ttlMs: e.ttlMs } : { notFound: true }
      }
      // Whatever it is (a Symbol, undefined, a revoked Proxy...): it reaches every waiting
      // caller, untouched, as the `cause` of a MESHCACHE_LOAD error.
      throw e
    }
    return reply(r)
  }
}

/** The rejection of a call whose `signal` aborted: Node's AbortError shape. */
function abortError(signal) {
  const e = new Error('the operation was aborted', { cause: signal.reason })
  e.name = 'AbortError'
  e.code = 'ABORT_ERR'
  return e
}

/**
 * `options.signal` of a get, checked: undefined when there is none, else the signal. A
 * signal that is no AbortSignal throws a TypeError, like every bad option.
 */
function signalOf(options) {
  if (options === undefined || options === null || typeof options !== 'object') return undefined
  const signal = options.signal
  if (signal === undefined || signal === null) return undefined
  if (!(signal instanceof AbortSignal)) {
    const e = new TypeError(`options.signal must be an AbortSignal, not ${describe(signal)}`)
    e.code = 'MESHCACHE_INVALID_ARGUMENT'
    throw e
  }
  return signal
}

/**
 * `start()`'s promise, rejected with an AbortError as soon as `signal` aborts (at once,
 * without starting, if it already has). The call itself goes on: the load it waits for is
 * shared with other callers. The listener goes when the call settles, so a long-lived
 * signal does not collect one per call.
 */
function abortable(signal, start) {
  if (signal.aborted) return Promise.reject(abortError(signal))
  const p = start()
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(abortError(signal))
    signal.addEventListener('abort', onAbort, { once: true })
    const done = () => signal.removeEventListener('abort', onAbort)
    p.then(
      (v) => (done(), resolve(v)),
      (e) => (done(), reject(e)),
    )
  })
}

// A call with a bad `signal` rejects (as a bad key does) instead of throwing.
function withSignal(options, call) {
  let signal
  try {
    signal = signalOf(options)
  } catch (e) {
    return Promise.reject(e)
  }
  return signal === undefined ? call() : abortable(signal, call)
}

/**
 * Gives a group its own `peek` and `get` over the addon's fast paths: on a hit of a small
 * value they answer `offset * 8192 + length` of a copy in `h.pool` (an ArrayBuffer the
 * addon replaces when full), and a Buffer view made here costs a fraction of one made by
 * the addon. A `get` miss answers `undefined`: only then is the loader's context looked
 * up, and `h.miss` gives the promise. Anything else is already the answer.
 */
function fastPaths(g) {
  const h = g._fast()
  const own = (value) => ({ configurable: true, writable: true, value })
  Object.defineProperties(g, {
    peek: own(function peek(key) {
      const r = h.peek(key)
      return typeof r === 'number' ? Buffer.from(h.pool, r >>> 13, r & 8191) : r
    }),
    // `options` (its `timeoutMs`) is read by `h.miss` only: a hit without a signal never
    // pays for it.
    get: own(function get(key, options) {
      if (options !== undefined && options !== null && options.signal != null) {
        return withSignal(options, () => fastGet(h, key, options))
      }
      return fastGet(h, key, options)
    }),
  })
  return g
}

function fastGet(h, key, options) {
  const r = h.get(key)
  if (typeof r === 'number') return Promise.resolve(Buffer.from(h.pool, r >>> 13, r & 8191))
  return r === undefined ? h.miss(key, als.getStore(), options) : r
}

const nativeGroup = native.Cluster.prototype.group
Object.defineProperty(native.Cluster.prototype, 'group', {
  configurable: true,
  writable: true,
  value: function group(name, options) {
    if (options != null && typeof options === 'object' && options.loader != null) {
      options = { ...options, loader: adapt(options.loader) }
    }
    return fastPaths(nativeGroup.call(this, name, options))
  },
})

// The class methods take the loader's context as a hidden third argument: `getMany`,
// and `get` for `Group.prototype.get.call(g, key)` (groups have their own `get`).
const nativeGet = native.Group.prototype.get
const nativeGetMany = native.Group.prototype.getMany
const method = (value) => ({ configurable: true, writable: true, value })
Object.defineProperties(native.Group.prototype, {
  get: method(function get(key, options) {
    const scope = als.getStore()
    return withSignal(options, () => nativeGet.call(this, key, options, scope))
  }),
  getMany: method(function getMany(keys, options) {
    const scope = als.getStore()
    return withSignal(options, () => nativeGetMany.call(this, keys, options, scope))
  }),
})

module.exports = { Cluster: native.Cluster, Group: native.Group, NotFoundError }
