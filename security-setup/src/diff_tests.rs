//! The pure diff of phase 16, without servers: the four runner pools, Harbor's scanning
//! settings and alerts, the scan-all schedule and the CVE allow-list. Plans are snapshots
//! (`src/snapshots/`); the Mattermost address is a secret and must never appear in them.

use common::config::PlatformConfig;
use common::gitlab::Runner;
use serde_json::{Value, json};

use crate::desired::{self, POOLS};
use crate::reconcile::{HarborProjectState, Observed, PoolRunner, diff};
use crate::settings::Settings;

const MATTERMOST: &str = "https://chat.example.com/hooks/known-secret-hook-id";

fn settings() -> Settings {
    Settings::load(&PlatformConfig::example(&[]).unwrap()).unwrap()
}

fn runner(s: &Settings, i: usize) -> Runner {
    let mut view = desired::runner_view(s, &POOLS[i]);
    view["id"] = json!(500 + i);
    view["runner_type"] = json!("group_type");
    serde_json::from_value(view).unwrap()
}

/// Everything as phase 16 leaves it, with alerts to Mattermost configured.
fn converged(s: &Settings) -> Observed {
    let metadata = desired::project_metadata(s)
        .into_iter()
        .map(|(k, v)| (k.to_owned(), Value::String(v)))
        .collect();
    let mut webhook = desired::webhook_policy(MATTERMOST);
    webhook["id"] = json!(7);
    let mut dora = desired::dora_webhook_policy(
        s.dora_webhook_url
            .as_deref()
            .unwrap_or("https://dora.example.com/webhooks/harbor"),
        DORA_SECRET,
    );
    dora["id"] = json!(8);
    let projects = ["platform-services", "application-services"]
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let state = HarborProjectState {
                id: 40 + i as u64,
                metadata: Map::clone(&metadata),
                webhook: Some(webhook.clone()),
                dora_webhook: Some(dora.clone()),
            };
            ((*name).to_owned(), state)
        })
        .collect();
    Observed {
        group_id: 3,
        runners: (0..POOLS.len())
            .map(|i| PoolRunner {
                pool: &POOLS[i],
                runner: Some(runner(s, i)),
                runners_with_description: 1,
                token_stored: true,
            })
            .collect(),
        bash_runners: crate::runner_leftovers::Found::default(),
        projects,
        scan_schedule: desired::scan_all_schedule(s),
        allowlist: desired::cve_allowlist(s),
        mattermost: Some(MATTERMOST.to_owned().into()),
        dora: crate::reconcile::DoraSecret {
            version: Some(3),
            secret: Some(DORA_SECRET.to_owned().into()),
        },
        public_key: "-----BEGIN PUBLIC KEY-----\n…\n-----END PUBLIC KEY-----\n".into(),
        cilium_served: true,
        kyverno_served: true,
        helm_release: crate::helm_leftover::LiveRelease::default(),
    }
}

type Map = serde_json::Map<String, Value>;

const DORA_SECRET: &str = "known-dora-harbor-secret-5a1c";

/// Phase 16 registers the collector's scan webhook in every scanned project, with a Harbor
/// secret it generates when Vault has none (phase 17, which owns the other keys, runs later).
#[test]
fn the_dora_scan_webhook_and_its_secret() {
    let s = settings();
    let mut o = converged(&s);
    o.dora = crate::reconcile::DoraSecret {
        version: Some(2),
        secret: None,
    };
    for state in o.projects.values_mut() {
        state.dora_webhook = None;
    }
    let plan = diff(&s, &o).unwrap();
    let titles: Vec<String> = plan
        .changes
        .iter()
        .map(|c| format!("{} {}", c.resource, c.name))
        .collect();
    assert_eq!(
        titles,
        [
            "vault secret kv/monitoring/dora-collector",
            "harbor webhook application-services: dora-collector-scans",
            "harbor webhook platform-services: dora-collector-scans",
        ],
        "{plan}"
    );
    assert!(matches!(
        plan.changes[0].op,
        crate::reconcile::Op::CreateDoraSecret { version: Some(2) }
    ));
    let text = plan.to_string();
    assert!(!text.contains(DORA_SECRET), "{text}");
    // A rotated secret updates both policies, and shows no secret.
    let mut o = converged(&s);
    o.dora.secret = Some("a-rotated-harbor-secret".to_owned().into());
    let plan = diff(&s, &o).unwrap();
    assert_eq!(plan.changes.len(), 2, "{plan}");
    assert!(!plan.to_string().contains("a-rotated-harbor-secret"));
    // No URL for the collector: no policy, no secret.
    let mut s = settings();
    s.dora_webhook_url = None;
    let mut o = converged(&s);
    o.dora = crate::reconcile::DoraSecret::default();
    assert!(diff(&s, &o).unwrap().changes.is_empty());
}

