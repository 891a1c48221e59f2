//! The HTTP part of a scrape against hand-rolled HTTP/1.1 servers on 127.0.0.1: headers
//! sent, statuses, timeouts, body limits (plain, endless and gzip bombs), auth and TLS.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use flate2::Compression;
use flate2::write::GzEncoder;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::RootCertStore;
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use rustls::server::WebPkiClientVerifier;
use tidemark::scrape::fetch::{
    Authorization, BasicAuth, BuildError, FetchError, FetchSettings, Fetcher, Pem,
    SCRAPE_TIMEOUT_HEADER, Secret, TlsSettings, TlsVersion,
};
use tidemark::scrape::parse::{ACCEPT_HEADER, ContentTypeError, Format};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;

// ---------------------------------------------------------------------------------------
// Allocation accounting per thread: a current-thread runtime runs client and server on the
// test's thread, so the peak of live bytes there bounds what a fetch buffered.

struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn account(delta: isize) {
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

// SAFETY: every call forwards to the system allocator unchanged; accounting only touches
// const-initialised thread locals, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            account(layout.size() as isize);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            account(layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        account(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            account(new_size as isize - layout.size() as isize);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` and returns its output with the most bytes it had live at once on this thread.
async fn peak_bytes<T>(f: impl std::future::Future<Output = T>) -> (T, isize) {
    let base = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(base));
    let out = f.await;
    (out, PEAK.with(Cell::get) - base)
}

// ---------------------------------------------------------------------------------------
// A minimal HTTP/1.1 server.

#[derive(Debug, Clone)]
struct Request {
    path: String,
    headers: Vec<(String, String)>,
    client_cert: bool,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

enum Reply {
    /// A complete response with `Content-Length`; the connection stays open.
    Full {
        status: &'static str,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
    },
    /// Read the request, then never answer.
    Silent,
    /// A chunked 200 that never ends (bounded so a broken client cannot make it run away).
    Endless {
        chunk: Vec<u8>,
        every: Option<Duration>,
    },
}

fn ok(content_type: &str, body: impl Into<Vec<u8>>) -> Reply {
    Reply::Full {
        status: "200 OK",
        headers: vec![("Content-Type", content_type.to_string())],
        body: body.into(),
    }
}

type Handler = Arc<dyn Fn(&Request) -> Reply + Send + Sync>;

struct Server {
    addr: SocketAddr,
    requests: mpsc::UnboundedReceiver<Request>,
    connections: Arc<AtomicUsize>,
    sent: Arc<AtomicU64>,
}

impl Server {
    fn url(&self) -> String {
        format!("http://{}/metrics", self.addr)
    }

    fn https_url(&self) -> String {
        format!("https://{}/metrics", self.addr)
    }

    async fn next_request(&mut self) -> Request {
        tokio::time::timeout(Duration::from_secs(5), self.requests.recv())
            .await
            .expect("no request reached the server")
            .expect("server stopped")
    }
}

async fn serve(handler: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> Server {
    serve_with(None, handler).await
}

async fn serve_with(
    tls: Option<TlsAcceptor>,
    handler: impl Fn(&Request) -> Reply + Send + Sync + 'static,
) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let connections = Arc::new(AtomicUsize::new(0));
    let sent = Arc::new(AtomicU64::new(0));
    let handler: Handler = Arc::new(handler);
    let (conns, sent2) = (connections.clone(), sent.clone());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            conns.fetch_add(1, Ordering::SeqCst);
            let (handler, tx, sent, tls) =
                (handler.clone(), tx.clone(), sent2.clone(), tls.clone());
            tokio::spawn(async move {
                match tls {
                    None => handle(tcp, false, handler, tx, sent).await,
                    Some(acceptor) => {
                        if let Ok(stream) = acceptor.accept(tcp).await {
                            let cert = stream.get_ref().1.peer_certificates().is_some();
                            handle(stream, cert, handler, tx, sent).await;
                        }
                    }
                }
            });
        }
    });
    Server {
        addr,
        requests: rx,
        connections,
        sent,
    }
}

