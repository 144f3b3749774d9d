//! meshcached's configuration: a TOML file, `MESHCACHE_*` environment variables and
//! command-line flags, in that order of strength (flag > env > file > default).
//!
//! Node-wide settings (addresses, membership, tokens, TLS, logs) can come from any of the
//! three; groups come from the file's `[[groups]]` tables only. Unknown keys in the file
//! are an error that names the key, and every check that can be done before starting is
//! done here, so a bad configuration stops the process with a message (exit status 2)
//! before it binds anything.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use clap::{Parser, ValueEnum};
use serde::{Deserialize, Deserializer};

/// Default peer (gRPC) address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7001";
/// Default REST, metrics and status address.
pub const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:7080";
/// Default deadline of one origin request (connect, headers and body).
pub const DEFAULT_ORIGIN_TIMEOUT: Duration = Duration::from_millis(2000);

/// A configuration that cannot work: what is wrong, for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

fn bad<T>(msg: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError(msg.into()))
}

/// How logs are written (to stderr).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per event.
    Json,
}

/// The command line; every flag can also be given as the `MESHCACHE_*` variable shown.
#[derive(Debug, Default, Parser)]
#[command(
    name = "meshcached",
    version,
    about = "A standalone meshcache node with a REST API",
    after_help = "Flags override MESHCACHE_* variables, which override the config file."
)]
pub struct Cli {
    /// The TOML config file.
    #[arg(long, short = 'c', env = "MESHCACHE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Peer (gRPC) address to bind [default: 127.0.0.1:7001].
    #[arg(long, env = "MESHCACHE_LISTEN")]
    pub listen: Option<String>,
    /// Address the other nodes dial [default: the bound address].
    #[arg(long, env = "MESHCACHE_ADVERTISE")]
    pub advertise: Option<String>,
    /// REST, /metrics and status address [default: 127.0.0.1:7080].
    #[arg(long, env = "MESHCACHE_HTTP_LISTEN")]
    pub http_listen: Option<String>,
    /// static | etcd://host:port[,host:port]/prefix | dns://name:port.
    #[arg(long, env = "MESHCACHE_MEMBERSHIP")]
    pub membership: Option<String>,
    /// Static peer list, comma-separated (every node, this one included).
    #[arg(long, env = "MESHCACHE_PEERS", value_delimiter = ',')]
    pub peers: Option<Vec<String>>,
    /// Cluster token (prefer --token-file: flags show in `ps`).
    #[arg(long, env = "MESHCACHE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// File holding the cluster token (its first line).
    #[arg(long, env = "MESHCACHE_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// The previous cluster token, also accepted while rotating.
    #[arg(long, env = "MESHCACHE_PREVIOUS_TOKEN", hide_env_values = true)]
    pub previous_token: Option<String>,
    /// TLS certificate of this node (PEM).
    #[arg(long, env = "MESHCACHE_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// TLS key of this node (PEM).
    #[arg(long, env = "MESHCACHE_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// CA that signed every node's certificate (PEM).
    #[arg(long, env = "MESHCACHE_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// Bearer token the REST API requires.
    #[arg(long, env = "MESHCACHE_HTTP_TOKEN", hide_env_values = true)]
    pub http_token: Option<String>,
    /// File holding the REST bearer token (its first line).
    #[arg(long, env = "MESHCACHE_HTTP_TOKEN_FILE")]
    pub http_token_file: Option<PathBuf>,
    /// Bearer token /metrics requires (default: /metrics is open).
    #[arg(long, env = "MESHCACHE_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,
    /// Log format on stderr.
    #[arg(long, env = "MESHCACHE_LOG_FORMAT")]
    pub log_format: Option<LogFormat>,
    /// How long a shutdown waits for requests in flight, in milliseconds [default: 5000].
    #[arg(long, env = "MESHCACHE_SHUTDOWN_GRACE_MS")]
    pub shutdown_grace_ms: Option<u64>,
}

