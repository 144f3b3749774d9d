// The peer port's protection (README `## Security`): the cluster token and its rotation,
// TLS and mutual TLS, and a shutdown that always ends. Nodes on 127.0.0.1:0 in this
// process; certificates from `$MESHCACHE_GENCERT` (`make gencert`) in a temp dir.
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connect } from 'node:net'
import { fileURLToPath } from 'node:url'
import { Cluster } from '../lib.mjs'

const scratch = mkdtempSync(join(tmpdir(), 'meshcache-security-'))
after(() => rmSync(scratch, { recursive: true, force: true }))

const isRange = (e) => e instanceof RangeError && e.code === 'MESHCACHE_INVALID_ARGUMENT'
const isType = (e) => e instanceof TypeError && e.code === 'MESHCACHE_INVALID_ARGUMENT'

/** A fresh CA, a node certificate and a stranger's, written by gencert into a temp dir. */
function certs() {
  const bin = process.env.MESHCACHE_GENCERT ?? fileURLToPath(new URL('../../target/debug/gencert', import.meta.url))
  assert.ok(existsSync(bin), `${bin} is missing: \`make gencert\` builds it (make test-node does)`)
  const dir = mkdtempSync(join(scratch, 'certs-'))
  const r = spawnSync(bin, [dir], { encoding: 'utf8', timeout: 20_000 })
  assert.equal(r.status, 0, r.stderr)
  const f = (name) => join(dir, name)
  return {
    member: { tlsCert: f('node.pem'), tlsKey: f('node.key'), tlsCa: f('ca.pem') },
    // a certificate from another CA, presented to members (it trusts their CA)
    stranger: { tlsCert: f('stranger.pem'), tlsKey: f('stranger.key'), tlsCa: f('ca.pem') },
  }
}

/** A node whose loader answers `<name>:<key>` and records the keys it loaded. */
function node(name, options) {
  const cluster = new Cluster({ listen: '127.0.0.1:0', ...options })
  const loads = []
  const group = cluster.group('g', {
    loader: (key) => {
      loads.push(key)
      return `${name}:${key}`
    },
  })
  return { cluster, group, loads }
}

/** Every node of `nodes` has them all as peers. */
function joinAll(...nodes) {
  const addrs = nodes.map((n) => n.cluster.localAddr)
  for (const n of nodes) n.cluster.setPeers(addrs)
}

/** A key never asked for before that `owner` owns on `from`'s ring (a node keeps the
 * values it fetched or loaded, so a key asked for again would not test a thing). */
let fresh = 0
function keyOwnedBy(from, owner) {
  for (;;) {
    const key = `k${fresh++}`
    if (from.cluster.ownerOf(key) === owner.cluster.localAddr) return key
  }
}

async function closeAll(nodes) {
  await Promise.all(nodes.map((n) => n.cluster.close()))
}

test('token: members fetch from each other; a wrong token loads locally and is counted', { timeout: 20_000 }, async () => {
  const a = node('a', { token: 's3cret' })
  const b = node('b', { token: 's3cret' })
  const stranger = node('stranger', { token: 'not-ours' })
  try {
    joinAll(a, b)
    let key = keyOwnedBy(b, a)
    assert.equal((await b.group.get(key)).toString(), `a:${key}`)
    assert.deepEqual(a.loads, [key])
    assert.equal(a.group.stats().served, 1)
    assert.equal(b.group.stats().remote_fetches, 1)
    assert.equal(a.cluster.stats().server.rejected_unauthenticated, 0)

    stranger.cluster.setPeers([a.cluster.localAddr, stranger.cluster.localAddr])
    key = keyOwnedBy(stranger, a)
    const served = a.group.stats().served
    assert.equal((await stranger.group.get(key)).toString(), `stranger:${key}`)
    assert.equal(stranger.group.stats().fallback_loads, 1)
    assert.ok(!a.loads.includes(key), 'the owner did no work for a stranger')
    assert.equal(a.group.stats().served, served)
    assert.ok(a.cluster.stats().server.rejected_unauthenticated > 0)
  } finally {
    await closeAll([a, b, stranger])
  }
})

