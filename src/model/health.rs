//! A scrape target's health, as Prometheus names it in `/api/v1/targets`.
//!
//! The scraper sets it, the API lists it and the self-metrics count targets by it; it lives in
//! the model because the API may not import the scraper.

use std::fmt;

/// A scrape target's health: `unknown` before its first scrape, then `up` or `down` after
/// each one.
///
/// The variants are declared in the order of their names, so sorting by health sorts as the
/// text does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Health {
    /// The last scrape failed (fetch, parse, a limit, or storing it).
    Down,
    /// Not scraped yet.
    #[default]
    Unknown,
    /// The last scrape succeeded.
    Up,
}

impl Health {
    /// Prometheus's text: `up`, `down` or `unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Up => "up",
            Health::Down => "down",
            Health::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Health {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Health; 3] = [Health::Down, Health::Unknown, Health::Up];

    #[test]
    fn prometheus_text_in_display_and_json() {
        let text: Vec<&str> = ALL.iter().map(|h| h.as_str()).collect();
        assert_eq!(text, ["down", "unknown", "up"]);
        for h in ALL {
            assert_eq!(h.to_string(), h.as_str());
            assert_eq!(
                serde_json::to_string(&h).unwrap(),
                format!("\"{}\"", h.as_str())
            );
        }
    }

    #[test]
    fn a_target_starts_unknown() {
        assert_eq!(Health::default(), Health::Unknown);
    }

    #[test]
    fn order_is_the_order_of_the_text() {
        let shuffled = [Health::Up, Health::Down, Health::Unknown];
        let mut by_value = shuffled.to_vec();
        by_value.sort();
        let mut by_text = shuffled.to_vec();
        by_text.sort_by_key(|h| h.as_str());
        assert_eq!(by_value, by_text);
    }
}
