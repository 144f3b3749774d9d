//! `meshcached`: a standalone meshcache node. It joins a cluster like an embedded node
//! (same peer protocol, membership, token and TLS), serves its groups over a REST API,
//! loads misses from an HTTP origin, and serves `/metrics`, `/v1/status`, a status page,
//! `/healthz` and `/readyz` on the same HTTP port.
//!
//! ```text
//! meshcached --config meshcached.toml [--listen ...] [--http-listen ...]
//! ```
//!
//! Prints `meshcached ready peer=<addr> http=<addr>` on stdout once it serves (logs go to
//! stderr). SIGTERM or SIGINT: `/readyz` turns 503, the HTTP port stops accepting and
//! lets requests in flight finish, then the node leaves the cluster gracefully (handing
//! its entries to their new owners under etcd or DNS membership) and exits 0. A bad
//! configuration exits 2 before anything is bound; a failure to start exits 1.
//!
//! | file | what |
//! |---|---|
//! | `config.rs` | file, environment, flags; checks |
//! | `origin.rs` | the HTTP origin loader |
//! | `rest.rs` | routes and handlers |
//! | `problem.rs` | errors as RFC 9457 problem details |
//! | `http.rs` | the HTTP/1.1 server loop |

mod config;
mod origin;
mod problem;
mod rest;

use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser as _;
use meshcache::{Cluster, ErrorKind, Group};
use tracing_subscriber::EnvFilter;

use crate::config::{Cli, Config, LogFormat};

/// Exit status of a configuration that cannot work.
const EXIT_CONFIG: u8 = 2;
/// Exit status of a failure to start or to run.
const EXIT_FAILURE: u8 = 1;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("meshcached: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    init_logs(config.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("meshcached: cannot start the runtime: {e}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    match runtime.block_on(run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err((code, msg)) => {
            eprintln!("meshcached: {msg}");
            ExitCode::from(code)
        }
    }
}

/// Logs on stderr, `MESHCACHE_LOG` (or `RUST_LOG`) filtering, `info` by default.
fn init_logs(format: LogFormat) {
    let filter = EnvFilter::try_from_env("MESHCACHE_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs.with_ansi(ansi).init(),
        LogFormat::Json => logs.json().init(),
    }
}

/// An exit status and why.
type Failure = (u8, String);

/// Exit 2 for what the configuration got wrong, 1 for the rest.
fn failed(what: &str, e: &meshcache::Error) -> Failure {
    let code = match e.kind() {
        ErrorKind::InvalidArgument => EXIT_CONFIG,
        _ => EXIT_FAILURE,
    };
    (code, format!("{what}: {}", e.message()))
}

async fn start_cluster(c: &Config) -> Result<Cluster, Failure> {
    let mut b = Cluster::builder()
        .listen(c.listen.clone())
        .peers(c.peers.clone())
        .shutdown_grace(c.shutdown_grace);
    if let Some(a) = &c.advertise {
        b = b.advertise(a.clone());
    }
    if let Some(m) = &c.membership {
        b = b.membership(m.clone());
    }
    if let Some(t) = &c.token {
        b = b.token(t.0.clone());
    }
    if let Some(p) = &c.token_file {
        b = b.token_file(p.clone());
    }
    if let Some(t) = &c.previous_token {
        b = b.previous_token(t.0.clone());
    }
    if let Some(t) = &c.tls {
        b = b.tls(t.cert.clone(), t.key.clone(), t.ca.clone());
    }
    b.start().await.map_err(|e| failed("cannot start the node", &e))
}

fn build_group(cluster: &Cluster, g: &config::Group) -> Result<Group, Failure> {
    let mut b = cluster
        .group(g.name.clone())
        .max_value_len(g.max_value_len)
        .max_key_len(g.max_key_len);
    if let Some(n) = g.capacity {
        b = b.capacity(n);
    }
    if let Some(t) = g.ttl {
        b = b.default_ttl(t);
    }
    if let Some(t) = g.negative_ttl {
        b = b.negative_ttl(t);
    }
    if let Some(n) = g.replicas {
        b = b.replicas(n);
    }
    if let Some(o) = &g.origin {
        b = b.loader(origin::OriginLoader::new(o, g.max_value_len));
    }
    b.build().map_err(|e| failed(&format!("group {:?}", g.name), &e))
}

async fn run(config: Config) -> Result<(), Failure> {
    // Bind the HTTP port first: a port taken fails before the node joins anything.
    let listener = tokio::net::TcpListener::bind(config.http_listen.as_str())
        .await
        .map_err(|e| {
            (
                EXIT_FAILURE,
                format!("cannot listen on {}: {e}", config.http_listen),
            )
        })?;
    let http_addr = listener
        .local_addr()
        .map_err(|e| (EXIT_FAILURE, format!("http listener: {e}")))?;
    let cluster = start_cluster(&config).await?;
    let mut groups = Vec::with_capacity(config.groups.len());
    for g in &config.groups {
        match build_group(&cluster, g) {
            Ok(g) => groups.push(g),
            Err(e) => {
                let _ = cluster.shutdown().await;
                return Err(e);
            }
        }
    }
    if groups.is_empty() {
        tracing::warn!("no [[groups]] configured: the REST API has nothing to serve");
    }
    let app = rest::App::new(
        cluster.clone(),
        groups,
        config.http_token.clone(),
        config.metrics_token.clone(),
    );
    if config.http_token.is_none() {
        tracing::warn!(
            "no http_token: the REST API is open to whoever reaches {http_addr}; bind it to a private interface"
        );
    }
    let signal = signals();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(meshcache::http_server::serve(
        listener,
        rest::router(app.clone()),
        async {
            let _ = stop_rx.await;
        },
        config.shutdown_grace,
    ));
    tracing::info!(
        peer = %cluster.local_addr(),
        advertise = cluster.advertise_addr(),
        http = %http_addr,
        groups = config.groups.len(),
        "meshcached ready"
    );
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(
            out,
            "meshcached ready peer={} http={http_addr}",
            cluster.local_addr()
        );
        let _ = out.flush();
    }
    let signal = signal.await;
    tracing::info!(signal, "shutting down: draining HTTP, then leaving the cluster");
    app.start_draining();
    let _ = stop_tx.send(());
    let _ = server.await;
    cluster
        .shutdown()
        .await
        .map_err(|e| (EXIT_FAILURE, format!("shutdown: {}", e.message())))?;
    tracing::info!("meshcached stopped");
    Ok(())
}

/// Resolves with the name of the first of SIGTERM and SIGINT to arrive. The handlers are
/// installed when this is called (before the ready line), so no signal is missed.
fn signals() -> impl std::future::Future<Output = &'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let handlers = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()));
    async move {
        let (Ok(mut term), Ok(mut int)) = handlers else {
            tracing::warn!("cannot listen for signals: waiting for ctrl-c only");
            let _ = tokio::signal::ctrl_c().await;
            return "SIGINT";
        };
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        }
    }
}
