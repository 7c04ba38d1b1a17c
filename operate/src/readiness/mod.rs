//! `cicd-readiness`: the plan's success criteria ("Success Criteria": the MinimumCD Compliance
//! Checklist, DORA Metrics Targets, Operational Readiness) evaluated live against the platform.
//!
//! Every row gets a [`State`], the evidence read in this run (API reads, the phases' own plans,
//! Prometheus queries with their values) and a fix. A row is `pass` only on evidence read now;
//! rows no API can prove (runbooks reviewed, drills done) read an attestation file and say so.

mod attest;
mod credentials;
mod evaluate;
pub mod keep;
mod render;
pub mod serve;

use serde::Serialize;

pub use attest::Attestations;
pub use evaluate::evaluate;
pub use render::{html, markdown, prometheus, prometheus_from_json, text};

/// The three tables of the plan's "Success Criteria".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Section {
    Minimumcd,
    Dora,
    Operational,
}

impl Section {
    pub const ALL: [Section; 3] = [Section::Minimumcd, Section::Dora, Section::Operational];

    pub fn title(self) -> &'static str {
        match self {
            Section::Minimumcd => "MinimumCD Compliance Checklist",
            Section::Dora => "DORA Metrics Targets (30-day baseline)",
            Section::Operational => "Operational Readiness",
        }
    }

    /// The `section` label of the gauges.
    pub fn key(self) -> &'static str {
        match self {
            Section::Minimumcd => "minimumcd",
            Section::Dora => "dora",
            Section::Operational => "operational",
        }
    }
}

/// How a row came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    Pass,
    Fail,
    /// No evidence either way (no data yet, no attestation): neither counted as met nor as broken.
    Unknown,
}

impl State {
    pub fn label(self) -> &'static str {
        match self {
            State::Pass => "pass",
            State::Fail => "FAIL",
            State::Unknown => "unknown",
        }
    }

    /// The gauge's value: 1 pass, 0 fail, -1 unknown.
    pub fn gauge(self) -> i8 {
        match self {
            State::Pass => 1,
            State::Fail => 0,
            State::Unknown => -1,
        }
    }
}

/// One piece of evidence: what was read, and what it said.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Evidence {
    /// Where: an API read, a phase's plan, a Prometheus query, the attestation file.
    pub source: String,
    /// What it said, with values.
    pub value: String,
}

/// One row of a table.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub section: Section,
    /// The `check` label of the gauge, e.g. `trunk_based_development`.
    pub check: &'static str,
    /// The plan's wording, e.g. "Trunk-based development".
    pub requirement: &'static str,
    /// The plan's target, e.g. "All projects enforce".
    pub target: &'static str,
    pub state: State,
    /// For DORA rows: the performance band reached (elite, high, medium, low).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub band: Option<&'static str>,
    pub evidence: Vec<Evidence>,
    /// What to do when it is not `pass`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub fix: String,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// RFC 3339 (UTC), when the evaluation started.
    pub generated_at: String,
    /// The same as Unix seconds: the gauge `cicd_readiness_generated_timestamp_seconds`, so a
    /// report that stopped being renewed shows its age.
    pub generated_at_unix: u64,
    pub rows: Vec<Row>,
}

impl Report {
    /// Counts of pass, fail, unknown.
    pub fn counts(&self) -> (usize, usize, usize) {
        let n = |s: State| self.rows.iter().filter(|r| r.state == s).count();
        (n(State::Pass), n(State::Fail), n(State::Unknown))
    }
}
