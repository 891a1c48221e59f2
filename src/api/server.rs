//! The HTTP(S) server: accepts connections, runs the TLS handshake (when configured) and one
//! HTTP/1.1-or-h2 connection per task, and drains connections on shutdown.
//!
//! The TLS settings sit in a [`TlsHolder`] read once per connection, so a reload that swaps
//! them (a rotated certificate, TLS turned on or off) applies to the next connection without
//! a restart, and connections already open keep theirs.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rustls::RootCertStore;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::config::{ClientAuthType, TlsVersion, WebTlsConfig};

/// Longest a client may take to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest a client may take to send a request's headers (HTTP/1.1).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest shutdown waits for open requests to finish before it drops their connections.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the TLS settings cannot be used; each names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("web.tls.{key}: cannot read {}: {source}", path.display())]
    Read {
        /// The config key naming the file.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file is not the PEM it should be.
    #[error("web.tls.{key}: {}: {why}", path.display())]
    Pem {
        /// The config key naming the file.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// Certificate and key do not make a usable server identity (e.g. they do not match).
    #[error("web.tls: {} with {}: {source}", cert.display(), key.display())]
    Identity {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What rustls refused.
        source: rustls::Error,
    },
    /// Client verification cannot be set up from the CA file.
    #[error("web.tls.client_ca_file: {}: {why}", path.display())]
    ClientCa {
        /// The CA file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The protocol versions are refused by the TLS library.
    #[error("web.tls.min_version: {0}")]
    Versions(rustls::Error),
}

fn read(key: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        key,
        path: path.to_path_buf(),
        source,
    })
}

fn pem_error(key: &'static str, path: &Path, why: impl std::fmt::Display) -> TlsError {
    TlsError::Pem {
        key,
        path: path.to_path_buf(),
        why: why.to_string(),
    }
}

/// Every certificate of a PEM file; at least one.
fn certificates(key: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let text = read(key, path)?;
    let certs = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, pem::Error>>()
        .map_err(|e| pem_error(key, path, e))?;
    if certs.is_empty() {
        return Err(pem_error(key, path, "no CERTIFICATE block"));
    }
    Ok(certs)
}

/// Builds the rustls server settings from `web.tls`, reading its files now.
pub fn load_tls(cfg: &WebTlsConfig) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = certificates("cert_file", &cfg.cert_file)?;
    let key_text = read("key_file", &cfg.key_file)?;
    let key = PrivateKeyDer::from_pem_slice(&key_text).map_err(|e| match e {
        pem::Error::NoItemsFound => pem_error(
            "key_file",
            &cfg.key_file,
            "no PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY block",
        ),
        e => pem_error("key_file", &cfg.key_file, e),
    })?;
    let versions: &[&rustls::SupportedProtocolVersion] = match cfg.min_version {
        TlsVersion::TLS13 => &[&rustls::version::TLS13],
        _ => &[&rustls::version::TLS12, &rustls::version::TLS13],
    };
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(TlsError::Versions)?;
    let builder = match (&cfg.client_ca_file, cfg.client_auth_type) {
        (_, ClientAuthType::NoClientCert) | (None, _) => builder.with_no_client_auth(),
        (Some(ca), auth) => {
            let mut roots = RootCertStore::empty();
            for c in certificates("client_ca_file", ca)? {
                roots.add(c).map_err(|e| TlsError::ClientCa {
                    path: ca.clone(),
                    why: e.to_string(),
                })?;
            }
            let mut v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            if auth == ClientAuthType::VerifyClientCertIfGiven {
                v = v.allow_unauthenticated();
            }
            let verifier = v.build().map_err(|e| TlsError::ClientCa {
                path: ca.clone(),
                why: e.to_string(),
            })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|source| TlsError::Identity {
            cert: cfg.cert_file.clone(),
            key: cfg.key_file.clone(),
            source,
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The TLS settings new connections get; `None` serves plain HTTP.
#[derive(Default)]
pub struct TlsHolder(RwLock<Option<Arc<ServerConfig>>>);

impl TlsHolder {
    /// Holds `tls`.
    pub fn new(tls: Option<Arc<ServerConfig>>) -> TlsHolder {
        TlsHolder(RwLock::new(tls))
    }

    /// Replaces the settings; connections already open keep theirs.
    pub fn set(&self, tls: Option<Arc<ServerConfig>>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = tls;
    }

    /// The settings in force.
    pub fn get(&self) -> Option<Arc<ServerConfig>> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Serves `router` on `listener` until `shutdown` completes, then stops accepting, lets the
/// requests under way finish (idle connections close at once), and returns when every
/// connection is closed or after [`DRAIN_TIMEOUT`].
pub async fn serve<F>(listener: TcpListener, router: Router, tls: Arc<TlsHolder>, shutdown: F)
where
    F: Future<Output = ()> + Send,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    // Every connection task holds a receiver of `stop`; `closed()` on the sender resolves
    // once the last of them is gone.
    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    if !is_connection_error(&e) {
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let tls = tls.get();
        let conn = Conn {
            router: router.clone(),
            builder: builder.clone(),
            stop: stop_rx.clone(),
        };
        tokio::spawn(async move {
            match tls {
                None => conn.http(stream).await,
                Some(cfg) => conn.https(stream, cfg, peer).await,
            }
        });
    }
    drop(listener);
    drop(stop_rx);
    let _ = stop_tx.send(true);
    if tokio::time::timeout(DRAIN_TIMEOUT, stop_tx.closed())
        .await
        .is_err()
    {
        warn!("connections still open after the drain timeout; closing them");
    }
}

/// Errors of one incoming connection that say nothing about the listener.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

/// One accepted connection's share of the server.
struct Conn {
    router: Router,
    builder: Arc<auto::Builder<TokioExecutor>>,
    stop: watch::Receiver<bool>,
}

impl Conn {
    async fn https(
        mut self,
        stream: TcpStream,
        cfg: Arc<ServerConfig>,
        peer: std::net::SocketAddr,
    ) {
        let handshake = async {
            if plain_http(&stream).await {
                // As Go's server does: tell a client that forgot `https://` what went wrong.
                let mut s = stream;
                let _ = s
                    .write_all(b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")
                    .await;
                let _ = s.shutdown().await;
                return None;
            }
            match tokio_rustls::TlsAcceptor::from(cfg).accept(stream).await {
                Ok(s) => Some(s),
                Err(e) => {
                    debug!(peer = %peer, error = %e, "TLS handshake failed");
                    None
                }
            }
        };
        let stream = tokio::select! {
            r = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake) => match r {
                Ok(Some(s)) => s,
                Ok(None) => return,
                Err(_) => {
                    debug!(peer = %peer, "TLS handshake timed out");
                    return;
                }
            },
            _ = self.stop.changed() => return,
        };
        self.http(stream).await;
    }

    async fn http<I>(mut self, io: I)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let service = TowerToHyperService::new(self.router.clone());
        let conn = self
            .builder
            .serve_connection_with_upgrades(TokioIo::new(io), service);
        tokio::pin!(conn);
        let mut stopping = false;
        loop {
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        debug!(error = %e, "connection ended with an error");
                    }
                    return;
                }
                r = self.stop.changed(), if !stopping => {
                    stopping = true;
                    if r.is_ok() {
                        conn.as_mut().graceful_shutdown();
                    }
                }
            }
        }
    }
}

