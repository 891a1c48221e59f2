//! The HTTP part of one scrape: request a target's exposition and return its decompressed
//! body with the format to parse it with.
//!
//! This module owns the request Prometheus sends (`Accept`, `Accept-Encoding`, `User-Agent`,
//! `X-Prometheus-Scrape-Timeout-Seconds`, auth), the scrape timeout,
//! gzip decoding and the body size limit. It must never hold more than the limit plus one
//! decoded chunk of a body, never let a target run past the timeout (connect, headers and
//! body together), never parse the body, and never panic on anything a target sends.
//!
//! Error texts are Prometheus's (Go's) where Prometheus shows one as a target's last error,
//! so that `/targets` reads the same: `server returned HTTP status 500 Internal Server
//! Error`, `Get "<url>": context deadline exceeded`, `body size limit exceeded`,
//! `gzip: invalid header`, and so on.
//!
//! Decisions:
//! - gzip is decoded here, not by reqwest: the decoder writes into the size-limited body
//!   32 KiB at a time, so a gzip bomb stops at the limit, and its errors can be worded as
//!   Go's. A response is decoded when it says `Content-Encoding: gzip`, whatever we asked
//!   for, as Prometheus does; other encodings are passed through undecoded.
//! - The limit is "larger than `body_size_limit` fails", as Prometheus documents it (its
//!   code also fails a body of exactly the limit).
//! - Only `200` is a success, as in Prometheus; other statuses drop the connection
//!   instead of draining the body, so an endless error page cannot hold the scrape.
//! - Credential files are read on every request, as Prometheus does, so rotated tokens are
//!   picked up; TLS files are read when the [`Fetcher`] is built (a config reload rebuilds
//!   it).
//! - TLS settings, credentials and the client itself come from `crate::http_client`, which
//!   remote write shares; its types are re-exported here.

use std::error::Error as StdError;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use flate2::{Crc, Decompress, FlushDecompress, Status};
use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::{StatusCode, Url};
use tokio::time::{Instant, timeout_at};

use super::parse::{ACCEPT_HEADER, ContentTypeError, Format};
use crate::http_client;
pub use crate::http_client::{
    Authorization, BasicAuth, BuildError, Pem, Secret, TlsSettings, TlsVersion,
};

/// The header carrying the scrape timeout in seconds, as Prometheus sends it.
pub const SCRAPE_TIMEOUT_HEADER: &str = "X-Prometheus-Scrape-Timeout-Seconds";

/// The `User-Agent` sent with every scrape.
pub use crate::http_client::USER_AGENT;

/// Decoded bytes produced per decompression step: the most a body can overshoot the
/// limit by before the overshoot is noticed and refused.
const INFLATE_STEP: usize = 32 * 1024;

/// Body bytes reserved up front from `Content-Length` when there is no limit; a larger
/// body still grows the buffer as it arrives.
const UNLIMITED_RESERVE_CAP: u64 = 16 << 20;

/// How one job's targets are scraped; one [`Fetcher`] is built from it.
#[derive(Debug, Clone, PartialEq)]
pub struct FetchSettings {
    /// Bound on the whole scrape: connect, response headers and body.
    pub timeout: Duration,
    /// Largest decompressed body in bytes; 0 means unlimited.
    pub body_size_limit: u64,
    /// Ask for gzip (`Accept-Encoding: gzip`) rather than `identity`.
    pub enable_compression: bool,
    /// The `Accept` header; [`ACCEPT_HEADER`] unless the job narrows its protocols.
    pub accept: String,
    /// Format used when the response's `Content-Type` is missing, unparsable or
    /// unsupported (`fallback_scrape_protocol`); `None` fails such scrapes as Prometheus 3
    /// does.
    pub fallback_format: Option<Format>,
    /// HTTP basic authentication.
    pub basic_auth: Option<BasicAuth>,
    /// `Authorization: <type> <credentials>` (also `bearer_token` / `bearer_token_file`).
    pub authorization: Option<Authorization>,
    /// TLS client settings for https targets.
    pub tls: TlsSettings,
    /// Follow redirects (up to 10), as Prometheus does by default.
    pub follow_redirects: bool,
}

