//! Choosing the parser from a response's `Content-Type`, as Prometheus 3 does.

/// The exposition formats tidemark parses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// Prometheus text format 0.0.4 (and 1.0.0, which adds quoted UTF-8 names).
    PrometheusText,
    /// OpenMetrics 1.0 text.
    OpenMetrics,
    /// The delimited protobuf format (`io.prometheus.client.MetricFamily`), read by
    /// [`super::protobuf::ProtoParser`], not by the text [`super::Parser`].
    Protobuf,
}

/// The `Accept` header a scraper sends: OpenMetrics first, then text, then anything, with
/// weights as Prometheus 3 sends them. `escaping=underscores` asks targets to rewrite UTF-8
/// names to legacy ones, the only names tidemark's label model accepts.
pub const ACCEPT_HEADER: &str = "application/openmetrics-text;version=1.0.0;escaping=underscores;q=0.6,\
application/openmetrics-text;version=0.0.1;q=0.5,\
text/plain;version=1.0.0;escaping=underscores;q=0.4,\
text/plain;version=0.0.4;q=0.3,\
*/*;q=0.2";

/// Why a `Content-Type` did not select a format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContentTypeError {
    /// The response had no (or an empty) `Content-Type`.
    #[error(
        "non-compliant scrape target sending blank Content-Type and no fallback format configured"
    )]
    Missing,
    /// The header is not a media type.
    #[error("cannot parse Content-Type {0:?} and no fallback format configured")]
    Unparsable(String),
    /// A media type no parser reads.
    #[error("unsupported Content-Type {0:?} and no fallback format configured")]
    Unsupported(String),
}

/// The outcome of [`Format::negotiate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// The format to parse the body with.
    pub format: Format,
    /// Set when the fallback was used: why, for a warning in the scrape log.
    pub fallback_reason: Option<ContentTypeError>,
}

impl Format {
    /// Lenient choice: `application/openmetrics-text` selects OpenMetrics,
    /// `application/vnd.google.protobuf` protobuf; `text/plain`, a missing header and anything
    /// else select the text format (Prometheus's behaviour with
    /// `fallback_scrape_protocol: PrometheusText0.0.4`).
    pub fn from_content_type(content_type: &str) -> Format {
        Format::negotiate(Some(content_type), Some(Format::PrometheusText)).map_or(
            // Unreachable with a fallback given; text is the safe answer regardless.
            Format::PrometheusText,
            |n| n.format,
        )
    }

    /// Prometheus 3's rule: a recognised media type selects its parser; a missing,
    /// unparsable or unsupported one uses `fallback` if configured and is an error otherwise.
    pub fn negotiate(
        content_type: Option<&str>,
        fallback: Option<Format>,
    ) -> Result<Negotiated, ContentTypeError> {
        let problem = match content_type.map(str::trim).filter(|s| !s.is_empty()) {
            None => ContentTypeError::Missing,
            Some(ct) => match media_type(ct) {
                Some(mt) if mt.eq_ignore_ascii_case("application/openmetrics-text") => {
                    return Ok(Negotiated {
                        format: Format::OpenMetrics,
                        fallback_reason: None,
                    });
                }
                // Prometheus looks at the media type only, not at `proto=` or `encoding=`.
                Some(mt) if mt.eq_ignore_ascii_case("application/vnd.google.protobuf") => {
                    return Ok(Negotiated {
                        format: Format::Protobuf,
                        fallback_reason: None,
                    });
                }
                Some(mt) if mt.eq_ignore_ascii_case("text/plain") => {
                    return Ok(Negotiated {
                        format: Format::PrometheusText,
                        fallback_reason: None,
                    });
                }
                Some(_) => ContentTypeError::Unsupported(ct.to_string()),
                None => ContentTypeError::Unparsable(ct.to_string()),
            },
        };
        match fallback {
            Some(format) => Ok(Negotiated {
                format,
                fallback_reason: Some(problem),
            }),
            None => Err(problem),
        }
    }
}