/// The file, as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    advertise: Option<String>,
    http_listen: Option<String>,
    membership: Option<String>,
    peers: Option<Vec<String>>,
    token: Option<String>,
    token_file: Option<PathBuf>,
    previous_token: Option<String>,
    tls: Option<TlsFile>,
    http_token: Option<String>,
    http_token_file: Option<PathBuf>,
    metrics_token: Option<String>,
    log_format: Option<LogFormat>,
    shutdown_grace_ms: Option<u64>,
    #[serde(default)]
    groups: Vec<GroupFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsFile {
    cert: PathBuf,
    key: PathBuf,
    ca: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupFile {
    name: String,
    #[serde(default, deserialize_with = "size")]
    capacity: Option<usize>,
    ttl_secs: Option<u64>,
    negative_ttl_secs: Option<u64>,
    replicas: Option<usize>,
    #[serde(default, deserialize_with = "size")]
    max_value_len: Option<usize>,
    #[serde(default, deserialize_with = "size")]
    max_key_len: Option<usize>,
    origin: Option<OriginFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OriginFile {
    url: String,
    timeout_ms: Option<u64>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    cache_control: bool,
}

/// A byte size: a number of bytes or a string such as `"64MiB"` (`meshcache::parse_size`).
fn size<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    struct V;
    impl serde::de::Visitor<'_> for V {
        type Value = usize;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a number of bytes or a size such as \"64MiB\"")
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<usize, E> {
            usize::try_from(v).map_err(|_| E::custom("size too large"))
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<usize, E> {
            u64::try_from(v)
                .map_err(|_| E::custom("a size cannot be negative"))
                .and_then(|v| self.visit_u64(v))
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<usize, E> {
            meshcache::parse_size(v).map_err(|e| E::custom(e.message()))
        }
    }
    d.deserialize_any(V).map(Some)
}

/// TLS files of the peer port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    /// This node's certificate.
    pub cert: PathBuf,
    /// Its key.
    pub key: PathBuf,
    /// The CA of every node.
    pub ca: PathBuf,
}

/// The HTTP origin of a group.
#[derive(Debug, Clone)]
pub struct Origin {
    /// URL template: `{key}` is replaced by the percent-encoded key.
    pub url: String,
    /// Deadline of one request, body included.
    pub timeout: Duration,
    /// Extra request headers.
    pub headers: HeaderMap,
    /// Use the origin's `Cache-Control` max-age as the entry's TTL.
    pub cache_control: bool,
}

/// One group of the node.
#[derive(Debug, Clone)]
pub struct Group {
    /// Its name, the same on every node.
    pub name: String,
    /// Byte budget (`None`: the library's default).
    pub capacity: Option<usize>,
    /// Default TTL of values (`None`: none).
    pub ttl: Option<Duration>,
    /// How long a NotFound is remembered (`None`: the library's default).
    pub negative_ttl: Option<Duration>,
    /// Nodes holding each written key.
    pub replicas: Option<usize>,
    /// Largest value (`None`: the library's default).
    pub max_value_len: usize,
    /// Longest key (`None`: the library's default).
    pub max_key_len: usize,
    /// Where misses are loaded from (`None`: `PUT` only, a miss is NotFound).
    pub origin: Option<Origin>,
}

/// A secret that never shows in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Peer address to bind.
    pub listen: String,
    /// Address advertised to the other nodes.
    pub advertise: Option<String>,
    /// REST, metrics and status address.
    pub http_listen: String,
    /// Membership spec (`None`: static).
    pub membership: Option<String>,
    /// Static peers.
    pub peers: Vec<String>,
    /// Cluster token.
    pub token: Option<Secret>,
    /// File holding the cluster token.
    pub token_file: Option<PathBuf>,
    /// Previous cluster token.
    pub previous_token: Option<Secret>,
    /// Peer TLS.
    pub tls: Option<Tls>,
    /// REST bearer token (already read from its file).
    pub http_token: Option<Secret>,
    /// `/metrics` bearer token.
    pub metrics_token: Option<Secret>,
    /// Log format.
    pub log_format: LogFormat,
    /// Time a shutdown waits for requests in flight.
    pub shutdown_grace: Duration,
    /// The groups.
    pub groups: Vec<Group>,
}

impl Config {
    /// The configuration from the command line (and, through it, the environment and the
    /// config file it names).
    ///
    /// # Errors
    ///
    /// What is wrong with the file or a value, naming it.
    pub fn load(cli: Cli) -> Result<Config, ConfigError> {
        let file = match &cli.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        resolve(cli, file)
    }

    /// The configuration from a TOML text with no flags (for tests).
    #[cfg(test)]
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let file = toml::from_str(text).map_err(|e| ConfigError(e.to_string()))?;
        resolve(Cli::default(), file)
    }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("cannot read config file {}: {e}", path.display())))?;
    toml::from_str(&text).map_err(|e| ConfigError(format!("config file {}: {e}", path.display())))
}

/// The first line of a token file, trimmed.
fn read_secret(what: &str, path: &Path) -> Result<Secret, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("cannot read {what} {}: {e}", path.display())))?;
    Ok(Secret(text.lines().next().unwrap_or("").trim().to_string()))
}

/// A bearer token must fit in a header and say something.
fn check_token(what: &str, t: &Secret) -> Result<(), ConfigError> {
    if t.0.is_empty() || !t.0.bytes().all(|b| b.is_ascii_graphic()) {
        return bad(format!("{what} must be non-empty printable ASCII without spaces"));
    }
    Ok(())
}