impl Default for FetchSettings {
    /// Prometheus's defaults: 10 s timeout, no limit, compression on, redirects followed.
    fn default() -> Self {
        FetchSettings {
            timeout: Duration::from_secs(10),
            body_size_limit: 0,
            enable_compression: true,
            accept: ACCEPT_HEADER.to_string(),
            fallback_format: None,
            basic_auth: None,
            authorization: None,
            tls: TlsSettings::default(),
            follow_redirects: true,
        }
    }
}

/// The gzip failures Go's reader reports, worded as Go words them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GzipError {
    /// Not a gzip member header (or trailing bytes that are not one).
    #[error("gzip: invalid header")]
    InvalidHeader,
    /// The CRC-32 or length in a member's trailer does not match its data.
    #[error("gzip: invalid checksum")]
    Checksum,
    /// The deflate data is malformed.
    #[error("flate: corrupt input before offset {offset}")]
    Corrupt {
        /// Compressed bytes of the member consumed before the error.
        offset: u64,
    },
    /// The body ended inside a member.
    #[error("unexpected EOF")]
    UnexpectedEof,
    /// The body was empty.
    #[error("EOF")]
    Empty,
}

/// Why a scrape's HTTP part failed; `Display` is what Prometheus shows as the last error.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The URL does not parse.
    #[error("parse {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No response headers before the timeout.
    #[error("Get \"{url}\": context deadline exceeded")]
    Timeout {
        /// The URL, password redacted.
        url: String,
    },
    /// The body did not end before the timeout.
    #[error("context deadline exceeded")]
    BodyTimeout,
    /// The target refused the TCP connection.
    #[error("Get \"{url}\": dial tcp {addr}: connect: connection refused")]
    ConnectionRefused {
        /// The URL, password redacted.
        url: String,
        /// `host:port` dialled.
        addr: String,
    },
    /// The TLS handshake failed (certificate, protocol or alert).
    #[error("Get \"{url}\": tls: {reason}")]
    Tls {
        /// The URL, password redacted.
        url: String,
        /// rustls's description.
        reason: String,
    },
    /// A credentials file could not be read.
    #[error("Get \"{url}\": unable to read {what} file {}: {source}", path.display())]
    SecretFile {
        /// The URL, password redacted.
        url: String,
        /// Which secret (`authorization credentials`, `basic auth password`, ...).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The read error.
        source: io::Error,
    },
    /// Any other failure before the response headers arrived.
    #[error("Get \"{url}\": {reason}")]
    Request {
        /// The URL, password redacted.
        url: String,
        /// The cause, innermost details last.
        reason: String,
    },
    /// The response status was not 200.
    #[error("server returned HTTP status {status_line}")]
    Status {
        /// The status code.
        code: u16,
        /// Code and reason phrase, e.g. `500 Internal Server Error`.
        status_line: String,
    },
    /// The decompressed body is larger than the limit.
    #[error("body size limit exceeded")]
    BodySizeLimit {
        /// The configured limit in bytes.
        limit: u64,
    },
    /// The connection failed while the body was read.
    #[error("{reason}")]
    Body {
        /// The cause.
        reason: String,
    },
    /// A gzip body could not be decoded.
    #[error(transparent)]
    Gzip(#[from] GzipError),
    /// No format could be chosen from `Content-Type` and no fallback is configured.
    #[error(transparent)]
    ContentType(#[from] ContentTypeError),
}

/// A successful scrape response.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The decompressed body.
    pub body: Vec<u8>,
    /// The parser to use, from `Content-Type` or the fallback.
    pub format: Format,
    /// Set when the fallback format was used: why, for a warning.
    pub fallback_reason: Option<ContentTypeError>,
    /// The response's `Content-Type`, if any.
    pub content_type: Option<String>,
    /// The HTTP status (always 200 today; kept for logs).
    pub status: u16,
    /// Time from sending the request to the end of the body.
    pub duration: Duration,
}

/// Scrapes the targets of one job, reusing connections between scrapes.
#[derive(Debug, Clone)]
pub struct Fetcher {
    client: reqwest::Client,
    headers: HeaderMap,
    timeout: Duration,
    body_size_limit: u64,
    fallback_format: Option<Format>,
    basic_auth: Option<BasicAuth>,
    authorization: Option<Authorization>,
}

