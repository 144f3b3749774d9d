//! Test certificates, made fresh by each test run (never committed): a cluster CA, a node
//! certificate it signs (for `localhost` and `127.0.0.1`, usable as server and client
//! certificate), and a stranger's certificate signed by another CA.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};

/// Where [`write`] put the PEM files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    /// The cluster's CA certificate.
    pub ca: PathBuf,
    /// A node certificate signed by the cluster's CA, and its key.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// A certificate and key signed by another CA: a stranger.
    pub stranger_cert: PathBuf,
    pub stranger_key: PathBuf,
    /// The stranger's CA.
    pub stranger_ca: PathBuf,
}

fn ca(name: &str) -> (CertificateParams, KeyPair, String) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(rcgen::DnType::CommonName, name);
    let key = KeyPair::generate().expect("CA key");
    let pem = params.self_signed(&key).expect("CA certificate").pem();
    (params, key, pem)
}

fn leaf(issuer: &Issuer<'_, KeyPair>) -> (String, String) {
    let mut params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).expect("node params");
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let key = KeyPair::generate().expect("node key");
    let cert = params.signed_by(&key, issuer).expect("node certificate");
    (cert.pem(), key.serialize_pem())
}

/// Writes a fresh set of test certificates into `dir`.
///
/// # Panics
///
/// If `dir` cannot be written.
pub fn write(dir: &Path) -> CertFiles {
    std::fs::create_dir_all(dir).expect("certificate directory");
    let (ca_params, ca_key, ca_pem) = ca("meshcache test CA");
    let issuer = Issuer::new(ca_params, ca_key);
    let (cert, key) = leaf(&issuer);
    let (other_params, other_key, other_pem) = ca("a stranger's CA");
    let other = Issuer::new(other_params, other_key);
    let (stranger_cert, stranger_key) = leaf(&other);
    let put = |name: &str, text: &str| {
        let p = dir.join(name);
        std::fs::write(&p, text).expect("write a certificate file");
        p
    };
    CertFiles {
        ca: put("ca.pem", &ca_pem),
        cert: put("node.pem", &cert),
        key: put("node.key", &key),
        stranger_cert: put("stranger.pem", &stranger_cert),
        stranger_key: put("stranger.key", &stranger_key),
        stranger_ca: put("stranger-ca.pem", &other_pem),
    }
}
