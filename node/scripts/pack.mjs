// `npm run pack`: the npm packages, napi-rs style, written to --out (default: this folder).
//
// - `meshcache`: the JS loader (index.js), types, the ESM/CJS entries; no addon and no
//   install script. It lists every npm/<platform>/ package as an optional dependency, so
//   `npm install meshcache` fetches only the one for the platform it runs on and needs no
//   Rust toolchain.
// - `meshcache-<platform>` (npm/<platform>/package.json): the release addon, stripped.
//
// The addon is built with `napi build --release --strip` unless --addon FILE names one
// (e.g. the debug build of `make test`); either way the packed copy goes through
// `strip --strip-all`. Prints the tarballs' paths, one a line.
import { parseArgs } from 'node:util'
import { spawnSync } from 'node:child_process'
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { basename, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))
const { values } = parseArgs({ options: { out: { type: 'string' }, addon: { type: 'string' } } })
const out = resolve(values.out ?? root)
mkdirSync(out, { recursive: true })

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8', ...opts })
  if (r.status !== 0) throw new Error(`\`${cmd} ${args.join(' ')}\` failed (${r.error ?? `status ${r.status}`})`)
  return r.stdout
}
const readJson = (file) => JSON.parse(readFileSync(file, 'utf8'))
const writeJson = (file, value) => writeFileSync(file, `${JSON.stringify(value, null, 2)}\n`)

const pkg = readJson(join(root, 'package.json'))
const binaryName = pkg.napi.binaryName
const staging = mkdtempSync(join(tmpdir(), 'meshcache-pack-'))
const tarballs = []
try {
  let addon = values.addon && resolve(values.addon)
  if (!addon) {
    const build = join(staging, 'build')
    run('npx', ['napi', 'build', '--platform', '--release', '--strip', '--no-js', '--manifest-path', '../bindings/node/Cargo.toml', '-o', build], { cwd: root, stdio: ['ignore', 2, 'inherit'] })
    const built = readdirSync(build).filter((f) => f.startsWith(`${binaryName}.`) && f.endsWith('.node'))
    if (built.length !== 1) throw new Error(`expected one ${binaryName}.*.node from napi build, got ${built}`)
    addon = join(build, built[0])
  }
  const platform = basename(addon).slice(binaryName.length + 1, -'.node'.length)
  const platformDir = join(root, 'npm', platform)
  if (!existsSync(join(platformDir, 'package.json'))) throw new Error(`no npm/${platform}/package.json for ${basename(addon)}`)

  // The platform package: its package.json and README, and the stripped addon.
  const platformPkg = readJson(join(platformDir, 'package.json'))
  if (platformPkg.version !== pkg.version) throw new Error(`npm/${platform}/package.json is version ${platformPkg.version}, meshcache ${pkg.version}`)
  const addonFile = `${binaryName}.${platform}.node`
  if (platformPkg.main !== addonFile) throw new Error(`npm/${platform}/package.json's main should be ${addonFile}`)
  const platformStage = join(staging, platform)
  mkdirSync(platformStage)
  for (const f of ['package.json', 'README.md']) copyFileSync(join(platformDir, f), join(platformStage, f))
  run('strip', ['--strip-all', '-o', join(platformStage, addonFile), addon])

  // The main package: what `files` lists, and a package.json without scripts (no install
  // script: nothing to build) or devDependencies, with the platform packages.
  const mainStage = join(staging, 'meshcache')
  mkdirSync(mainStage)
  for (const f of pkg.files) copyFileSync(join(root, f), join(mainStage, f))
  const optionalDependencies = {}
  for (const dir of readdirSync(join(root, 'npm')).sort()) {
    const p = readJson(join(root, 'npm', dir, 'package.json'))
    if (p.version !== pkg.version) throw new Error(`npm/${dir}/package.json is version ${p.version}, meshcache ${pkg.version}`)
    optionalDependencies[p.name] = p.version
  }
  const { scripts, devDependencies, ...published } = pkg
  writeJson(join(mainStage, 'package.json'), { ...published, optionalDependencies })

  for (const dir of [mainStage, platformStage]) {
    const [{ filename }] = JSON.parse(run('npm', ['pack', '--json', '--loglevel=error', '--pack-destination', out], { cwd: dir }))
    tarballs.push(join(out, filename))
  }
} catch (e) {
  console.error(`meshcache pack: ${e.message}`)
  process.exitCode = 1
} finally {
  rmSync(staging, { recursive: true, force: true })
}
for (const t of tarballs) console.log(t)
