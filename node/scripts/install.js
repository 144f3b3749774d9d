'use strict'
// `npm install` of this package.
//
// In a checkout of the meshcache repository (the Rust sources sit next to this folder)
// it builds the addon from source with the pinned @napi-rs/cli (release; set
// MESHCACHE_NODE_SKIP_BUILD=1 to skip, as `make test` does before its debug build).
// From a packed tarball, the addon for this platform is in the package already, and
// nothing is built. `--check` (run by `npm pack`) only verifies that an addon is present.
const { existsSync, readdirSync } = require('node:fs')
const { join } = require('node:path')
const { spawnSync } = require('node:child_process')

const root = join(__dirname, '..')
const manifest = join(root, '..', 'bindings', 'node', 'Cargo.toml')
const addons = () => readdirSync(root).filter((f) => f.startsWith('meshcache.') && f.endsWith('.node'))

if (process.argv.includes('--check')) {
  if (addons().length === 0) {
    console.error('meshcache: no addon built; run `npm run build` first')
    process.exit(1)
  }
  process.exit(0)
}
if (!existsSync(manifest)) {
  if (addons().length === 0) {
    console.error(`meshcache: no prebuilt addon for ${process.platform}-${process.arch} in this package`)
    process.exit(1)
  }
  process.exit(0)
}
if (process.env.MESHCACHE_NODE_SKIP_BUILD === '1') process.exit(0)
const r = spawnSync('npm', ['run', 'build'], { cwd: root, stdio: 'inherit' })
process.exit(r.status === null ? 1 : r.status)