test('token rotation: previousToken is accepted; tokenFile is read (first line, trimmed)', { timeout: 20_000 }, async () => {
  const file = join(scratch, 'token')
  writeFileSync(file, '  new-token  \nsecond line\n')
  const rotated = node('rotated', { token: 'new-token', previousToken: 'old-token' })
  const old = node('old', { token: 'old-token' })
  const fromFile = node('file', { tokenFile: file, token: 'overridden-by-the-file' })
  try {
    old.cluster.setPeers([rotated.cluster.localAddr, old.cluster.localAddr])
    let key = keyOwnedBy(old, rotated)
    assert.equal((await old.group.get(key)).toString(), `rotated:${key}`)
    assert.equal(old.group.stats().remote_fetches, 1)

    fromFile.cluster.setPeers([rotated.cluster.localAddr, fromFile.cluster.localAddr])
    key = keyOwnedBy(fromFile, rotated)
    assert.equal((await fromFile.group.get(key)).toString(), `rotated:${key}`)
    assert.equal(fromFile.group.stats().remote_fetches, 1)
    assert.equal(rotated.cluster.stats().server.rejected_unauthenticated, 0)
  } finally {
    await closeAll([rotated, old, fromFile])
  }
})

test('bad tokens and token files are MESHCACHE_INVALID_ARGUMENT, and no message shows a token', () => {
  const empty = join(scratch, 'empty-token')
  writeFileSync(empty, '\n')
  for (const options of [
    { token: 'two words' },
    { token: '' },
    { token: 'tab\there' },
    { tokenFile: join(scratch, 'missing') },
    { tokenFile: empty },
    { previousToken: 'old-token' }, // a previous token needs a current one
    { token: 'new-token', previousToken: 'old token' },
  ]) {
    assert.throws(() => new Cluster(options), (e) => {
      assert.ok(isRange(e), `${JSON.stringify(options)}: ${e}`)
      for (const t of [options.token, options.previousToken]) {
        if (t) assert.ok(!e.message.includes(t), `the message shows the token: ${e.message}`)
      }
      return true
    })
  }
  assert.throws(() => new Cluster({ token: 42 }), isType)
  assert.throws(() => new Cluster({ tokenFile: true }), isType)
})

test('TLS: members fetch over mutual TLS; plaintext and strangers load locally and are counted', { timeout: 30_000 }, async () => {
  const { member, stranger: strangerCert } = certs()
  const a = node('a', member)
  const b = node('b', member)
  const named = node('named', { ...member, tlsServerName: 'localhost' })
  const plain = node('plain', {})
  const stranger = node('stranger', strangerCert)
  const open = node('open', { ...member, tlsClientAuth: false })
  const all = [a, b, named, plain, stranger, open]
  try {
    joinAll(a, b)
    let key = keyOwnedBy(b, a)
    assert.equal((await b.group.get(key)).toString(), `a:${key}`)
    assert.equal(b.group.stats().remote_fetches, 1)

    // the certificate names localhost too
    named.cluster.setPeers([a.cluster.localAddr, named.cluster.localAddr])
    key = keyOwnedBy(named, a)
    assert.equal((await named.group.get(key)).toString(), `a:${key}`)

    // plaintext to a TLS node: refused, and counted there
    plain.cluster.setPeers([a.cluster.localAddr, plain.cluster.localAddr])
    key = keyOwnedBy(plain, a)
    const mismatches = a.cluster.stats().server.rejected_protocol_mismatch
    assert.equal((await plain.group.get(key)).toString(), `plain:${key}`)
    assert.equal(plain.group.stats().fallback_loads, 1)
    assert.ok(a.cluster.stats().server.rejected_protocol_mismatch > mismatches)

    // a certificate from another CA: refused by a (mutual TLS is the default), welcome
    // where tlsClientAuth is false
    stranger.cluster.setPeers([a.cluster.localAddr, stranger.cluster.localAddr])
    key = keyOwnedBy(stranger, a)
    const served = a.group.stats().served
    assert.equal((await stranger.group.get(key)).toString(), `stranger:${key}`)
    assert.equal(stranger.group.stats().fallback_loads, 1)
    assert.equal(a.group.stats().served, served, 'a served nothing to a stranger')
    stranger.cluster.setPeers([open.cluster.localAddr, stranger.cluster.localAddr])
    key = keyOwnedBy(stranger, open)
    assert.equal((await stranger.group.get(key)).toString(), `open:${key}`)
  } finally {
    await closeAll(all)
  }
})

