//! Outgoing HTTP clients shared by scraping and remote write: TLS client settings
//! (`tls_config`), credentials (`basic_auth`, `authorization`, inline or from files) and the
//! reqwest client built from them, with Prometheus's semantics. `tidemark query` and `series`
//! get their client for a server's API here too ([`api_client`]).
//!
//! This module owns how a client trusts servers and proves who it is. It must never send a
//! request itself (scrape's `fetch` and remote write's client do), and never print a secret.
//!
//! Decisions:
//! - TLS files are read when the client is built (a config reload rebuilds it); credential
//!   files are read on every request by the caller ([`Secret::read`]), as Prometheus does.
//! - `server_name` is the name the server's certificate is checked against; the SNI sent is
//!   still the URL's host (none for an IP address), because reqwest derives SNI from the URL.
//! - Requests are HTTP/1.1; environment proxies are ignored (Prometheus's default), except by
//!   the command line's [`api_client`].

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::config;

/// The `User-Agent` of every request tidemark makes (scrapes and remote write).
pub const USER_AGENT: &str = concat!("tidemark/", env!("CARGO_PKG_VERSION"));

/// A secret given inline or as a file read (and trimmed) on every request.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    /// The value itself.
    Inline(String),
    /// A file holding the value; surrounding whitespace is ignored.
    File(PathBuf),
}

impl fmt::Debug for Secret {
    /// Never prints an inline secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Secret::Inline(_) => f.write_str("Inline(<secret>)"),
            Secret::File(p) => f.debug_tuple("File").field(p).finish(),
        }
    }
}

impl Secret {
    /// The value: inline, or the file's content without surrounding whitespace. Read on
    /// every call, as Prometheus does, so rotated credentials are picked up.
    pub fn read(&self) -> io::Result<String> {
        match self {
            Secret::Inline(s) => Ok(s.clone()),
            // Read synchronously: a credentials file is small and local.
            Secret::File(path) => std::fs::read_to_string(path).map(|s| s.trim().to_string()),
        }
    }
}

/// HTTP basic authentication (`username(_file)`, `password(_file)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasicAuth {
    /// The user name.
    pub username: Secret,
    /// The password; none sends an empty one.
    pub password: Option<Secret>,
}

/// An `Authorization` header: `<kind> <credentials>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    /// The scheme, `Bearer` by default in the config.
    pub kind: String,
    /// The credentials.
    pub credentials: Secret,
}

/// A TLS protocol version as Prometheus's `min_version` / `max_version` name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TlsVersion {
    /// TLS 1.0 (not offered by rustls).
    Tls10,
    /// TLS 1.1 (not offered by rustls).
    Tls11,
    /// TLS 1.2.
    Tls12,
    /// TLS 1.3.
    Tls13,
}

impl fmt::Display for TlsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsVersion::Tls10 => "TLS10",
            TlsVersion::Tls11 => "TLS11",
            TlsVersion::Tls12 => "TLS12",
            TlsVersion::Tls13 => "TLS13",
        })
    }
}

/// Where a PEM item comes from: inline text or a file read at build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pem {
    /// PEM text given in the config.
    Inline(String),
    /// A PEM file.
    File(PathBuf),
}

impl Pem {
    fn load(&self) -> Result<Vec<u8>, String> {
        match self {
            Pem::Inline(s) => Ok(s.as_bytes().to_vec()),
            Pem::File(p) => std::fs::read(p).map_err(|e| e.to_string()),
        }
    }

    /// How errors name it: the path, or that it was inline.
    fn origin(&self) -> String {
        match self {
            Pem::Inline(_) => "(inline)".to_string(),
            Pem::File(p) => p.display().to_string(),
        }
    }
}

/// TLS client settings (`tls_config`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsSettings {
    /// CA certificates that replace the system roots (`ca` / `ca_file`).
    pub ca: Option<Pem>,
    /// Client certificate chain (`cert` / `cert_file`).
    pub cert: Option<Pem>,
    /// Client private key (`key` / `key_file`).
    pub key: Option<Pem>,
    /// Name the server's certificate must be valid for, instead of the URL's host.
    pub server_name: Option<String>,
    /// Accept any server certificate (signatures are still checked).
    pub insecure_skip_verify: bool,
    /// Lowest version offered; rustls offers nothing below TLS 1.2.
    pub min_version: Option<TlsVersion>,
    /// Highest version offered.
    pub max_version: Option<TlsVersion>,
}