/// Whether a connection to the TLS port starts like an HTTP/1 request rather than a TLS
/// record (which starts with 0x16, a handshake).
async fn plain_http(stream: &TcpStream) -> bool {
    let mut first = [0u8; 1];
    matches!(stream.peek(&mut first).await, Ok(1) if first[0].is_ascii_uppercase())
}

/// Logs what the server speaks, once at start.
pub fn log_mode(tls: &TlsHolder) {
    match tls.get() {
        Some(_) => info!("TLS is enabled"),
        None => info!("TLS is disabled"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// A self-signed certificate for `localhost` and its key, PEM.
    fn identity() -> (String, String) {
        let c = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        (c.cert.pem(), c.signing_key.serialize_pem())
    }

    #[test]
    fn tls_files_load_and_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = identity();
        let cfg = WebTlsConfig {
            cert_file: write(dir.path(), "web.pem", &cert),
            key_file: write(dir.path(), "web.key", &key),
            ..WebTlsConfig::default()
        };
        let sc = load_tls(&cfg).unwrap();
        assert_eq!(
            sc.alpn_protocols,
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );

        let missing = WebTlsConfig {
            cert_file: dir.path().join("nope.pem"),
            ..cfg.clone()
        };
        let e = load_tls(&missing).unwrap_err().to_string();
        assert!(
            e.contains("web.tls.cert_file") && e.contains("nope.pem"),
            "{e}"
        );

        let not_pem = WebTlsConfig {
            cert_file: write(dir.path(), "junk.pem", "hello\n"),
            ..cfg.clone()
        };
        let e = load_tls(&not_pem).unwrap_err().to_string();
        assert!(
            e.contains("junk.pem") && e.contains("no CERTIFICATE"),
            "{e}"
        );

        let cert_as_key = WebTlsConfig {
            key_file: cfg.cert_file.clone(),
            ..cfg.clone()
        };
        let e = load_tls(&cert_as_key).unwrap_err().to_string();
        assert!(
            e.contains("web.tls.key_file") && e.contains("web.pem"),
            "{e}"
        );

        // A key of another certificate: refused, naming both files.
        let (_, other_key) = identity();
        let mismatched = WebTlsConfig {
            key_file: write(dir.path(), "other.key", &other_key),
            ..cfg.clone()
        };
        let e = load_tls(&mismatched).unwrap_err().to_string();
        assert!(e.contains("web.pem") && e.contains("other.key"), "{e}");

        let bad_ca = WebTlsConfig {
            client_ca_file: Some(write(
                dir.path(),
                "ca.pem",
                "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            )),
            client_auth_type: ClientAuthType::RequireAndVerifyClientCert,
            ..cfg.clone()
        };
        let e = load_tls(&bad_ca).unwrap_err().to_string();
        assert!(e.contains("client_ca_file") && e.contains("ca.pem"), "{e}");

        let tls13 = WebTlsConfig {
            min_version: TlsVersion::TLS13,
            ..cfg
        };
        assert!(load_tls(&tls13).is_ok());
    }

    #[test]
    fn the_holder_swaps_settings_for_new_connections() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = identity();
        let cfg = WebTlsConfig {
            cert_file: write(dir.path(), "a.pem", &cert),
            key_file: write(dir.path(), "a.key", &key),
            ..WebTlsConfig::default()
        };
        let first = load_tls(&cfg).unwrap();
        let h = TlsHolder::new(Some(first.clone()));
        assert!(Arc::ptr_eq(&h.get().unwrap(), &first));
        let second = load_tls(&cfg).unwrap();
        h.set(Some(second.clone()));
        assert!(Arc::ptr_eq(&h.get().unwrap(), &second));
        h.set(None);
        assert!(h.get().is_none());
    }
}