test('TLS options: unreadable files, partial or orphan options are MESHCACHE_INVALID_ARGUMENT', () => {
  const { member } = certs()
  assert.throws(() => new Cluster({ ...member, tlsCert: join(scratch, 'nonexistent.pem') }), isRange)
  assert.throws(() => new Cluster({ ...member, tlsCa: join(scratch, 'nonexistent-ca.pem') }), isRange)
  assert.throws(() => new Cluster({ tlsCert: member.tlsCert }), (e) => isRange(e) && /tlsKey and tlsCa/.test(e.message))
  assert.throws(() => new Cluster({ tlsClientAuth: false }), isRange)
  assert.throws(() => new Cluster({ tlsServerName: 'localhost' }), isRange)
  assert.throws(() => new Cluster({ ...member, tlsClientAuth: 'no' }), isType)
})

test('connection and shutdown options pass through; values that never work are refused by core', async () => {
  const c = new Cluster({ shutdownGraceMs: 0, handshakeTimeoutMs: 200, idleTimeoutMs: 1000, maxPeerRequests: 8 })
  await c.close()
  for (const options of [{ handshakeTimeoutMs: 0 }, { idleTimeoutMs: 0 }, { maxPeerRequests: 0 }, { shutdownGraceMs: -1 }]) {
    assert.throws(() => new Cluster(options), isRange, JSON.stringify(options))
  }
  assert.throws(() => new Cluster({ shutdownGraceMs: '5s' }), isType)
})

test('a connection that says nothing is closed after handshakeTimeoutMs, and counted', { timeout: 20_000 }, async () => {
  const cluster = new Cluster({ listen: '127.0.0.1:0', handshakeTimeoutMs: 200 })
  try {
    const addr = cluster.localAddr
    const s = connect(Number(addr.slice(addr.lastIndexOf(':') + 1)), '127.0.0.1')
    s.on('error', () => {})
    s.resume()
    await new Promise((resolve) => s.once('close', resolve))
    assert.equal(cluster.stats().server.handshake_timeouts, 1)
  } finally {
    await cluster.close()
  }
})

test('close() ends with 200 idle connections and a silent HTTP/2 one open, and the process exits', () => {
  // In a process of its own: the test's sockets stay open until the server closes them,
  // and the process can only exit once it has.
  const fixture = fileURLToPath(new URL('./fixtures/shutdown.mjs', import.meta.url))
  const r = spawnSync(process.execPath, [fixture], { timeout: 20_000, encoding: 'utf8' })
  assert.equal(r.error, undefined, `did not exit within 20 s; it printed: ${r.stdout}`)
  assert.equal(r.status, 0, r.stderr)
  const [closed, sockets] = r.stdout.trim().split('\n').map((l) => JSON.parse(l))
  assert.ok(closed.closeMs >= 250 && closed.closeMs < 10_000, `close() took ${closed.closeMs} ms`)
  assert.ok(closed.server.closed_at_shutdown > 0, JSON.stringify(closed.server))
  assert.deepEqual(sockets, { socketsClosed: 201 })
})
