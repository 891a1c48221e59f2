//! The HTTP(S) server: accepts connections, runs the TLS handshake (when configured) and one
//! HTTP/1.1-or-h2 connection per task, and drains connections on shutdown.
//!
//! The TLS settings sit in a [`TlsHolder`] read once per connection, so a reload that swaps
//! them (a rotated certificate, TLS turned on or off) applies to the next connection without
//! a restart, and connections already open keep theirs.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::{Bytes, Frame, Incoming, SizeHint};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rustls::RootCertStore;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::config::{ClientAuthType, TlsVersion, WebConfig, WebTlsConfig};
use crate::telemetry;

/// Longest shutdown waits for open requests to finish before it drops their connections.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a connection closed for idling gets to finish closing (an h2 GOAWAY, a request
/// that raced the close) before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// First and longest pause after a failed accept, as Go's HTTP server waits: out of file
/// descriptors, retrying at once would only spin and log.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(5);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// At most one warning per this long for the same accept-loop condition; the next says how
/// many were left out.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// What the server allows each connection, fixed at start.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Connections served at once; 0 is no limit.
    pub max_connections: usize,
    /// Longest a connection may go without sending a complete request's headers: from accept
    /// (the TLS handshake included) and from the end of each response.
    pub read_header_timeout: Duration,
}

impl Limits {
    /// The limits of `web`.
    pub fn new(web: &WebConfig) -> Limits {
        Limits {
            max_connections: web.max_connections,
            read_header_timeout: web.read_header_timeout.to_std(),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits::new(&WebConfig::default())
    }
}

/// Binds a listener on `addr` (`host:port`, each address the host resolves to tried in
/// turn) with the largest accept backlog the system allows: the kernel caps the request at
/// its own maximum (`net.core.somaxconn` on Linux), so bursts of connects queue there
/// instead of being dropped.
pub async fn bind(addr: &str) -> std::io::Result<TcpListener> {
    let mut last = None;
    for a in tokio::net::lookup_host(addr).await? {
        match bind_one(a) {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{addr}: no address to listen on"),
        )
    }))
}

fn bind_one(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    // As std and tokio do on Unix: a restart can bind while old connections sit in TIME_WAIT.
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(u32::MAX)
}

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
        *crate::sync::write(&self.0) = tls;
    }

    /// The settings in force.
    pub fn get(&self) -> Option<Arc<ServerConfig>> {
        crate::sync::read(&self.0).clone()
    }
}

