//! The preflight of phases 12–18 (plan "Script 4", phase 1): every prerequisite the phases about
//! to run need, read (never written) before the first of them starts, as one table of check,
//! status and fix.
//!
//! Each [`Prerequisite`] lists the phases that need it and the base-platform phase (0–11 of the
//! platform's `deploy-cluster.sh`) or our own phase that provides it. Only the prerequisites of the
//! selected phases are checked (`--phases`, as the driver's `--from`/`--only` select them); a
//! check whose own prerequisite failed is skipped, so one missing thing gives one red row.

mod probes;

use std::fmt::Write as _;

use serde::Serialize;

pub use probes::probe_all;

/// The phases in the driver's order.
pub const PHASES: [&str; 8] = ["12", "12b", "13", "14", "15", "16", "17", "18"];

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// The prerequisite is there.
    Ok,
    /// There, but a feature is missing; the phases go on and say what they skip.
    Warn,
    /// Missing: the run stops before any write.
    Fail,
    /// Not checked: a check it depends on failed.
    Skipped,
    /// The local sandbox has no such server (Grafana).
    NotInSandbox,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
            Status::Skipped => "skipped",
            Status::NotInSandbox => "not in the sandbox",
        }
    }
}

/// What a prerequisite is, who needs it and who provides it.
#[derive(Debug, Clone, Copy)]
pub struct Prerequisite {
    /// The check's name in the table, e.g. `Vault unsealed`.
    pub name: &'static str,
    /// The phases that need it.
    pub needed_by: &'static [&'static str],
    /// What provides it, named in the fix of a failure.
    pub provided_by: &'static str,
}

/// One row of the table.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub check: &'static str,
    /// The first selected phase that needs it.
    pub phase: &'static str,
    pub status: Status,
    /// What was read (versions, names, capabilities), or the error.
    pub detail: String,
    /// What to do, for `fail` and `warn`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub fix: String,
    pub provided_by: &'static str,
}

/// The phases `from`…18, or `only` alone (the driver's selection).
pub fn select(from: Option<&str>, only: Option<&str>) -> anyhow::Result<Vec<&'static str>> {
    let start = only.or(from).unwrap_or("12");
    let index = PHASES.iter().position(|p| *p == start).ok_or_else(|| {
        anyhow::anyhow!("there is no phase {start}: phases run 12, 12b and 13–18")
    })?;
    Ok(if only.is_some() {
        vec![PHASES[index]]
    } else {
        PHASES[index..].to_vec()
    })
}

/// Exactly the listed phases, in the driver's order.
pub fn listed(phases: &[String]) -> anyhow::Result<Vec<&'static str>> {
    for p in phases {
        if !PHASES.contains(&p.as_str()) {
            anyhow::bail!("there is no phase {p}: phases run 12, 12b and 13–18");
        }
    }
    Ok(PHASES
        .iter()
        .copied()
        .filter(|p| phases.iter().any(|x| x == p))
        .collect())
}

/// The first of `selected` that needs `p`, if any does.
pub fn first_needing(p: &Prerequisite, selected: &[&'static str]) -> Option<&'static str> {
    selected.iter().copied().find(|s| p.needed_by.contains(s))
}

/// Whether the run must stop.
pub fn failed(rows: &[Row]) -> bool {
    rows.iter().any(|r| r.status == Status::Fail)
}

/// The table for people: check, phase, status, detail; then each fix.
pub fn render_text(rows: &[Row], selected: &[&str]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Preflight of phase(s) {}: {} check(s)",
        selected.join(", "),
        rows.len()
    );
    let width = rows.iter().map(|r| r.check.len()).max().unwrap_or(5).max(5);
    let _ = writeln!(out, "{:<width$}  PHASE  {:<18}  DETAIL", "CHECK", "STATUS");
    for r in rows {
        let _ = writeln!(
            out,
            "{:<width$}  {:<5}  {:<18}  {}",
            r.check,
            r.phase,
            r.status.label(),
            r.detail
        );
    }
    let fixes: Vec<&Row> = rows.iter().filter(|r| !r.fix.is_empty()).collect();
    if !fixes.is_empty() {
        let _ = writeln!(out);
        for r in fixes {
            let _ = writeln!(out, "{} {}: {}", r.status.label(), r.check, r.fix);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_follows_the_driver() {
        assert_eq!(select(None, None).unwrap(), PHASES.to_vec());
        assert_eq!(
            select(Some("15"), None).unwrap(),
            ["15", "16", "17", "18"].to_vec()
        );
        assert_eq!(select(None, Some("12b")).unwrap(), ["12b"].to_vec());
        assert_eq!(
            listed(&["17".into(), "13".into()]).unwrap(),
            ["13", "17"].to_vec()
        );
        assert!(listed(&["19".into()]).is_err());
        assert!(
            select(Some("11"), None)
                .unwrap_err()
                .to_string()
                .contains("no phase 11")
        );
    }

    #[test]
    fn a_prerequisite_belongs_to_the_first_selected_phase_needing_it() {
        let eso = Prerequisite {
            name: "ESO CRDs",
            needed_by: &["15", "16", "17"],
            provided_by: "phase 13",
        };
        assert_eq!(first_needing(&eso, &PHASES), Some("15"));
        assert_eq!(first_needing(&eso, &["16", "17", "18"]), Some("16"));
        assert_eq!(first_needing(&eso, &["18"]), None);
    }

    #[test]
    fn the_text_table_has_one_row_per_check_and_the_fixes_below() {
        let rows = vec![
            Row {
                check: "GitLab reachable",
                phase: "12",
                status: Status::Ok,
                detail: "17.11.0-ee".into(),
                fix: String::new(),
                provided_by: "base phase 11",
            },
            Row {
                check: "Vault unsealed",
                phase: "13",
                status: Status::Fail,
                detail: "sealed".into(),
                fix: "unseal Vault".into(),
                provided_by: "base phase 2",
            },
        ];
        let text = render_text(&rows, &["12", "13"]);
        assert!(text.contains("GitLab reachable  12     ok"), "{text}");
        assert!(text.contains("FAIL Vault unsealed: unseal Vault"), "{text}");
        assert!(failed(&rows));
    }
}
