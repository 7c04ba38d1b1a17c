//! The stale-flag auditor (plan §7.2): every flag older than the limit, of every service.

use anyhow::Context as _;
use serde::Serialize;

use crate::Flag;
use crate::vault::FlagStore;

/// One flag past the limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Stale {
    #[serde(flatten)]
    pub flag: Flag,
    pub age_days: i64,
}

/// The audit's result.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub today: String,
    pub max_age_days: i64,
    pub flags_checked: usize,
    pub stale: Vec<Stale>,
}

impl Report {
    /// The pure decision over flags already read.
    pub fn of(flags: &[Flag], today: i64, max_age_days: i64) -> Self {
        let mut stale: Vec<Stale> = flags
            .iter()
            .filter(|f| f.age_days(today) > max_age_days)
            .map(|f| Stale {
                flag: f.clone(),
                age_days: f.age_days(today),
            })
            .collect();
        stale.sort_by(|a, b| {
            b.age_days
                .cmp(&a.age_days)
                .then(a.flag.name.cmp(&b.flag.name))
        });
        Self {
            today: common::dates::format(today),
            max_age_days,
            flags_checked: flags.len(),
            stale,
        }
    }

    /// The text report (and the Mattermost message).
    pub fn text(&self) -> String {
        let mut out = format!(
            "feature-flag audit {}: {} flag(s) checked, {} older than {} days\n",
            self.today,
            self.flags_checked,
            self.stale.len(),
            self.max_age_days
        );
        for s in &self.stale {
            out.push_str(&format!(
                "- {}/{}: {} days (created {}, {}, owner {}): remove it from the code, then `vault kv metadata delete kv/feature-flags/{}/{}`\n",
                s.flag.service,
                s.flag.name,
                s.age_days,
                s.flag.created,
                if s.flag.enabled { "on" } else { "off" },
                if s.flag.owner.is_empty() { "unknown" } else { &s.flag.owner },
                s.flag.service,
                s.flag.name
            ));
        }
        out
    }
}

/// Reads every service's flags and builds the report.
pub async fn run(store: &FlagStore, today: i64, max_age_days: i64) -> anyhow::Result<Report> {
    let mut flags = Vec::new();
    for service in store.services().await? {
        flags.extend(store.flags(&service).await?);
    }
    Ok(Report::of(&flags, today, max_age_days))
}

/// Posts the report to a Mattermost incoming webhook (`{"text": …}`), only when something is stale.
pub async fn notify(webhook: &str, report: &Report) -> anyhow::Result<()> {
    if report.stale.is_empty() {
        return Ok(());
    }
    let response = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()?
        .post(webhook)
        .json(&serde_json::json!({"text": report.text()}))
        .send()
        .await
        .context("posting the audit to MATTERMOST_WEBHOOK: no answer")?;
    anyhow::ensure!(
        response.status().is_success(),
        "{} from MATTERMOST_WEBHOOK posting the audit: check the webhook URL",
        response.status()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_flags_past_the_limit_are_stale() {
        let f = |name: &str, created_day: i64| Flag {
            service: "svc".into(),
            name: name.into(),
            enabled: true,
            owner: String::new(),
            description: String::new(),
            created_day,
            created: common::dates::format(created_day),
        };
        let flags = [f("old", 1000), f("edge", 1010), f("new", 1099)];
        let report = Report::of(&flags, 1100, 90);
        let names: Vec<&str> = report.stale.iter().map(|s| s.flag.name.as_str()).collect();
        assert_eq!(names, ["old"], "90 days is not over 90");
        assert_eq!(report.stale[0].age_days, 100);
        assert!(report.text().contains("svc/old: 100 days"));
        assert_eq!(Report::of(&flags, 1101, 90).stale.len(), 2);
    }
}
