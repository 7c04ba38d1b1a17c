//! Feature flags on Vault KV v2 (plan §7, Option A; docs/cicd/adrs/011-feature-flags-vault-kv.md).
//!
//! A flag is one KV v2 secret at `kv/feature-flags/<service>/<flag>` with the fields `enabled`
//! (`"true"` or `"false"`), `owner` and `description`; its age counts from the secret's creation
//! (`created_time` of its metadata).
//!
//! - [`serve`]: the read API a service's pod runs as a sidecar. It reads its service's flags from
//!   Vault every `--refresh` and answers from memory, so a Vault outage keeps the last values (and
//!   a flag never read is off): `GET /v1/flags`, `GET /v1/flags/<name>` (404 for an unknown flag),
//!   `/metrics` with the flag gauges, `/healthz`, `/readyz` (ready after the first read).
//! - [`audit`]: the weekly auditor (`CronJob` `feature-flag-auditor`): every flag of every service older
//!   than `--max-age-days`, posted to Mattermost when `MATTERMOST_WEBHOOK` is set; `--now` injects
//!   the clock.

pub mod audit;
pub mod serve;
pub mod vault;

use serde::Serialize;

/// The KV v2 mount and the folder under it.
pub const KV_MOUNT: &str = "kv";
pub const FLAGS_FOLDER: &str = "feature-flags";

/// One flag as Vault has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Flag {
    pub service: String,
    pub name: String,
    pub enabled: bool,
    pub owner: String,
    pub description: String,
    /// Days since the epoch of the secret's creation.
    #[serde(skip)]
    pub created_day: i64,
    /// `YYYY-MM-DD` of the secret's creation.
    pub created: String,
}

impl Flag {
    /// Whole days from creation to `today` (days since the epoch).
    pub fn age_days(&self, today: i64) -> i64 {
        (today - self.created_day).max(0)
    }
}

/// The Prometheus text of the flag gauges (plan §4.1 names, with `service`).
pub fn metrics_text(flags: &[Flag], today: i64, read_ok: bool) -> String {
    let mut out = String::new();
    out.push_str("# HELP cicd_feature_flag_enabled 1 when the flag is on.\n# TYPE cicd_feature_flag_enabled gauge\n");
    for f in flags {
        out.push_str(&format!(
            "cicd_feature_flag_enabled{{service=\"{}\",flag_name=\"{}\"}} {}\n",
            escape(&f.service),
            escape(&f.name),
            u8::from(f.enabled)
        ));
    }
    out.push_str("# HELP cicd_feature_flag_age_days Days since the flag was created.\n# TYPE cicd_feature_flag_age_days gauge\n");
    for f in flags {
        out.push_str(&format!(
            "cicd_feature_flag_age_days{{service=\"{}\",flag_name=\"{}\"}} {}\n",
            escape(&f.service),
            escape(&f.name),
            f.age_days(today)
        ));
    }
    out.push_str(
        "# HELP cicd_feature_flag_count Flags by state.\n# TYPE cicd_feature_flag_count gauge\n",
    );
    let mut services: Vec<&str> = flags.iter().map(|f| f.service.as_str()).collect();
    services.dedup();
    for service in services {
        for (state, on) in [("enabled", true), ("disabled", false)] {
            let n = flags
                .iter()
                .filter(|f| f.service == service && f.enabled == on)
                .count();
            out.push_str(&format!(
                "cicd_feature_flag_count{{service=\"{}\",state=\"{state}\"}} {n}\n",
                escape(service)
            ));
        }
    }
    out.push_str(&format!(
        "# HELP cicd_feature_flag_read_ok 1 when the last read from Vault succeeded.\n# TYPE cicd_feature_flag_read_ok gauge\ncicd_feature_flag_read_ok {}\n",
        u8::from(read_ok)
    ));
    out
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A service or flag name as a path segment: what Kubernetes and the catalog allow, plus `_`.
pub fn valid_segment(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flag(service: &str, name: &str, enabled: bool, created_day: i64) -> Flag {
        Flag {
            service: service.into(),
            name: name.into(),
            enabled,
            owner: "team".into(),
            description: String::new(),
            created_day,
            created: common::dates::format(created_day),
        }
    }

    #[test]
    fn gauges_carry_state_age_and_counts() {
        let flags = [flag("svc", "a", true, 100), flag("svc", "b\"x", false, 110)];
        let text = metrics_text(&flags, 130, true);
        assert!(text.contains("cicd_feature_flag_enabled{service=\"svc\",flag_name=\"a\"} 1\n"));
        assert!(text.contains("cicd_feature_flag_age_days{service=\"svc\",flag_name=\"a\"} 30\n"));
        assert!(text.contains("flag_name=\"b\\\"x\"} 0\n"), "{text}");
        assert!(text.contains("cicd_feature_flag_count{service=\"svc\",state=\"enabled\"} 1\n"));
        assert!(text.contains("cicd_feature_flag_count{service=\"svc\",state=\"disabled\"} 1\n"));
        assert!(text.contains("cicd_feature_flag_read_ok 1\n"));
    }

    #[test]
    fn segments_are_checked() {
        assert!(valid_segment("formal-greeting") && valid_segment("new_ui"));
        for bad in ["", "../x", "A", "a/b", "a b", "a%2f"] {
            assert!(!valid_segment(bad), "{bad}");
        }
    }
}