async fn handle<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    client_cert: bool,
    handler: Handler,
    tx: mpsc::UnboundedSender<Request>,
    sent: Arc<AtomicU64>,
) {
    let mut buf = Vec::new();
    loop {
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            let mut tmp = [0u8; 4096];
            match stream.read(&mut tmp).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
            }
            if buf.len() > 65536 {
                return;
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        buf.drain(..head_end + 4);
        let mut lines = head.split("\r\n");
        let path = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .unwrap_or_default()
            .to_string();
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
            .collect();
        let request = Request {
            path,
            headers,
            client_cert,
        };
        let reply = handler(&request);
        let _ = tx.send(request);
        match reply {
            Reply::Full {
                status,
                headers,
                body,
            } => {
                let mut out = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\n", body.len());
                for (n, v) in headers {
                    out.push_str(&format!("{n}: {v}\r\n"));
                }
                out.push_str("\r\n");
                let mut bytes = out.into_bytes();
                bytes.extend_from_slice(&body);
                if stream.write_all(&bytes).await.is_err() || stream.flush().await.is_err() {
                    return;
                }
            }
            Reply::Silent => {
                // Hold the connection until the client gives up.
                let mut tmp = [0u8; 64];
                while let Ok(n) = stream.read(&mut tmp).await {
                    if n == 0 {
                        return;
                    }
                }
                return;
            }
            Reply::Endless { chunk, every } => {
                let head = "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n\
                            Transfer-Encoding: chunked\r\n\r\n";
                if stream.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let mut framed = format!("{:x}\r\n", chunk.len()).into_bytes();
                framed.extend_from_slice(&chunk);
                framed.extend_from_slice(b"\r\n");
                let started = Instant::now();
                for _ in 0..20_000 {
                    if started.elapsed() > Duration::from_secs(20)
                        || stream.write_all(&framed).await.is_err()
                        || stream.flush().await.is_err()
                    {
                        return;
                    }
                    sent.fetch_add(chunk.len() as u64, Ordering::SeqCst);
                    if let Some(every) = every {
                        tokio::time::sleep(every).await;
                    }
                }
                return;
            }
        }
    }
}

fn fetcher(settings: FetchSettings) -> Fetcher {
    Fetcher::new(&settings).unwrap()
}

fn gzip(data: &[u8], level: u32) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::new(level));
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// Exposition text with irregular values, about `lines` lines long.
fn exposition(lines: usize) -> Vec<u8> {
    let mut s = String::from("# TYPE http_requests_total counter\n");
    for i in 0..lines {
        s.push_str(&format!(
            "http_requests_total{{code=\"{}\",path=\"/api/v{}\"}} {}\n",
            [200, 404, 503][i % 3],
            i * 7 % 11,
            (i as f64 * 13.7).sin().abs() * 1e4
        ));
    }
    s.into_bytes()
}

// ---------------------------------------------------------------------------------------
// Plain HTTP.

