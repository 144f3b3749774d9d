//! The membership option, one string in every language: `static`, `etcd://…` or `dns://…`.
//!
//! ```text
//! static                                      the builder's peer list (the default)
//! etcd://h1:2379,h2:2379/prefix?lease_ttl=10  etcd, keys under /prefix/nodes/
//! dns://name:port?interval=5                  A/AAAA records of name, every 5 s
//! ```
//!
//! etcd options (query parameters): `lease_ttl` (seconds, default 10), `user` and
//! `password_file` (or `user:password@` before the hosts) for etcd's own auth, `ca`,
//! `cert`, `key` (PEM files: TLS to etcd, with a client certificate when `cert` and `key`
//! are given), `server_name` (the name etcd's certificate is checked against).
//! DNS options: `interval` (seconds, or `500ms`; default 5 s), `resolver` (`ip:port` of
//! the DNS server to ask instead of the system's).

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::error::{Error, Result};

/// Default lease TTL of a node's etcd key: a crashed node leaves every ring this long
/// after its last keep-alive.
pub const DEFAULT_ETCD_LEASE_TTL: Duration = Duration::from_secs(10);
/// Default interval between DNS lookups.
pub const DEFAULT_DNS_INTERVAL: Duration = Duration::from_secs(5);

/// Where a node learns the other nodes. Parsed from the one string every binding takes
/// (see [`crate::ClusterBuilder::membership`]).
#[derive(Clone, PartialEq, Eq)]
pub enum Discovery {
    /// The builder's peer list, changed by `set_peers`.
    Static,
    /// Nodes register in etcd and watch each other there.
    Etcd(EtcdSpec),
    /// Nodes are the A/AAAA records of a DNS name.
    Dns(DnsSpec),
}

/// etcd membership: where etcd is and how to talk to it.
#[derive(Clone, PartialEq, Eq)]
pub struct EtcdSpec {
    /// `host:port` of each etcd endpoint.
    pub endpoints: Vec<String>,
    /// Keys live under `<prefix>/nodes/`; no trailing slash.
    pub prefix: String,
    /// TTL of the node's lease.
    pub lease_ttl: Duration,
    /// etcd user and password, if etcd has auth enabled.
    pub user: Option<(String, String)>,
    /// CA of etcd's certificate: TLS when set.
    pub ca: Option<PathBuf>,
    /// Client certificate and key for etcd.
    pub identity: Option<(PathBuf, PathBuf)>,
    /// Name to check etcd's certificate against (default: the endpoint's host).
    pub server_name: Option<String>,
}

/// DNS membership: a name whose records are the nodes, and the port they listen on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsSpec {
    /// The name to resolve.
    pub name: String,
    /// The peer port of every node.
    pub port: u16,
    /// Time between lookups.
    pub interval: Duration,
    /// The DNS server to ask; `None`: the system's.
    pub resolver: Option<SocketAddr>,
}

impl Discovery {
    /// `static`, `etcd` or `dns`: what stats call the source.
    pub fn kind(&self) -> &'static str {
        match self {
            Discovery::Static => "static",
            Discovery::Etcd(_) => "etcd",
            Discovery::Dns(_) => "dns",
        }
    }
}

// Never prints the etcd password.
impl fmt::Debug for Discovery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Discovery::Static => f.write_str("Static"),
            Discovery::Etcd(e) => f.debug_tuple("Etcd").field(e).finish(),
            Discovery::Dns(d) => f.debug_tuple("Dns").field(d).finish(),
        }
    }
}

impl fmt::Debug for EtcdSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EtcdSpec")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.prefix)
            .field("lease_ttl", &self.lease_ttl)
            .field("user", &self.user.as_ref().map(|(u, _)| u))
            .field("tls", &self.ca.is_some())
            .finish_non_exhaustive()
    }
}

