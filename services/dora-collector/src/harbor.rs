//! Harbor's `SCANNING_COMPLETED` webhook (payload format "Default"), the source of
//! `cicd_vulnerability_count{service,severity}`.
//!
//! Shape, from Harbor's own code (goharbor/harbor, `src/pkg/notifier/model/event.go` `Payload`,
//! and `src/controller/event/handler/webhook/scan/scan.go` `constructScanImagePayload`; vendored
//! example in `fixtures/harbor/`): `{"type", "occur_at", "operator", "event_data":
//! {"resources": [{"digest", "tag", "resource_url", "scan_overview": {<report MIME type>:
//! {"scan_status", "severity", "summary": {"total", "fixable", "summary": {<severity>: n}}}}}],
//! "repository": {"name", "namespace", "repo_full_name"}}}`. Harbor sends the webhook target's
//! auth header verbatim as `Authorization` (`src/pkg/notifier/handler/notification/http_handler.go`).

use std::collections::BTreeMap;

use serde_json::Value;

use crate::facts::{Fact, PayloadError, missing, str_at};

/// Harbor's severities (`src/pkg/scan/vuln/severity.go`), the only `severity` label values.
pub const SEVERITIES: &[&str] = &["Critical", "High", "Medium", "Low", "Negligible", "Unknown"];

/// Facts of one Harbor webhook body: one [`Fact::Scan`] per scanned image with a finished
/// vulnerability report; every other event type is accepted and ignored.
pub fn from_harbor(body: &[u8], received_at: f64) -> Result<Vec<Fact>, PayloadError> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| PayloadError::NotJson(e.to_string()))?;
    let kind = str_at(&v, "/type").ok_or_else(|| missing("harbor", "type"))?;
    if kind != "SCANNING_COMPLETED" {
        return Ok(Vec::new());
    }
    let repository = str_at(&v, "/event_data/repository/name")
        .filter(|r| !r.is_empty())
        .ok_or_else(|| missing("SCANNING_COMPLETED", "event_data.repository.name"))?;
    // A repository `team/service` is the image of `service`, as a GitLab project path is.
    let service = crate::facts::service_of(repository).to_owned();
    #[allow(clippy::cast_precision_loss)]
    let at = v
        .get("occur_at")
        .and_then(Value::as_i64)
        .map_or(received_at, |t| t as f64);
    let resources = v
        .pointer("/event_data/resources")
        .and_then(Value::as_array)
        .ok_or_else(|| missing("SCANNING_COMPLETED", "event_data.resources"))?;
    let mut facts = Vec::new();
    for resource in resources {
        let Some(digest) = str_at(resource, "/digest") else {
            continue;
        };
        // One report per MIME type (the native and the generic vulnerability report); the
        // first finished one with a summary counts.
        let report = resource
            .get("scan_overview")
            .and_then(Value::as_object)
            .into_iter()
            .flat_map(|o| o.values())
            .find(|r| {
                str_at(r, "/scan_status") == Some("Success")
                    && r.pointer("/summary/summary").is_some_and(Value::is_object)
            });
        let Some(report) = report else { continue };
        let mut counts = BTreeMap::new();
        for severity in SEVERITIES {
            let n = report
                .pointer(&format!("/summary/summary/{severity}"))
                .and_then(Value::as_u64)
                .unwrap_or(0);
            counts.insert((*severity).to_owned(), n);
        }
        facts.push(Fact::Scan {
            service: service.clone(),
            digest: digest.to_owned(),
            counts,
            at,
        });
    }
    Ok(facts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vendored_payload_gives_its_counts() {
        let body = include_bytes!("../fixtures/harbor/scanning-completed.json");
        let facts = from_harbor(body, 0.0).unwrap();
        let [
            Fact::Scan {
                service,
                counts,
                at,
                digest,
            },
        ] = facts.as_slice()
        else {
            panic!("{facts:?}")
        };
        assert_eq!(service, "packet-relay");
        assert!(digest.starts_with("sha256:"));
        assert_eq!(counts["Critical"], 1);
        assert_eq!(counts["High"], 3);
        assert_eq!(counts["Negligible"], 0);
        assert!((at - 1_796_200_000.0).abs() < f64::EPSILON);
    }

    #[test]
    fn other_events_and_unfinished_scans_give_nothing() {
        assert!(
            from_harbor(br#"{"type":"PUSH_ARTIFACT"}"#, 0.0)
                .unwrap()
                .is_empty()
        );
        let running = br#"{"type":"SCANNING_COMPLETED","occur_at":1,"event_data":{"repository":{"name":"x"},"resources":[{"digest":"sha256:1","scan_overview":{"m":{"scan_status":"Running"}}}]}}"#;
        assert!(from_harbor(running, 0.0).unwrap().is_empty());
        assert_eq!(
            from_harbor(br#"{"type":"SCANNING_COMPLETED"}"#, 0.0),
            Err(missing("SCANNING_COMPLETED", "event_data.repository.name"))
        );
    }
}
