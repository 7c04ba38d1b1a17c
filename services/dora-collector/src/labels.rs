//! Bounded label values. Every label of a `cicd_*` series comes from a closed set or passes a
//! cap, so that no sender — a project with generated stage names, dynamic `review/*`
//! environments, a flood of forged-but-authenticated events — can grow the series (and the
//! memory of a collector that replays its whole store at start) without bound. What does not fit
//! is folded into [`OTHER`].

use std::collections::HashSet;

/// The value a label takes when its own value is not admitted.
pub const OTHER: &str = "other";

/// GitLab's environment tiers (`deployment_tier`), the only `environment` label values.
pub const TIERS: &[&str] = &["production", "staging", "testing", "development", "other"];

/// The stages of the platform's template library, always kept (`pipeline`, the whole run, is
/// the collector's own label and never capped).
pub const LIBRARY_STAGES: &[&str] = common::ci_library::LIBRARY_STAGES;

/// The environment tier of a deployment: GitLab's own `environment_tier` when the event has
/// one, else what GitLab itself would guess from the name (GitLab "Deployment tier of
/// environments": production/staging/testing/development by name patterns, else other).
pub fn tier(name: &str, given: Option<&str>) -> &'static str {
    if let Some(t) = given.and_then(|g| TIERS.iter().find(|t| **t == g)) {
        return t;
    }
    let n = name.to_ascii_lowercase();
    let first = n.split(['/', '-', '_']).next().unwrap_or_default();
    match first {
        "production" | "prod" | "live" => "production",
        "staging" | "stage" | "model" | "pre" | "demo" => "staging",
        "test" | "testing" | "qa" | "ephemeral" => "testing",
        "dev" | "development" | "review" | "trunk" | "mr" => "development",
        _ if n.contains("prod") => "production",
        _ if n.contains("stag") => "staging",
        _ => "other",
    }
}

/// Admits the first `cap` distinct values it sees (plus the always-kept ones); later new values
/// become [`OTHER`]. Replaying the store in order admits the same values again.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct LabelCap {
    cap: usize,
    /// Code, not data: set again after a checkpoint is read ([`LabelCap::keep_always`]).
    #[serde(skip)]
    always: &'static [&'static str],
    admitted: HashSet<String>,
}

impl LabelCap {
    pub fn new(cap: usize, always: &'static [&'static str]) -> Self {
        Self {
            cap,
            always,
            admitted: HashSet::new(),
        }
    }

    /// The label value to use for `value`.
    pub fn admit(&mut self, value: &str) -> String {
        if self.always.contains(&value) || self.admitted.contains(value) {
            return value.to_owned();
        }
        if self.admitted.len() < self.cap && value != OTHER {
            self.admitted.insert(value.to_owned());
            return value.to_owned();
        }
        OTHER.to_owned()
    }

    pub fn cap(&self) -> usize {
        self.cap
    }

    pub fn keep_always(&mut self, always: &'static [&'static str]) {
        self.always = always;
    }

    /// Values admitted beyond the always-kept ones.
    pub fn admitted(&self) -> usize {
        self.admitted.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environments_become_tiers() {
        assert_eq!(tier("review/feature-x", None), "development");
        assert_eq!(tier("production", None), "production");
        assert_eq!(tier("prod-eu", None), "production");
        assert_eq!(tier("staging", None), "staging");
        assert_eq!(tier("anything", Some("production")), "production");
        assert_eq!(tier("anything", Some("bogus")), "other");
        assert_eq!(tier("ephemeral/mr-12", None), "testing");
    }

    #[test]
    fn a_cap_folds_new_values_into_other() {
        let mut cap = LabelCap::new(2, LIBRARY_STAGES);
        assert_eq!(cap.admit("build"), "build");
        assert_eq!(cap.admit("a"), "a");
        assert_eq!(cap.admit("b"), "b");
        assert_eq!(cap.admit("c"), OTHER);
        assert_eq!(cap.admit("a"), "a");
        assert_eq!(cap.admitted(), 2);
    }
}
