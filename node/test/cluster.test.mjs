// A 3-node cluster as 3 child processes: every key is loaded once in the whole cluster.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { fork } from 'node:child_process'
import { once } from 'node:events'

const fixture = new URL('./fixtures/node.mjs', import.meta.url)

function reply(child) {
  return once(child, 'message').then(([m]) => m)
}

test('3 processes, one load per key cluster-wide', { timeout: 60_000 }, async () => {
  const children = [0, 1, 2].map(() => fork(fixture, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }))
  try {
    const addrs = (await Promise.all(children.map(reply))).map((m) => m.addr)
    const ready = children.map(reply)
    children.forEach((c) => c.send({ peers: addrs }))
    await Promise.all(ready)
    const keys = Array.from({ length: 60 }, (_, i) => `key-${i}`)
    const answers = children.map(reply)
    children.forEach((c) => c.send({ get: keys }))
    const results = await Promise.all(answers)
    const total = {}
    for (const r of results) {
      assert.deepEqual(r.values, keys.map((k) => `value of ${k}`))
      for (const [k, n] of Object.entries(r.loads)) total[k] = (total[k] || 0) + n
    }
    for (const k of keys) assert.equal(total[k], 1, `${k} loaded ${total[k]} times`)
    // every node loaded some keys (the ring spreads them) and fetched others remotely
    for (const r of results) {
      assert.ok(Object.keys(r.loads).length > 0)
      assert.ok(r.stats.remote_fetches > 0)
    }
  } finally {
    const exits = children.map((c) => once(c, 'exit'))
    children.forEach((c) => c.connected && c.send({ close: true }))
    const codes = await Promise.all(exits)
    assert.deepEqual(codes.map(([code]) => code), [0, 0, 0])
  }
})