/// Serves `router` on `listener` until `shutdown` completes, then stops accepting, lets the
/// requests under way finish (idle connections close at once), and returns when every
/// connection is closed or after [`DRAIN_TIMEOUT`].
///
/// At most `limits.max_connections` connections are open at once: at the limit the loop stops
/// accepting, and new connections wait in the listen backlog until one closes (as
/// Prometheus's listener limit does), so a flood of connections can neither exhaust file
/// descriptors nor crowd out a client for longer than `limits.read_header_timeout`.
pub async fn serve<F>(
    listener: TcpListener,
    router: Router,
    tls: Arc<TlsHolder>,
    limits: Limits,
    shutdown: F,
) where
    F: Future<Output = ()> + Send,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // hyper's own timer covers the wait for each request head once HTTP/1 is under way;
    // `Conn` adds the time before (TLS, protocol detection) and HTTP/2's idle time.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.read_header_timeout);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    let slots =
        (limits.max_connections > 0).then(|| Arc::new(Semaphore::new(limits.max_connections)));
    // Every connection task holds a receiver of `stop`; `closed()` on the sender resolves
    // once the last of them is gone.
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut backoff = Backoff::default();
    let mut accept_warning = Throttle::default();
    let mut limit_warning = Throttle::default();
    tokio::pin!(shutdown);
    loop {
        let slot = match &slots {
            None => None,
            Some(sem) => match sem.clone().try_acquire_owned() {
                Ok(p) => Some(p),
                Err(_) => {
                    telemetry::connection_limit_reached();
                    if let Some(left_out) = limit_warning.ready(Instant::now()) {
                        warn!(
                            max_connections = limits.max_connections,
                            left_out,
                            "connection limit reached; new connections wait until one closes"
                        );
                    }
                    tokio::select! {
                        p = sem.clone().acquire_owned() => p.ok(),
                        _ = &mut shutdown => break,
                    }
                }
            },
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => {
                    backoff.reset();
                    c
                }
                // The peer gave up before the accept: nothing wrong with the listener.
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    // Out of file descriptors and the like: wait, longer each time, instead
                    // of spinning on the error.
                    let pause = backoff.next();
                    if let Some(left_out) = accept_warning.ready(Instant::now()) {
                        warn!(error = %e, retry_in = ?pause, left_out, "accept failed");
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => continue,
                        _ = &mut shutdown => break,
                    }
                }
            },
            _ = &mut shutdown => break,
        };
        let accepted = Instant::now();
        let _ = stream.set_nodelay(true);
        let tls = tls.get();
        let conn = Conn {
            router: router.clone(),
            builder: builder.clone(),
            stop: stop_rx.clone(),
            limits,
            peer,
        };
        tokio::spawn(async move {
            let open = telemetry::ConnectionOpen::start();
            let deadline = accepted + limits.read_header_timeout;
            match tls {
                None => conn.http(stream, deadline).await,
                Some(cfg) => conn.https(stream, cfg, deadline).await,
            }
            // The socket is closed by now; only then may the next connection take the slot.
            drop(open);
            drop(slot);
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

/// The pause after each failed accept in a row: [`ACCEPT_BACKOFF_MIN`], doubling up to
/// [`ACCEPT_BACKOFF_MAX`]; a successful accept starts over.
#[derive(Debug, Default)]
struct Backoff(Option<Duration>);

impl Backoff {
    fn next(&mut self) -> Duration {
        let d = self
            .0
            .map_or(ACCEPT_BACKOFF_MIN, |d| (d * 2).min(ACCEPT_BACKOFF_MAX));
        self.0 = Some(d);
        d
    }

    fn reset(&mut self) {
        self.0 = None;
    }
}

/// Lets a repeated warning through at most once per [`WARN_EVERY`].
#[derive(Debug, Default)]
struct Throttle {
    last: Option<Instant>,
    left_out: u64,
}

impl Throttle {
    /// `Some(how many were left out since the last one)` when a warning may be logged now.
    fn ready(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(t) if now.saturating_duration_since(t) < WARN_EVERY => {
                self.left_out += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.left_out))
            }
        }
    }
}

/// One accepted connection's share of the server.
struct Conn {
    router: Router,
    builder: Arc<auto::Builder<TokioExecutor>>,
    stop: watch::Receiver<bool>,
    limits: Limits,
    peer: SocketAddr,
}

impl Conn {
    /// Runs the TLS handshake, then HTTP; the handshake counts against `deadline`, the
    /// first request's header deadline.
    async fn https(mut self, stream: TcpStream, cfg: Arc<ServerConfig>, deadline: Instant) {
        let peer = self.peer;
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
            r = tokio::time::timeout_at(deadline, handshake) => match r {
                Ok(Some(s)) => s,
                Ok(None) => return,
                Err(_) => {
                    debug!(peer = %peer, "TLS handshake timed out");
                    telemetry::connection_timed_out();
                    return;
                }
            },
            _ = self.stop.changed() => return,
        };
        self.http(stream, deadline).await;
    }

    /// Serves HTTP on `io` until the client closes, shutdown, or the connection goes without
    /// a request in progress past its deadline: `deadline` for the first request, then
    /// `read_header_timeout` after each response. The HTTP/1 timer inside hyper does the
    /// same once it waits for a request head; this one also covers the protocol detection
    /// before it (a silent client) and HTTP/2, which has no timer of its own.
    async fn http<I>(mut self, io: I, deadline: Instant)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (busy_tx, mut busy) = watch::channel(0usize);
        let service = Tracked {
            inner: TowerToHyperService::new(self.router.clone()),
            busy: Arc::new(busy_tx),
            peer: self.peer,
        };
        let conn = self
            .builder
            .serve_connection_with_upgrades(TokioIo::new(io), service);
        tokio::pin!(conn);
        let mut stopping = false;
        let mut closing = false;
        // When the connection is closed if no request starts before; `None` while one is
        // in progress.
        let mut idle_until = Some(deadline);
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
                Ok(()) = busy.changed() => {
                    let idle = *busy.borrow_and_update() == 0;
                    let wait = if closing { CLOSE_GRACE } else { self.limits.read_header_timeout };
                    idle_until = idle.then(|| Instant::now() + wait);
                }
                () = tokio::time::sleep_until(idle_until.unwrap_or(deadline)), if idle_until.is_some() => {
                    if closing {
                        return;
                    }
                    debug!(peer = %self.peer, "closing a connection without a request within read_header_timeout");
                    telemetry::connection_timed_out();
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                    idle_until = Some(Instant::now() + CLOSE_GRACE);
                }
            }
        }
    }
}

