'use strict'
// The CommonJS entry point: the addon (loaded by the generated index.js), plus what is
// JavaScript by nature: NotFoundError, and the adapter that turns whatever a loader
// returns into the one shape the addon reads.
const native = require('./index.js')
// The global `Buffer` is an accessor: a binding of our own is one load less per call.
const { Buffer } = require('node:buffer')

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

/** Normalises a loader's result to `{ value, ttlMs }`, `{ notFound, ttlMs }` or `{ invalid }`. */
function reply(r) {
  if (r instanceof Uint8Array) return { value: r }
  if (typeof r === 'string') return { value: Buffer.from(r) }
  if (r !== null && typeof r === 'object' && 'value' in r) {
    if (!validTtl(r.ttlMs)) return { invalid: `loader returned ttlMs ${describe(r.ttlMs)}: want a number >= 0` }
    const v = r.value
    if (v instanceof Uint8Array) return { value: v, ttlMs: r.ttlMs }
    if (typeof v === 'string') return { value: Buffer.from(v), ttlMs: r.ttlMs }
    return { invalid: `loader returned { value: ${describe(v)} }: want a Buffer, Uint8Array or string` }
  }
  return { invalid: `loader returned ${describe(r)}: want a Buffer, Uint8Array, string or { value, ttlMs }` }
}

function adapt(loader) {
  if (typeof loader !== 'function') {
    const e = new TypeError(`loader must be a function, not ${describe(loader)}`)
    e.code = 'MESHCACHE_INVALID_ARGUMENT'
    throw e
  }
  return async function meshcacheLoader(key) {
    let r
    try {
      r = await loader(key)
    } catch (e) {
      if (e instanceof NotFoundError) {
        return validTtl(e.ttlMs) ? { notFound: true, ttlMs: e.ttlMs } : { notFound: true }
      }
      throw e // reaches every waiting caller as the `cause` of a MESHCACHE_LOAD error
    }
    return reply(r)
  }
}

/**
 * Gives a group its own `peek` and `get` over the addon's fast paths: on a hit of a small
 * value they answer `offset * 8192 + length` of a copy in `h.pool` (an ArrayBuffer the
 * addon replaces when full), and a Buffer view made here costs a fraction of one made by
 * the addon. Anything else is already the answer.
 */
function fastPaths(g) {
  const h = g._fast()
  const own = (value) => ({ configurable: true, writable: true, value })
  Object.defineProperties(g, {
    peek: own(function peek(key) {
      const r = h.peek(key)
      return typeof r === 'number' ? Buffer.from(h.pool, r >>> 13, r & 8191) : r
    }),
    get: own(function get(key) {
      const r = h.get(key)
      return typeof r === 'number' ? Promise.resolve(Buffer.from(h.pool, r >>> 13, r & 8191)) : r
    }),
  })
  return g
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

module.exports = { Cluster: native.Cluster, Group: native.Group, NotFoundError }