impl Fetcher {
    /// Builds the HTTP client; TLS files are read now and errors name them.
    pub fn new(settings: &FetchSettings) -> Result<Fetcher, BuildError> {
        if settings.basic_auth.is_some() && settings.authorization.is_some() {
            return Err(BuildError::AuthConflict);
        }
        let client = http_client::client(&settings.tls, settings.follow_redirects)?;

        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_str(&settings.accept)
                .map_err(|_| BuildError::Accept(settings.accept.clone()))?,
        );
        headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static(if settings.enable_compression {
                "gzip"
            } else {
                "identity"
            }),
        );
        headers.insert(header::USER_AGENT, HeaderValue::from_static(USER_AGENT));
        // Go's FormatFloat(s, 'f', -1, 64) and Rust's Display agree: shortest exact text.
        let seconds = settings.timeout.as_secs_f64().to_string();
        if let Ok(v) = HeaderValue::from_str(&seconds) {
            headers.insert(SCRAPE_TIMEOUT_HEADER, v);
        }

        Ok(Fetcher {
            client,
            headers,
            timeout: settings.timeout,
            body_size_limit: settings.body_size_limit,
            fallback_format: settings.fallback_format,
            basic_auth: settings.basic_auth.clone(),
            authorization: settings.authorization.clone(),
        })
    }

    /// The scrape timeout this fetcher enforces.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Scrapes `url` once: the whole exchange is bounded by the timeout and the body by the
    /// limit. An empty body is returned as such (Prometheus treats it as zero samples,
    /// whatever its `Content-Type`).
    pub async fn fetch(&self, url: &str) -> Result<Fetched, FetchError> {
        self.fetch_url(&ScrapeUrl::new(url)).await
    }

    /// [`Fetcher::fetch`] of a URL parsed beforehand: a scrape loop parses its target's URL
    /// once, not on every scrape.
    pub async fn fetch_url(&self, url: &ScrapeUrl) -> Result<Fetched, FetchError> {
        let start = Instant::now();
        // A timeout too large for the clock means no timeout worth the name: a year.
        let deadline = start
            .checked_add(self.timeout)
            .or_else(|| start.checked_add(Duration::from_secs(365 * 86_400)))
            .unwrap_or(start);
        let (parsed, shown) = match &url.parsed {
            Ok(p) => p,
            Err(reason) => {
                return Err(FetchError::InvalidUrl {
                    url: url.text.clone(),
                    reason: reason.clone(),
                });
            }
        };
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(FetchError::Request {
                reason: format!("unsupported protocol scheme {:?}", parsed.scheme()),
                url: shown.clone(),
            });
        }

        let mut request = self
            .client
            .get(parsed.clone())
            .headers(self.headers.clone());
        if let Some(auth) = &self.basic_auth {
            let user = resolve(&auth.username, "basic auth username", shown)?;
            let password = match &auth.password {
                Some(p) => resolve(p, "basic auth password", shown)?,
                None => String::new(),
            };
            request = request.basic_auth(user, Some(password));
        }
        if let Some(auth) = &self.authorization {
            let credentials = resolve(&auth.credentials, "authorization credentials", shown)?;
            let mut value = HeaderValue::from_str(&format!("{} {}", auth.kind, credentials))
                .map_err(|_| FetchError::Request {
                    url: shown.clone(),
                    reason: "net/http: invalid header field value for \"Authorization\"".into(),
                })?;
            value.set_sensitive(true);
            request = request.header(header::AUTHORIZATION, value);
        }

        let mut response = match timeout_at(deadline, request.send()).await {
            Err(_) => return Err(FetchError::Timeout { url: shown.clone() }),
            Ok(Err(e)) => return Err(request_error(&e, parsed, shown.clone())),
            Ok(Ok(r)) => r,
        };
        let status = response.status();
        if status != StatusCode::OK {
            let status_line = match status.canonical_reason() {
                Some(reason) => format!("{} {reason}", status.as_u16()),
                None => status.as_u16().to_string(),
            };
            return Err(FetchError::Status {
                code: status.as_u16(),
                status_line,
            });
        }
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let gzip = response
            .headers()
            .get(header::CONTENT_ENCODING)
            .is_some_and(|v| v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"gzip"));

        if !gzip
            && self.body_size_limit != 0
            && response
                .content_length()
                .is_some_and(|n| n > self.body_size_limit)
        {
            // The declared length already breaks the limit: no need to read it.
            return Err(FetchError::BodySizeLimit {
                limit: self.body_size_limit,
            });
        }
        let hint = if gzip {
            0
        } else {
            response.content_length().unwrap_or(0)
        };
        let mut body = LimitedBody::new(self.body_size_limit, hint);
        let mut inflater = gzip.then(GzipInflater::new);
        // One timer for the whole body rather than one per chunk: the same deadline.
        let read = async {
            loop {
                let chunk = match response.chunk().await {
                    Err(e) => {
                        return Err(FetchError::Body {
                            reason: error_chain(&e),
                        });
                    }
                    Ok(None) => return Ok(()),
                    Ok(Some(chunk)) => chunk,
                };
                match &mut inflater {
                    Some(inflater) => inflater.push(&chunk, &mut body)?,
                    None => body.push(&chunk)?,
                }
            }
        };
        match timeout_at(deadline, read).await {
            Err(_) => return Err(FetchError::BodyTimeout),
            Ok(r) => r?,
        }
        if let Some(inflater) = inflater {
            inflater.finish()?;
        }
        let body = body.into_inner();

        let (format, fallback_reason) = if body.is_empty() {
            // Nothing will be parsed, so a bad Content-Type cannot fail the scrape.
            let fallback = self.fallback_format.unwrap_or(Format::PrometheusText);
            match Format::negotiate(content_type.as_deref(), Some(fallback)) {
                Ok(n) => (n.format, None),
                Err(_) => (fallback, None),
            }
        } else {
            let n = Format::negotiate(content_type.as_deref(), self.fallback_format)?;
            (n.format, n.fallback_reason)
        };
        Ok(Fetched {
            body,
            format,
            fallback_reason,
            content_type,
            status: status.as_u16(),
            duration: start.elapsed(),
        })
    }
}

