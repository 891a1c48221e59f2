//! Arbitrary bytes through the protobuf exposition parser under every histogram setting, with
//! every accessor ingest calls, and each native histogram through `validate`. Any panic is a
//! bug: a malformed body must fail with an error naming its byte offset, not crash.
#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;
use tidemark::model::HistogramValue;
use tidemark::scrape::parse::protobuf::{ProtoItem, ProtoOptions, ProtoParser, ProtoValue};

fuzz_target!(|data: &[u8]| {
    for bits in 0..8u8 {
        let opts = ProtoOptions {
            native_histograms: bits & 1 != 0,
            keep_classic: bits & 2 != 0,
            convert_nhcb: bits & 4 != 0,
        };
        let mut p = ProtoParser::new(data, opts);
        while let Some(item) = p.next_item() {
            let item = match item {
                Ok(item) => item,
                Err(e) => {
                    // The offset points into the body (or at its end).
                    assert!(e.to_string().contains("byte"), "{e}");
                    break;
                }
            };
            if let ProtoItem::Sample(s) = item {
                assert!(s.offset() <= data.len());
                let _ = (s.series(), s.timestamp(), s.kind(), s.to_labels());
                if let ProtoValue::Histogram(h) = s.into_value() {
                    let _ = match &h {
                        HistogramValue::Int(h) => h.validate().is_ok(),
                        HistogramValue::Float(h) => h.validate().is_ok(),
                    };
                    let _ = h.to_float();
                }
            }
        }
    }
});