/// Why an HTTP client could not be built from its settings.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The CA certificates could not be read or used.
    #[error("unable to load specified CA cert {origin}: {reason}")]
    CaCert {
        /// The file path, or `(inline)`.
        origin: String,
        /// What went wrong.
        reason: String,
    },
    /// The client certificate or key could not be read or do not match.
    #[error("unable to read specified client cert ({cert}) & key ({key}): {reason}")]
    ClientCert {
        /// The certificate's file path, or `(inline)`.
        cert: String,
        /// The key's file path, or `(inline)`.
        key: String,
        /// What went wrong.
        reason: String,
    },
    /// A client certificate without a key.
    #[error("client cert file {0:?} specified without client key file")]
    CertWithoutKey(String),
    /// A client key without a certificate.
    #[error("client key file {0:?} specified without client cert file")]
    KeyWithoutCert(String),
    /// `server_name` is not a DNS name or IP address.
    #[error("invalid tls_config server_name {name:?}: {reason}")]
    ServerName {
        /// The configured name.
        name: String,
        /// What went wrong.
        reason: String,
    },
    /// `min_version` / `max_version` leave nothing rustls can offer.
    #[error(
        "tls_config: no TLS version to offer between {min} and {max} (TLS12 and TLS13 are supported)"
    )]
    TlsVersions {
        /// The lowest version asked for.
        min: TlsVersion,
        /// The highest version asked for.
        max: TlsVersion,
    },
    /// Both `basic_auth` and `authorization` are set.
    #[error("at most one of basic_auth, oauth2 & authorization must be configured")]
    AuthConflict,
    /// The `Accept` header is not a valid header value.
    #[error("invalid Accept header {0:?}")]
    Accept(String),
    /// rustls refused the configuration.
    #[error("tls: {0}")]
    Tls(#[from] rustls::Error),
    /// reqwest refused the configuration.
    #[error("building HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// The reqwest client for `tls`, following up to 10 redirects when `follow_redirects`.
pub fn client(tls: &TlsSettings, follow_redirects: bool) -> Result<reqwest::Client, BuildError> {
    let tls = tls_config(tls)?;
    let redirect = if follow_redirects {
        reqwest::redirect::Policy::limited(10)
    } else {
        reqwest::redirect::Policy::none()
    };
    Ok(reqwest::Client::builder()
        .no_proxy()
        .redirect(redirect)
        // Without HTTP/2 reqwest's default retry policy retries nothing, yet it still copies
        // every request (headers, extensions) in case it might: no copy is asked for here.
        .retry(reqwest::retry::never().max_retries_per_request(0))
        .tls_backend_preconfigured(tls)
        .build()?)
}

/// The client of `tidemark query` and `tidemark series` for a server's HTTP API: the system's
/// CA certificates, up to 10 redirects followed, and, unlike scraping and remote write, the
/// environment's proxies (`HTTPS_PROXY`, `NO_PROXY`…) used, as a command-line tool's user
/// expects. Connecting is bounded at 10s, each whole request at `timeout` when given.
pub fn api_client(timeout: Option<Duration>) -> Result<reqwest::Client, BuildError> {
    let tls = tls_config(&TlsSettings::default())?;
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::limited(10))
        .connect_timeout(Duration::from_secs(10))
        .tls_backend_preconfigured(tls);
    if let Some(t) = timeout {
        builder = builder.timeout(t);
    }
    Ok(builder.build()?)
}

/// Credentials and TLS settings as a config section gives them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientSettings {
    /// HTTP basic authentication.
    pub basic_auth: Option<BasicAuth>,
    /// The `Authorization` header.
    pub authorization: Option<Authorization>,
    /// TLS client settings.
    pub tls: TlsSettings,
}

