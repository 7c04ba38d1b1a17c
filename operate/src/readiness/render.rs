//! The report's renderings: text for a terminal, Markdown for a merge request or wiki, one
//! self-contained HTML page (no script, no external asset), and the Prometheus gauges
//! `cicd_readiness{section,check}` (1 pass, 0 fail, -1 unknown).

use std::fmt::Write as _;

use super::{Report, Row, Section, State};

fn section_rows(report: &Report, section: Section) -> impl Iterator<Item = &Row> {
    report.rows.iter().filter(move |r| r.section == section)
}

fn evidence_line(row: &Row) -> String {
    row.evidence
        .iter()
        .map(|e| format!("{}: {}", e.source, e.value))
        .collect::<Vec<_>>()
        .join(" | ")
}

pub fn text(report: &Report) -> String {
    let (pass, fail, unknown) = report.counts();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "CI/CD readiness ({}): {pass} pass, {fail} fail, {unknown} unknown",
        report.generated_at
    );
    for section in Section::ALL {
        let _ = writeln!(out, "\n{}", section.title());
        for r in section_rows(report, section) {
            let band = r.band.map(|b| format!(" [{b}]")).unwrap_or_default();
            let _ = writeln!(
                out,
                "  {:<7} {:<32} {}{band}",
                r.state.label(),
                r.requirement,
                r.target
            );
            for e in &r.evidence {
                let _ = writeln!(out, "          evidence: {}: {}", e.source, e.value);
            }
            if !r.fix.is_empty() {
                let _ = writeln!(out, "          fix: {}", r.fix);
            }
        }
    }
    out
}

fn md_cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

