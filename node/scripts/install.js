'use strict'
// `npm install` of this package.
//
// In a checkout of the meshcache repository (the Rust sources sit next to this folder)
// it builds the addon from source with the pinned @napi-rs/cli (release; set
// MESHCACHE_NODE_SKIP_BUILD=1 to skip, as `make test` does before its debug build).
// The published packages (`npm run pack`: scripts/pack.mjs) have no install script: the
// addon comes in the meshcache-<platform> package. `--prepack` (run by a bare `npm pack` or
// `npm publish` here) refuses, pointing at `npm run pack`.
const { existsSync, readdirSync } = require('node:fs')
const { join } = require('node:path')
const { spawnSync } = require('node:child_process')

const root = join(__dirname, '..')
const manifest = join(root, '..', 'bindings', 'node', 'Cargo.toml')
const addons = () => readdirSync(root).filter((f) => f.startsWith('meshcache.') && f.endsWith('.node'))

if (process.argv.includes('--prepack')) {
  console.error('meshcache: this folder is not the package to publish; `npm run pack` packs meshcache and meshcache-<platform> (release addon, stripped)')
  process.exit(1)
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
