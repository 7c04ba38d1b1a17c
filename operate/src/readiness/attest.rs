//! The attestation file: what no API can prove ("All runbooks reviewed by ops team", rollback
//! drills), recorded by people, read by the report and quoted as its evidence.
//!
//! ```yaml
//! attestations:
//!   - check: documentation          # the row's `check`
//!     by: ops-team (j.doe)
//!     date: 2026-11-30
//!     value: 8                      # optional: drills done, drill seconds, …
//!     note: runbooks 1–8 reviewed in the ops review
//! ```
//!
//! An attestation older than [`MAX_AGE_DAYS`] no longer counts.

use serde::Deserialize;

/// Attestations older than this (days) are stale.
pub const MAX_AGE_DAYS: i64 = 90;

#[derive(Debug, Clone, Deserialize)]
pub struct Attestation {
    pub check: String,
    pub by: String,
    /// `YYYY-MM-DD`.
    pub date: String,
    #[serde(default)]
    pub value: Option<f64>,
    #[serde(default)]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Attestations {
    #[serde(default)]
    pub attestations: Vec<Attestation>,
    /// Where they were read from (for the evidence).
    #[serde(skip)]
    pub source: String,
}

/// What the file says about one check.
pub enum Attested<'a> {
    /// Nothing recorded.
    Missing,
    /// Recorded, but older than [`MAX_AGE_DAYS`] or with an unreadable date.
    Stale(&'a Attestation),
    Current(&'a Attestation),
}

impl Attestations {
    /// Reads `path` (YAML); a missing file is an empty set, an unreadable one an error.
    pub fn load(path: Option<&std::path::Path>) -> anyhow::Result<Self> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let text = std::fs::read_to_string(path).map_err(|e| {
            anyhow::anyhow!(
                "reading the attestation file {}: {e} (create it, or drop --attestations)",
                path.display()
            )
        })?;
        let mut parsed: Self = serde_saphyr::from_str(&text).map_err(|e| {
            anyhow::anyhow!(
                "parsing the attestation file {}: {e} (see docs/cicd/runbooks for its format)",
                path.display()
            )
        })?;
        parsed.source = path.display().to_string();
        Ok(parsed)
    }

    /// The newest attestation of `check`, judged against `today` (days since the epoch).
    pub fn of(&self, check: &str, today: i64) -> Attested<'_> {
        let newest = self
            .attestations
            .iter()
            .filter(|a| a.check == check)
            .max_by(|a, b| a.date.cmp(&b.date));
        match newest {
            None => Attested::Missing,
            Some(a) => match common::dates::parse(&a.date) {
                Some(day) if today - day <= MAX_AGE_DAYS && day <= today => Attested::Current(a),
                _ => Attested::Stale(a),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_newest_current_attestation_counts() {
        let text = "attestations:\n  - check: documentation\n    by: ops\n    date: 2026-01-01\n  - check: documentation\n    by: ops-team\n    date: 2026-11-30\n    note: reviewed\n  - check: rollback_tested\n    by: sre\n    date: 2025-01-01\n    value: 3\n";
        let a: Attestations = serde_saphyr::from_str(text).unwrap();
        let today = common::dates::parse("2026-12-04").unwrap();
        assert!(matches!(a.of("documentation", today), Attested::Current(x) if x.by == "ops-team"));
        assert!(matches!(a.of("rollback_tested", today), Attested::Stale(_)));
        assert!(matches!(a.of("alerting", today), Attested::Missing));
    }
}
