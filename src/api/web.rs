//! What stands between a client and the handlers, as Prometheus's web configuration has it:
//! HTTP basic auth against bcrypt hashes, CORS headers on `/api/v1/` responses, and the
//! request body limit.
//!
//! Users can change on reload ([`WebSecurity::set_users`]); the CORS origin and the body
//! limit are fixed when the router is built, like the Prometheus flags they stand for.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, RwLock};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use regex::Regex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, SemaphorePermit};

use crate::config::{Secret, WebConfig};

/// Successful verifications remembered; beyond it the oldest is forgotten. Each costs 32
/// bytes of digest (twice, set and queue) and saves a bcrypt run (~50-100 ms at cost 10).
const CACHE_ENTRIES: usize = 1024;

/// Basic auth, CORS and the body limit for one router.
pub struct WebSecurity {
    users: RwLock<Arc<Users>>,
    cache: Mutex<Verified>,
    /// Bounds the uncached bcrypt checks, overall and per source.
    bcrypt: BcryptGate,
    /// Key mixed into every cache digest, so the digests alone do not let anyone test
    /// password guesses at hash speed.
    cache_key: [u8; 32],
    cors: Option<Regex>,
    max_body: u64,
}

/// Users and their bcrypt hashes.
#[derive(Default)]
struct Users(BTreeMap<String, Secret>);

/// Digests of (user, password, stored hash) that verified, oldest first in `order`.
#[derive(Default)]
struct Verified {
    set: HashSet<[u8; 32]>,
    order: VecDeque<[u8; 32]>,
}

impl Verified {
    fn insert(&mut self, d: [u8; 32]) {
        if !self.set.insert(d) {
            return;
        }
        self.order.push_back(d);
        if self.order.len() > CACHE_ENTRIES
            && let Some(old) = self.order.pop_front()
        {
            self.set.remove(&old);
        }
    }
}

/// Bounds concurrent bcrypt work: at most `slots` checks run at once, and one source holds
/// or waits for at most `per_source` of them. A source's further checks wait in its own
/// lane, behind each other, not in the shared queue, so a flood of wrong passwords from one
/// source delays another source's login by at most the checks already in the shared queue
/// (one share per busy source), not by the length of the flood.
struct BcryptGate {
    slots: Semaphore,
    per_source: usize,
    /// The lanes of sources with a check running or waiting, with how many there are; a
    /// lane is removed when its count drops to 0.
    lanes: Mutex<HashMap<Source, (Arc<Semaphore>, usize)>>,
}

/// Whom a check counts against: an IPv4 address, an IPv6 /64 (what one host usually
/// gets), or `None` for requests that came without a peer address.
type Source = Option<IpAddr>;

/// A source's key: IPv4-mapped IPv6 addresses as IPv4, other IPv6 addresses cut to /64.
fn source_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & !(u128::MAX >> 64))),
        v4 => v4,
    }
}

/// Leave to run one bcrypt check. Fields drop in order: the shared slot first, so it goes
/// to the next source in the shared queue rather than to this source's next check.
struct GatePass<'a> {
    _slot: SemaphorePermit<'a>,
    _own: OwnedSemaphorePermit,
    _lane: LaneUser<'a>,
}

/// One check counted in its source's lane, from entering the gate until it leaves.
struct LaneUser<'a> {
    gate: &'a BcryptGate,
    key: Source,
}

impl Drop for LaneUser<'_> {
    fn drop(&mut self) {
        let mut lanes = self.gate.lanes_lock();
        if let Some((_, users)) = lanes.get_mut(&self.key) {
            *users -= 1;
            if *users == 0 {
                lanes.remove(&self.key);
            }
        }
    }
}

impl BcryptGate {
    fn new(slots: usize, per_source: usize) -> BcryptGate {
        BcryptGate {
            slots: Semaphore::new(slots),
            per_source,
            lanes: Mutex::default(),
        }
    }