pub fn markdown(report: &Report) -> String {
    let (pass, fail, unknown) = report.counts();
    let mut out = format!(
        "# CI/CD readiness\n\nGenerated {}: {pass} pass, {fail} fail, {unknown} unknown.\n",
        report.generated_at
    );
    for section in Section::ALL {
        let _ = writeln!(
            out,
            "\n## {}\n\n| Requirement | Target | State | Evidence | Fix |\n|---|---|---|---|---|",
            section.title()
        );
        for r in section_rows(report, section) {
            let state = match r.band {
                Some(b) => format!("{} ({b})", r.state.label()),
                None => r.state.label().to_owned(),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                md_cell(r.requirement),
                md_cell(r.target),
                state,
                md_cell(&evidence_line(r)),
                md_cell(&r.fix)
            );
        }
    }
    out
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// One page, no script and no external asset (it opens from a file or a `ConfigMap` as it is).
pub fn html(report: &Report) -> String {
    let (pass, fail, unknown) = report.counts();
    let mut out = String::from(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>CI/CD readiness</title>\n<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:2em;width:100%}th,td{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}td.pass{background:#d4edda}td.fail{background:#f8d7da}td.unknown{background:#eee}ul{margin:0;padding-left:1.2em}</style></head><body>\n",
    );
    let _ = writeln!(
        out,
        "<h1>CI/CD readiness</h1><p>Generated {}: {pass} pass, {fail} fail, {unknown} unknown.</p>",
        esc(&report.generated_at)
    );
    for section in Section::ALL {
        let _ = writeln!(
            out,
            "<h2>{}</h2>\n<table id=\"{}\"><thead><tr><th>Requirement</th><th>Target</th><th>State</th><th>Evidence</th><th>Fix</th></tr></thead><tbody>",
            esc(section.title()),
            section.key()
        );
        for r in section_rows(report, section) {
            let class = match r.state {
                State::Pass => "pass",
                State::Fail => "fail",
                State::Unknown => "unknown",
            };
            let evidence: String = r
                .evidence
                .iter()
                .map(|e| format!("<li>{}: {}</li>", esc(&e.source), esc(&e.value)))
                .collect();
            let _ = writeln!(
                out,
                "<tr data-check=\"{}\"><td>{}</td><td>{}</td><td class=\"{class}\">{}{}</td><td><ul>{evidence}</ul></td><td>{}</td></tr>",
                r.check,
                esc(r.requirement),
                esc(r.target),
                r.state.label(),
                r.band.map(|b| format!(" ({b})")).unwrap_or_default(),
                esc(&r.fix)
            );
        }
        out.push_str("</tbody></table>\n");
    }
    out.push_str("</body></html>\n");
    out
}

/// The gauges in Prometheus' text exposition format.
pub fn prometheus(report: &Report) -> String {
    gauges(
        report
            .rows
            .iter()
            .map(|r| (r.section.key(), r.check, r.state.gauge())),
        Some(report.generated_at_unix),
    )
}

/// The gauges of a saved JSON report (what `serve` exports): rows whose labels are not plain
/// identifiers are left out, so a tampered file cannot inject series.
pub fn prometheus_from_json(report: &serde_json::Value) -> String {
    let plain = |s: &str| {
        !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    };
    let rows: Vec<(&str, &str, i8)> = report["rows"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| {
            let section = r["section"].as_str()?;
            let check = r["check"].as_str()?;
            let value = match r["state"].as_str()? {
                "pass" => 1,
                "fail" => 0,
                "unknown" => -1,
                _ => return None,
            };
            (plain(section) && plain(check)).then_some((section, check, value))
        })
        .collect();
    gauges(rows.into_iter(), report["generated_at_unix"].as_u64())
}

fn gauges<'a>(
    rows: impl Iterator<Item = (&'a str, &'a str, i8)>,
    generated: Option<u64>,
) -> String {
    let mut out = String::from(
        "# HELP cicd_readiness State of each row of the plan's success criteria: 1 pass, 0 fail, -1 unknown.\n# TYPE cicd_readiness gauge\n",
    );
    for (section, check, value) in rows {
        let _ = writeln!(
            out,
            "cicd_readiness{{section=\"{section}\",check=\"{check}\"}} {value}"
        );
    }
    if let Some(unix) = generated {
        let _ = writeln!(
            out,
            "# HELP cicd_readiness_generated_timestamp_seconds When the exported report was made (Unix seconds).\n# TYPE cicd_readiness_generated_timestamp_seconds gauge\ncicd_readiness_generated_timestamp_seconds {unix}"
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::{Evidence, Report, Row, Section, State};
    use super::*;

    fn report() -> Report {
        Report {
            generated_at: "2026-12-04T00:00:00Z".into(),
            generated_at_unix: 1_796_342_400,
            rows: vec![
                Row {
                    section: Section::Minimumcd,
                    check: "immutable_artifacts",
                    requirement: "Immutable artifacts",
                    target: "Enabled on all projects",
                    state: State::Fail,
                    band: None,
                    evidence: vec![Evidence {
                        source: "Harbor".into(),
                        value: "<script>1/2</script> | x".into(),
                    }],
                    fix: "run phase 14".into(),
                },
                Row {
                    section: Section::Dora,
                    check: "lead_time",
                    requirement: "Lead Time",
                    target: "< 1 week",
                    state: State::Pass,
                    band: Some("high"),
                    evidence: vec![Evidence {
                        source: "prometheus".into(),
                        value: "3600 seconds".into(),
                    }],
                    fix: String::new(),
                },
            ],
        }
    }

    #[test]
    fn html_escapes_evidence_and_has_three_tables() {
        let page = html(&report());
        assert_eq!(page.matches("<table").count(), 3);
        assert!(page.contains("&lt;script&gt;1/2&lt;/script&gt;"));
        assert!(!page.contains("<script>"));
    }

    #[test]
    fn gauges_and_markdown_carry_every_row() {
        let metrics = prometheus(&report());
        assert!(
            metrics
                .contains("cicd_readiness{section=\"minimumcd\",check=\"immutable_artifacts\"} 0")
        );
        assert!(metrics.contains("cicd_readiness{section=\"dora\",check=\"lead_time\"} 1"));
        assert!(metrics.contains("cicd_readiness_generated_timestamp_seconds 1796342400"));
        let saved = serde_json::to_value(report()).unwrap();
        assert_eq!(prometheus_from_json(&saved), metrics);
        let mut tampered = saved.clone();
        tampered["rows"][0]["check"] = "x\"} 1\nevil{a=\"".into();
        assert!(!prometheus_from_json(&tampered).contains("evil"));
        let md = markdown(&report());
        assert!(
            md.contains("| Lead Time | < 1 week | pass (high) |"),
            "{md}"
        );
        assert!(md.contains("\\| x"), "{md}");
    }
}
