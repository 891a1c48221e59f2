//! Request parameters as Prometheus reads them: query string and form body alike, repeated keys
//! (`match[]`), times as Unix seconds or RFC 3339.

use axum::body::Bytes;
use axum::http::{HeaderMap, Uri, header};

use super::ApiError;
use crate::model::{Matcher, parse_time};
use crate::query::QueryError;

/// Why a parameter's value was refused; `Display` is Prometheus's text, without the
/// parameter's name (each endpoint frames it as Prometheus does).
#[derive(Debug, thiserror::Error)]
pub enum ValueError {
    /// Neither Unix seconds nor RFC 3339.
    #[error("cannot parse {0:?} to a valid timestamp")]
    Time(String),
    /// Neither float seconds nor a Prometheus duration.
    #[error("cannot parse {0:?} to a valid duration")]
    Duration(String),
    /// Float seconds beyond `i64` nanoseconds, as Go's `time.Duration` holds them.
    #[error("cannot parse {0:?} to a valid duration. It overflows int64")]
    DurationOverflow(String),
    /// A `match[]` value that is not a series selector.
    #[error("{0}")]
    Selector(QueryError),
    /// A `match[]` selector every series matches.
    #[error("match[] must contain at least one non-empty matcher")]
    MatchesEverything,
}

/// A parameter whose value was refused: which one, and why.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct ParamError {
    /// The parameter's name (`timeout`, `match[]`, ...).
    pub param: &'static str,
    /// What is wrong with its value.
    pub error: ValueError,
}

impl From<ParamError> for ApiError {
    /// Prometheus's framing for most parameters: `invalid parameter "name": reason`.
    fn from(e: ParamError) -> Self {
        ApiError::invalid_param(e.param, e.error)
    }
}

/// All parameters of a request, from the URL and (for form POSTs) the body, in order.
pub struct Params(Vec<(String, String)>);

fn parse_pairs(s: &[u8], out: &mut Vec<(String, String)>) {
    out.extend(form_urlencoded::parse(s).map(|(k, v)| (k.into_owned(), v.into_owned())));
}