#[tokio::test]
async fn text_body_and_the_headers_prometheus_sends() {
    let body = exposition(40);
    let reply = body.clone();
    let mut server =
        serve(move |_| ok("text/plain; version=0.0.4; charset=utf-8", reply.clone())).await;
    let f = fetcher(FetchSettings {
        timeout: Duration::from_millis(7250),
        ..FetchSettings::default()
    });
    let got = f.fetch(&server.url()).await.unwrap();
    assert_eq!(got.body, body);
    assert_eq!(got.format, Format::PrometheusText);
    assert_eq!(got.fallback_reason, None);
    assert_eq!(
        got.content_type.as_deref(),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert_eq!(got.status, 200);
    assert!(got.duration < Duration::from_secs(5));

    let req = server.next_request().await;
    assert_eq!(req.path, "/metrics");
    assert_eq!(req.header("Accept"), Some(ACCEPT_HEADER));
    assert_eq!(req.header("Accept-Encoding"), Some("gzip"));
    assert_eq!(
        req.header("User-Agent"),
        Some(concat!("tidemark/", env!("CARGO_PKG_VERSION")))
    );
    assert_eq!(req.header(SCRAPE_TIMEOUT_HEADER), Some("7.25"));
    assert_eq!(req.header("Authorization"), None);
}

#[tokio::test]
async fn timeout_header_uses_gos_shortest_form() {
    let mut server = serve(|_| ok("text/plain", "up 1\n")).await;
    for (timeout, text) in [
        (Duration::from_secs(10), "10"),
        (Duration::from_millis(300), "0.3"),
        (Duration::from_millis(1500), "1.5"),
    ] {
        let f = fetcher(FetchSettings {
            timeout,
            ..FetchSettings::default()
        });
        f.fetch(&server.url()).await.unwrap();
        assert_eq!(
            server.next_request().await.header(SCRAPE_TIMEOUT_HEADER),
            Some(text)
        );
    }
}

#[tokio::test]
async fn openmetrics_is_negotiated() {
    let body = b"# TYPE jobs gauge\njobs 3.25\n# EOF\n".to_vec();
    let reply = body.clone();
    let mut server = serve(move |_| {
        ok(
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            reply.clone(),
        )
    })
    .await;
    let got = fetcher(FetchSettings::default())
        .fetch(&server.url())
        .await
        .unwrap();
    assert_eq!(got.format, Format::OpenMetrics);
    assert_eq!(got.body, body);
    let req = server.next_request().await;
    assert_eq!(req.header("Accept"), Some(ACCEPT_HEADER));
    assert!(
        req.header("Accept")
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
}

#[tokio::test]
async fn content_type_fallback_follows_prometheus_3() {
    let server = serve(|r| match r.path.as_str() {
        "/json" => ok("application/json", "up 1\n"),
        "/garbled" => ok("text plain/x", "up 1\n"),
        "/empty" => Reply::Full {
            status: "200 OK",
            headers: vec![],
            body: vec![],
        },
        _ => Reply::Full {
            status: "200 OK",
            headers: vec![],
            body: b"up 1\n".to_vec(),
        },
    })
    .await;
    let base = format!("http://{}", server.addr);
    let strict = fetcher(FetchSettings::default());

    let e = strict.fetch(&format!("{base}/none")).await.unwrap_err();
    assert!(matches!(
        e,
        FetchError::ContentType(ContentTypeError::Missing)
    ));
    assert!(e.to_string().contains("blank Content-Type"), "{e}");
    let e = strict.fetch(&format!("{base}/json")).await.unwrap_err();
    assert!(matches!(
        e,
        FetchError::ContentType(ContentTypeError::Unsupported(_))
    ));
    let e = strict.fetch(&format!("{base}/garbled")).await.unwrap_err();
    assert!(matches!(
        e,
        FetchError::ContentType(ContentTypeError::Unparsable(_))
    ));
    // An empty body has nothing to parse: no Content-Type is needed.
    let got = strict.fetch(&format!("{base}/empty")).await.unwrap();
    assert!(got.body.is_empty());

    let lenient = fetcher(FetchSettings {
        fallback_format: Some(Format::PrometheusText),
        ..FetchSettings::default()
    });
    let got = lenient.fetch(&format!("{base}/json")).await.unwrap();
    assert_eq!(got.format, Format::PrometheusText);
    assert_eq!(got.content_type.as_deref(), Some("application/json"));
    assert!(matches!(
        got.fallback_reason,
        Some(ContentTypeError::Unsupported(_))
    ));
    let got = lenient.fetch(&format!("{base}/none")).await.unwrap();
    assert_eq!(got.fallback_reason, Some(ContentTypeError::Missing));
    assert_eq!(got.body, b"up 1\n");
}

#[tokio::test]
async fn non_200_statuses_fail_with_prometheus_text() {
    let server = serve(|r| match r.path.as_str() {
        "/boom" => Reply::Full {
            status: "500 Internal Server Error",
            headers: vec![("Content-Type", "text/plain".into())],
            body: b"oops".to_vec(),
        },
        "/moved" => Reply::Full {
            status: "301 Moved Permanently",
            headers: vec![("Location", "/elsewhere".into())],
            body: vec![],
        },
        "/elsewhere" => ok("text/plain", "up 1\n"),
        _ => Reply::Full {
            status: "204 No Content",
            headers: vec![],
            body: vec![],
        },
    })
    .await;
    let base = format!("http://{}", server.addr);
    let f = fetcher(FetchSettings::default());
    let e = f.fetch(&format!("{base}/boom")).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "server returned HTTP status 500 Internal Server Error"
    );
    assert!(matches!(e, FetchError::Status { code: 500, .. }));
    let e = f.fetch(&format!("{base}/nothing")).await.unwrap_err();
    assert_eq!(e.to_string(), "server returned HTTP status 204 No Content");

    // Redirects are followed by default, and reported when following is off.
    assert_eq!(
        f.fetch(&format!("{base}/moved")).await.unwrap().body,
        b"up 1\n"
    );
    let no_follow = fetcher(FetchSettings {
        follow_redirects: false,
        ..FetchSettings::default()
    });
    let e = no_follow.fetch(&format!("{base}/moved")).await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "server returned HTTP status 301 Moved Permanently"
    );
}