/// RFC 2045 token characters.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|c| c.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?=".contains(&c))
}

/// The `type/subtype` of a media type, or `None` when the header does not parse (a bad type or
/// a parameter that is not `token=token` or `token="quoted"`).
fn media_type(ct: &str) -> Option<&str> {
    let mut parts = ct.split(';');
    let mt = parts.next()?.trim();
    let (ty, sub) = mt.split_once('/')?;
    if !is_token(ty) || !is_token(sub) {
        return None;
    }
    for param in parts {
        let param = param.trim();
        if param.is_empty() {
            // A trailing `;` is tolerated, as Go's mime package does.
            continue;
        }
        let (k, v) = param.split_once('=')?;
        let quoted = v.len() >= 2 && v.starts_with('"') && v.ends_with('"');
        if !is_token(k.trim()) || !(quoted || is_token(v.trim())) {
            return None;
        }
    }
    Some(mt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognised_media_types() {
        let om = [
            "application/openmetrics-text",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            "Application/OpenMetrics-Text;version=0.0.1",
        ];
        for ct in om {
            assert_eq!(Format::from_content_type(ct), Format::OpenMetrics, "{ct}");
            let n = Format::negotiate(Some(ct), None).unwrap();
            assert_eq!(n.format, Format::OpenMetrics);
            assert_eq!(n.fallback_reason, None);
        }
        for ct in [
            "text/plain",
            "text/plain; version=0.0.4; charset=utf-8",
            "TEXT/PLAIN",
        ] {
            assert_eq!(
                Format::from_content_type(ct),
                Format::PrometheusText,
                "{ct}"
            );
            assert!(Format::negotiate(Some(ct), None).is_ok(), "{ct}");
        }
    }

    #[test]
    fn missing_or_unknown_falls_back_or_fails_like_prometheus() {
        assert_eq!(Format::from_content_type(""), Format::PrometheusText);
        assert_eq!(
            Format::from_content_type("application/json"),
            Format::PrometheusText
        );
        assert_eq!(
            Format::negotiate(None, None),
            Err(ContentTypeError::Missing)
        );
        assert_eq!(
            Format::negotiate(Some("  "), None),
            Err(ContentTypeError::Missing)
        );
        assert!(matches!(
            Format::negotiate(Some("application/x-protobuf"), None),
            Err(ContentTypeError::Unsupported(_))
        ));
        for bad in [
            "text",
            "text/",
            "/plain",
            "text/plain; version",
            "text plain/x",
        ] {
            assert!(
                matches!(
                    Format::negotiate(Some(bad), None),
                    Err(ContentTypeError::Unparsable(_))
                ),
                "{bad}"
            );
        }
        let n = Format::negotiate(Some("application/json"), Some(Format::OpenMetrics)).unwrap();
        assert_eq!(n.format, Format::OpenMetrics);
        assert!(matches!(
            n.fallback_reason,
            Some(ContentTypeError::Unsupported(_))
        ));
        let n = Format::negotiate(None, Some(Format::PrometheusText)).unwrap();
        assert_eq!(n.fallback_reason, Some(ContentTypeError::Missing));
    }

    #[test]
    fn protobuf_is_chosen_by_its_media_type_alone() {
        for ct in [
            "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited",
            "application/vnd.google.protobuf",
            "Application/Vnd.Google.Protobuf;proto=other",
        ] {
            let n = Format::negotiate(Some(ct), None).unwrap();
            assert_eq!(n.format, Format::Protobuf, "{ct}");
            assert_eq!(Format::from_content_type(ct), Format::Protobuf);
        }
    }

    #[test]
    fn accept_header_prefers_openmetrics() {
        let first = ACCEPT_HEADER.split(',').next().unwrap();
        assert_eq!(
            media_type(first).map(str::to_ascii_lowercase).as_deref(),
            Some("application/openmetrics-text")
        );
        assert!(ACCEPT_HEADER.split(',').all(|p| media_type(p).is_some()));
    }
}