impl ClientSettings {
    /// From a config section's `basic_auth`, `authorization` (bearer tokens already folded
    /// in by validation) and `tls_config`.
    pub fn from_config(
        basic_auth: Option<&config::BasicAuth>,
        authorization: Option<&config::Authorization>,
        tls: &config::TlsConfig,
    ) -> ClientSettings {
        ClientSettings {
            basic_auth: basic_auth.map(|b| BasicAuth {
                username: if b.username.is_empty() {
                    b.username_file
                        .clone()
                        .map(Secret::File)
                        .unwrap_or(Secret::Inline(String::new()))
                } else {
                    Secret::Inline(b.username.clone())
                },
                password: secret(b.password.as_ref(), b.password_file.as_ref()),
            }),
            authorization: authorization.and_then(|a| {
                secret(a.credentials.as_ref(), a.credentials_file.as_ref()).map(|credentials| {
                    Authorization {
                        kind: a.kind.clone(),
                        credentials,
                    }
                })
            }),
            tls: TlsSettings {
                ca: pem(tls.ca.clone(), tls.ca_file.as_ref()),
                cert: pem(tls.cert.clone(), tls.cert_file.as_ref()),
                key: pem(
                    tls.key.as_ref().map(|k| k.expose().to_string()),
                    tls.key_file.as_ref(),
                ),
                server_name: tls.server_name.clone(),
                insecure_skip_verify: tls.insecure_skip_verify,
                min_version: tls.min_version.map(tls_version),
                max_version: tls.max_version.map(tls_version),
            },
        }
    }
}

fn secret(inline: Option<&config::Secret>, file: Option<&PathBuf>) -> Option<Secret> {
    match (inline, file) {
        (Some(s), _) => Some(Secret::Inline(s.expose().to_string())),
        (None, Some(f)) => Some(Secret::File(f.clone())),
        (None, None) => None,
    }
}

fn pem(inline: Option<String>, file: Option<&PathBuf>) -> Option<Pem> {
    match (inline, file) {
        (Some(s), _) => Some(Pem::Inline(s)),
        (None, Some(f)) => Some(Pem::File(f.clone())),
        (None, None) => None,
    }
}

fn tls_version(v: config::TlsVersion) -> TlsVersion {
    match v {
        config::TlsVersion::TLS10 => TlsVersion::Tls10,
        config::TlsVersion::TLS11 => TlsVersion::Tls11,
        config::TlsVersion::TLS12 => TlsVersion::Tls12,
        config::TlsVersion::TLS13 => TlsVersion::Tls13,
    }
}

/// The rustls configuration for `settings`, with the ring provider.
pub fn tls_config(settings: &TlsSettings) -> Result<rustls::ClientConfig, BuildError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions = tls_versions(settings.min_version, settings.max_version)?;

    let verifier: Arc<dyn ServerCertVerifier> = if settings.insecure_skip_verify {
        Arc::new(SkipVerify(provider.clone()))
    } else {
        let roots = match &settings.ca {
            Some(ca) => ca_roots(ca)?,
            None => system_roots(),
        };
        if roots.is_empty() {
            Arc::new(NoRoots(provider.clone()))
        } else {
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| BuildError::Tls(rustls::Error::General(e.to_string())))?
        }
    };
    let verifier: Arc<dyn ServerCertVerifier> = match &settings.server_name {
        Some(name) if !settings.insecure_skip_verify => {
            let name = ServerName::try_from(name.clone()).map_err(|e| BuildError::ServerName {
                name: name.clone(),
                reason: e.to_string(),
            })?;
            Arc::new(RenamedVerifier {
                inner: verifier,
                name,
            })
        }
        _ => verifier,
    };

    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match (&settings.cert, &settings.key) {
        (None, None) => builder.with_no_client_auth(),
        (Some(cert), None) => return Err(BuildError::CertWithoutKey(cert.origin())),
        (None, Some(key)) => return Err(BuildError::KeyWithoutCert(key.origin())),
        (Some(cert), Some(key)) => {
            let fail = |reason: String| BuildError::ClientCert {
                cert: cert.origin(),
                key: key.origin(),
                reason,
            };
            let chain = pem_certificates(&cert.load().map_err(fail)?).map_err(fail)?;
            let key = PrivateKeyDer::from_pem_slice(&key.load().map_err(fail)?)
                .map_err(|e| fail(format!("private key: {e}")))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| fail(e.to_string()))?
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The protocol versions between `min` and `max` that rustls implements.
fn tls_versions(
    min: Option<TlsVersion>,
    max: Option<TlsVersion>,
) -> Result<Vec<&'static rustls::SupportedProtocolVersion>, BuildError> {
    let lo = min.unwrap_or(TlsVersion::Tls10);
    let hi = max.unwrap_or(TlsVersion::Tls13);
    let mut versions = Vec::new();
    if lo <= TlsVersion::Tls13 && TlsVersion::Tls13 <= hi {
        versions.push(&rustls::version::TLS13);
    }
    if lo <= TlsVersion::Tls12 && TlsVersion::Tls12 <= hi {
        versions.push(&rustls::version::TLS12);
    }
    if versions.is_empty() {
        return Err(BuildError::TlsVersions { min: lo, max: hi });
    }
    Ok(versions)
}

