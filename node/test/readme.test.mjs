// The README's Node examples, each run as its own program from an empty project that
// depends on this package: each must print what it says and exit by itself.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, writeFileSync, mkdirSync, symlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const pkg = fileURLToPath(new URL('..', import.meta.url))
const readme = readFileSync(join(pkg, '..', 'README.md'), 'utf8')
// `## Node.js` up to the next `## `: the example, then `### Security`, `### Membership`,
// `### Metrics`...
const [main, ...subsections] = readme.split('## Node.js')[1].split('\n## ')[0].split('\n### ')
const subsection = (title) => subsections.find((s) => s.startsWith(`${title}\n`))
const security = subsection('Security')
const membership = subsection('Membership')
const metrics = subsection('Metrics')
const firstJs = (text) => text.match(/```js\n([\s\S]*?)```/)[1]

// MESHCACHE_README_PROJECT: an empty project where the packed tarball was installed
// (make test); otherwise a project whose node_modules links to this package.
let project
function projectDir() {
  project ??= process.env.MESHCACHE_README_PROJECT
  if (!project) {
    project = mkdtempSync(join(tmpdir(), 'meshcache-readme-'))
    mkdirSync(join(project, 'node_modules'))
    symlinkSync(pkg, join(project, 'node_modules', 'meshcache'))
  }
  return project
}

function run(file, code) {
  const dir = projectDir()
  writeFileSync(join(dir, file), code)
  const r = spawnSync(process.execPath, [file], { cwd: dir, timeout: 20_000, encoding: 'utf8' })
  assert.equal(r.error, undefined, 'did not exit within 20 s')
  assert.equal(r.status, 0, r.stderr)
  return r.stdout
}

test("README's Node.js example runs and exits", () => {
  assert.match(run('example.mjs', firstJs(main)), /^user 42\n<Buffer 75 73 65 72 20 34 32>\n$/)
})

test("README's Node.js example runs as CommonJS, as the README says to write it", () => {
  const esm = firstJs(main)
  const imports = "import { Cluster, NotFoundError } from 'meshcache'\n"
  assert.ok(esm.startsWith(imports), 'the example starts with its import')
  assert.ok(main.includes("`const { Cluster, NotFoundError } = require('meshcache')`"))
  const cjs = `const { Cluster, NotFoundError } = require('meshcache')\nasync function main() {\n${esm.slice(imports.length)}}\nmain()\n`
  assert.match(run('example.cjs', cjs), /^user 42\n<Buffer 75 73 65 72 20 34 32>\n$/)
})

test("README's Node.js Security example runs and exits", () => {
  assert.ok(security, 'README `## Node.js` has a `### Security` subsection')
  const code = firstJs(security)
  assert.match(code, /token: '/)
  assert.equal(run('security.mjs', code), '0\n')
})

test("README's Node.js Membership example joins through etcd, runs and exits", () => {
  assert.ok(membership, 'README `## Node.js` has a `### Membership` subsection')
  const etcd = process.env.MESHCACHE_TEST_ETCD
  assert.ok(etcd, 'MESHCACHE_TEST_ETCD is not set: run the suite with `make test-node` (it starts an etcd)')
  const code = firstJs(membership)
  assert.ok(code.includes("'etcd://127.0.0.1:2379/myservice'"), 'the example joins through etcd://127.0.0.1:2379/myservice')
  const stdout = run('membership.mjs', code.replace('etcd://127.0.0.1:2379/myservice', `etcd://${etcd}/myservice`))
  assert.equal(stdout, 'user 42, ring etcd: 1 member(s), healthy true\n')
})

test("README's Node.js Metrics example scrapes its own node, runs and exits", () => {
  assert.ok(metrics, 'README `## Node.js` has a `### Metrics` subsection')
  const code = firstJs(metrics)
  assert.ok(code.includes("metricsListen: '127.0.0.1:0'") && code.includes('metricsText()'))
  const line = 'meshcache_gets_total{group="users",result="hit"} 1'
  assert.equal(run('metrics.mjs', code), `${line}\n200 ${line}\n`)
})