fn resolve(cli: Cli, f: FileConfig) -> Result<Config, ConfigError> {
    let token = cli.token.or(f.token).map(Secret);
    let token_file = cli.token_file.or(f.token_file);
    if token.is_some() && token_file.is_some() {
        return bad("give token or token_file, not both");
    }
    let tls = match (cli.tls_cert, cli.tls_key, cli.tls_ca, f.tls) {
        (None, None, None, None) => None,
        (Some(cert), Some(key), Some(ca), _) => Some(Tls { cert, key, ca }),
        (None, None, None, Some(t)) => Some(Tls {
            cert: t.cert,
            key: t.key,
            ca: t.ca,
        }),
        _ => return bad("TLS needs all of tls_cert, tls_key and tls_ca"),
    };
    let http_token = match (
        cli.http_token.or(f.http_token),
        cli.http_token_file.or(f.http_token_file),
    ) {
        (Some(_), Some(_)) => return bad("give http_token or http_token_file, not both"),
        (Some(t), None) => Some(Secret(t)),
        (None, Some(path)) => Some(read_secret("http_token_file", &path)?),
        (None, None) => None,
    };
    if let Some(t) = &http_token {
        check_token("http_token", t)?;
    }
    let metrics_token = cli.metrics_token.or(f.metrics_token).map(Secret);
    if let Some(t) = &metrics_token {
        check_token("metrics_token", t)?;
    }
    let peers: Vec<String> = (cli.peers.or(f.peers).unwrap_or_default().into_iter())
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect();
    let membership = cli.membership.or(f.membership);
    if let Some(m) = &membership {
        let d: meshcache::Discovery = m
            .parse()
            .map_err(|e: meshcache::Error| ConfigError(format!("membership: {}", e.message())))?;
        if d != meshcache::Discovery::Static && !peers.is_empty() {
            return bad("peers come from the etcd or DNS membership: give no peer list");
        }
    }
    let grace_ms = cli.shutdown_grace_ms.or(f.shutdown_grace_ms).unwrap_or(5000);
    if grace_ms == 0 {
        return bad("shutdown_grace_ms must be greater than zero");
    }
    let mut groups: Vec<Group> = Vec::with_capacity(f.groups.len());
    for g in f.groups {
        let g = group(g)?;
        if groups.iter().any(|o| o.name == g.name) {
            return bad(format!("group {:?} is defined twice", g.name));
        }
        groups.push(g);
    }
    Ok(Config {
        listen: cli.listen.or(f.listen).unwrap_or_else(|| DEFAULT_LISTEN.into()),
        advertise: cli.advertise.or(f.advertise),
        http_listen: cli
            .http_listen
            .or(f.http_listen)
            .unwrap_or_else(|| DEFAULT_HTTP_LISTEN.into()),
        membership,
        peers,
        token,
        token_file,
        previous_token: cli.previous_token.or(f.previous_token).map(Secret),
        tls,
        http_token,
        metrics_token,
        log_format: cli.log_format.or(f.log_format).unwrap_or_default(),
        shutdown_grace: Duration::from_millis(grace_ms),
        groups,
    })
}

fn group(g: GroupFile) -> Result<Group, ConfigError> {
    let name = g.name;
    let valid = !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if !valid {
        return bad(format!(
            "group name {name:?}: use 1 to 128 ASCII letters, digits, '-', '_' or '.'"
        ));
    }
    let err = |msg: &str| ConfigError(format!("group {name:?}: {msg}"));
    if g.capacity == Some(0) {
        return Err(err("capacity must be greater than zero"));
    }
    if g.ttl_secs == Some(0) {
        return Err(err(
            "ttl_secs must be greater than zero (leave it out for no expiry)",
        ));
    }
    if g.replicas == Some(0) {
        return Err(err("replicas must be at least 1 (the owner)"));
    }
    let max_value_len = g.max_value_len.unwrap_or(meshcache::DEFAULT_MAX_VALUE_LEN);
    let max_key_len = g.max_key_len.unwrap_or(meshcache::DEFAULT_MAX_KEY_LEN);
    if max_value_len == 0 || max_key_len == 0 {
        return Err(err("max_value_len and max_key_len must be greater than zero"));
    }
    let origin = match g.origin {
        None => None,
        Some(o) => Some(origin(o).map_err(|e| err(&e.0))?),
    };
    Ok(Group {
        capacity: g.capacity,
        ttl: g.ttl_secs.map(Duration::from_secs),
        negative_ttl: g.negative_ttl_secs.map(Duration::from_secs),
        replicas: g.replicas,
        max_value_len,
        max_key_len,
        origin,
        name,
    })
}

