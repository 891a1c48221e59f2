//! `/federate`: the newest sample of every series matching `match[]` within the lookback
//! window, in the text exposition format (0.0.4), for another Prometheus to scrape.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use super::json::format_g;
use super::params::Params;
use super::{ApiState, now_ms};
use crate::model::{Labels, METRIC_NAME, is_stale_nan};

/// Federation answers errors as plain text, as Prometheus does there.
fn text_error(status: StatusCode, msg: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{msg}\n"),
    )
        .into_response()
}

/// A name in the legacy character set: anything else becomes `_` (Prometheus's underscore
/// escaping for text-format consumers), a leading digit included.
fn push_name(out: &mut String, name: &str) {
    for (i, c) in name.chars().enumerate() {
        let ok = c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit());
        out.push(if ok { c } else { '_' });
    }
}

/// A label value with `\`, `"` and newlines escaped.
fn push_value(out: &mut String, v: &str) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// The exposition of `samples` (sorted by metric name): one `# TYPE … untyped` line per name,
/// series labels then the external labels they lack (`instance=""` always among them), value,
/// timestamp.
fn render(samples: &[(Labels, i64, f64)], external: &[(String, String)]) -> String {
    render_kind(samples, external, None)
}

/// Native histograms (labels, time, count, sum) as the text format carries them, the way
/// Prometheus's text encoder writes a histogram without classic buckets: `<name>_bucket`
/// with `le="+Inf"` holding the count, then `<name>_sum` and `<name>_count`, under
/// `# TYPE <name> histogram`.
fn render_histograms(hists: &[(Labels, i64, f64, f64)], external: &[(String, String)]) -> String {
    let mut out = String::new();
    let mut last_name: Option<&str> = None;
    for (labels, t, count, sum) in hists {
        let Some(name) = labels.metric_name().filter(|n| !n.is_empty()) else {
            continue;
        };
        if last_name != Some(name) {
            out.push_str("# TYPE ");
            push_name(&mut out, name);
            out.push_str(" histogram\n");
            last_name = Some(name);
        }
        for (suffix, v) in [("_bucket", *count), ("_sum", *sum), ("_count", *count)] {
            let one = [(labels.clone(), *t, v)];
            let le = (suffix == "_bucket").then_some(("le", "+Inf"));
            out.push_str(&render_kind(&one, external, Some((suffix, le))));
        }
    }
    out
}

/// The float samples' lines; with `part`, each name gets the suffix and the extra label
/// given, and no `# TYPE` line (the caller writes the histogram's).
fn render_kind(
    samples: &[(Labels, i64, f64)],
    external: &[(String, String)],
    part: Option<(&str, Option<(&str, &str)>)>,
) -> String {
    let mut out = String::new();
    let mut last_name: Option<&str> = None;
    for (labels, t, v) in samples {
        let Some(name) = labels.metric_name().filter(|n| !n.is_empty()) else {
            continue;
        };
        if part.is_none() && last_name != Some(name) {
            out.push_str("# TYPE ");
            push_name(&mut out, name);
            out.push_str(" untyped\n");
            last_name = Some(name);
        }
        push_name(&mut out, name);
        if let Some((suffix, _)) = part {
            out.push_str(suffix);
        }
        let mut first = true;
        let mut pair = |out: &mut String, n: &str, v: &str| {
            out.push(if first { '{' } else { ',' });
            first = false;
            push_name(out, n);
            out.push_str("=\"");
            push_value(out, v);
            out.push('"');
        };
        for (n, v) in labels.iter() {
            // An empty value is an unset label.
            if n != METRIC_NAME && !v.is_empty() {
                pair(&mut out, n, v);
            }
        }
        for (n, v) in external {
            if labels.get(n).is_none_or(str::is_empty) {
                pair(&mut out, n, v);
            }
        }
        if let Some((_, Some((n, v)))) = part {
            pair(&mut out, n, v);
        }
        if !first {
            out.push('}');
        }
        out.push(' ');
        out.push_str(&format_g(*v));
        out.push(' ');
        out.push_str(&t.to_string());
        out.push('\n');
    }
    out
}

