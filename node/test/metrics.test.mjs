// Metrics and status of an embedded node (README `## Metrics and status`): `metricsText()`,
// `status()`, and `metricsListen`'s HTTP server on 127.0.0.1:0, read with node:http.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { get as httpGet } from 'node:http'
import { connect } from 'node:net'
import { once } from 'node:events'
import { Cluster } from '../lib.mjs'

const isRange = (e) => e instanceof RangeError && e.code === 'MESHCACHE_INVALID_ARGUMENT'
const isType = (e) => e instanceof TypeError && e.code === 'MESHCACHE_INVALID_ARGUMENT'
const isClosed = (e) => e.code === 'MESHCACHE_CLOSED'

/** `GET path` from `addr` (`host:port`) over a connection of its own: { status, type, body }. */
async function fetchText(addr, path) {
  const [host, port] = [addr.slice(0, addr.lastIndexOf(':')), Number(addr.slice(addr.lastIndexOf(':') + 1))]
  const req = httpGet({ host, port, path, agent: false })
  const [res] = await once(req, 'response')
  res.setEncoding('utf8')
  let body = ''
  for await (const chunk of res) body += chunk
  return { status: res.statusCode, type: res.headers['content-type'], body }
}

/** The error of a TCP connection to `addr`, or null if it connected. */
async function connectError(addr) {
  const i = addr.lastIndexOf(':')
  const socket = connect({ host: addr.slice(0, i), port: Number(addr.slice(i + 1)) })
  try {
    await once(socket, 'connect')
    return null
  } catch (e) {
    return e
  } finally {
    socket.destroy()
  }
}

/** A node with group `g` whose loader answers `v:<key>`, after one load and `hits` hits. */
async function warmed(options, hits) {
  const cluster = new Cluster({ listen: '127.0.0.1:0', ...options })
  const group = cluster.group('g', { loader: (key) => `v:${key}` })
  assert.equal((await group.get('k')).toString(), 'v:k')
  for (let i = 0; i < hits; i++) assert.equal((await group.get('k')).toString(), 'v:k')
  return { cluster, group }
}

const hitLine = (group, n) => `meshcache_gets_total{group="${group}",result="hit"} ${n}\n`

test('metricsText() counts the hits group.stats() does, without metricsListen', async () => {
  const { cluster, group } = await warmed({}, 7)
  try {
    assert.equal(cluster.metricsAddr, null)
    const { hits, loads } = group.stats()
    assert.equal(hits, 7)
    assert.equal(loads, 1)
    const text = cluster.metricsText()
    assert.ok(text.includes(hitLine('g', hits)), text)
    assert.ok(text.includes('meshcache_loads_total{group="g"} 1\n'), text)
    assert.match(text, /^meshcache_ring_members 1$/m)
    assert.ok(text.endsWith('# EOF\n'))
    // no key in any label
    assert.ok(!text.includes('"k"'))
  } finally {
    await cluster.close()
  }
  assert.equal(cluster.metricsAddr, null)
  assert.throws(() => cluster.metricsText(), isClosed)
  assert.throws(() => cluster.status(), isClosed)
})

test('status() is the /v1/status JSON, with the names of stats()', async () => {
  const { cluster, group } = await warmed({}, 3)
  try {
    const status = cluster.status()
    assert.equal(status.node, cluster.advertiseAddr)
    const ring = cluster.stats().ring
    assert.deepEqual(status.ring.members, [{ addr: cluster.advertiseAddr, share: 1 }])
    assert.equal(status.ring.source, 'static')
    assert.equal(status.ring.healthy, true)
    assert.equal(status.ring.error, null)
    assert.equal(status.ring.epoch, ring.epoch)
    assert.equal(status.ring.changed_at_ms, ring.changed_at_ms)
    assert.deepEqual(status.peers, [])
    assert.equal(status.groups.length, 1)
    const { name, ...counters } = status.groups[0]
    assert.equal(name, 'g')
    // the same counters, same names, as group.stats() (the node is idle: same values)
    assert.deepEqual(counters, { ...group.stats() })
    assert.equal(counters.hits, 3)
  } finally {
    await cluster.close()
  }
})

test('metricsListen on 127.0.0.1:0 serves /metrics, /v1/status, / and /healthz until close()', async () => {
  const { cluster, group } = await warmed({ metricsListen: '127.0.0.1:0' }, 5)
  let addr
  try {
    addr = cluster.metricsAddr
    assert.match(addr, /^127\.0\.0\.1:\d+$/)
    assert.notEqual(addr, '127.0.0.1:0')
    assert.notEqual(addr, cluster.localAddr)
    const hits = group.stats().hits
    assert.equal(hits, 5)

    const metrics = await fetchText(addr, '/metrics')
    assert.equal(metrics.status, 200)
    assert.match(metrics.type, /^(text\/plain|application\/openmetrics-text)/)
    assert.ok(metrics.body.includes(hitLine('g', hits)), metrics.body)
    // reading the metrics counts no get
    assert.equal(group.stats().gets, 6)

    const status = await fetchText(addr, '/v1/status')
    assert.equal(status.status, 200)
    const json = JSON.parse(status.body)
    assert.equal(json.node, cluster.advertiseAddr)
    assert.deepEqual(json, cluster.status())

    const page = await fetchText(addr, '/')
    assert.equal(page.status, 200)
    assert.match(page.body, /<title>meshcache status<\/title>/)

    assert.equal((await fetchText(addr, '/healthz')).status, 200)
    assert.equal((await fetchText(addr, '/readyz')).status, 200)
    assert.equal((await fetchText(addr, '/nope')).status, 404)
  } finally {
    await cluster.close()
  }
  assert.equal(cluster.metricsAddr, null)
  const e = await connectError(addr)
  assert.equal(e?.code, 'ECONNREFUSED', `after close(), ${addr} still accepts connections`)
})

test('a metricsListen that cannot be bound or is no string is refused', async () => {
  assert.throws(() => new Cluster({ metricsListen: 'not an address' }), isRange)
  assert.throws(() => new Cluster({ metricsListen: '127.0.0.1:99999' }), isRange)
  assert.throws(() => new Cluster({ metricsListen: 9090 }), isType)
  // a port in use: this node's own metrics port, for a second node
  const cluster = new Cluster({ listen: '127.0.0.1:0', metricsListen: '127.0.0.1:0' })
  try {
    assert.throws(() => new Cluster({ metricsListen: cluster.metricsAddr }), (e) => isRange(e) && /metrics/.test(e.message))
    // the first node's server is unharmed
    assert.equal((await fetchText(cluster.metricsAddr, '/healthz')).status, 200)
  } finally {
    await cluster.close()
  }
})
