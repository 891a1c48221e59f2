//! Request parameters as Prometheus reads them: query string and form body alike, repeated keys
//! (`match[]`), times as Unix seconds or RFC 3339.

use axum::body::Bytes;
use axum::http::{HeaderMap, Uri, header};

use super::ApiError;
use crate::model::{Matcher, parse_time};

/// All parameters of a request, from the URL and (for form POSTs) the body, in order.
pub struct Params(Vec<(String, String)>);

fn parse_pairs(s: &[u8], out: &mut Vec<(String, String)>) {
    out.extend(form_urlencoded::parse(s).map(|(k, v)| (k.into_owned(), v.into_owned())));
}

impl Params {
    /// Reads the URL's query and, for `application/x-www-form-urlencoded` bodies, the body.
    pub fn new(uri: &Uri, headers: &HeaderMap, body: &Bytes) -> Self {
        let mut v = Vec::new();
        if let Some(q) = uri.query() {
            parse_pairs(q.as_bytes(), &mut v);
        }
        let form = headers
            .get(header::CONTENT_TYPE)
            .and_then(|c| c.to_str().ok())
            .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
        if form {
            parse_pairs(body, &mut v);
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

    /// A time parameter, or `default` when absent.
    pub fn time(&self, key: &str, default: i64) -> Result<i64, ApiError> {
        match self.get(key) {
            None | Some("") => Ok(default),
            Some(v) => parse_time(v).map_err(|_| {
                ApiError::bad_data(format!(
                    "invalid parameter \"{key}\": cannot parse \"{v}\" to a valid timestamp"
                ))
            }),
        }
    }

    /// The `match[]` selectors, parsed.
    pub fn matchers(&self) -> Result<Vec<Vec<Matcher>>, ApiError> {
        self.all("match[]")
            .into_iter()
            .map(|m| {
                crate::query::parse_selector(m)
                    .map_err(|e| ApiError::bad_data(format!("invalid parameter \"match[]\": {e}")))
            })
            .collect()
    }

    /// The `limit` parameter: 0 (no limit) when absent.
    pub fn limit(&self) -> Result<usize, ApiError> {
        match self.get("limit") {
            None | Some("") => Ok(0),
            Some(v) => v
                .parse::<i64>()
                .ok()
                .filter(|n| *n >= 0)
                .map(|n| n as usize)
                .ok_or_else(|| ApiError::bad_data(format!("invalid parameter \"limit\": cannot parse \"{v}\" to a non-negative integer"))),
        }
    }
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
        assert_eq!(p.matchers().unwrap().len(), 2);
    }
}