/// A target's URL, parsed once for all its scrapes, with the text its errors show.
#[derive(Debug, Clone)]
pub struct ScrapeUrl {
    text: String,
    /// The URL and its password-redacted text, or why it does not parse.
    parsed: Result<(Url, String), String>,
}

impl ScrapeUrl {
    /// Parses `url`; a URL that does not parse fails each fetch with the parser's reason.
    pub fn new(url: &str) -> ScrapeUrl {
        ScrapeUrl {
            text: url.to_string(),
            parsed: Url::parse(url)
                .map(|u| {
                    let shown = redacted(&u);
                    (u, shown)
                })
                .map_err(|e| e.to_string()),
        }
    }

    /// The URL as given.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// A secret's value, or the file's error with its path.
fn resolve(secret: &Secret, what: &'static str, url: &str) -> Result<String, FetchError> {
    secret.read().map_err(|source| FetchError::SecretFile {
        url: url.to_string(),
        what,
        path: match secret {
            Secret::File(p) => p.clone(),
            Secret::Inline(_) => PathBuf::new(),
        },
        source,
    })
}

/// The URL as Go's `url.Redacted` shows it: a password becomes `xxxxx`.
fn redacted(url: &Url) -> String {
    if url.password().is_some() {
        let mut shown = url.clone();
        if shown.set_password(Some("xxxxx")).is_ok() {
            return shown.to_string();
        }
    }
    url.to_string()
}

/// Maps a failure before the response headers to Prometheus's wording.
fn request_error(err: &reqwest::Error, url: &Url, shown: String) -> FetchError {
    for e in causes(err) {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return FetchError::Tls {
                url: shown,
                reason: tls.to_string(),
            };
        }
        if e.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::ConnectionRefused)
        {
            let host = url.host_str().unwrap_or_default();
            let addr = match url.port_or_known_default() {
                Some(port) => format!("{host}:{port}"),
                None => host.to_string(),
            };
            return FetchError::ConnectionRefused { url: shown, addr };
        }
    }
    FetchError::Request {
        url: shown,
        reason: error_chain(err),
    }
}

