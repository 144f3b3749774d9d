// Type-checked (tsc --noEmit --strict) against index.d.ts; not run.
import { Cluster, Group, NotFoundError, type Loader, type ErrorCode, type GroupStats, type ServerStats, type RingStats, type ClusterStatus } from 'meshcache'

const loader: Loader = async (key: string) => {
  if (key === '') throw new NotFoundError('empty', { ttlMs: 1000 })
  return key.length > 3 ? { value: Buffer.from(key), ttlMs: 5000 } : `short ${key}`
}

async function main(): Promise<void> {
  const cluster = new Cluster({ listen: '127.0.0.1:0', peers: ['127.0.0.1:7001'], peerTimeoutMs: 500 })
  const users: Group = cluster.group('users', { capacity: '256MiB', ttlMs: 60_000, loader })
  const bytes = cluster.group('bytes', { capacity: 1 << 20, loader: (k) => new Uint8Array([k.length]) })
  const v: Buffer = await users.get('42', { timeoutMs: 500 })
  const deadlined: Group = cluster.group('deadlined', { loadTimeoutMs: 2000, loader })
  const replicated: Group = cluster.group('replicated', { replicas: 2, replicateLoads: true, loader })
  const some: Map<string, Buffer> = await deadlined.getMany(['1'], { timeoutMs: 500 })
  const p: Buffer | undefined = users.peek('42')
  const m: Map<string, Buffer> = await users.getMany(['1', '2'])
  await users.set('42', v, { ttlMs: 10_000 })
  await users.set('s', 'string')
  await users.delete('42')
  const s: GroupStats = bytes.stats()
  const n: number = s.main.items + s.loads + s.hot_hits + s.hot.evictions
  const copies: number = s.replica_writes + s.replica_write_errors + s.replica_reads + s.handoff_sent + s.handoff_received + s.warm_takeovers
  const breakers: Array<'closed' | 'open' | 'half_open'> = cluster.stats().peers.map((x) => x.breaker)
  const addr: string = cluster.localAddr
  const observed = new Cluster({ metricsListen: '127.0.0.1:0' })
  const metricsAddr: string | null = observed.metricsAddr
  const text: string = observed.metricsText()
  const status: ClusterStatus = observed.status()
  const shares: number[] = status.ring.members.map((m) => m.share)
  const hitsByGroup: Array<[string, number]> = status.groups.map((g) => [g.name, g.hits + g.main.items])
  console.log(metricsAddr, text.length, shares, hitsByGroup, status.node, status.ring.epoch, status.peers.map((x) => x.breaker))
  await observed.close()
  const secured = new Cluster({
    token: 's3cret', tokenFile: '/run/secrets/meshcache', previousToken: 'old',
    tlsCert: 'node.pem', tlsKey: 'node.key', tlsCa: 'ca.pem', tlsClientAuth: false, tlsServerName: 'localhost',
    shutdownGraceMs: 300, handshakeTimeoutMs: 10_000, idleTimeoutMs: 300_000, maxPeerRequests: 1024,
    warmWindowMs: 60_000, handoffTimeoutMs: 10_000, handoffMaxBytes: '1GiB',
  })
  const server: ServerStats = secured.stats().server
  const refused: number = server.rejected_unauthenticated + server.rejected_protocol_mismatch + server.closed_at_shutdown
  const joined = new Cluster({ membership: 'etcd://127.0.0.1:2379/myservice?lease_ttl=10' })
  const members: string[] = await joined.waitForMembers(3, { timeoutMs: 10_000 })
  const ring: RingStats = joined.stats().ring
  const source: 'static' | 'etcd' | 'dns' = ring.source
  const why: string | null = ring.healthy ? null : ring.error
  console.log(members.length, ring.members, ring.epoch + ring.changed_at_ms, source, why)
  await joined.close()
  try {
    await users.get('x')
  } catch (e) {
    const code = (e as { code?: ErrorCode }).code
    if (code === 'MESHCACHE_LOAD') console.log((e as Error).cause)
  }
  console.log(p, m.size, n, copies, replicated.name, addr, breakers, cluster.stats().peers.map((x) => x.breaker_opened), refused)
  await cluster.close()
  await secured.close()
}

void main()
