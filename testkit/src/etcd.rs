//! A real etcd server (Debian's `etcd-server`, the `etcd` binary on `PATH`) for the
//! membership tests: on loopback ports, with a temporary data directory, stopped (and its
//! directory removed) on drop. It can be stopped and started again on the same ports and
//! data, to test a node's behaviour while etcd is away.
//!
//! Readiness is an event, not a timer: the server's log line "ready to serve client
//! requests".

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long etcd may take to start before the test fails.
const START_BOUND: Duration = Duration::from_secs(30);

/// A running (or stopped) etcd.
#[derive(Debug)]
pub struct Etcd {
    child: Option<Child>,
    dir: PathBuf,
    client_port: u16,
    peer_port: u16,
    /// CA, certificate and key: clients must use TLS and show a certificate from the CA.
    tls: Option<[PathBuf; 3]>,
}

/// A loopback port free now (bound and released: etcd cannot report a port 0 it chose).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

impl Etcd {
    /// Starts etcd on free loopback ports.
    ///
    /// # Panics
    ///
    /// If `etcd` is not installed (`make deps` installs it) or does not become ready.
    pub fn start() -> Etcd {
        Self::start_with(None)
    }

    /// Starts etcd serving TLS only, with `cert`/`key`, and requiring client certificates
    /// signed by `ca` (mutual TLS).
    ///
    /// # Panics
    ///
    /// As [`Etcd::start`].
    pub fn start_tls(ca: PathBuf, cert: PathBuf, key: PathBuf) -> Etcd {
        Self::start_with(Some([ca, cert, key]))
    }

    fn start_with(tls: Option<[PathBuf; 3]>) -> Etcd {
        let dir = std::env::temp_dir().join(format!("meshcache-etcd-{}-{}", std::process::id(), free_port()));
        let mut etcd = Etcd {
            child: None,
            dir,
            client_port: free_port(),
            peer_port: free_port(),
            tls,
        };
        etcd.restart();
        etcd
    }

    /// `127.0.0.1:<port>` of the client API.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    /// A membership spec for this etcd under a prefix of its own.
    pub fn membership(&self, prefix: &str, lease_ttl_secs: u64) -> String {
        format!("etcd://{}/{prefix}?lease_ttl={lease_ttl_secs}", self.endpoint())
    }

    /// Stops the server (SIGKILL: as abrupt as a crash), keeping its data.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same ports and data; returns once it serves.
    ///
    /// # Panics
    ///
    /// As [`Etcd::start`].
    pub fn restart(&mut self) {
        self.stop();
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let client = format!("{scheme}://127.0.0.1:{}", self.client_port);
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let mut command = Command::new("etcd");
        if let Some([ca, cert, key]) = &self.tls {
            command
                .arg("--cert-file")
                .arg(cert)
                .arg("--key-file")
                .arg(key)
                .arg("--trusted-ca-file")
                .arg(ca)
                .arg("--client-cert-auth");
        }
        let mut child = command
            .args(["--name", "meshcache-test", "--data-dir"])
            .arg(&self.dir)
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args(["--initial-cluster", &format!("meshcache-test={peer}")])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot run etcd: install Debian's etcd-server (make deps does)");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            // Reads the log to its end, so that etcd never blocks on a full pipe.
            let mut ready = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains("ready to serve client requests")
                    && let Some(tx) = ready.take()
                {
                    let _ = tx.send(());
                }
            }
        });
        self.child = Some(child);
        if rx.recv_timeout(START_BOUND).is_err() {
            self.stop();
            panic!("etcd did not become ready within {START_BOUND:?}");
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