    fn lanes_lock(&self) -> std::sync::MutexGuard<'_, HashMap<Source, (Arc<Semaphore>, usize)>> {
        crate::sync::lock(&self.lanes)
    }

    /// Waits for a place in the source's lane, then for a shared slot. `None` only if a
    /// semaphore was closed, which never happens.
    async fn enter(&self, source: Source) -> Option<GatePass<'_>> {
        let key = source.map(source_key);
        let lane = {
            let mut lanes = self.lanes_lock();
            let (lane, users) = lanes
                .entry(key)
                .or_insert_with(|| (Arc::new(Semaphore::new(self.per_source)), 0));
            *users += 1;
            lane.clone()
        };
        let user = LaneUser { gate: self, key };
        let own = lane.acquire_owned().await.ok()?;
        let slot = self.slots.acquire().await.ok()?;
        Some(GatePass {
            _slot: slot,
            _own: own,
            _lane: user,
        })
    }
}

/// Why a [`WebSecurity`] cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// `web.cors_origin` does not compile.
    #[error("web.cors_origin: {0}")]
    Cors(#[from] crate::config::CorsError),
}

impl Default for WebSecurity {
    /// No users, no CORS, and the default body limit: what a router over a plain
    /// [`super::ApiState`] serves.
    fn default() -> Self {
        let cfg = WebConfig::default();
        WebSecurity::new(&cfg).unwrap_or_else(|_| WebSecurity::open(cfg.max_request_body_size.0))
    }
}

impl WebSecurity {
    /// The settings of `web`.
    pub fn new(web: &WebConfig) -> Result<WebSecurity, WebError> {
        let cors = web.cors_origin_regex()?;
        let s = WebSecurity {
            cors,
            ..WebSecurity::open(web.max_request_body_size.0)
        };
        s.set_users(&web.basic_auth_users);
        Ok(s)
    }

    fn open(max_body: u64) -> WebSecurity {
        // Half the cores (at least two), so wrong passwords cannot take all the CPU from
        // scrapes and flushes; a source gets half of that, so another source always finds
        // a slot free or next in line.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let slots = cores.div_ceil(2).max(2);
        WebSecurity {
            users: RwLock::new(Arc::default()),
            cache: Mutex::default(),
            bcrypt: BcryptGate::new(slots, (slots / 2).max(1)),
            cache_key: random_key(),
            cors: None,
            max_body,
        }
    }

    /// Replaces the users (on reload); an empty map turns authentication off.
    pub fn set_users(&self, users: &BTreeMap<String, Secret>) {
        *crate::sync::write(&self.users) = Arc::new(Users(users.clone()));
    }

    /// Whether requests need credentials.
    pub fn auth_enabled(&self) -> bool {
        !self.current_users().0.is_empty()
    }

    /// The body limit in bytes; 0 is none.
    pub fn max_body(&self) -> u64 {
        self.max_body
    }

    fn current_users(&self) -> Arc<Users> {
        crate::sync::read(&self.users).clone()
    }

    /// Whether the `Authorization` header lets the request in; `source` is the client's
    /// address, which bounds its share of the bcrypt work (`None`: one shared share).
    pub async fn authorized(&self, headers: &HeaderMap, source: Option<IpAddr>) -> bool {
        let users = self.current_users();
        let Some(first) = users.0.values().next() else {
            return true;
        };
        let Some((user, pass)) = basic_credentials(headers) else {
            return false;
        };
        let (known, hash) = match users.0.get(&user) {
            Some(h) => (true, h.expose().to_string()),
            // An unknown user costs one bcrypt run like a known one, against a real hash
            // with a real user's cost, so timing does not tell which names exist.
            None => (false, first.expose().to_string()),
        };
        let digest = self.digest(&user, &pass, &hash);
        if known && self.cache_lock().set.contains(&digest) {
            return true;
        }
        let Some(_pass) = self.bcrypt.enter(source).await else {
            return false;
        };
        let ok = tokio::task::spawn_blocking(move || bcrypt::verify(pass, &hash).unwrap_or(false))
            .await
            .unwrap_or(false);
        if ok && known {
            self.cache_lock().insert(digest);
        }
        ok && known
    }

