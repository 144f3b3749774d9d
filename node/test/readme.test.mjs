// The README's Node example, run as its own program from an empty project that depends on
// this package: it must print what it says and exit by itself.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, writeFileSync, mkdirSync, symlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const pkg = fileURLToPath(new URL('..', import.meta.url))

test("README's Node.js example runs and exits", () => {
  const readme = readFileSync(join(pkg, '..', 'README.md'), 'utf8')
  const section = readme.split('## Node.js')[1].split('\n## ')[0]
  const code = section.match(/```js\n([\s\S]*?)```/)[1]
  // MESHCACHE_README_PROJECT: an empty project where the packed tarball was installed
  // (make test); otherwise a project whose node_modules links to this package.
  let dir = process.env.MESHCACHE_README_PROJECT
  if (!dir) {
    dir = mkdtempSync(join(tmpdir(), 'meshcache-readme-'))
    mkdirSync(join(dir, 'node_modules'))
    symlinkSync(pkg, join(dir, 'node_modules', 'meshcache'))
  }
  writeFileSync(join(dir, 'example.mjs'), code)
  const r = spawnSync(process.execPath, ['example.mjs'], { cwd: dir, timeout: 20_000, encoding: 'utf8' })
  assert.equal(r.error, undefined, 'did not exit within 20 s')
  assert.equal(r.status, 0, r.stderr)
  assert.match(r.stdout, /^user 42\n<Buffer 75 73 65 72 20 34 32>\n$/)
})
