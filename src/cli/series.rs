//! `tidemark series`: the label sets of the series matching selectors, from a data directory
//! (read-only) or a running agent's `/api/v1/series`.

use anyhow::Context;

use super::parse_selector;
use super::query::{Format, Output, Source, Target, emit, open_dir, print_annotations};
use super::remote::Remote;
use crate::api::json;
use crate::model::{Labels, Matcher, parse_time};

#[derive(clap::Args)]
pub(super) struct Args {
    /// Series selectors, e.g. `up{job="node"}`; series matching any of them are listed.
    #[arg(required = true)]
    matchers: Vec<String>,
    #[command(flatten)]
    source: Source,
    /// Only series with samples at or after this time (RFC 3339 or Unix seconds).
    #[arg(long)]
    start: Option<String>,
    /// Only series with samples at or before this time (RFC 3339 or Unix seconds).
    #[arg(long)]
    end: Option<String>,
    #[command(flatten)]
    output: Output,
}

pub(super) fn run(a: Args) -> anyhow::Result<()> {
    let start = a
        .start
        .as_deref()
        .map(|s| parse_time(s).context("--start"))
        .transpose()?;
    let end = a
        .end
        .as_deref()
        .map(|s| parse_time(s).context("--end"))
        .transpose()?;
    if let (Some(s), Some(e)) = (start, end) {
        anyhow::ensure!(e >= s, "--end must not be before --start");
    }
    // Checked here too for --url, so a typo fails the same way whatever the source.
    let selectors: Vec<Vec<Matcher>> = a
        .matchers
        .iter()
        .map(|m| parse_selector(m))
        .collect::<anyhow::Result<_>>()?;
    let all = match a.source.target() {
        Target::Dir(dir) => {
            let db = open_dir(&dir)?;
            let q = db.querier();
            let (mint, maxt) = (start.unwrap_or(i64::MIN), end.unwrap_or(i64::MAX));
            let mut all: Vec<Labels> = Vec::new();
            for m in &selectors {
                all.extend(q.series(m, mint, maxt)?);
            }
            all.sort_unstable();
            all.dedup();
            all
        }
        Target::Url(url) => {
            let remote = Remote::new(&url, None)?;
            let mut params: Vec<(&str, String)> =
                a.matchers.iter().map(|m| ("match[]", m.clone())).collect();
            params.extend(start.map(|s| ("start", json::format_ts(s))));
            params.extend(end.map(|e| ("end", json::format_ts(e))));
            let answer = remote.post("/api/v1/series", &params)?;
            print_annotations(&answer.warnings, &answer.infos);
            let list = answer
                .data
                .as_array()
                .with_context(|| format!("unexpected answer from {url}: data is not a list"))?;
            list.iter()
                .map(json::read_labels)
                .collect::<Result<_, _>>()
                .with_context(|| format!("unexpected answer from {url}"))?
        }
    };
    match a.output.format() {
        Format::Json => emit(json_label_list(&all)),
        Format::Table => {
            let text: String = all.iter().map(|l| format!("{l}\n")).collect();
            emit(text)
        }
    }
}

/// Label sets as the API lists them, for `series --format json`.
fn json_label_list(all: &[Labels]) -> Vec<u8> {
    let mut out = b"[".to_vec();
    for (i, l) in all.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        json::write_labels(&mut out, l);
    }
    out.extend_from_slice(b"]\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_lists_as_the_api_writes_them() {
        assert_eq!(json_label_list(&[]), b"[]\n");
        let all = [
            Labels::new([("__name__", "up"), ("path", "/a<b>&\"c")]).unwrap(),
            Labels::empty(),
        ];
        assert_eq!(
            String::from_utf8(json_label_list(&all)).unwrap(),
            "[{\"__name__\":\"up\",\"path\":\"/a\\u003cb\\u003e\\u0026\\\"c\"},{}]\n"
        );
    }
}