#[tokio::test]
async fn connections_are_reused_between_scrapes() {
    let server = serve(|_| ok("text/plain", exposition(5))).await;
    let f = fetcher(FetchSettings::default());
    for _ in 0..3 {
        f.fetch(&server.url()).await.unwrap();
    }
    assert_eq!(server.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn silent_target_times_out_within_the_timeout() {
    let server = serve(|_| Reply::Silent).await;
    let f = fetcher(FetchSettings {
        timeout: Duration::from_millis(300),
        ..FetchSettings::default()
    });
    let started = Instant::now();
    let e = f.fetch(&server.url()).await.unwrap_err();
    let took = started.elapsed();
    assert!(matches!(e, FetchError::Timeout { .. }));
    assert_eq!(
        e.to_string(),
        format!("Get \"{}\": context deadline exceeded", server.url())
    );
    assert!(took >= Duration::from_millis(300), "{took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
}

#[tokio::test]
async fn slow_endless_body_ends_at_the_timeout() {
    let server = serve(|_| Reply::Endless {
        chunk: b"slow_metric 1\n".repeat(3),
        every: Some(Duration::from_millis(20)),
    })
    .await;
    let f = fetcher(FetchSettings {
        timeout: Duration::from_millis(350),
        ..FetchSettings::default()
    });
    let started = Instant::now();
    let e = f.fetch(&server.url()).await.unwrap_err();
    let took = started.elapsed();
    assert!(matches!(e, FetchError::BodyTimeout), "{e}");
    assert_eq!(e.to_string(), "context deadline exceeded");
    assert!(took >= Duration::from_millis(350), "{took:?}");
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert!(server.sent.load(Ordering::SeqCst) > 0);
}

#[tokio::test]
async fn body_limit_is_larger_than_the_limit() {
    let body = exposition(30);
    let n = body.len() as u64;
    let reply = body.clone();
    let server = serve(move |_| ok("text/plain", reply.clone())).await;
    let at = fetcher(FetchSettings {
        body_size_limit: n,
        ..FetchSettings::default()
    });
    assert_eq!(at.fetch(&server.url()).await.unwrap().body, body);
    let under = fetcher(FetchSettings {
        body_size_limit: n - 1,
        ..FetchSettings::default()
    });
    let e = under.fetch(&server.url()).await.unwrap_err();
    assert!(matches!(e, FetchError::BodySizeLimit { limit } if limit == n - 1));
    assert_eq!(e.to_string(), "body size limit exceeded");
}

#[tokio::test]
async fn endless_body_is_cut_at_the_limit() {
    let chunk = exposition(200); // about 10 KB per chunk
    let server = serve(move |_| Reply::Endless {
        chunk: chunk.clone(),
        every: None,
    })
    .await;
    let limit = 1 << 20;
    let f = fetcher(FetchSettings {
        body_size_limit: limit,
        timeout: Duration::from_secs(10),
        ..FetchSettings::default()
    });
    let started = Instant::now();
    let (result, peak) = peak_bytes(f.fetch(&server.url())).await;
    assert!(matches!(
        result,
        Err(FetchError::BodySizeLimit { limit: 1048576 })
    ));
    assert!(started.elapsed() < Duration::from_secs(5));
    // The body stops at the limit. Besides it, hyper's read buffer (which adapts up to
    // about 400 KiB against a fast sender) and the chunk in hand may be live; the server
    // would have sent up to 200 MB.
    assert!(peak < (limit as isize) + (1 << 20), "peak {peak} bytes");
}

// ---------------------------------------------------------------------------------------
// gzip.

#[tokio::test]
async fn gzip_body_is_decompressed_and_identity_is_asked_when_disabled() {
    let body = exposition(3000);
    let compressed = gzip(&body, 6);
    assert!(compressed.len() * 4 < body.len());
    let mut server = serve(move |r| {
        if r.header("Accept-Encoding") == Some("gzip") {
            Reply::Full {
                status: "200 OK",
                headers: vec![
                    ("Content-Type", "text/plain; version=0.0.4".into()),
                    ("Content-Encoding", "gzip".into()),
                ],
                body: compressed.clone(),
            }
        } else {
            ok("text/plain; version=0.0.4", b"plain 1\n".to_vec())
        }
    })
    .await;
    let f = fetcher(FetchSettings {
        body_size_limit: 1 << 20,
        ..FetchSettings::default()
    });
    let got = f.fetch(&server.url()).await.unwrap();
    assert_eq!(got.body, body);
    assert_eq!(
        server.next_request().await.header("Accept-Encoding"),
        Some("gzip")
    );

    let f = fetcher(FetchSettings {
        enable_compression: false,
        ..FetchSettings::default()
    });
    assert_eq!(f.fetch(&server.url()).await.unwrap().body, b"plain 1\n");
    assert_eq!(
        server.next_request().await.header("Accept-Encoding"),
        Some("identity")
    );
}

#[tokio::test]
async fn gzip_bomb_stops_at_the_limit_with_bounded_memory() {
    let bomb = gzip(&vec![0u8; 10 << 20], 9);
    assert!(bomb.len() < 20 << 10, "bomb is {} bytes", bomb.len());
    let server = serve(move |_| Reply::Full {
        status: "200 OK",
        headers: vec![
            ("Content-Type", "text/plain".into()),
            ("Content-Encoding", "gzip".into()),
        ],
        body: bomb.clone(),
    })
    .await;
    let limit = 1 << 20;
    let f = fetcher(FetchSettings {
        body_size_limit: limit,
        ..FetchSettings::default()
    });
    let (result, peak) = peak_bytes(f.fetch(&server.url())).await;
    let e = result.unwrap_err();
    assert!(matches!(e, FetchError::BodySizeLimit { .. }), "{e}");
    assert!(peak < (limit as isize) + (256 << 10), "peak {peak} bytes");

    // The same bomb with no limit inflates fully: the limit is what bounded it.
    let unlimited = fetcher(FetchSettings::default());
    let (result, peak) = peak_bytes(unlimited.fetch(&server.url())).await;
    assert_eq!(result.unwrap().body.len(), 10 << 20);
    assert!(peak >= 10 << 20);
}

#[tokio::test]
async fn broken_gzip_fails_with_gos_text() {
    let good = gzip(&exposition(100), 6);
    let truncated = good[..good.len() / 2].to_vec();
    let server = serve(move |r| {
        let body = match r.path.as_str() {
            "/plain" => b"up 1\n".to_vec(),
            _ => truncated.clone(),
        };
        Reply::Full {
            status: "200 OK",
            headers: vec![
                ("Content-Type", "text/plain".into()),
                ("Content-Encoding", "gzip".into()),
            ],
            body,
        }
    })
    .await;
    let base = format!("http://{}", server.addr);
    let f = fetcher(FetchSettings::default());
    let e = f.fetch(&format!("{base}/plain")).await.unwrap_err();
    assert_eq!(e.to_string(), "gzip: invalid header");
    let e = f.fetch(&format!("{base}/truncated")).await.unwrap_err();
    assert_eq!(e.to_string(), "unexpected EOF");
}

// ---------------------------------------------------------------------------------------
// Authentication.

#[tokio::test]
async fn basic_auth_header_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = serve(|_| ok("text/plain", "up 1\n")).await;
    let cases = [
        (
            BasicAuth {
                username: Secret::Inline("alice".into()),
                password: Some(Secret::Inline("s3cr:et".into())),
            },
            "Basic YWxpY2U6czNjcjpldA==",
        ),
        (
            BasicAuth {
                username: Secret::Inline("bob".into()),
                password: None,
            },
            "Basic Ym9iOg==",
        ),
        (
            BasicAuth {
                username: Secret::File(write(dir.path(), "user", "monitor\n")),
                password: Some(Secret::File(write(dir.path(), "pw", "  from-file-pw\n"))),
            },
            "Basic bW9uaXRvcjpmcm9tLWZpbGUtcHc=",
        ),
    ];
    for (auth, expected) in cases {
        let f = fetcher(FetchSettings {
            basic_auth: Some(auth),
            ..FetchSettings::default()
        });
        f.fetch(&server.url()).await.unwrap();
        assert_eq!(
            server.next_request().await.header("Authorization"),
            Some(expected)
        );
    }
}

#[test]
fn basic_auth_and_authorization_together_are_refused() {
    let e = Fetcher::new(&FetchSettings {
        basic_auth: Some(BasicAuth {
            username: Secret::Inline("alice".into()),
            password: None,
        }),
        authorization: Some(Authorization {
            kind: "Bearer".into(),
            credentials: Secret::Inline("t".into()),
        }),
        ..FetchSettings::default()
    })
    .unwrap_err();
    assert!(matches!(e, BuildError::AuthConflict));
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test]
async fn bearer_token_inline_and_from_a_file_reread_every_scrape() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = serve(|_| ok("text/plain", "up 1\n")).await;
    let f = fetcher(FetchSettings {
        authorization: Some(Authorization {
            kind: "Bearer".into(),
            credentials: Secret::Inline("tok-9f3a".into()),
        }),
        ..FetchSettings::default()
    });
    f.fetch(&server.url()).await.unwrap();
    assert_eq!(
        server.next_request().await.header("Authorization"),
        Some("Bearer tok-9f3a")
    );

    let token = write(dir.path(), "token", "eyJhbGciOi.first\n");
    let f = fetcher(FetchSettings {
        authorization: Some(Authorization {
            kind: "Token".into(),
            credentials: Secret::File(token.clone()),
        }),
        ..FetchSettings::default()
    });
    f.fetch(&server.url()).await.unwrap();
    assert_eq!(
        server.next_request().await.header("Authorization"),
        Some("Token eyJhbGciOi.first")
    );
    // A rotated token is used by the next scrape.
    std::fs::write(&token, "  eyJhbGciOi.second  \n").unwrap();
    f.fetch(&server.url()).await.unwrap();
    assert_eq!(
        server.next_request().await.header("Authorization"),
        Some("Token eyJhbGciOi.second")
    );

    std::fs::remove_file(&token).unwrap();
    let e = f.fetch(&server.url()).await.unwrap_err();
    assert!(matches!(e, FetchError::SecretFile { .. }));
    let text = e.to_string();
    assert!(
        text.starts_with(&format!(
            "Get \"{}\": unable to read authorization credentials file {}: ",
            server.url(),
            token.display()
        )),
        "{text}"
    );
}

// ---------------------------------------------------------------------------------------
// Connection failures and URLs.

#[tokio::test]
async fn connection_refused_names_the_address() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let url = format!("http://{addr}/metrics");
    let e = fetcher(FetchSettings::default())
        .fetch(&url)
        .await
        .unwrap_err();
    assert!(matches!(e, FetchError::ConnectionRefused { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        format!("Get \"{url}\": dial tcp {addr}: connect: connection refused")
    );
}

#[tokio::test]
async fn bad_urls_are_refused_before_any_request() {
    let f = fetcher(FetchSettings::default());
    let e = f.fetch("http://[::1/metrics").await.unwrap_err();
    assert!(matches!(e, FetchError::InvalidUrl { .. }));
    assert!(e.to_string().starts_with("parse \"http://[::1/metrics\": "));
    let e = f.fetch("ftp://127.0.0.1:2121/metrics").await.unwrap_err();
    assert_eq!(
        e.to_string(),
        "Get \"ftp://127.0.0.1:2121/metrics\": unsupported protocol scheme \"ftp\""
    );
}

#[tokio::test]
async fn passwords_in_urls_are_redacted_in_errors() {
    let server = serve(|_| Reply::Silent).await;
    let f = fetcher(FetchSettings {
        timeout: Duration::from_millis(200),
        ..FetchSettings::default()
    });
    let url = format!("http://scraper:hunter2@{}/metrics", server.addr);
    let text = f.fetch(&url).await.unwrap_err().to_string();
    assert!(!text.contains("hunter2"), "{text}");
    assert!(text.contains("scraper:xxxxx@"), "{text}");
}

// ---------------------------------------------------------------------------------------
// TLS.

struct Pki {
    dir: tempfile::TempDir,
    ca_der: rustls::pki_types::CertificateDer<'static>,
    server_chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    server_key_pem: String,
}

impl Pki {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// A CA, a server certificate for `metrics.internal` only (so an IP URL needs
/// `server_name`), and a client certificate, all written as PEM files.
fn pki() -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "tidemark test CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);

    let server_key = KeyPair::generate().unwrap();
    let mut server_params = CertificateParams::new(vec!["metrics.internal".to_string()]).unwrap();
    server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_cert = server_params.signed_by(&server_key, &issuer).unwrap();

    let client_key = KeyPair::generate().unwrap();
    let mut client_params = CertificateParams::new(vec!["scraper.internal".to_string()]).unwrap();
    client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client_cert = client_params.signed_by(&client_key, &issuer).unwrap();

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), ca_cert.pem()).unwrap();
    std::fs::write(dir.path().join("client.pem"), client_cert.pem()).unwrap();
    std::fs::write(
        dir.path().join("client-key.pem"),
        client_key.serialize_pem(),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("server-key.pem"),
        server_key.serialize_pem(),
    )
    .unwrap();
    std::fs::write(dir.path().join("garbage.pem"), "not a certificate\n").unwrap();
    Pki {
        dir,
        ca_der: ca_cert.der().clone(),
        server_chain: vec![server_cert.der().clone()],
        server_key_pem: server_key.serialize_pem(),
    }
}

