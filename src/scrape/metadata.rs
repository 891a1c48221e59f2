//! Metric metadata per target: the `# TYPE`, `# HELP` and `# UNIT` lines of the last successful
//! scrape, by metric family, for `/api/v1/metadata`.
//!
//! A scrape only compares what it reads with what the target had: the snapshot handed out is
//! copied only when a family's metadata changes, appears or disappears, so an unchanged
//! exposition costs a lookup per metadata line and no allocation.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::parse::{Entry, MetricType};

/// One metric family's metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metadata {
    /// The declared type; `Unknown` without a TYPE line (or `untyped`).
    pub kind: MetricType,
    /// The HELP text, unescaped; empty without one.
    pub help: String,
    /// The UNIT; empty without one.
    pub unit: String,
}

/// A target's metadata by family name.
pub type TargetMetadata = BTreeMap<String, Metadata>;

/// One target's metadata across scrapes.
#[derive(Debug, Default)]
pub struct Tracker {
    current: Arc<TargetMetadata>,
    /// Scrape in which each family was last declared.
    stamps: HashMap<String, u64>,
    iteration: u64,
}

impl Tracker {
    /// The metadata as of the last successful scrape (shared, never copied here).
    pub fn snapshot(&self) -> Arc<TargetMetadata> {
        self.current.clone()
    }

    /// Starts reading one scrape's metadata lines; nothing changes unless
    /// [`ScrapeMetadata::finish`] is called.
    pub fn scrape<'b>(&mut self) -> ScrapeMetadata<'_, 'b> {
        self.iteration += 1;
        ScrapeMetadata {
            tracker: self,
            scratch: None,
            changes: Vec::new(),
        }
    }
}

/// The lines of one family read so far; `None` fields were not declared.
struct Scratch<'b> {
    name: Cow<'b, str>,
    kind: Option<MetricType>,
    help: Option<Cow<'b, str>>,
    unit: Option<&'b str>,
}

/// One scrape's metadata lines, borrowing the body.
pub struct ScrapeMetadata<'t, 'b> {
    tracker: &'t mut Tracker,
    scratch: Option<Scratch<'b>>,
    /// Families whose metadata differs from the snapshot.
    changes: Vec<(String, Metadata)>,
}