pub async fn federate(State(s): State<Arc<ApiState>>, uri: Uri, headers: HeaderMap) -> Response {
    let p = Params::new(&uri, &headers, &axum::body::Bytes::new());
    // No match[] selects nothing: an empty 200, as Prometheus answers.
    let sets = match p.matchers() {
        Ok(s) => s,
        Err(e) => return text_error(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    let maxt = now_ms();
    let lookback = s.engine.options().lookback_delta.as_millis() as i64;
    let mint = maxt.saturating_sub(lookback);
    let q = s.db.querier();
    let mut samples: Vec<(Labels, i64, f64)> = Vec::new();
    let mut hists: Vec<(Labels, i64, f64, f64)> = Vec::new();
    for m in &sets {
        let series = match q.select(m, mint, maxt) {
            Ok(v) => v,
            Err(e) => return text_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        };
        for ss in series {
            // Exposition formats cannot carry a staleness marker: a series that ended is left
            // out. The newest sample is the value, a float or a histogram.
            let float_t = ss.samples.last().map(|x| x.t);
            match ss.histograms.last() {
                Some(h) if float_t.is_none_or(|t| t < h.t) => {
                    if !h.h.is_stale_marker() {
                        let f = h.h.to_float();
                        hists.push((ss.labels, h.t, f.count, f.sum));
                    }
                }
                _ => {
                    if let Some(last) = ss.samples.last().filter(|x| !is_stale_nan(x.v)) {
                        samples.push((ss.labels, last.t, last.v));
                    }
                }
            }
        }
    }
    // Several selectors may match one series.
    samples.sort_by(|a, b| a.0.cmp(&b.0));
    samples.dedup_by(|a, b| a.0 == b.0);
    samples.sort_by(|a, b| a.0.metric_name().cmp(&b.0.metric_name()));
    let mut external: Vec<(String, String)> = s
        .external_labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if !s.external_labels.contains_key("instance") {
        external.push(("instance".into(), String::new()));
        external.sort();
    }
    hists.sort_by(|a, b| a.0.cmp(&b.0));
    hists.dedup_by(|a, b| a.0 == b.0);
    hists.sort_by(|a, b| a.0.metric_name().cmp(&b.0.metric_name()));
    let mut body = render(&samples, &external);
    body.push_str(&render_histograms(&hists, &external));
    (
        [(header::CONTENT_TYPE, crate::telemetry::CONTENT_TYPE)],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_histograms_as_the_text_format_carries_them() {
        let l = Labels::new([("__name__", "lat"), ("job", "x")]).unwrap();
        let ext = vec![("instance".to_string(), String::new())];
        assert_eq!(
            render_histograms(&[(l, 9, 12.0, 3.5)], &ext),
            "# TYPE lat histogram\n\
             lat_bucket{job=\"x\",instance=\"\",le=\"+Inf\"} 12 9\n\
             lat_sum{job=\"x\",instance=\"\"} 3.5 9\n\
             lat_count{job=\"x\",instance=\"\"} 12 9\n"
        );
    }

    #[test]
    fn exposition_groups_by_name_and_escapes() {
        let l = |pairs: &[(&str, &str)]| Labels::new(pairs.iter().copied()).unwrap();
        let samples = vec![
            (
                l(&[("__name__", "a_total"), ("job", "x\"y\\z\nw")]),
                1_700_000_000_123,
                1e6,
            ),
            (
                l(&[("__name__", "a_total"), ("instance", "h:1"), ("job", "x")]),
                5,
                0.25,
            ),
            (l(&[("__name__", "b"), ("dc", "own")]), -3, f64::NAN),
            (
                // UTF-8 names can reach storage through OpenMetrics; the text format cannot
                // carry them.
                Labels::from_sorted_unchecked(vec![
                    ("__name__".into(), "1bad.name".into()),
                    ("lé".into(), "v".into()),
                ]),
                7,
                -2.0,
            ),
        ];
        let ext = vec![
            ("dc".to_string(), "eu".to_string()),
            ("instance".to_string(), String::new()),
        ];
        assert_eq!(
            render(&samples, &ext),
            "# TYPE a_total untyped\n\
             a_total{job=\"x\\\"y\\\\z\\nw\",dc=\"eu\",instance=\"\"} 1e+06 1700000000123\n\
             a_total{instance=\"h:1\",job=\"x\",dc=\"eu\"} 0.25 5\n\
             # TYPE b untyped\n\
             b{dc=\"own\",instance=\"\"} NaN -3\n\
             # TYPE _bad_name untyped\n\
             _bad_name{l_=\"v\",dc=\"eu\",instance=\"\"} -2 7\n"
        );
    }
}