fn acceptor(pki: &Pki, require_client_cert: bool) -> TlsAcceptor {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = if require_client_cert {
        let mut roots = RootCertStore::empty();
        roots.add(pki.ca_der.clone()).unwrap();
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .unwrap();
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let key = PrivateKeyDer::from_pem_slice(pki.server_key_pem.as_bytes()).unwrap();
    let config = builder
        .with_single_cert(pki.server_chain.clone(), key)
        .unwrap();
    TlsAcceptor::from(Arc::new(config))
}

fn tls_fetcher(tls: TlsSettings) -> Result<Fetcher, BuildError> {
    Fetcher::new(&FetchSettings {
        timeout: Duration::from_secs(5),
        tls,
        ..FetchSettings::default()
    })
}

#[tokio::test]
async fn tls_with_ca_file_and_server_name() {
    let pki = pki();
    let mut server = serve_with(Some(acceptor(&pki, false)), |_| {
        ok("text/plain", "tls_up 1\n")
    })
    .await;
    let url = server.https_url();

    let trusted = tls_fetcher(TlsSettings {
        ca: Some(Pem::File(pki.path("ca.pem"))),
        server_name: Some("metrics.internal".into()),
        ..TlsSettings::default()
    })
    .unwrap();
    assert_eq!(trusted.fetch(&url).await.unwrap().body, b"tls_up 1\n");
    assert!(!server.next_request().await.client_cert);

    // The right CA but the URL's IP is not in the certificate.
    let e = tls_fetcher(TlsSettings {
        ca: Some(Pem::File(pki.path("ca.pem"))),
        ..TlsSettings::default()
    })
    .unwrap()
    .fetch(&url)
    .await
    .unwrap_err();
    assert!(matches!(e, FetchError::Tls { .. }), "{e:?}");
    assert!(
        e.to_string().starts_with(&format!("Get \"{url}\": tls: ")),
        "{e}"
    );

    // The system roots do not know the test CA.
    let e = tls_fetcher(TlsSettings {
        server_name: Some("metrics.internal".into()),
        ..TlsSettings::default()
    })
    .unwrap()
    .fetch(&url)
    .await
    .unwrap_err();
    assert!(matches!(e, FetchError::Tls { .. }), "{e:?}");

    // TLS 1.2 only still works against a server offering both.
    let tls12 = tls_fetcher(TlsSettings {
        ca: Some(Pem::Inline(
            std::fs::read_to_string(pki.path("ca.pem")).unwrap(),
        )),
        server_name: Some("metrics.internal".into()),
        max_version: Some(TlsVersion::Tls12),
        ..TlsSettings::default()
    })
    .unwrap();
    assert_eq!(tls12.fetch(&url).await.unwrap().body, b"tls_up 1\n");
}

#[tokio::test]
async fn tls_insecure_skip_verify_accepts_an_unknown_certificate() {
    let pki = pki();
    let server = serve_with(Some(acceptor(&pki, false)), |_| ok("text/plain", "x 2\n")).await;
    let f = tls_fetcher(TlsSettings {
        insecure_skip_verify: true,
        ..TlsSettings::default()
    })
    .unwrap();
    assert_eq!(f.fetch(&server.https_url()).await.unwrap().body, b"x 2\n");
}

#[tokio::test]
async fn tls_client_certificate_is_presented() {
    let pki = pki();
    let mut server = serve_with(Some(acceptor(&pki, true)), |_| ok("text/plain", "m 1\n")).await;
    let url = server.https_url();
    let with_cert = tls_fetcher(TlsSettings {
        ca: Some(Pem::File(pki.path("ca.pem"))),
        cert: Some(Pem::File(pki.path("client.pem"))),
        key: Some(Pem::File(pki.path("client-key.pem"))),
        server_name: Some("metrics.internal".into()),
        ..TlsSettings::default()
    })
    .unwrap();
    assert_eq!(with_cert.fetch(&url).await.unwrap().body, b"m 1\n");
    assert!(server.next_request().await.client_cert);

    let without = tls_fetcher(TlsSettings {
        ca: Some(Pem::File(pki.path("ca.pem"))),
        server_name: Some("metrics.internal".into()),
        ..TlsSettings::default()
    })
    .unwrap();
    assert!(without.fetch(&url).await.is_err());
    assert!(server.requests.try_recv().is_err());
}

#[test]
fn tls_files_are_read_at_build_and_errors_name_them() {
    let pki = pki();
    let missing = pki.path("nope/ca.pem");
    let e = tls_fetcher(TlsSettings {
        ca: Some(Pem::File(missing.clone())),
        ..TlsSettings::default()
    })
    .unwrap_err();
    assert!(matches!(e, BuildError::CaCert { .. }));
    assert!(
        e.to_string().starts_with(&format!(
            "unable to load specified CA cert {}: ",
            missing.display()
        )),
        "{e}"
    );

    let garbage = pki.path("garbage.pem");
    let e = tls_fetcher(TlsSettings {
        ca: Some(Pem::File(garbage.clone())),
        ..TlsSettings::default()
    })
    .unwrap_err();
    assert!(
        e.to_string().contains(&garbage.display().to_string()),
        "{e}"
    );

    let (cert, key) = (pki.path("client.pem"), pki.path("client-key.pem"));
    let e = tls_fetcher(TlsSettings {
        cert: Some(Pem::File(cert.clone())),
        ..TlsSettings::default()
    })
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "client cert file {:?} specified without client key file",
            cert.display().to_string()
        )
    );
    let e = tls_fetcher(TlsSettings {
        key: Some(Pem::File(key.clone())),
        ..TlsSettings::default()
    })
    .unwrap_err();
    assert!(matches!(e, BuildError::KeyWithoutCert(_)));

    // A key file holding a certificate, and a certificate file holding a key.
    for (c, k) in [(cert.clone(), cert.clone()), (key.clone(), key.clone())] {
        let e = tls_fetcher(TlsSettings {
            cert: Some(Pem::File(c.clone())),
            key: Some(Pem::File(k.clone())),
            ..TlsSettings::default()
        })
        .unwrap_err();
        assert!(matches!(e, BuildError::ClientCert { .. }), "{e:?}");
        let text = e.to_string();
        assert!(
            text.starts_with(&format!(
                "unable to read specified client cert ({}) & key ({}): ",
                c.display(),
                k.display()
            )),
            "{text}"
        );
    }

    let e = tls_fetcher(TlsSettings {
        server_name: Some("bad name!".into()),
        ..TlsSettings::default()
    })
    .unwrap_err();
    assert!(matches!(e, BuildError::ServerName { .. }), "{e:?}");

    // The good files build.
    tls_fetcher(TlsSettings {
        ca: Some(Pem::File(pki.path("ca.pem"))),
        cert: Some(Pem::File(cert)),
        key: Some(Pem::File(key)),
        ..TlsSettings::default()
    })
    .unwrap();
}
