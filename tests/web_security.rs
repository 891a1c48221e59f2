//! The agent's web security against the real binary, as Prometheus's web config and flags
//! have it: basic auth on every endpoint (401 whatever is wrong), TLS with the configured
//! certificate (h2 by ALPN, a rotated certificate picked up on reload, a broken one refused),
//! mutual TLS, the lifecycle and admin endpoints off by default, the request body limit, CORS,
//! and the flags that override config keys.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use reqwest::StatusCode;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod common;
use common::Agent;
#[path = "common/log.rs"]
mod log;
use log::wait_log;

const USER: &str = "grafana";
const PASSWORD: &str = "s3cr3t-Pa55:with-colon";

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

// ---- Certificates ---------------------------------------------------------------------------

/// A certificate authority made for one test.
fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, name);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    CertifiedIssuer::self_signed(p, KeyPair::generate().unwrap()).unwrap()
}

/// A certificate signed by `ca` for `names`, server or client; (certificate PEM, key PEM).
fn leaf(ca: &CertifiedIssuer<'static, KeyPair>, names: &[&str], client: bool) -> (String, String) {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let mut p = CertificateParams::new(names).unwrap();
    p.distinguished_name.push(
        DnType::CommonName,
        if client { "scraper" } else { "tidemark" },
    );
    p.extended_key_usages = vec![if client {
        ExtendedKeyUsagePurpose::ClientAuth
    } else {
        ExtendedKeyUsagePurpose::ServerAuth
    }];
    let key = KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, ca).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// TLS client settings trusting `ca_pem` only, with a client certificate when given.
fn client_tls(ca_pem: &str, identity: Option<&(String, String)>) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    let b = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    match identity {
        None => b.with_no_client_auth(),
        Some((cert, key)) => b
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(cert.as_bytes())
                    .map(Result::unwrap)
                    .collect(),
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
    }
}