/// An error and its causes, outermost first. `io::Error::source` skips the error it
/// wraps (connectors nest rustls errors in io errors twice), so those are unwrapped here.
fn causes<'a>(err: &'a (dyn StdError + 'static)) -> Vec<&'a (dyn StdError + 'static)> {
    let mut out = Vec::new();
    let mut cause = Some(err);
    while let Some(e) = cause {
        out.push(e);
        cause = match e.downcast_ref::<io::Error>().and_then(io::Error::get_ref) {
            Some(inner) => Some(inner as &(dyn StdError + 'static)),
            None => e.source(),
        };
    }
    out
}

/// The causes of an error joined by `: `, without reqwest's outer text (which repeats
/// the URL) and without a cause whose text the one before already shows.
fn error_chain(err: &reqwest::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for e in causes(err).into_iter().skip(1) {
        let text = e.to_string();
        if parts.last().is_none_or(|last| !last.contains(&text)) {
            parts.push(text);
        }
    }
    if parts.is_empty() {
        err.to_string()
    } else {
        parts.join(": ")
    }
}

/// The body received so far, refusing bytes past the limit before storing them.
struct LimitedBody {
    buf: Vec<u8>,
    limit: u64,
}

impl LimitedBody {
    fn new(limit: u64, hint: u64) -> LimitedBody {
        let cap = if limit == 0 {
            UNLIMITED_RESERVE_CAP
        } else {
            limit
        };
        LimitedBody {
            buf: Vec::with_capacity(usize::try_from(hint.min(cap)).unwrap_or(0)),
            limit,
        }
    }

    fn push(&mut self, data: &[u8]) -> Result<(), FetchError> {
        let needed = self.buf.len() as u64 + data.len() as u64;
        if self.limit != 0 && needed > self.limit {
            return Err(FetchError::BodySizeLimit { limit: self.limit });
        }
        if needed > self.buf.capacity() as u64 && self.limit != 0 {
            // Amortised doubling, but never past the limit: memory stays within it.
            let target = (self.buf.capacity() as u64 * 2).max(needed).min(self.limit);
            let extra = usize::try_from(target).unwrap_or(usize::MAX) - self.buf.len();
            self.buf.reserve_exact(extra);
        }
        self.buf.extend_from_slice(data);
        Ok(())
    }

    fn into_inner(self) -> Vec<u8> {
        self.buf
    }
}

/// Longest FNAME or FCOMMENT accepted in a gzip header.
const GZIP_MAX_STRING: usize = 1024;
/// Longest gzip header: fixed part, FEXTRA with its length, two strings and FHCRC.
const GZIP_MAX_HEADER: usize = 10 + 2 + 0xffff + 2 * GZIP_MAX_STRING + 2;

enum GzipState {
    /// Collecting a member header (the first, or the next after a complete member).
    Header,
    /// Inflating a member's deflate data.
    Deflate,
    /// Collecting a member's 8-byte trailer.
    Trailer,
}

/// A push-style gzip decoder (RFC 1952, multi-member like Go's reader) that writes into a
/// [`LimitedBody`] at most [`INFLATE_STEP`] bytes at a time.
struct GzipInflater {
    state: GzipState,
    header: Vec<u8>,
    trailer: Vec<u8>,
    inflate: Decompress,
    crc: Crc,
    members: u64,
    out: Vec<u8>,
}

impl GzipInflater {
    fn new() -> GzipInflater {
        GzipInflater {
            state: GzipState::Header,
            header: Vec::new(),
            trailer: Vec::with_capacity(8),
            inflate: Decompress::new(false),
            crc: Crc::new(),
            members: 0,
            out: vec![0; INFLATE_STEP],
        }
    }

    /// Decodes the next compressed bytes into `body`.
    fn push(&mut self, mut input: &[u8], body: &mut LimitedBody) -> Result<(), FetchError> {
        while !input.is_empty() {
            match self.state {
                GzipState::Header => {
                    let before = self.header.len();
                    let take = input.len().min(GZIP_MAX_HEADER - before);
                    self.header.extend_from_slice(&input[..take]);
                    match parse_gzip_header(&self.header)? {
                        Some(len) => {
                            input = &input[len - before..];
                            self.header.clear();
                            self.inflate.reset(false);
                            self.crc.reset();
                            self.state = GzipState::Deflate;
                        }
                        None if self.header.len() >= GZIP_MAX_HEADER => {
                            return Err(GzipError::InvalidHeader.into());
                        }
                        None => input = &input[take..],
                    }
                }
                GzipState::Deflate => {
                    let in_before = self.inflate.total_in();
                    let out_before = self.inflate.total_out();
                    let status = self
                        .inflate
                        .decompress(input, &mut self.out, FlushDecompress::None)
                        .map_err(|_| GzipError::Corrupt {
                            offset: self.inflate.total_in(),
                        })?;
                    let used = usize::try_from(self.inflate.total_in() - in_before)
                        .unwrap_or(input.len())
                        .min(input.len());
                    let made = usize::try_from(self.inflate.total_out() - out_before)
                        .unwrap_or(0)
                        .min(self.out.len());
                    self.crc.update(&self.out[..made]);
                    body.push(&self.out[..made])?;
                    input = &input[used..];
                    if status == Status::StreamEnd {
                        self.state = GzipState::Trailer;
                    } else if used == 0 && made == 0 {
                        // With input left and an empty output buffer, zlib always makes
                        // progress unless the stream is broken.
                        return Err(GzipError::Corrupt {
                            offset: self.inflate.total_in(),
                        }
                        .into());
                    }
                }
                GzipState::Trailer => {
                    let take = input.len().min(8 - self.trailer.len());
                    self.trailer.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    if self.trailer.len() == 8 {
                        let t = &self.trailer;
                        let crc = u32::from_le_bytes([t[0], t[1], t[2], t[3]]);
                        let size = u32::from_le_bytes([t[4], t[5], t[6], t[7]]);
                        if crc != self.crc.sum() || size != self.crc.amount() {
                            return Err(GzipError::Checksum.into());
                        }
                        self.trailer.clear();
                        self.members += 1;
                        self.state = GzipState::Header;
                    }
                }
            }
        }
        Ok(())
    }

    /// Checks that the body ended between members.
    fn finish(self) -> Result<(), GzipError> {
        match self.state {
            GzipState::Header if self.header.is_empty() && self.members > 0 => Ok(()),
            GzipState::Header if self.header.is_empty() => Err(GzipError::Empty),
            _ => Err(GzipError::UnexpectedEof),
        }
    }
}

/// The length of the gzip member header at the start of `buf`, `None` if more bytes are
/// needed, or an error as soon as the bytes cannot start one.
fn parse_gzip_header(buf: &[u8]) -> Result<Option<usize>, GzipError> {
    for (i, want) in [0x1f_u8, 0x8b, 8].into_iter().enumerate() {
        match buf.get(i) {
            Some(&b) if b != want => return Err(GzipError::InvalidHeader),
            Some(_) => {}
            None => return Ok(None),
        }
    }
    let Some(&flags) = buf.get(3) else {
        return Ok(None);
    };
    let mut pos = 10;
    if buf.len() < pos {
        return Ok(None);
    }
    if flags & 0x04 != 0 {
        let Some(len) = buf.get(pos..pos + 2) else {
            return Ok(None);
        };
        pos += 2 + usize::from(u16::from_le_bytes([len[0], len[1]]));
        if buf.len() < pos {
            return Ok(None);
        }
    }
    for flag in [0x08_u8, 0x10] {
        if flags & flag != 0 {
            let window = &buf[pos..buf.len().min(pos + GZIP_MAX_STRING)];
            match window.iter().position(|&b| b == 0) {
                Some(nul) => pos += nul + 1,
                None if window.len() >= GZIP_MAX_STRING => return Err(GzipError::InvalidHeader),
                None => return Ok(None),
            }
        }
    }
    if flags & 0x02 != 0 {
        let Some(sum) = buf.get(pos..pos + 2) else {
            return Ok(None);
        };
        let mut crc = Crc::new();
        crc.update(&buf[..pos]);
        if u16::from_le_bytes([sum[0], sum[1]]) != (crc.sum() & 0xffff) as u16 {
            return Err(GzipError::InvalidHeader);
        }
        pos += 2;
    }
    Ok(Some(pos))
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::Compression;
    use flate2::write::GzEncoder;
    use proptest::prelude::*;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = GzEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    /// Decodes `compressed` fed in pieces cut at `cuts`.
    fn inflate(compressed: &[u8], cuts: &[usize], limit: u64) -> Result<Vec<u8>, FetchError> {
        let mut body = LimitedBody::new(limit, 0);
        let mut inflater = GzipInflater::new();
        let mut at = 0;
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (compressed.len() + 1)).collect();
        cuts.sort_unstable();
        for cut in cuts.into_iter().chain([compressed.len()]) {
            inflater.push(&compressed[at..cut], &mut body)?;
            at = cut;
        }
        inflater.finish()?;
        Ok(body.into_inner())
    }

    fn sample_text(n: usize) -> Vec<u8> {
        let mut s = Vec::new();
        for i in 0..n {
            writeln!(
                s,
                "metric_{}{{pod=\"p{}\"}} {}",
                i % 17,
                i * 7 % 13,
                i as f64 * 0.37
            )
            .unwrap();
        }
        s
    }

    #[test]
    fn gzip_members_and_header_fields() {
        let text = sample_text(300);
        // Two members concatenated, as `cat a.gz b.gz` makes: decoded back to back.
        let mut two = gzip(&text[..1000]);
        two.extend(gzip(&text[1000..]));
        assert_eq!(inflate(&two, &[1, 9, 11, 500], 0).unwrap(), text);

        // FEXTRA, FNAME, FCOMMENT and FHCRC set, written by flate2's builder.
        let mut e = flate2::GzBuilder::new()
            .extra(vec![7; 300])
            .filename("metrics.txt")
            .comment("scraped")
            .write(Vec::new(), Compression::fast());
        e.write_all(&text).unwrap();
        let with_fields = e.finish().unwrap();
        assert_eq!(inflate(&with_fields, &[3, 14, 200, 320], 0).unwrap(), text);
    }

    #[test]
    fn gzip_errors_are_gos() {
        let good = gzip(&sample_text(50));
        let err = |data: &[u8]| inflate(data, &[], 0).unwrap_err().to_string();
        assert_eq!(err(b"metric 1\n"), "gzip: invalid header");
        assert_eq!(err(b""), "EOF");
        assert_eq!(err(&good[..good.len() - 3]), "unexpected EOF");
        assert_eq!(err(&good[..5]), "unexpected EOF");
        let mut bad_crc = good.clone();
        let n = bad_crc.len();
        bad_crc[n - 6] ^= 0x40;
        assert_eq!(err(&bad_crc), "gzip: invalid checksum");
        let mut trailing = good.clone();
        trailing.extend_from_slice(b"junk");
        assert_eq!(err(&trailing), "gzip: invalid header");
        let mut corrupt = good.clone();
        corrupt[10] = 0xff; // BTYPE 11 is reserved in the first deflate block.
        assert!(err(&corrupt).starts_with("flate: corrupt input before offset"));
    }

    #[test]
    fn gzip_output_stops_at_the_limit() {
        let zeros = gzip(&vec![0u8; 4 << 20]);
        let mut body = LimitedBody::new(100_000, 0);
        let mut inflater = GzipInflater::new();
        let e = inflater.push(&zeros, &mut body).unwrap_err();
        assert!(matches!(e, FetchError::BodySizeLimit { limit: 100_000 }));
        assert!(body.buf.len() <= 100_000);
        assert!(body.buf.capacity() <= 100_000);
    }

    #[test]
    fn limited_body_accepts_exactly_the_limit() {
        let mut body = LimitedBody::new(10, 1 << 40);
        body.push(b"0123").unwrap();
        body.push(b"456789").unwrap();
        assert!(body.push(b"x").is_err());
        assert_eq!(body.into_inner(), b"0123456789");
    }

    #[test]
    fn redaction_hides_only_the_password() {
        let u = Url::parse("http://alice:s3cret@host:9100/metrics?x=1").unwrap();
        assert_eq!(redacted(&u), "http://alice:xxxxx@host:9100/metrics?x=1");
        let u = Url::parse("http://host/metrics").unwrap();
        assert_eq!(redacted(&u), "http://host/metrics");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn any_split_decodes_the_same(
            lines in 1usize..400,
            level in 0u32..10,
            cuts in proptest::collection::vec(any::<usize>(), 0..12),
        ) {
            let text = sample_text(lines);
            let mut e = GzEncoder::new(Vec::new(), Compression::new(level));
            e.write_all(&text).unwrap();
            let compressed = e.finish().unwrap();
            prop_assert_eq!(inflate(&compressed, &cuts, 0).unwrap(), text.clone());
            // A limit below the size fails; one at the size passes.
            let n = text.len() as u64;
            let over = inflate(&compressed, &cuts, n - 1);
            prop_assert!(
                matches!(over, Err(FetchError::BodySizeLimit { .. })),
                "limit n-1 gave {:?}", over.map(|b| b.len())
            );
            prop_assert_eq!(inflate(&compressed, &cuts, n).unwrap().len() as u64, n);
        }
    }
}