/// Every certificate in a PEM text; none is an error.
fn pem_certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    if certs.is_empty() {
        return Err("no PEM certificate found".to_string());
    }
    Ok(certs)
}

/// The configured CA certificates, replacing the system roots as Go does.
fn ca_roots(ca: &Pem) -> Result<RootCertStore, BuildError> {
    let fail = |reason: String| BuildError::CaCert {
        origin: ca.origin(),
        reason,
    };
    let mut roots = RootCertStore::empty();
    for cert in pem_certificates(&ca.load().map_err(fail)?).map_err(fail)? {
        roots.add(cert).map_err(|e| fail(e.to_string()))?;
    }
    Ok(roots)
}

/// The system's CA certificates; unreadable ones are skipped, and none at all leaves https
/// targets failing with an explanation rather than failing the whole job.
fn system_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(found.certs);
    roots
}

/// The signature checks every verifier here shares: the handshake must still be signed
/// by the certificate's key, even when the certificate itself is not checked.
fn verify_signature_12(
    provider: &CryptoProvider,
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    rustls::crypto::verify_tls12_signature(
        message,
        cert,
        dss,
        &provider.signature_verification_algorithms,
    )
}

fn verify_signature_13(
    provider: &CryptoProvider,
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    rustls::crypto::verify_tls13_signature(
        message,
        cert,
        dss,
        &provider.signature_verification_algorithms,
    )
}

/// `insecure_skip_verify`: any certificate is accepted.
#[derive(Debug)]
struct SkipVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for SkipVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_signature_12(&self.0, message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_signature_13(&self.0, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// No CA certificates on this system and none configured: every certificate is refused.
#[derive(Debug)]
struct NoRoots(Arc<CryptoProvider>);

impl ServerCertVerifier for NoRoots {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Err(rustls::Error::General(
            "no CA certificates found on this system; set tls_config.ca_file".into(),
        ))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_signature_12(&self.0, message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_signature_13(&self.0, message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `server_name`: the certificate is checked against the configured name, not the URL's.
#[derive(Debug)]
struct RenamedVerifier {
    inner: Arc<dyn ServerCertVerifier>,
    name: ServerName<'static>,
}

impl ServerCertVerifier for RenamedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }

    fn requires_raw_public_keys(&self) -> bool {
        self.inner.requires_raw_public_keys()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_versions_follow_min_and_max() {
        assert_eq!(tls_versions(None, None).unwrap().len(), 2);
        let only13 = tls_versions(Some(TlsVersion::Tls13), None).unwrap();
        assert_eq!(only13.len(), 1);
        assert_eq!(only13[0].version, rustls::ProtocolVersion::TLSv1_3);
        assert!(matches!(
            tls_versions(None, Some(TlsVersion::Tls11)),
            Err(BuildError::TlsVersions { .. })
        ));
        assert!(tls_versions(Some(TlsVersion::Tls13), Some(TlsVersion::Tls12)).is_err());
    }

    #[tokio::test]
    async fn api_client_gives_up_at_its_timeout() {
        // A server that accepts and never answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hold = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((conn, _)) = listener.accept().await {
                held.push(conn);
            }
        });
        let client = api_client(Some(Duration::from_millis(200))).unwrap();
        let err = client
            .post(format!("http://{addr}/api/v1/query"))
            .send()
            .await
            .unwrap_err();
        assert!(err.is_timeout(), "{err}");
        hold.abort();
        // Without a timeout it builds as well (the server's own timeout then answers).
        assert!(api_client(None).is_ok());
    }

    #[test]
    fn secret_debug_hides_inline_values() {
        let s = format!("{:?}", Secret::Inline("hunter2".into()));
        assert!(!s.contains("hunter2"));
        let p = PathBuf::from("/run/token");
        assert!(format!("{:?}", Secret::File(p)).contains("/run/token"));
    }
}
