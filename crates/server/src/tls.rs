//! HTTPS: loads a PEM certificate chain and private key into a rustls acceptor (aws-lc-rs provider) that offers
//! h2 and HTTP/1.1 via ALPN. The certificate can be replaced while the server runs ([`ServerCertificate::reload`],
//! on SIGHUP): every handshake asks [`ServerCertificate`] for the current pair, and a new pair is swapped in only
//! once it has loaded and its key matches its certificate.

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;

use crate::config::TlsFiles;

/// Why TLS could not be set up. Never includes key material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read certificates from {path}: {message}")]
    Certificates { path: PathBuf, message: String },
    #[error("{path} contains no certificate")]
    NoCertificate { path: PathBuf },
    #[error("cannot read a private key from {path} (PEM: PKCS#8, PKCS#1 or SEC1 expected)")]
    PrivateKey { path: PathBuf },
    #[error("the certificate and key cannot be used together: {0}")]
    Config(rustls::Error),
}

/// The certificate and key the server presents, read from `files` at start and again on [`Self::reload`].
pub struct ServerCertificate {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
}

impl std::fmt::Debug for ServerCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerCertificate").field("files", &self.files).finish_non_exhaustive()
    }
}

impl ServerCertificate {
    /// Loads `files` and builds the acceptor that presents them (and whatever [`Self::reload`] swaps in later).
    pub fn load(files: &TlsFiles) -> Result<(Arc<ServerCertificate>, TlsAcceptor), TlsError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let pair = certified_key(files, &provider)?;
        let certificate = Arc::new(ServerCertificate {
            files: files.clone(),
            provider: Arc::clone(&provider),
            current: RwLock::new(pair),
        });
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Config)?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(&certificate) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok((certificate, TlsAcceptor::from(Arc::new(config))))
    }

    /// Reads the files again and, if they hold a usable pair, presents it from the next handshake on. On an error
    /// the pair in use stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let pair = certified_key(&self.files, &self.provider)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = pair;
        Ok(())
    }
}

impl ResolvesServerCert for ServerCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner)))
    }
}

/// The pair in `files`, checked: the key must load and match the first certificate.
fn certified_key(files: &TlsFiles, provider: &CryptoProvider) -> Result<Arc<CertifiedKey>, TlsError> {
    let certs = load_certificates(&files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|_| TlsError::PrivateKey { path: files.key.clone() })?;
    CertifiedKey::from_der(certs, key, provider).map(Arc::new).map_err(TlsError::Config)
}

fn load_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let error = |message: String| TlsError::Certificates { path: path.to_owned(), message };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| error(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| error(e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { path: path.to_owned() });
    }
    Ok(certs)
}