fn assert_no_secret(text: &str) {
    assert!(
        !text.contains("known-secret-hook-id"),
        "the Mattermost address leaked into the plan:\n{text}"
    );
}

#[test]
fn noop_converged_state_plans_nothing() {
    let s = settings();
    let plan = diff(&s, &converged(&s)).unwrap();
    assert!(plan.is_empty(), "{plan}");
    assert!(plan.warnings.is_empty(), "{:?}", plan.warnings);
    insta::assert_snapshot!(plan.to_string());
}

#[test]
fn create_runners_webhooks_and_schedule_on_a_fresh_platform() {
    let s = settings();
    let mut o = converged(&s);
    for pool in &mut o.runners {
        pool.runner = None;
        pool.token_stored = false;
    }
    for project in o.projects.values_mut() {
        project.metadata.clear();
        project.webhook = None;
    }
    o.scan_schedule = json!({});
    o.allowlist = json!({"items": [], "expires_at": null});
    let plan = diff(&s, &o).unwrap();
    assert_eq!(plan.summary().delete, 0, "{plan}");
    assert_eq!(
        plan.summary().create,
        POOLS.len() + o.projects.len() + 1,
        "a runner per pool, a webhook per project, the schedule: {plan}"
    );
    let text = plan.to_string();
    assert_no_secret(&text);
    insta::assert_snapshot!(text);
}

#[test]
fn update_drifted_fields_in_place() {
    let s = settings();
    let mut o = converged(&s);
    // A runner unlocked and retagged by hand, scan-on-push switched off, the webhook pointed
    // elsewhere, a CVE allow-listed by hand with an expiry.
    if let Some(r) = o.runners[1].runner.as_mut() {
        r.locked = false;
        r.tag_list.push("gpu".into());
    }
    let platform = o.projects.get_mut("platform-services").unwrap();
    platform.metadata.insert("auto_scan".into(), json!("false"));
    if let Some(w) = platform.webhook.as_mut() {
        w["targets"][0]["address"] = json!("https://chat.example.com/hooks/other-secret-hook");
    }
    o.allowlist = json!({"items": [{"cve_id": "CVE-2024-0001"}], "expires_at": 1_900_000_000});
    let plan = diff(&s, &o).unwrap();
    assert_eq!(plan.summary().create, 0, "{plan}");
    assert_eq!(plan.summary().delete, 0, "{plan}");
    assert_eq!(plan.summary().update, 4, "{plan}");
    let text = plan.to_string();
    assert_no_secret(&text);
    assert!(!text.contains("other-secret-hook"), "{text}");
    insta::assert_snapshot!(text);
}

#[test]
fn never_touch_what_the_phase_does_not_own() {
    let s = settings();
    let mut o = converged(&s);
    // Harbor metadata the phase does not set, and a second runner with a pool's description
    // (reported, never deleted).
    for project in o.projects.values_mut() {
        project
            .metadata
            .insert("enable_content_trust".into(), json!("true"));
        project.metadata.insert("retention_id".into(), json!("12"));
    }
    o.runners[0].runners_with_description = 2;
    o.cilium_served = false;
    o.kyverno_served = false;
    let plan = diff(&s, &o).unwrap();
    assert!(plan.is_empty(), "{plan}");
    assert_eq!(
        plan.warnings.len(),
        3,
        "duplicate runner, Cilium, Kyverno: {plan}"
    );
    insta::assert_snapshot!(plan.to_string());
}
