//! TLS for a listener: a certificate chain and private key read from PEM files, served through a rustls
//! certificate resolver so that they can be read again while the server runs (on SIGHUP): new handshakes
//! get the new pair, connections already open keep theirs. ALPN offers `h2` and `http/1.1`.

use std::{
    fmt,
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
};

use rustls::{
    ServerConfig,
    crypto::CryptoProvider,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};
use tokio_util::sync::CancellationToken;

/// The ALPN protocol names offered, in the server's order of preference (RFC 7301, RFC 9113 §3.2).
pub const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Where a listener's certificate and key live: PEM files, the certificate file holding the end-entity
/// certificate first and then any intermediates, the key file one PKCS#8, PKCS#1 (RSA) or SEC1 (EC) key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Why a certificate and key could not be loaded. Each names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the TLS certificate file {}", .path.display())]
    Cert {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("the TLS certificate file {} holds no PEM certificate", .0.display())]
    NoCert(PathBuf),
    #[error("cannot read a PEM private key from the TLS key file {}", .path.display())]
    Key {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("the private key in {} is unsupported or does not belong to the certificate in {}", .key.display(), .cert.display())]
    Unusable {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("cannot build the TLS configuration")]
    Config(#[source] rustls::Error),
}

/// The certificate and key in force, and the files they came from. Resolves every handshake to the pair
/// loaded last (SNI is not consulted: one listener serves one certificate).
pub struct CertStore {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
}

impl fmt::Debug for CertStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertStore").field("files", &self.files).finish_non_exhaustive()
    }
}

impl CertStore {
    /// Reads the pair from `files`. Fails, naming the file, when either cannot be read or parsed, or when
    /// the key does not fit the certificate.
    pub fn load(files: TlsFiles) -> Result<Arc<Self>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let pair = read_pair(&files, &provider)?;
        Ok(Arc::new(Self { files, provider, current: RwLock::new(Arc::new(pair)) }))
    }

    /// Reads the files again and, when they hold a usable pair, serves it to new handshakes. On failure the
    /// pair in force stays, and the error says why.
    pub fn reload(&self) -> Result<(), TlsError> {
        let pair = read_pair(&self.files, &self.provider)?;
        *self.current.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(pair);
        Ok(())
    }

    /// The files this store reads.
    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// A server configuration that takes its certificate from this store, offers [`ALPN`], speaks TLS 1.2
    /// and 1.3 with rustls' safe defaults (ring), and resumes sessions by ticket.
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<ServerConfig>, TlsError> {
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Config)?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
        // Stateless resumption (keys rotated by rustls every 6 hours), beside the small stateful cache, so
        // returning clients skip the full handshake however many there are.
        config.ticketer = rustls::crypto::ring::Ticketer::new().map_err(TlsError::Config)?;
        Ok(Arc::new(config))
    }

    /// Installs a SIGHUP handler now (so that a signal sent right after start-up is not lost), and returns
    /// the task that reloads the pair on each SIGHUP until `shutdown`. A failed reload is logged at error
    /// level and the old pair stays in force.
    pub fn reload_on_sighup(
        self: Arc<Self>,
        shutdown: CancellationToken,
    ) -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hangup = signal(SignalKind::hangup())?;
        Ok(async move {
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    got = hangup.recv() => if got.is_none() { return },
                }
                match self.reload() {
                    Ok(()) => tracing::info!(
                        cert = %self.files.cert.display(),
                        key = %self.files.key.display(),
                        "SIGHUP: reloaded the TLS certificate and key"
                    ),
                    Err(e) => tracing::error!(
                        error = %error_chain(&e),
                        "SIGHUP: could not reload the TLS certificate and key; still serving the previous ones"
                    ),
                }
            }
        })
    }

    fn current(&self) -> Arc<CertifiedKey> {
        self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// An error and its sources, `: `-separated, for one log line.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

fn read_pair(files: &TlsFiles, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let certs = read_certs(&files.cert)?;
    let key =
        PrivateKeyDer::from_pem_file(&files.key).map_err(|source| TlsError::Key { path: files.key.clone(), source })?;
    CertifiedKey::from_der(certs, key, provider).map_err(|source| TlsError::Unusable {
        cert: files.cert.clone(),
        key: files.key.clone(),
        source,
    })
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|source| TlsError::Cert { path: path.to_owned(), source })?;
    if certs.is_empty() {
        return Err(TlsError::NoCert(path.to_owned()));
    }
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_pair(dir: &Path, name: &str) -> TlsFiles {
        let rcgen::CertifiedKey { cert, signing_key } =
            rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let files = TlsFiles { cert: dir.join(format!("{name}.crt")), key: dir.join(format!("{name}.key")) };
        std::fs::write(&files.cert, cert.pem()).unwrap();
        std::fs::write(&files.key, signing_key.serialize_pem()).unwrap();
        files
    }

    #[test]
    fn a_pair_loads_and_a_bad_reload_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let files = write_pair(dir.path(), "a");
        let store = CertStore::load(files.clone()).unwrap();
        let before = store.current();
        std::fs::write(&files.cert, "not a certificate").unwrap();
        assert!(matches!(store.reload(), Err(TlsError::NoCert(_))));
        assert!(Arc::ptr_eq(&before, &store.current()));
        let b = write_pair(dir.path(), "b");
        std::fs::copy(&b.cert, &files.cert).unwrap();
        std::fs::copy(&b.key, &files.key).unwrap();
        store.reload().unwrap();
        assert_ne!(store.current().cert, before.cert);
    }

    #[test]
    fn errors_name_the_file_at_fault() {
        let dir = tempfile::tempdir().unwrap();
        let a = write_pair(dir.path(), "a");
        let b = write_pair(dir.path(), "b");
        let missing = TlsFiles { cert: dir.path().join("nope.crt"), key: a.key.clone() };
        let e = CertStore::load(missing).unwrap_err();
        assert!(e.to_string().contains("nope.crt"), "{e}");
        let no_key = TlsFiles { cert: a.cert.clone(), key: a.cert.clone() };
        assert!(matches!(CertStore::load(no_key).unwrap_err(), TlsError::Key { .. }));
        let mismatched = TlsFiles { cert: a.cert.clone(), key: b.key.clone() };
        let e = CertStore::load(mismatched).unwrap_err();
        assert!(matches!(e, TlsError::Unusable { .. }), "{e}");
        assert!(e.to_string().contains("b.key"), "{e}");
    }
}