/// The router as one connection's hyper service: it gives handlers the peer address
/// (`ConnectInfo<SocketAddr>`) and counts the requests in progress, from complete headers
/// until the response body is sent or dropped.
#[derive(Clone)]
struct Tracked {
    inner: TowerToHyperService<Router>,
    busy: Arc<watch::Sender<usize>>,
    peer: SocketAddr,
}

impl hyper::service::Service<Request<Incoming>> for Tracked {
    type Response = Response<TrackedBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        req.extensions_mut().insert(ConnectInfo(self.peer));
        let busy = Busy::start(self.busy.clone());
        let resp = self.inner.call(req);
        Box::pin(async move {
            let resp = resp.await?;
            Ok(resp.map(|body| TrackedBody { body, _busy: busy }))
        })
    }
}

/// One request in progress on its connection.
struct Busy(Arc<watch::Sender<usize>>);

impl Busy {
    fn start(count: Arc<watch::Sender<usize>>) -> Busy {
        count.send_modify(|n| *n += 1);
        Busy(count)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// A response body that keeps its request counted as in progress until it is dropped.
struct TrackedBody {
    body: axum::body::Body,
    _busy: Busy,
}

impl hyper::body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
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

    /// A server of `/-/healthy` on a free port with `limits`; stops when the sender drops.
    async fn start(
        limits: Limits,
        tls: Option<Arc<ServerConfig>>,
    ) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let listener = bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = Router::new()
            .route("/-/healthy", axum::routing::get(|| async { "OK\n" }))
            .route(
                "/peer",
                axum::routing::get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move {
                    peer.ip().to_string()
                }),
            );
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve(
            listener,
            router,
            Arc::new(TlsHolder::new(tls)),
            limits,
            async move {
                let _ = rx.await;
            },
        ));
        (addr, tx)
    }

    fn short(max_connections: usize, read_header_timeout: Duration) -> Limits {
        Limits {
            max_connections,
            read_header_timeout,
        }
    }

    /// Reads until the server closes `s` (end of stream or reset); panics past 20 s.
    async fn wait_closed<S: AsyncRead + Unpin>(s: &mut S, what: &str) {
        use tokio::io::AsyncReadExt;
        let until = Instant::now() + Duration::from_secs(20);
        let mut buf = [0u8; 4096];
        loop {
            match tokio::time::timeout_at(until, s.read(&mut buf)).await {
                Ok(Ok(0) | Err(_)) => return,
                Ok(Ok(_)) => {}
                Err(_) => panic!("{what}: the server did not close the connection"),
            }
        }
    }

    /// Whether the server has closed `s`, without waiting.
    fn closed_now(mut s: &std::net::TcpStream) -> bool {
        use std::io::Read;
        s.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 64];
        loop {
            match s.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
                Err(_) => return true,
            }
        }
    }

    const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    /// An empty SETTINGS frame: length 0, type 4, no flags, stream 0.
    const H2_SETTINGS: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn silent_slow_and_idle_connections_are_closed_after_the_header_timeout() {
        let (addr, _stop) = start(short(16, Duration::from_millis(300)), None).await;

        // Connects and never sends a byte.
        let mut silent = TcpStream::connect(addr).await.unwrap();
        // Sends part of a request head and stops.
        let mut slow = TcpStream::connect(addr).await.unwrap();
        slow.write_all(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        // Opens HTTP/2 and asks nothing.
        let mut h2 = TcpStream::connect(addr).await.unwrap();
        h2.write_all(&[H2_PREFACE, H2_SETTINGS].concat())
            .await
            .unwrap();
        // Gets one answer and keeps the connection open.
        let mut kept = TcpStream::connect(addr).await.unwrap();
        kept.write_all(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();

        wait_closed(&mut silent, "silent").await;
        wait_closed(&mut slow, "slow").await;
        wait_closed(&mut h2, "h2 idle").await;
        wait_closed(&mut kept, "kept-alive idle").await;

        // The server still answers, and tells handlers who is asking.
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(b"GET /peer HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut c, &mut answer)
            .await
            .unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("\r\n\r\n127.0.0.1"), "{answer}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tls_clients_that_go_silent_are_closed_after_the_header_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = identity();
        let cfg = WebTlsConfig {
            cert_file: write(dir.path(), "web.pem", &cert),
            key_file: write(dir.path(), "web.key", &key),
            ..WebTlsConfig::default()
        };
        let server = load_tls(&cfg).unwrap();
        let (addr, _stop) = start(short(16, Duration::from_millis(300)), Some(server)).await;

        // Silent before the handshake.
        let mut silent = TcpStream::connect(addr).await.unwrap();
        // Silent after it.
        let mut roots = RootCertStore::empty();
        for c in certificates("cert_file", &cfg.cert_file).unwrap() {
            roots.add(c).unwrap();
        }
        let client = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let tcp = TcpStream::connect(addr).await.unwrap();
        let mut tls = tokio_rustls::TlsConnector::from(Arc::new(client))
            .connect("localhost".try_into().unwrap(), tcp)
            .await
            .unwrap();

        wait_closed(&mut silent, "silent before the handshake").await;
        wait_closed(&mut tls, "silent after the handshake").await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connections_over_the_limit_wait_until_one_closes() {
        // Long enough that, without a limit, the request below is answered well before the
        // silent connections time out.
        let timeout = Duration::from_secs(2);
        let (addr, _stop) = start(short(2, timeout), None).await;
        // Three silent connections for two slots: the third waits for one of the first two.
        let silent: Vec<std::net::TcpStream> = (0..3)
            .map(|_| std::net::TcpStream::connect(addr).unwrap())
            .collect();
        let mut c = TcpStream::connect(addr).await.unwrap();
        c.write_all(b"GET /-/healthy HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        tokio::time::timeout(
            Duration::from_secs(20),
            tokio::io::AsyncReadExt::read_to_string(&mut c, &mut answer),
        )
        .await
        .expect("answered once the silent connections time out")
        .unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        // Only two connections were served at once: the request was accepted after the two
        // silent ones ahead of it that held the slots had been closed for their timeout.
        let closed = silent.iter().filter(|s| closed_now(s)).count();
        assert!(
            closed >= 2,
            "the request was served while {} silent connections held slots",
            3 - closed
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_listen_backlog_is_the_system_maximum() {
        let want = 400;
        let max = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .ok()
            .and_then(|s| s.trim().parse::<usize>().ok());
        if max.is_none_or(|m| m <= want) {
            eprintln!("somaxconn unknown or at most {want}: nothing to tell apart");
            return;
        }
        // Nobody accepts: every connect completes in the kernel's accept queue, or waits for
        // a SYN retry once the queue is full (128 deep before).
        let listener = bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connects = tokio::time::timeout(Duration::from_secs(20), async {
            let mut held = Vec::new();
            for _ in 0..want {
                held.push(TcpStream::connect(addr).await.unwrap());
            }
            held
        })
        .await
        .expect("connects beyond the backlog waited");
        assert_eq!(connects.len(), want);
    }

    #[test]
    fn accept_errors_back_off_from_5ms_doubling_to_1s() {
        let mut b = Backoff::default();
        let pauses: Vec<u128> = (0..10).map(|_| b.next().as_millis()).collect();
        assert_eq!(pauses, [5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        b.reset();
        assert_eq!(b.next(), ACCEPT_BACKOFF_MIN);
    }

    #[test]
    fn repeated_warnings_are_throttled_and_count_what_was_left_out() {
        let mut t = Throttle::default();
        let t0 = Instant::now();
        assert_eq!(t.ready(t0), Some(0));
        for i in 1..100 {
            assert_eq!(t.ready(t0 + Duration::from_millis(i)), None);
        }
        assert_eq!(t.ready(t0 + WARN_EVERY), Some(99));
        assert_eq!(t.ready(t0 + WARN_EVERY), None);
    }
}
