// The ESM entry point: the same objects as the CommonJS one (one addon instance).
import { createRequire } from 'node:module'

const require = createRequire(import.meta.url)
const meshcache = require('./lib.cjs')

export const { Cluster, Group, NotFoundError } = meshcache
export default meshcache