impl std::str::FromStr for Discovery {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim();
        if s.is_empty() || s == "static" {
            return Ok(Discovery::Static);
        }
        if let Some(rest) = s.strip_prefix("etcd://") {
            return parse_etcd(rest).map(Discovery::Etcd);
        }
        if let Some(rest) = s.strip_prefix("dns://") {
            return parse_dns(rest).map(Discovery::Dns);
        }
        Err(bad(
            s,
            "want `static`, `etcd://host:port[,host:port]/prefix` or `dns://name:port`",
        ))
    }
}

fn bad(spec: &str, why: impl fmt::Display) -> Error {
    // The password, if any, is not echoed.
    let shown = match spec.split_once('@') {
        Some((_, tail)) => format!("…@{tail}"),
        None => spec.to_string(),
    };
    Error::invalid(format!("membership {shown:?}: {why}"))
}

/// `authority/path?query` into its parts.
fn split(rest: &str) -> (&str, &str, Vec<(&str, &str)>) {
    let (main, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, path) = match main.find('/') {
        Some(i) => (&main[..i], &main[i..]),
        None => (main, ""),
    };
    let params = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .collect();
    (authority, path, params)
}

fn parse_etcd(rest: &str) -> Result<EtcdSpec> {
    let spec = || format!("etcd://{rest}");
    let (authority, path, params) = split(rest);
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let endpoints: Vec<String> = hosts.split(',').map(str::to_string).collect();
    if endpoints.iter().any(|e| !super::is_peer_addr(e)) {
        return Err(bad(&spec(), "every etcd endpoint must be host:port"));
    }
    let prefix = path.trim_end_matches('/').to_string();
    if prefix.is_empty() {
        return Err(bad(&spec(), "give a key prefix: etcd://host:port/prefix"));
    }
    let mut out = EtcdSpec {
        endpoints,
        prefix,
        lease_ttl: DEFAULT_ETCD_LEASE_TTL,
        user: userinfo.map(|u| {
            let (user, pass) = u.split_once(':').unwrap_or((u, ""));
            (user.to_string(), pass.to_string())
        }),
        ca: None,
        identity: None,
        server_name: None,
    };
    let (mut cert, mut key, mut user, mut password_file) = (None, None, None, None);
    for (k, v) in params {
        match k {
            "lease_ttl" => {
                let ttl = seconds(v).filter(|t| t.as_secs() >= 1 && t.subsec_nanos() == 0);
                out.lease_ttl = ttl.ok_or_else(|| bad(&spec(), "lease_ttl must be whole seconds >= 1"))?;
            }
            "user" => user = Some(v.to_string()),
            "password_file" => password_file = Some(PathBuf::from(v)),
            "ca" => out.ca = Some(PathBuf::from(v)),
            "cert" => cert = Some(PathBuf::from(v)),
            "key" => key = Some(PathBuf::from(v)),
            "server_name" => out.server_name = Some(v.to_string()),
            _ => return Err(bad(&spec(), format!("unknown etcd option {k:?}"))),
        }
    }
    if let Some(user) = user {
        let password = match password_file {
            Some(path) => std::fs::read_to_string(&path)
                .map_err(|e| bad(&spec(), format!("cannot read {}: {e}", path.display())))?
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string(),
            None => String::new(),
        };
        out.user = Some((user, password));
    }
    match (cert, key) {
        (Some(c), Some(k)) => out.identity = Some((c, k)),
        (None, None) => {}
        _ => return Err(bad(&spec(), "give both cert and key, or neither")),
    }
    if out.identity.is_some() && out.ca.is_none() {
        return Err(bad(&spec(), "a client certificate needs ca= (TLS) too"));
    }
    Ok(out)
}