    fn cache_lock(&self) -> std::sync::MutexGuard<'_, Verified> {
        crate::sync::lock(&self.cache)
    }

    /// SHA-256 over the key and the length-prefixed parts, so no two triples share an input.
    fn digest(&self, user: &str, pass: &str, hash: &str) -> [u8; 32] {
        let mut ctx = sha256().start();
        ctx.update(&self.cache_key);
        for part in [user, pass, hash] {
            ctx.update(&(part.len() as u64).to_le_bytes());
            ctx.update(part.as_bytes());
        }
        let out = ctx.finish();
        let mut d = [0u8; 32];
        let n = out.as_ref().len().min(32);
        d[..n].copy_from_slice(&out.as_ref()[..n]);
        d
    }

    /// Adds Prometheus's CORS headers for a request from `origin` (none without an origin
    /// or without a configured pattern).
    fn set_cors(&self, origin: Option<&HeaderValue>, headers: &mut HeaderMap) {
        let Some(re) = &self.cors else {
            return;
        };
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
        let Some(origin) = origin.filter(|o| !o.is_empty()) else {
            return;
        };
        for (name, value) in [
            (
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                "Accept, Authorization, Content-Type, Origin",
            ),
            (header::ACCESS_CONTROL_ALLOW_METHODS, "GET, POST, OPTIONS"),
            (header::ACCESS_CONTROL_EXPOSE_HEADERS, "Date"),
        ] {
            headers.insert(name, HeaderValue::from_static(value));
        }
        // As Prometheus: the match-anything pattern answers `*`, not the origin itself.
        if re.as_str() == "^(?:.*)$" {
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            );
        } else if origin.to_str().is_ok_and(|o| re.is_match(o)) {
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        }
    }
}

/// The SHA-256 of the TLS provider the binary already links.
fn sha256() -> &'static dyn rustls::crypto::hash::Hash {
    match rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256 {
        rustls::SupportedCipherSuite::Tls13(s) => s.common.hash_provider,
        rustls::SupportedCipherSuite::Tls12(s) => s.common.hash_provider,
    }
}

/// 32 random bytes from the TLS provider's generator; a fixed key if it fails, which only
/// weakens what the cache digests hide.
fn random_key() -> [u8; 32] {
    let mut k = [0u8; 32];
    let _ = rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut k);
    k
}

/// User and password of an `Authorization: Basic` header; `None` when missing or malformed.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, b64) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = decode_base64(b64.trim())?;
    let text = String::from_utf8(raw).ok()?;
    let (user, pass) = text.split_once(':')?;
    Some((user.to_string(), pass.to_string()))
}

/// Standard base64 with padding, as browsers and curl send basic credentials.
fn decode_base64(s: &str) -> Option<Vec<u8>> {
    let b = s.as_bytes();
    if !b.len().is_multiple_of(4) {
        return None;
    }
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(b.len() / 4 * 3);
    for (i, chunk) in b.chunks(4).enumerate() {
        let last = i == b.len() / 4 - 1;
        let pad = chunk.iter().rev().take_while(|c| **c == b'=').count();
        if pad > 2 || (pad > 0 && !last) {
            return None;
        }
        let mut n = 0u32;
        for &c in &chunk[..4 - pad] {
            n = (n << 6) | value(c)?;
        }
        n <<= 6 * pad as u32;
        let bytes = n.to_be_bytes();
        out.extend_from_slice(&bytes[1..4 - pad]);
    }
    Some(out)
}

/// Refuses requests without valid credentials when users are configured: 401 with
/// `WWW-Authenticate: Basic`, the same answer whatever was wrong. CORS preflights to the API
/// pass: browsers never send credentials with them, and they reach no handler.
pub async fn basic_auth(State(s): State<Arc<WebSecurity>>, req: Request, next: Next) -> Response {
    let preflight = req.method() == Method::OPTIONS && req.uri().path().starts_with("/api/v1/");
    let source = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    if preflight || s.authorized(req.headers(), source).await {
        return next.run(req).await;
    }
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Basic")],
        "Unauthorized\n",
    )
        .into_response()
}

/// Sets the CORS headers on every `/api/v1/` response, errors included, as Prometheus does.
pub async fn cors(State(s): State<Arc<WebSecurity>>, req: Request, next: Next) -> Response {
    if !req.uri().path().starts_with("/api/v1/") {
        return next.run(req).await;
    }
    let origin = req.headers().get(header::ORIGIN).cloned();
    let mut resp = next.run(req).await;
    s.set_cors(origin.as_ref(), resp.headers_mut());
    resp
}