fn https_client(tls: rustls::ClientConfig) -> reqwest::Client {
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

// ---- The agent ------------------------------------------------------------------------------

/// Writes `yaml` as the config in `dir` and starts the agent on it, with `extra` flags.
fn start(dir: &Path, yaml: &str, extra: &[&str]) -> Agent {
    let cfg = dir.join("tidemark.yml");
    std::fs::write(&cfg, yaml).unwrap();
    let data = dir.join("data");
    let mut args: Vec<&std::ffi::OsStr> = vec![
        "--config".as_ref(),
        cfg.as_os_str(),
        "--data-dir".as_ref(),
        data.as_os_str(),
    ];
    args.extend(extra.iter().map(|a| std::ffi::OsStr::new(*a)));
    Agent::start(&args)
}

fn addr(a: &Agent) -> String {
    a.api.trim_start_matches("http://").to_string()
}

fn hash(password: &str) -> String {
    // Cost 4 keeps the debug-built agent quick; the cost is read from each hash.
    bcrypt::hash(password, 4).unwrap()
}

fn http() -> reqwest::Client {
    // reqwest is built without a provider of its own; the one the agent uses serves.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

// ---- Basic auth -----------------------------------------------------------------------------

/// Checks a 401 with its `WWW-Authenticate` challenge; returns the body.
async fn refused(r: reqwest::Response, what: &str) -> String {
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{what}");
    assert_eq!(
        r.headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap()),
        Some("Basic"),
        "{what}"
    );
    r.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_guards_every_endpoint_and_reloads_its_users() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = |password: &str| {
        format!(
            "web:\n  basic_auth_users:\n    {USER}: '{}'\n    ops: '{}'\n",
            hash(password),
            hash("ops-password")
        )
    };
    let a = start(dir.path(), &yaml(PASSWORD), &["--enable-lifecycle"]);
    let c = http();
    let query = format!("{}/api/v1/query?query=1%2B1", a.api);

    let none = refused(c.get(&query).send().await.unwrap(), "no credentials").await;
    let wrong = refused(
        c.get(&query)
            .basic_auth(USER, Some("s3cr3t"))
            .send()
            .await
            .unwrap(),
        "wrong password",
    )
    .await;
    let unknown = refused(
        c.get(&query)
            .basic_auth("mallory", Some(PASSWORD))
            .send()
            .await
            .unwrap(),
        "unknown user",
    )
    .await;
    let malformed = refused(
        c.get(&query)
            .header("authorization", "Basic not*base64")
            .send()
            .await
            .unwrap(),
        "malformed header",
    )
    .await;
    let other_scheme = refused(
        c.get(&query).bearer_auth(PASSWORD).send().await.unwrap(),
        "bearer token",
    )
    .await;
    // No hint of which part was wrong.
    for body in [&wrong, &unknown, &malformed, &other_scheme] {
        assert_eq!(body, &none);
    }
    // Every endpoint, the ones Prometheus also guards included.
    for path in [
        "/metrics",
        "/-/healthy",
        "/-/ready",
        "/api/v1/status/buildinfo",
        "/nowhere",
    ] {
        let r = c.get(format!("{}{path}", a.api)).send().await.unwrap();
        refused(r, path).await;
    }
    let r = c.post(format!("{}/-/reload", a.api)).send().await.unwrap();
    refused(r, "/-/reload").await;

    // The right password: the first check runs bcrypt, the second is cached.
    let t0 = Instant::now();
    let r = c
        .get(&query)
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .await
        .unwrap();
    let uncached = t0.elapsed();
    assert_eq!(r.status(), StatusCode::OK);
    let v: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(v["data"]["result"][1], "2", "{v}");
    let t1 = Instant::now();
    let r = c
        .get(&query)
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .await
        .unwrap();
    eprintln!(
        "bcrypt cost 4, debug build: uncached request {uncached:?}, cached {:?}",
        t1.elapsed()
    );
    assert_eq!(r.status(), StatusCode::OK);
    let r = c
        .get(format!("{}/metrics", a.api))
        .basic_auth("ops", Some("ops-password"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let page = r.text().await.unwrap();
    assert!(
        page.contains(r#"tidemark_http_requests_total{handler="/api/v1/query",code="401"}"#),
        "refusals are counted"
    );
    assert!(page.contains("tidemark_queries_in_flight"));

    // A CORS preflight carries no credentials by the Fetch standard; it reaches no handler.
    let r = c
        .request(reqwest::Method::OPTIONS, &query)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);

    // Reload with another password: the old one (cached) stops working, the new one works.
    std::fs::write(dir.path().join("tidemark.yml"), yaml("new-Pa55")).unwrap();
    let r = c
        .post(format!("{}/-/reload", a.api))
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = c
        .get(&query)
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = c
        .get(&query)
        .basic_auth(USER, Some("new-Pa55"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // The shown config hides the hashes.
    let r = c
        .get(format!("{}/api/v1/status/config", a.api))
        .basic_auth(USER, Some("new-Pa55"))
        .send()
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    let shown = v["data"]["yaml"].as_str().unwrap();
    assert!(
        shown.contains("basic_auth_users") && !shown.contains("$2b$"),
        "{shown}"
    );
}

// ---- TLS --------------------------------------------------------------------------------------

fn tls_yaml(extra: &str) -> String {
    format!("web:\n  tls:\n    cert_file: web.pem\n    key_file: web.key\n{extra}")
}

fn write_identity(dir: &Path, (cert, key): &(String, String)) {
    std::fs::write(dir.join("web.pem"), cert).unwrap();
    std::fs::write(dir.join("web.key"), key).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_the_configured_certificate_and_picks_up_a_rotated_one() {
    let dir = tempfile::tempdir().unwrap();
    let first_ca = ca("first CA");
    write_identity(
        dir.path(),
        &leaf(&first_ca, &["localhost", "127.0.0.1"], false),
    );
    let mut a = start(dir.path(), &tls_yaml(""), &["--enable-lifecycle"]);
    wait_log(&a, "TLS is enabled");
    let base = format!("https://localhost:{}", addr(&a).rsplit(':').next().unwrap());
    let ip_base = format!("https://{}", addr(&a));

    let first = https_client(client_tls(&first_ca.pem(), None));
    for url in [
        format!("{base}/-/healthy"),
        format!("{ip_base}/api/v1/query?query=42"),
    ] {
        let r = first.get(&url).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{url}");
    }

    // h2 is offered by ALPN and served.
    let tls = tokio_rustls::TlsConnector::from(Arc::new({
        let mut c = client_tls(&first_ca.pem(), None);
        c.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        c
    }));
    let tcp = tokio::net::TcpStream::connect(addr(&a)).await.unwrap();
    let stream = tls
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = axum::http::Request::get(format!("{base}/-/healthy"))
        .body(axum::body::Body::empty())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.version(), axum::http::Version::HTTP_2);

    // Plain HTTP to the TLS port is told what went wrong, and gets nothing else.
    let r = http()
        .get(format!("http://{}/api/v1/query?query=1", addr(&a)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("HTTPS server"));

    // A client that does not trust the issuer cannot connect.
    let stranger = https_client(client_tls(&ca("stranger CA").pem(), None));
    assert!(
        stranger
            .get(format!("{base}/-/healthy"))
            .send()
            .await
            .is_err()
    );

    // Rotation: new files, a reload, and new connections get the new certificate.
    let second_ca = ca("second CA");
    write_identity(dir.path(), &leaf(&second_ca, &["localhost"], false));
    let r = first.post(format!("{base}/-/reload")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let second = https_client(client_tls(&second_ca.pem(), None));
    let r = second
        .get(format!("{base}/-/healthy"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let fresh_first = https_client(client_tls(&first_ca.pem(), None));
    assert!(
        fresh_first
            .get(format!("{base}/-/healthy"))
            .send()
            .await
            .is_err()
    );

    // A broken certificate fails the reload (naming the file) and the working one stays.
    std::fs::write(
        dir.path().join("web.pem"),
        "-----BEGIN CERTIFICATE-----\nAAAA\n",
    )
    .unwrap();
    let r = second
        .post(format!("{base}/-/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let why = r.text().await.unwrap();
    assert!(
        why.contains("web.pem") && why.contains("cert_file"),
        "{why}"
    );
    let again = https_client(client_tls(&second_ca.pem(), None));
    let r = again.get(format!("{base}/-/healthy")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // SIGHUP also re-reads the files.
    let third_ca = ca("third CA");
    write_identity(dir.path(), &leaf(&third_ca, &["localhost"], false));
    a.signal("-HUP");
    // Polled, not read off the log: the earlier reload's "configuration reloaded" line may
    // still be unread and would end a wait on the log before this reload applied.
    let third = https_client(client_tls(&third_ca.pem(), None));
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        match third.get(format!("{base}/-/healthy")).send().await {
            Ok(r) => {
                assert_eq!(r.status(), StatusCode::OK);
                break;
            }
            Err(e) => assert!(Instant::now() < end, "SIGHUP did not rotate: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The TLS server drains its connections and the agent exits cleanly.
    a.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_refuses_clients_without_a_certificate_of_the_client_ca() {
    let dir = tempfile::tempdir().unwrap();
    let server_ca = ca("server CA");
    let client_ca = ca("client CA");
    std::fs::write(dir.path().join("clients.pem"), client_ca.pem()).unwrap();
    write_identity(dir.path(), &leaf(&server_ca, &["localhost"], false));
    let a = start(
        dir.path(),
        &tls_yaml(
            "    client_ca_file: clients.pem\n    client_auth_type: RequireAndVerifyClientCert\n    min_version: TLS13\n",
        ),
        &[],
    );
    let url = format!(
        "https://localhost:{}/api/v1/query?query=7",
        addr(&a).rsplit(':').next().unwrap()
    );

    let anonymous = https_client(client_tls(&server_ca.pem(), None));
    assert!(anonymous.get(&url).send().await.is_err());

    let good = leaf(&client_ca, &["scraper.example"], true);
    let with_cert = https_client(client_tls(&server_ca.pem(), Some(&good)));
    let r = with_cert.get(&url).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // A certificate from another CA is refused as well.
    let forged = leaf(&ca("other CA"), &["scraper.example"], true);
    let other = https_client(client_tls(&server_ca.pem(), Some(&forged)));
    assert!(other.get(&url).send().await.is_err());

    // TLS 1.2 is below min_version.
    let tls12 = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates({
            let mut r = rustls::RootCertStore::empty();
            r.add(server_ca.der().clone()).unwrap();
            r
        })
        .with_client_auth_cert(
            vec![CertificateDer::from_pem_slice(good.0.as_bytes()).unwrap()],
            PrivateKeyDer::from_pem_slice(good.1.as_bytes()).unwrap(),
        )
        .unwrap();
    assert!(https_client(tls12).get(&url).send().await.is_err());
}

#[test]
fn a_bad_certificate_at_start_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("web.pem"), "not a certificate\n").unwrap();
    std::fs::write(dir.path().join("web.key"), "not a key\n").unwrap();
    let cfg = dir.path().join("tidemark.yml");
    std::fs::write(&cfg, tls_yaml("")).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .args(["run", "--listen", "127.0.0.1:0", "--config"])
        .arg(&cfg)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let end = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > end {
            let _ = child.kill();
            panic!("the agent started with a broken certificate");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!status.success());
    assert!(
        err.contains("web.tls.cert_file") && err.contains("web.pem") && err.contains("CERTIFICATE"),
        "{err}"
    );
    assert!(
        !dir.path().join("data").exists(),
        "storage is not opened with a config that cannot serve"
    );
}

// ---- Lifecycle and admin ----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_and_admin_endpoints_are_off_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let a = start(dir.path(), "web: {}\n", &[]);
    let c = http();
    for path in ["/-/reload", "/-/quit"] {
        for method in [reqwest::Method::POST, reqwest::Method::PUT] {
            let r = c
                .request(method.clone(), format!("{}{path}", a.api))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::FORBIDDEN, "{method} {path}");
            assert_eq!(r.text().await.unwrap(), "Lifecycle API is not enabled.");
        }
        let r = c.get(format!("{}{path}", a.api)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED, "GET {path}");
    }
    // Off, the admin API answers 403 with Prometheus's error body for a disabled admin API.
    for path in [
        "/api/v1/admin/tsdb/delete_series?match[]=up",
        "/api/v1/admin/tsdb/snapshot",
        "/api/v1/admin/tsdb/clean_tombstones",
    ] {
        let r = c.post(format!("{}{path}", a.api)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{path}");
        let v: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
        assert_eq!(v["errorType"], "unavailable", "{path}");
        assert_eq!(v["error"], "admin APIs disabled", "{path}");
    }
    // Still running after all of that.
    let r = c.get(format!("{}/-/healthy", a.api)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // No CORS header unless configured.
    let r = c
        .get(format!("{}/api/v1/query?query=1", a.api))
        .header("origin", "https://grafana.example.org")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
    assert!(r.headers().get("vary").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quit_shuts_the_agent_down_cleanly_when_lifecycle_is_on() {
    let dir = tempfile::tempdir().unwrap();
    // The config key, not the flag.
    let mut a = start(dir.path(), "web:\n  enable_lifecycle: true\n", &[]);
    let c = http();
    let r = c.put(format!("{}/-/quit", a.api)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.text().await.unwrap(),
        "Requesting termination... Goodbye!"
    );
    let st = a.wait_exit();
    assert!(st.success(), "exit status {st:?}");
    let log: Vec<String> = a.lines.try_iter().collect();
    assert!(log.iter().any(|l| l.contains("storage closed")), "{log:#?}");
}

// ---- Body limit and CORS ----------------------------------------------------------------------

/// Sends a raw HTTP/1.1 request and returns the response's status line.
async fn raw_status(addr: &str, request: &[u8]) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bodies_over_the_limit_get_413() {
    let dir = tempfile::tempdir().unwrap();
    let a = start(
        dir.path(),
        "web:\n  max_request_body_size: 1KiB\n",
        &["--enable-lifecycle"],
    );
    let c = http();
    let form = |len: usize| {
        let mut f = "query=time()%20%3E%20bool%203&pad=".to_string();
        f.push_str(
            &"x7"
                .repeat(len / 2)
                .chars()
                .take(len - f.len())
                .collect::<String>(),
        );
        f
    };
    let post = |body: String| {
        c.post(format!("{}/api/v1/query", a.api))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    let r = post(form(1000)).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    let r = post(form(1024)).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = post(form(1025)).await.unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let r = post(form(3000)).await.unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // Endpoints that read no body refuse a large one too.
    let r = c
        .post(format!("{}/-/reload", a.api))
        .body(vec![b'z'; 4096])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);

    // Without a Content-Length (chunked), the body is cut off at the same limit.
    let chunked = |body: &str| {
        format!(
            "POST /api/v1/query HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
            body.len()
        )
    };
    let status = raw_status(&addr(&a), chunked(&form(3000)).as_bytes()).await;
    assert!(status.contains(" 413 "), "{status}");
    let status = raw_status(&addr(&a), chunked(&form(700)).as_bytes()).await;
    assert!(status.contains(" 200 "), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cors_headers_follow_the_configured_origin() {
    let dir = tempfile::tempdir().unwrap();
    let a = start(
        dir.path(),
        "web:\n  cors_origin: 'https://(grafana|ops)\\.example\\.org'\n",
        &[],
    );
    let c = http();
    let get = |path: &str, origin: &str| {
        c.get(format!("{}{path}", a.api))
            .header("origin", origin)
            .send()
    };
    let header = |r: &reqwest::Response, name: &str| {
        r.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    };

    let r = get("/api/v1/query?query=1", "https://ops.example.org")
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        header(&r, "access-control-allow-origin").as_deref(),
        Some("https://ops.example.org")
    );
    assert_eq!(header(&r, "vary").as_deref(), Some("Origin"));
    assert_eq!(
        header(&r, "access-control-allow-methods").as_deref(),
        Some("GET, POST, OPTIONS")
    );
    assert_eq!(
        header(&r, "access-control-allow-headers").as_deref(),
        Some("Accept, Authorization, Content-Type, Origin")
    );
    assert_eq!(
        header(&r, "access-control-expose-headers").as_deref(),
        Some("Date")
    );

    // Errors carry them too, as in Prometheus.
    let r = get("/api/v1/query?query=sum(", "https://grafana.example.org")
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        header(&r, "access-control-allow-origin").as_deref(),
        Some("https://grafana.example.org")
    );

    // Not matching (the pattern is anchored): the other headers, but no allowed origin.
    for origin in [
        "https://evil.example.net",
        "https://grafana.example.org.evil.net",
    ] {
        let r = get("/api/v1/query?query=1", origin).await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(header(&r, "access-control-allow-origin"), None, "{origin}");
        assert_eq!(header(&r, "vary").as_deref(), Some("Origin"));
    }

    // The preflight.
    let r = c
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/api/v1/query_range", a.api),
        )
        .header("origin", "https://grafana.example.org")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        header(&r, "access-control-allow-origin").as_deref(),
        Some("https://grafana.example.org")
    );

    // Outside /api/v1/, none (as Prometheus).
    let r = get("/metrics", "https://grafana.example.org")
        .await
        .unwrap();
    assert_eq!(header(&r, "access-control-allow-origin"), None);
}

// ---- Flags and config keys --------------------------------------------------------------------

async fn status_flags(a: &Agent) -> serde_json::Value {
    let r = http()
        .get(format!("{}/api/v1/status/flags", a.api))
        .send()
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    v["data"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flags_override_config_keys_and_are_listed() {
    let dir = tempfile::tempdir().unwrap();
    // A target on a closed port: its failed scrapes are logged at debug level only.
    let yaml = "scrape_configs:\n  - job_name: closed\n    scrape_interval: 1s\n    scrape_timeout: 500ms\n    static_configs:\n      - targets: ['127.0.0.1:1']\nstorage:\n  path: from-config\n  retention:\n    time: 9d\nlog:\n  level: debug\n  format: json\n";
    // Flags win: text logs (the helper reads the text format), another retention, admin on,
    // and --data-dir over storage.path.
    let a = start(
        dir.path(),
        yaml,
        &[
            "--log-format",
            "text",
            "--retention-time",
            "3d",
            "--enable-admin-api",
            "--enable-lifecycle",
        ],
    );
    let f = status_flags(&a).await;
    assert_eq!(f["storage.tsdb.retention.time"], "3d");
    assert_eq!(f["log.format"], "text");
    assert_eq!(f["log.level"], "debug", "the key, as no flag was given");
    assert_eq!(f["web.enable-admin-api"], "true");
    assert_eq!(f["web.enable-lifecycle"], "true");
    assert_eq!(f["web.listen-address"], "127.0.0.1:0");
    assert_eq!(f["web.max-request-body-size"], "32MiB");
    assert_eq!(
        f["storage.tsdb.path"],
        dir.path().join("data").display().to_string()
    );
    // The level from the key is in force: debug lines are written.
    let line = wait_log(&a, "scrape failed");
    assert!(line.contains("DEBUG"), "{line}");
    assert!(!dir.path().join("from-config").exists());
    drop(a);

    // Without flags, the keys apply: JSON lines on stderr.
    std::fs::write(dir.path().join("tidemark.yml"), yaml).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_tidemark"))
        .args(["run", "--listen", "127.0.0.1:0", "--config"])
        .arg(dir.path().join("tidemark.yml"))
        .current_dir(dir.path())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let first_lines = std::thread::spawn(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .take_while(|l| !l.contains("tidemark started"))
            .collect::<Vec<String>>()
    });
    let end = Instant::now() + Duration::from_secs(20);
    while !first_lines.is_finished() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    let lines = first_lines.join().unwrap();
    let listening = lines
        .iter()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("{e}: {l}"))
        })
        .find(|v| v["fields"]["message"] == "listening")
        .expect("a JSON listening line");
    assert!(
        listening["fields"]["address"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );
    assert!(
        dir.path().join("from-config").is_dir(),
        "storage.path from the key"
    );
}
