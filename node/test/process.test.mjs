// The process exits by itself: after close(), and also when a cluster is left open.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { Worker } from 'node:worker_threads'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'

const exitScript = fileURLToPath(new URL('./fixtures/exit.mjs', import.meta.url))

for (const args of [[], ['--no-close']]) {
  test(`a script that creates a cluster ${args.length ? 'and leaves it open' : 'and closes it'} exits within 10 s`, () => {
    const r = spawnSync(process.execPath, [exitScript, ...args], { timeout: 10_000, encoding: 'utf8' })
    assert.equal(r.error, undefined, 'did not exit within 10 s')
    assert.equal(r.status, 0, r.stderr)
    assert.match(r.stdout, /end of script/)
  })
}

test('worker_threads: one cluster per worker, workers exit', { timeout: 30_000 }, async () => {
  const workers = [1, 2].map((id) => new Worker(new URL('./fixtures/worker.mjs', import.meta.url), { workerData: { id } }))
  const exits = workers.map((w) => once(w, 'exit').then(([c]) => c))
  const results = await Promise.all(workers.map((w) => once(w, 'message').then(([m]) => m)))
  assert.deepEqual(results, [
    { value: '1:k', same: true, loads: 1 },
    { value: '2:k', same: true, loads: 1 },
  ])
  const codes = await Promise.all(exits)
  assert.deepEqual(codes, [0, 0])
})

test('a worker terminated with its cluster open does not take the process down', { timeout: 30_000 }, async () => {
  const w = new Worker(
    `const { Cluster } = require(${JSON.stringify(fileURLToPath(new URL('../lib.cjs', import.meta.url)))})
     const c = new Cluster(); const g = c.group('g', { loader: async (k) => k })
     g.get('a').then(() => require('node:worker_threads').parentPort.postMessage('ok'))`,
    { eval: true },
  )
  await once(w, 'message')
  await w.terminate()
})