/// Refuses a body the `Content-Length` says is over the limit before anything reads it;
/// a body without one (chunked) is cut off by the extractors' limit, which the router sets
/// to the same value.
pub async fn body_limit(State(s): State<Arc<WebSecurity>>, req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(n) if s.max_body > 0 && n > s.max_body => (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body over {} bytes\n", s.max_body),
        )
            .into_response(),
        _ => next.run(req).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Standard base64 with padding; the inverse of [`decode_base64`].
    fn encode(raw: &[u8]) -> String {
        const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in raw.chunks(3) {
            let mut n = 0u32;
            for (i, b) in chunk.iter().enumerate() {
                n |= (*b as u32) << (16 - 8 * i);
            }
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    fn basic(user_pass: &str) -> HeaderMap {
        auth_header(&format!("Basic {}", encode(user_pass.as_bytes())))
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        #[test]
        fn base64_round_trips(raw in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40)) {
            proptest::prop_assert_eq!(decode_base64(&encode(&raw)), Some(raw));
        }
    }

    fn auth_header(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn base64_decodes_like_the_standard_encoding() {
        assert_eq!(decode_base64("").unwrap(), b"");
        assert_eq!(decode_base64("Zg==").unwrap(), b"f");
        assert_eq!(decode_base64("Zm8=").unwrap(), b"fo");
        assert_eq!(decode_base64("Zm9v").unwrap(), b"foo");
        assert_eq!(
            decode_base64("Z3JhZmFuYTpzM2NyM3Q/Pg==").unwrap(),
            b"grafana:s3cr3t?>"
        );
        assert_eq!(decode_base64("+/+/").unwrap(), [0xfb, 0xff, 0xbf]);
        for bad in ["Zm9", "Zg=a", "Z===", "Zg==Zm9v", "Zm9v!A==", "Zm-v"] {
            assert!(decode_base64(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn credentials_come_from_a_basic_header_only() {
        // "u:p:q": the password keeps its colons.
        assert_eq!(
            basic_credentials(&auth_header("Basic dTpwOnE=")),
            Some(("u".into(), "p:q".into()))
        );
        assert_eq!(
            basic_credentials(&auth_header("basic dTpwOnE=")),
            Some(("u".into(), "p:q".into()))
        );
        assert!(basic_credentials(&auth_header("Bearer dTpwOnE=")).is_none());
        // No colon at all.
        assert!(basic_credentials(&auth_header("Basic dXNlcg==")).is_none());
        assert!(basic_credentials(&auth_header("Basic")).is_none());
        assert!(basic_credentials(&HeaderMap::new()).is_none());
    }

    #[test]
    fn the_cache_forgets_the_oldest_beyond_its_size() {
        let mut v = Verified::default();
        for i in 0..(CACHE_ENTRIES + 10) {
            let mut d = [0u8; 32];
            d[..8].copy_from_slice(&(i as u64 * 7919 + 3).to_le_bytes());
            v.insert(d);
            v.insert(d);
        }
        assert_eq!(v.set.len(), CACHE_ENTRIES);
        assert_eq!(v.order.len(), CACHE_ENTRIES);
        let mut first = [0u8; 32];
        first[..8].copy_from_slice(&3u64.to_le_bytes());
        assert!(!v.set.contains(&first));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bcrypt_checks_known_users_and_caches_successes() {
        // Cost 4 keeps the test fast; the cost is read from the hash.
        let hash = bcrypt::hash("s3cr3t", 4).unwrap();
        let other = bcrypt::hash("other-pass", 4).unwrap();
        let mut users = BTreeMap::new();
        users.insert("grafana".to_string(), Secret::new(hash.clone()));
        users.insert("ops".to_string(), Secret::new(other));
        let cfg = WebConfig {
            basic_auth_users: users,
            ..WebConfig::default()
        };
        let s = WebSecurity::new(&cfg).unwrap();
        assert!(s.authorized(&basic("grafana:s3cr3t"), None).await);
        assert_eq!(s.cache_lock().set.len(), 1);
        assert!(s.authorized(&basic("grafana:s3cr3t"), None).await);
        assert!(!s.authorized(&basic("grafana:wrong"), None).await);
        assert!(!s.authorized(&basic("nobody:other-pass"), None).await);
        assert!(!s.authorized(&basic("ghost:s3cr3t"), None).await);
        assert!(!s.authorized(&HeaderMap::new(), None).await);
        assert_eq!(s.cache_lock().set.len(), 1, "only successes are cached");

        // A reload that changes the hash: the cached success no longer applies.
        let mut users = BTreeMap::new();
        users.insert(
            "grafana".to_string(),
            Secret::new(bcrypt::hash("new-pass", 4).unwrap()),
        );
        s.set_users(&users);
        assert!(!s.authorized(&basic("grafana:s3cr3t"), None).await);
        s.set_users(&BTreeMap::new());
        assert!(
            s.authorized(&HeaderMap::new(), None).await,
            "no users, no auth"
        );
    }

    #[test]
    fn cors_headers_follow_prometheus() {
        let with = |pattern: &str| {
            WebSecurity::new(&WebConfig {
                cors_origin: pattern.into(),
                ..WebConfig::default()
            })
            .unwrap()
        };
        let origin = HeaderValue::from_static("https://grafana.example.org");
        let s = with(r"https://grafana\.example\.org");
        let mut h = HeaderMap::new();
        s.set_cors(Some(&origin), &mut h);
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], origin);
        assert_eq!(h[header::VARY], "Origin");
        assert_eq!(
            h[header::ACCESS_CONTROL_ALLOW_METHODS],
            "GET, POST, OPTIONS"
        );

        // Anchored: a longer origin containing the pattern does not match.
        let mut h = HeaderMap::new();
        let evil = HeaderValue::from_static("https://grafana.example.org.evil.net");
        s.set_cors(Some(&evil), &mut h);
        assert!(h.get(header::ACCESS_CONTROL_ALLOW_ORIGIN).is_none());
        assert!(h.get(header::ACCESS_CONTROL_ALLOW_HEADERS).is_some());

        let mut h = HeaderMap::new();
        with(".*").set_cors(Some(&origin), &mut h);
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");

        // No Origin: only Vary.
        let mut h = HeaderMap::new();
        s.set_cors(None, &mut h);
        assert_eq!(h.len(), 1);

        // Not configured: nothing at all.
        let mut h = HeaderMap::new();
        WebSecurity::default().set_cors(Some(&origin), &mut h);
        assert!(h.is_empty());

        assert!(matches!(
            WebSecurity::new(&WebConfig {
                cors_origin: "(".into(),
                ..WebConfig::default()
            }),
            Err(WebError::Cors(_))
        ));
    }

    fn poll_once<F: std::future::Future>(f: std::pin::Pin<&mut F>) -> std::task::Poll<F::Output> {
        f.poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
    }

    #[test]
    fn a_flood_from_one_source_does_not_queue_ahead_of_another_source() {
        use std::task::Poll;
        // One shared slot, one per source: the tightest gate (two cores give two slots).
        let gate = BcryptGate::new(1, 1);
        let a: Source = Some("192.0.2.1".parse().unwrap());
        let b: Source = Some("::ffff:198.51.100.7".parse().unwrap());
        let mut first = Box::pin(gate.enter(a));
        let Poll::Ready(Some(running)) = poll_once(first.as_mut()) else {
            panic!("an idle gate lets the first check in");
        };
        let mut flood: Vec<_> = (0..50).map(|_| Box::pin(gate.enter(a))).collect();
        for f in &mut flood {
            assert!(poll_once(f.as_mut()).is_pending());
        }
        let mut other = Box::pin(gate.enter(b));
        assert!(
            poll_once(other.as_mut()).is_pending(),
            "the one slot is busy"
        );

        // The slot goes to the other source next, not to the flood's next check.
        drop(running);
        let Poll::Ready(Some(other_pass)) = poll_once(other.as_mut()) else {
            panic!("the other source waited behind the flood");
        };
        for f in &mut flood {
            assert!(poll_once(f.as_mut()).is_pending());
        }
        // Then the flood goes on, one check at a time.
        drop(other_pass);
        let mut passed = 0;
        for f in &mut flood {
            let Poll::Ready(Some(pass)) = poll_once(f.as_mut()) else {
                panic!("the flood's next check did not get the free slot");
            };
            drop(pass);
            passed += 1;
        }
        assert_eq!(passed, 50);
        drop(flood);
        drop(other);
        drop(first);
        assert!(
            gate.lanes_lock().is_empty(),
            "lanes go with their last check"
        );
    }

    #[test]
    fn sources_are_ipv4_addresses_and_ipv6_64s() {
        let key = |s: &str| source_key(s.parse().unwrap());
        assert_eq!(key("::ffff:192.0.2.1"), key("192.0.2.1"));
        assert_ne!(key("192.0.2.1"), key("192.0.2.2"));
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff::9"));
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2::"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
    }
}
