//! The rustls configurations of peer traffic, made once from the PEM files: the server's
//! (which `listen.rs` uses for both protocols) and the native framing client's. gRPC
//! clients use tonic's configuration from the same files.

use std::io::Cursor;
use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::error::{Error, Result};

/// ALPN of the native framing; gRPC clients ask for `h2`.
pub(crate) const ALPN_WIRE: &[u8] = b"meshcache/wire1";
const ALPN_H2: &[u8] = b"h2";

fn certs(what: &str, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_reader_iter(&mut Cursor::new(pem))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::invalid(format!("TLS configuration: the {what} is not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(Error::invalid(format!(
            "TLS configuration: the {what} holds no certificate"
        )));
    }
    Ok(certs)
}

/// The server's and the native client's configurations. `client_auth`: the server
/// requires a certificate signed by the CA from its clients (mutual TLS).
pub(crate) fn configs(
    cert: &[u8],
    key: &[u8],
    ca: &[u8],
    client_auth: bool,
) -> Result<(Arc<ServerConfig>, Arc<ClientConfig>)> {
    let chain = certs("certificate", cert)?;
    let key = PrivateKeyDer::from_pem_reader(&mut Cursor::new(key)).map_err(|e| {
        Error::invalid(format!(
            "TLS configuration: the key is not a valid PEM private key: {e}"
        ))
    })?;
    let mut roots = RootCertStore::empty();
    for c in certs("CA certificate", ca)? {
        roots
            .add(c)
            .map_err(|e| Error::invalid(format!("TLS configuration: the CA certificate: {e}")))?;
    }
    let roots = Arc::new(roots);
    let builder = ServerConfig::builder();
    let builder = if client_auth {
        let verifier = WebPkiClientVerifier::builder(roots.clone())
            .build()
            .map_err(|e| Error::invalid(format!("TLS configuration: client verifier: {e}")))?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let mut server = builder
        .with_single_cert(chain.clone(), key.clone_key())
        .map_err(|e| Error::invalid(format!("TLS configuration: certificate and key: {e}")))?;
    server.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_WIRE.to_vec()];
    let mut client = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| Error::invalid(format!("TLS configuration: client certificate and key: {e}")))?;
    client.alpn_protocols = vec![ALPN_WIRE.to_vec()];
    Ok((Arc::new(server), Arc::new(client)))
}
