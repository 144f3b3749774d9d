'use strict'
// The owner node of bench/remote.mjs, in a process of its own (as redis-server is):
// prints its address, reads the reader's from stdin, joins it, says "ready", and serves
// until stdin closes.
const { Cluster } = require('../lib.cjs')

const cluster = new Cluster({ listen: '127.0.0.1:0' })
cluster.group('remote', { capacity: '64MiB', hotSample: 0 })
process.stdout.write(`${JSON.stringify({ addr: cluster.advertiseAddr })}\n`)
let input = ''
process.stdin.setEncoding('utf8')
process.stdin.on('data', (chunk) => {
  input += chunk
  const nl = input.indexOf('\n')
  if (nl < 0) return
  const { reader } = JSON.parse(input.slice(0, nl))
  input = input.slice(nl + 1)
  cluster.setPeers([cluster.advertiseAddr, reader])
  process.stdout.write('ready\n')
})
process.stdin.on('end', () => cluster.close())