impl Params {
    /// Reads, for `application/x-www-form-urlencoded` bodies, the body, then the URL's query:
    /// a key in both takes the body's value first, as Go's `Request.FormValue` does.
    pub fn new(uri: &Uri, headers: &HeaderMap, body: &Bytes) -> Self {
        let mut v = Vec::new();
        let form = headers
            .get(header::CONTENT_TYPE)
            .and_then(|c| c.to_str().ok())
            .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
        if form {
            parse_pairs(body, &mut v);
        }
        if let Some(q) = uri.query() {
            parse_pairs(q.as_bytes(), &mut v);
        }
        Params(v)
    }

    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `key`.
    pub fn all(&self, key: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// A time parameter, or `default` when absent (Prometheus's `parseTimeParam`, with its
    /// error text).
    pub fn time(&self, key: &str, default: i64) -> Result<i64, ApiError> {
        match self.get(key) {
            None | Some("") => Ok(default),
            Some(v) => parse_time_value(v).map_err(|e| {
                ApiError::invalid_param(key, format!("invalid time value for '{key}': {e}"))
            }),
        }
    }

    /// A time parameter that must be present (Prometheus's `parseTime`).
    pub fn required_time(&self, key: &str) -> Result<i64, ApiError> {
        parse_time_value(self.get(key).unwrap_or("")).map_err(|e| ApiError::invalid_param(key, e))
    }

    /// A duration parameter in milliseconds, `None` when absent or empty.
    pub fn duration(&self, key: &'static str) -> Result<Option<i64>, ParamError> {
        match self.get(key) {
            None | Some("") => Ok(None),
            Some(v) => parse_duration_value(v)
                .map(Some)
                .map_err(|error| ParamError { param: key, error }),
        }
    }

    /// The `match[]` selectors, parsed; each must have a matcher that rejects the empty
    /// string, or it would select every series. The error's text is Prometheus's, without
    /// the parameter prefix (callers add it where Prometheus does).
    pub fn matchers(&self) -> Result<Vec<Vec<Matcher>>, ParamError> {
        let refused = |error| ParamError {
            param: "match[]",
            error,
        };
        let sets = self
            .all("match[]")
            .into_iter()
            .map(|m| crate::query::parse_selector(m).map_err(|e| refused(ValueError::Selector(e))))
            .collect::<Result<Vec<_>, _>>()?;
        if sets
            .iter()
            .any(|set| set.iter().all(Matcher::matches_empty))
        {
            return Err(refused(ValueError::MatchesEverything));
        }
        Ok(sets)
    }

    /// The `limit` parameter: 0 (no limit) when absent.
    pub fn limit(&self) -> Result<usize, ApiError> {
        match self.get("limit") {
            None | Some("") => Ok(0),
            Some(v) => match v.parse::<i64>() {
                Ok(n) if n >= 0 => Ok(n as usize),
                Ok(_) => Err(ApiError::invalid_param(
                    "limit",
                    "limit must be non-negative",
                )),
                Err(_) => Err(ApiError::invalid_param(
                    "limit",
                    format!("strconv.Atoi: parsing {v:?}: invalid syntax"),
                )),
            },
        }
    }
}

/// Prometheus's lowest and highest API times, in the RFC 3339 text its clients send for "no
/// bound" (Go's parser cannot read years beyond four digits, so Prometheus matches the text).
const MIN_TIME_TEXT: &str = "-292273086-05-16T16:47:06Z";
const MAX_TIME_TEXT: &str = "292277025-08-18T07:12:54.999999999Z";
/// The same bounds in milliseconds.
pub const MIN_TIME: i64 = -9_223_309_901_257_974_000;
/// See [`MIN_TIME`].
pub const MAX_TIME: i64 = 9_223_309_901_257_974_999;

/// A time as Unix seconds (with a fraction) or RFC 3339, in milliseconds; the error is
/// Prometheus's text.
pub fn parse_time_value(v: &str) -> Result<i64, ValueError> {
    match v {
        MIN_TIME_TEXT => return Ok(MIN_TIME),
        MAX_TIME_TEXT => return Ok(MAX_TIME),
        _ => {}
    }
    parse_time(v).map_err(|_| ValueError::Time(v.to_string()))
}

/// A duration as float seconds (`15`, `0.5`, `-1`) or in Prometheus's syntax (`1m30s`), in
/// milliseconds (rounded); the error is Prometheus's text.
pub fn parse_duration_value(v: &str) -> Result<i64, ValueError> {
    if let Ok(secs) = v.parse::<f64>() {
        let ns = secs * 1e9;
        if !ns.is_finite() || ns > i64::MAX as f64 || ns < i64::MIN as f64 {
            return Err(ValueError::DurationOverflow(v.to_string()));
        }
        return Ok((secs * 1000.0).round() as i64);
    }
    crate::model::parse_duration(v).map_err(|_| ValueError::Duration(v.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_and_form_parameters_with_repeats() {
        let uri: Uri = "/api/v1/series?match[]=up&match%5B%5D=%7Bjob%3D%22a+b%22%7D&start=1"
            .parse()
            .unwrap();
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            "application/x-www-form-urlencoded".parse().unwrap(),
        );
        let p = Params::new(
            &uri,
            &h,
            &Bytes::from_static(b"end=2024-01-01T00:00:00Z&bad=%zz"),
        );
        assert_eq!(p.all("match[]"), vec!["up", "{job=\"a b\"}"]);
        assert_eq!(p.time("start", 0).unwrap(), 1000);
        assert_eq!(p.time("end", 0).unwrap(), 1_704_067_200_000);
        assert_eq!(p.get("bad"), Some("%zz"));
        assert!(p.time("bad", 0).is_err());
        assert_eq!(p.time("absent", 77).unwrap(), 77);
        assert!(p.required_time("absent").is_err());
        assert_eq!(p.matchers().unwrap().len(), 2);
        // The body's value wins over the URL's.
        let uri: Uri = "/api/v1/query?query=up&time=1".parse().unwrap();
        let p = Params::new(&uri, &h, &Bytes::from_static(b"time=2"));
        assert_eq!(
            (p.get("query"), p.time("time", 0).unwrap()),
            (Some("up"), 2000)
        );
    }
}

#[cfg(test)]
mod error_tests {
    use super::*;

    fn form(body: &'static str) -> Params {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            "application/x-www-form-urlencoded".parse().unwrap(),
        );
        Params::new(
            &Uri::from_static("/"),
            &h,
            &Bytes::from_static(body.as_bytes()),
        )
    }

    #[test]
    fn refused_parameters_keep_their_name_and_reason() {
        let p = form("match[]=up&match[]=rate(up[5m])&timeout=soon&lookback_delta=");
        let e = p.matchers().unwrap_err();
        assert_eq!(e.param, "match[]");
        assert!(
            matches!(&e.error, ValueError::Selector(QueryError::NotASelector(s)) if s == "rate(up[5m])"),
            "{e:?}"
        );
        let e = p.duration("timeout").unwrap_err();
        assert_eq!(e.param, "timeout");
        assert!(
            matches!(&e.error, ValueError::Duration(v) if v == "soon"),
            "{e:?}"
        );
        // Empty is absent, not an error.
        assert_eq!(p.duration("lookback_delta").unwrap(), None);
        assert_eq!(p.duration("absent").unwrap(), None);
        // The usual framing names the parameter.
        let api = ApiError::from(e);
        assert_eq!((api.status().as_u16(), api.kind()), (400, "bad_data"));
    }

    #[test]
    fn a_selector_that_does_not_parse_keeps_the_parser_error() {
        let e = form("match[]=up{").matchers().unwrap_err();
        assert_eq!(e.param, "match[]");
        let ValueError::Selector(q) = &e.error else {
            panic!("{e:?}");
        };
        assert_eq!(e.to_string(), q.to_string());
        // No match[] at all is no selector, not an error.
        assert!(form("").matchers().unwrap().is_empty());
    }
}

#[cfg(test)]
mod value_tests {
    use super::*;

    #[test]
    fn durations_as_float_seconds_or_prometheus_syntax() {
        assert_eq!(parse_duration_value("15").unwrap(), 15_000);
        assert_eq!(parse_duration_value("0.5").unwrap(), 500);
        assert_eq!(parse_duration_value("-2").unwrap(), -2_000);
        assert_eq!(parse_duration_value("1m30s").unwrap(), 90_000);
        assert_eq!(parse_duration_value("0").unwrap(), 0);
        assert_eq!(
            parse_duration_value("fast").unwrap_err().to_string(),
            "cannot parse \"fast\" to a valid duration"
        );
        assert!(
            parse_duration_value("1e30")
                .unwrap_err()
                .to_string()
                .contains("overflows int64")
        );
    }

    #[test]
    fn times_with_prometheus_bounds() {
        assert_eq!(
            parse_time_value("1435781451.781").unwrap(),
            1_435_781_451_781
        );
        assert_eq!(
            parse_time_value("2015-07-01T20:10:51.781Z").unwrap(),
            1_435_781_451_781
        );
        assert_eq!(parse_time_value(MIN_TIME_TEXT).unwrap(), MIN_TIME);
        assert_eq!(parse_time_value(MAX_TIME_TEXT).unwrap(), MAX_TIME);
        assert_eq!(
            parse_time_value("soon").unwrap_err().to_string(),
            "cannot parse \"soon\" to a valid timestamp"
        );
    }
}
