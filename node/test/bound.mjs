// The one bound every test wait shares: `p`, or a rejection naming `what` if it has not
// settled within `ms`. A bound, never a sleep: the wait ends when `p` settles. While it
// waits, an open message port holds the event loop, so a test waiting on work the addon
// does not ref (a loader's own get, say) fails by the bound instead of ending early.
export function bounded(p, ms = 5000, what = 'the wait') {
  const signal = AbortSignal.timeout(ms)
  const { port1, port2 } = new MessageChannel()
  port1.on('message', () => {})
  return new Promise((resolve, reject) => {
    const late = () => reject(new Error(`${what}: did not settle within ${ms} ms`))
    signal.addEventListener('abort', late, { once: true })
    const done = () => signal.removeEventListener('abort', late)
    Promise.resolve(p).then(
      (v) => (done(), resolve(v)),
      (e) => (done(), reject(e)),
    )
  }).finally(() => {
    port1.close()
    port2.close()
  })
}