fn parse_dns(rest: &str) -> Result<DnsSpec> {
    let spec = || format!("dns://{rest}");
    let (authority, path, params) = split(rest);
    if !path.is_empty() && path != "/" {
        return Err(bad(&spec(), "a DNS membership has no path"));
    }
    let (name, port) = authority
        .rsplit_once(':')
        .and_then(|(n, p)| Some((n, p.parse::<u16>().ok()?)))
        .filter(|(n, p)| !n.is_empty() && *p != 0)
        .ok_or_else(|| bad(&spec(), "want dns://name:port (the port every node listens on)"))?;
    let mut out = DnsSpec {
        name: name.to_string(),
        port,
        interval: DEFAULT_DNS_INTERVAL,
        resolver: None,
    };
    for (k, v) in params {
        match k {
            "interval" => {
                out.interval = seconds(v)
                    .filter(|t| !t.is_zero())
                    .ok_or_else(|| bad(&spec(), "interval must be a duration > 0 (5, 5s, 500ms)"))?;
            }
            "resolver" => {
                out.resolver = Some(v.parse().map_err(|_| bad(&spec(), "resolver must be ip:port"))?);
            }
            _ => return Err(bad(&spec(), format!("unknown dns option {k:?}"))),
        }
    }
    Ok(out)
}

/// `10`, `10s` or `500ms`.
fn seconds(v: &str) -> Option<Duration> {
    if let Some(ms) = v.strip_suffix("ms") {
        return ms.parse().ok().map(Duration::from_millis);
    }
    let s: f64 = v.strip_suffix('s').unwrap_or(v).parse().ok()?;
    Duration::try_from_secs_f64(s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    fn parse(s: &str) -> Result<Discovery> {
        s.parse()
    }

    #[test]
    fn static_is_the_default_spelling() {
        assert_eq!(parse("").unwrap(), Discovery::Static);
        assert_eq!(parse("static").unwrap(), Discovery::Static);
    }

    #[test]
    fn etcd_with_every_option() {
        let Discovery::Etcd(e) = parse(
            "etcd://me:pw@10.0.0.1:2379,10.0.0.2:2379/svc/cache/?lease_ttl=5&ca=/ca.pem&cert=/c.pem&key=/k.pem&server_name=etcd",
        )
        .unwrap() else {
            panic!("not etcd")
        };
        assert_eq!(e.endpoints, ["10.0.0.1:2379", "10.0.0.2:2379"]);
        assert_eq!(e.prefix, "/svc/cache");
        assert_eq!(e.lease_ttl, Duration::from_secs(5));
        assert_eq!(e.user, Some(("me".into(), "pw".into())));
        assert_eq!(e.identity, Some(("/c.pem".into(), "/k.pem".into())));
        assert!(!format!("{e:?}").contains("pw"), "the password is never printed");
    }

    #[test]
    fn dns_with_defaults_and_options() {
        let Discovery::Dns(d) = parse("dns://cache.default.svc:7000").unwrap() else {
            panic!("not dns")
        };
        assert_eq!(
            (d.name.as_str(), d.port, d.interval),
            ("cache.default.svc", 7000, DEFAULT_DNS_INTERVAL)
        );
        let Discovery::Dns(d) = parse("dns://n:1?interval=250ms&resolver=127.0.0.1:5353").unwrap() else {
            panic!("not dns")
        };
        assert_eq!(d.interval, Duration::from_millis(250));
        assert_eq!(d.resolver, Some("127.0.0.1:5353".parse().unwrap()));
    }

    #[test]
    fn what_can_never_work_is_an_invalid_argument_that_hides_the_password() {
        for s in [
            "zookeeper://h:1/p",
            "etcd://h:2379",
            "etcd://h/p",
            "etcd://h:2379/p?lease_ttl=0",
            "etcd://h:2379/p?lease_ttl=1.5",
            "etcd://h:2379/p?cert=/c.pem",
            "etcd://h:2379/p?bogus=1",
            "dns://name",
            "dns://name:0",
            "dns://name:7000?interval=0",
            "dns://name:7000?resolver=nowhere",
        ] {
            assert_eq!(parse(s).unwrap_err().kind(), ErrorKind::InvalidArgument, "{s}");
        }
        let e = parse("etcd://u:secret@h/p").unwrap_err();
        assert!(!e.to_string().contains("secret"), "{e}");
    }
}
