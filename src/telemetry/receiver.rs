//! The remote write receiver's counters: typed `prometheus-client` families the write handler
//! records each decoded request into and every render registers. Requests by status code are
//! the HTTP families' (`handler="/api/v1/write"`).

use std::sync::OnceLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::remote_write::receive::{Received, Reject};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

struct ReceiverMetrics {
    samples: Counter,
    appended: Counter,
    duplicates_ignored: Counter,
    rejected: Family<ReasonLabel, Counter>,
    exemplars: Counter,
    metadata: Counter,
}

fn metrics() -> &'static ReceiverMetrics {
    static METRICS: OnceLock<ReceiverMetrics> = OnceLock::new();
    METRICS.get_or_init(|| {
        let m = ReceiverMetrics {
            samples: Counter::default(),
            appended: Counter::default(),
            duplicates_ignored: Counter::default(),
            rejected: Family::default(),
            exemplars: Counter::default(),
            metadata: Counter::default(),
        };
        // Every reason from the start, so a rate over a reason that never happened reads 0.
        for r in Reject::ALL {
            let _ = m
                .rejected
                .get_or_create(&ReasonLabel { reason: r.as_str() });
        }
        m
    })
}

/// Records one request that decoded: its samples, what was stored and what was refused.
pub fn observe_remote_write(r: &Received) {
    let m = metrics();
    m.samples.inc_by(r.samples);
    m.appended.inc_by(r.appended);
    m.duplicates_ignored.inc_by(r.duplicates_ignored);
    m.exemplars.inc_by(r.exemplars);
    m.metadata.inc_by(r.metadata);
    for reason in Reject::ALL {
        let n = r.rejected(reason);
        if n > 0 {
            m.rejected
                .get_or_create(&ReasonLabel {
                    reason: reason.as_str(),
                })
                .inc_by(n);
        }
    }
}

/// Adds the receiver's families (shared handles) to a render's registry.
pub(super) fn register(reg: &mut Registry) {
    let m = metrics();
    reg.register(
        "tidemark_remote_write_received_samples",
        "Samples in remote write requests received at /api/v1/write, stored or not",
        m.samples.clone(),
    );
    reg.register(
        "tidemark_remote_write_received_samples_appended",
        "Received remote write samples stored",
        m.appended.clone(),
    );
    reg.register(
        "tidemark_remote_write_received_samples_duplicate_ignored",
        "Received remote write samples identical to the newest of their series (a sender's retry), ignored",
        m.duplicates_ignored.clone(),
    );
    reg.register(
        "tidemark_remote_write_received_samples_rejected",
        format!(
            "Received remote write samples refused, by reason ({}); the request is answered 400",
            Reject::ALL.map(Reject::as_str).join(", ")
        ),
        m.rejected.clone(),
    );
    reg.register(
        "tidemark_remote_write_received_exemplars",
        "Exemplars in received remote write requests, accepted and not stored",
        m.exemplars.clone(),
    );
    reg.register(
        "tidemark_remote_write_received_metadata",
        "Metric metadata entries in received remote write requests, accepted and not stored",
        m.metadata.clone(),
    );
}
