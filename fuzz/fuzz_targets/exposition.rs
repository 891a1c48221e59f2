//! Arbitrary bytes through the exposition parser in both formats, with every accessor a
//! scraper or `import` would call. Any panic is a bug: the parser must reject, not crash.
#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;
use tidemark::scrape::parse::{Entry, Format, Parser};

fuzz_target!(|data: &[u8]| {
    for format in [Format::PrometheusText, Format::OpenMetrics] {
        let mut oks = 0usize;
        for entry in Parser::new(data, format) {
            let Ok(entry) = entry else { break };
            oks += 1;
            if let Entry::Sample(s) = entry {
                // The series text is a slice of the input, never invented.
                let input = data.as_ptr_range();
                let series = s.series().as_bytes().as_ptr_range();
                assert!(input.start <= series.start && series.end <= input.end);
                let _ = (s.name(), s.value(), s.timestamp(), s.kind(), s.line());
                let _ = s.labels().count();
                let _ = s.to_labels();
                if let Some(e) = s.exemplar() {
                    let _ = e.labels().count();
                    let _ = e.to_labels();
                }
            }
        }
        // Parsing is a pure function of the bytes, and nothing follows an error.
        let again = Parser::new(data, format).filter(Result::is_ok).count();
        assert_eq!(again, oks);
    }
});