impl<'b> ScrapeMetadata<'_, 'b> {
    /// Takes a HELP, TYPE or UNIT entry; samples are ignored.
    pub fn observe(&mut self, entry: Entry<'b>) {
        let name = match &entry {
            Entry::Help { name, .. } | Entry::Type { name, .. } | Entry::Unit { name, .. } => {
                name.clone()
            }
            Entry::Sample(_) => return,
        };
        // A family's lines come together; another name ends the previous family.
        if self.scratch.as_ref().is_some_and(|s| s.name != name) {
            self.flush();
        }
        let s = self.scratch.get_or_insert(Scratch {
            name,
            kind: None,
            help: None,
            unit: None,
        });
        match entry {
            Entry::Help { help, .. } => s.help = Some(help),
            Entry::Type { kind, .. } => s.kind = Some(kind),
            Entry::Unit { unit, .. } => s.unit = Some(unit),
            Entry::Sample(_) => {}
        }
    }

    fn flush(&mut self) {
        let Some(s) = self.scratch.take() else {
            return;
        };
        let t = &mut *self.tracker;
        let now = t.iteration;
        let name: &str = &s.name;
        let again = t.stamps.get(name) == Some(&now);
        // Declared earlier in this same scrape: later lines add to what was declared.
        let base: Option<Metadata> = if again {
            self.changes
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, m)| m.clone())
                .or_else(|| t.current.get(name).cloned())
        } else {
            None
        };
        let kind = s.kind.or(base.as_ref().map(|b| b.kind)).unwrap_or_default();
        let help: &str = match (&s.help, &base) {
            (Some(h), _) => h.as_ref(),
            (None, Some(b)) => b.help.as_str(),
            (None, None) => "",
        };
        let unit: &str = match (s.unit, &base) {
            (Some(u), _) => u,
            (None, Some(b)) => b.unit.as_str(),
            (None, None) => "",
        };
        let unchanged = t
            .current
            .get(name)
            .is_some_and(|m| m.kind == kind && m.help == help && m.unit == unit);
        if unchanged {
            self.changes.retain(|(n, _)| n != name);
        } else {
            let m = Metadata {
                kind,
                help: help.to_string(),
                unit: unit.to_string(),
            };
            match self.changes.iter_mut().find(|(n, _)| n == name) {
                Some(c) => c.1 = m,
                None => self.changes.push((name.to_string(), m)),
            }
        }
        match t.stamps.get_mut(name) {
            Some(stamp) => *stamp = now,
            None => {
                t.stamps.insert(name.to_string(), now);
            }
        }
    }

    /// The scrape succeeded: its metadata becomes the target's, families it no longer
    /// declares are dropped.
    pub fn finish(mut self) {
        self.flush();
        let t = &mut *self.tracker;
        let now = t.iteration;
        let gone: Vec<String> = t
            .stamps
            .iter()
            .filter(|(_, s)| **s != now)
            .map(|(n, _)| n.clone())
            .collect();
        if gone.is_empty() && self.changes.is_empty() {
            return;
        }
        // Copies the map only if a published snapshot still shares it.
        let map = Arc::make_mut(&mut t.current);
        for n in gone {
            t.stamps.remove(&n);
            map.remove(&n);
        }
        for (n, m) in self.changes.drain(..) {
            map.insert(n, m);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scrape::parse::{Format, Parser};

    fn scrape(t: &mut Tracker, body: &[u8], format: Format) -> bool {
        let mut m = t.scrape();
        for e in Parser::new(body, format) {
            match e {
                Ok(e) => m.observe(e),
                Err(_) => return false,
            }
        }
        m.finish();
        true
    }

    fn get(t: &Tracker, name: &str) -> Option<(MetricType, String, String)> {
        t.snapshot()
            .get(name)
            .map(|m| (m.kind, m.help.clone(), m.unit.clone()))
    }

    #[test]
    fn declarations_are_kept_per_family_and_replaced_on_change() {
        let mut t = Tracker::default();
        let body = b"# HELP a_total Requests \\\\ served.\n# TYPE a_total counter\na_total 3\n# TYPE g gauge\ng 1\nplain 2\n";
        assert!(scrape(&mut t, body, Format::PrometheusText));
        assert_eq!(
            get(&t, "a_total"),
            Some((MetricType::Counter, "Requests \\ served.".into(), "".into()))
        );
        assert_eq!(
            get(&t, "g"),
            Some((MetricType::Gauge, "".into(), "".into()))
        );
        assert_eq!(get(&t, "plain"), None);
        assert_eq!(t.snapshot().len(), 2);

        // Same exposition: the very same snapshot, nothing copied.
        let before = t.snapshot();
        assert!(scrape(&mut t, body, Format::PrometheusText));
        assert!(Arc::ptr_eq(&before, &t.snapshot()));

        // g loses its TYPE and gains HELP; a_total disappears.
        let body2 = b"# HELP g Now described.\ng 1\n";
        assert!(scrape(&mut t, body2, Format::PrometheusText));
        assert_eq!(
            get(&t, "g"),
            Some((MetricType::Unknown, "Now described.".into(), "".into()))
        );
        assert_eq!(get(&t, "a_total"), None);
        // The snapshot handed out before is untouched.
        assert_eq!(before.len(), 2);
    }

    #[test]
    fn openmetrics_units_and_split_declarations() {
        let mut t = Tracker::default();
        let body = b"# TYPE d_seconds gauge\n# UNIT d_seconds seconds\n# HELP d_seconds Delay.\nd_seconds 1.5\n# EOF\n";
        assert!(scrape(&mut t, body, Format::OpenMetrics));
        assert_eq!(
            get(&t, "d_seconds"),
            Some((MetricType::Gauge, "Delay.".into(), "seconds".into()))
        );
        // A family declared in two places of one body: the later lines add to the first.
        let body = b"# TYPE x counter\n# HELP y Y.\n# HELP x X.\n";
        assert!(scrape(&mut t, body, Format::PrometheusText));
        assert_eq!(
            get(&t, "x"),
            Some((MetricType::Counter, "X.".into(), "".into()))
        );
        assert_eq!(
            get(&t, "y"),
            Some((MetricType::Unknown, "Y.".into(), "".into()))
        );
        assert_eq!(get(&t, "d_seconds"), None);
    }

    #[test]
    fn an_unfinished_scrape_changes_nothing() {
        let mut t = Tracker::default();
        assert!(scrape(
            &mut t,
            b"# TYPE a gauge\na 1\n",
            Format::PrometheusText
        ));
        let mut m = t.scrape();
        for e in Parser::new(
            b"# TYPE a counter\n# TYPE b gauge\n",
            Format::PrometheusText,
        ) {
            m.observe(e.unwrap());
        }
        drop(m);
        assert_eq!(
            get(&t, "a"),
            Some((MetricType::Gauge, "".into(), "".into()))
        );
        assert_eq!(get(&t, "b"), None);
        // The next good scrape still drops what it does not declare.
        assert!(scrape(&mut t, b"# TYPE c gauge\n", Format::PrometheusText));
        assert_eq!(t.snapshot().keys().collect::<Vec<_>>(), vec!["c"]);
    }
}