fn origin(o: OriginFile) -> Result<Origin, ConfigError> {
    if !o.url.contains("{key}") {
        return bad(format!("origin url {:?} has no {{key}}", o.url));
    }
    let sample = o.url.replace("{key}", "k");
    match sample.parse::<axum::http::Uri>() {
        Ok(u) if u.scheme_str() == Some("http") && u.host().is_some() => {}
        Ok(u) if u.scheme_str() == Some("https") => {
            return bad(format!(
                "origin url {:?}: https is not supported, use http (a TLS proxy may stand in front)",
                o.url
            ));
        }
        _ => return bad(format!("origin url {:?} is not an http:// URL", o.url)),
    }
    let timeout = o.timeout_ms.map_or(DEFAULT_ORIGIN_TIMEOUT, Duration::from_millis);
    if timeout.is_zero() {
        return bad("origin timeout_ms must be greater than zero");
    }
    let mut headers = HeaderMap::new();
    for (k, v) in o.headers {
        let name = HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| ConfigError(format!("origin header name {k:?} is not valid")))?;
        let value = HeaderValue::from_str(&v)
            .map_err(|_| ConfigError(format!("origin header {k:?} has a value that is not valid")))?;
        headers.insert(name, value);
    }
    Ok(Origin {
        url: o.url,
        timeout,
        headers,
        cache_control: o.cache_control,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_sizes() {
        let c = Config::from_toml(
            r#"
            [[groups]]
            name = "users"
            capacity = "64MiB"
            max_value_len = 1024
            [groups.origin]
            url = "http://127.0.0.1:9/u/{key}"
            headers = { "x-api-key" = "k" }
            "#,
        )
        .unwrap();
        assert_eq!(c.listen, DEFAULT_LISTEN);
        assert_eq!(c.http_listen, DEFAULT_HTTP_LISTEN);
        let g = &c.groups[0];
        assert_eq!(g.capacity, Some(64 << 20));
        assert_eq!(g.max_value_len, 1024);
        let o = g.origin.as_ref().unwrap();
        assert_eq!(o.timeout, DEFAULT_ORIGIN_TIMEOUT);
        assert_eq!(o.headers["x-api-key"], "k");
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = Config::from_toml("listne = \"x\"").unwrap_err();
        assert!(e.0.contains("listne"), "{e}");
        let e = Config::from_toml("[[groups]]\nname = \"a\"\ncapacityy = 1").unwrap_err();
        assert!(e.0.contains("capacityy"), "{e}");
        let e =
            Config::from_toml("[[groups]]\nname = \"a\"\n[groups.origin]\nurl = \"http://h/{key}\"\nx = 1")
                .unwrap_err();
        assert!(e.0.contains('x'), "{e}");
    }

    #[test]
    fn bad_values_are_refused() {
        for (text, needle) in [
            ("[[groups]]\nname = \"a\"\ncapacity = \"12 parsecs\"", "byte size"),
            ("[[groups]]\nname = \"a\"\ncapacity = 0", "capacity"),
            ("[[groups]]\nname = \"a b\"", "group name"),
            ("[[groups]]\nname = \"a\"\n[[groups]]\nname = \"a\"", "twice"),
            (
                "[[groups]]\nname = \"a\"\n[groups.origin]\nurl = \"http://h/\"",
                "{key}",
            ),
            (
                "[[groups]]\nname = \"a\"\n[groups.origin]\nurl = \"https://h/{key}\"",
                "https",
            ),
            ("membership = \"zookeeper://x\"", "membership"),
            ("membership = \"dns://h:1\"\npeers = [\"a:1\"]", "peer list"),
            ("http_token = \"has space\"", "http_token"),
            ("log_format = \"xml\"", "xml"),
            ("[tls]\ncert = \"a\"\nkey = \"b\"", "ca"),
        ] {
            let e = Config::from_toml(text).unwrap_err();
            assert!(e.0.contains(needle), "{text}: {e}");
        }
    }

    #[test]
    fn flags_beat_the_file() {
        let file: FileConfig =
            toml::from_str("listen = \"127.0.0.1:1\"\nhttp_listen = \"127.0.0.1:2\"").unwrap();
        let cli = Cli {
            listen: Some("127.0.0.1:3".into()),
            ..Cli::default()
        };
        let c = resolve(cli, file).unwrap();
        assert_eq!(c.listen, "127.0.0.1:3");
        assert_eq!(c.http_listen, "127.0.0.1:2");
    }

    #[test]
    fn secrets_never_print() {
        let c = Config::from_toml("http_token = \"s3cret\"\ntoken = \"s3cret2\"").unwrap();
        assert!(!format!("{c:?}").contains("s3cret"));
    }
}
