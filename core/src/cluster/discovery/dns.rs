//! DNS membership: the nodes are the A/AAAA records of a name (a Kubernetes headless
//! service, say), each at the port of the option; resolved every interval.
//!
//! A failed lookup keeps the last ring and is reported in the ring's stats; a name with
//! no records is a failure too (a node that resolves nothing keeps its peers rather than
//! dropping everyone). Answers are not cached beyond one lookup, so a change in the
//! records is seen at the next interval.

use std::net::SocketAddr;
use std::sync::Arc;

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::{Resolver, TokioResolver};
use tokio_util::sync::CancellationToken;

use super::Ready;
use super::spec::DnsSpec;
use crate::cluster::membership::Membership;

/// Resolves until `stop`.
pub(super) async fn run(spec: DnsSpec, membership: Arc<Membership>, stop: CancellationToken, ready: Ready) {
    let resolver = match resolver(&spec) {
        Ok(r) => r,
        Err(e) => {
            membership.set_health(Err(format!("dns: {e}")));
            ready.done();
            return;
        }
    };
    loop {
        match resolver.lookup_ip(spec.name.as_str()).await {
            Ok(found) => {
                let addrs: Vec<String> = (found.iter())
                    .map(|ip| SocketAddr::new(ip, spec.port).to_string())
                    .collect();
                match membership.set_peers(addrs) {
                    Ok(()) => membership.set_health(Ok(())),
                    Err(e) => membership.set_health(Err(format!("dns: {e}"))),
                }
            }
            Err(e) => {
                tracing::warn!(name = %spec.name, error = %e, "dns membership: keeping the last ring");
                membership.set_health(Err(format!("dns: {}: {e}", spec.name)));
            }
        }
        ready.done();
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(spec.interval) => {}
        }
    }
}

fn resolver(spec: &DnsSpec) -> Result<TokioResolver, String> {
    let mut builder = match spec.resolver {
        Some(server) => {
            let mut udp = ConnectionConfig::udp();
            udp.port = server.port();
            let mut tcp = ConnectionConfig::tcp();
            tcp.port = server.port();
            let ns = NameServerConfig::new(server.ip(), true, vec![udp, tcp]);
            Resolver::builder_with_config(
                ResolverConfig::from_name_servers(vec![ns]),
                TokioRuntimeProvider::default(),
            )
        }
        None => Resolver::builder_tokio().map_err(|e| e.to_string())?,
    };
    let opts = builder.options_mut();
    opts.cache_size = 0;
    opts.timeout = spec.interval.min(std::time::Duration::from_secs(5));
    opts.attempts = 1;
    builder.build().map_err(|e| e.to_string())
}
