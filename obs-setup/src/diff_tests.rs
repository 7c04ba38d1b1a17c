//! The pure diff of phase 17, without servers: the collector's webhook secret in Vault, the
//! GitLab group hook, and the collector's seeded project. Plans are snapshots (`src/snapshots/`);
//! the webhook secret must never appear in them.

use std::collections::BTreeMap;

use common::gitlab::GroupHook;
use seeded_projects::seed;
use serde_json::{Value, json};

use crate::desired::{
    self, HARBOR_SECRET_KEY, HOOK_NAME, HOOK_TOKEN_METADATA, ROLLOUTS_SECRET_KEY,
    WEBHOOK_SECRET_KEY,
};
use crate::reconcile::{Observed, Op, diff};
use crate::settings::Settings;

const SECRET: &str = "known-webhook-secret-value";
const TODAY: i64 = 20_000;

fn hook(s: &Settings, id: u64) -> GroupHook {
    let fields = desired::hook_fields(s);
    let mut settings = fields.as_object().cloned().unwrap_or_default();
    settings.remove("url");
    GroupHook {
        id,
        url: s.webhook_url.clone(),
        name: Some(HOOK_NAME.into()),
        settings,
    }
}

/// Everything as phase 17 leaves it.
fn converged(s: &Settings) -> Observed {
    let wanted = crate::project::wanted(s).unwrap();
    Observed {
        group_id: 5,
        hooks: Some(vec![hook(s, 60)]),
        secret: Some(BTreeMap::from([
            (WEBHOOK_SECRET_KEY.to_owned(), json!(SECRET)),
            (
                ROLLOUTS_SECRET_KEY.to_owned(),
                json!("known-rollouts-secret"),
            ),
            (HARBOR_SECRET_KEY.to_owned(), json!("known-harbor-secret")),
        ])),
        secret_version: 1,
        metadata: BTreeMap::from([(
            HOOK_TOKEN_METADATA.to_owned(),
            desired::token_fingerprint(60, SECRET),
        )]),
        project: seed::Observed::as_seeded(&wanted, 70, TODAY),
        flags_project: seed::Observed::as_seeded(&crate::flags::wanted(s).unwrap(), 71, TODAY),
        readiness_project: seed::Observed::as_seeded(
            &crate::readiness::wanted(s).unwrap(),
            72,
            TODAY,
        ),
        auditor_policy: Some(crate::flags::auditor_policy()),
        auditor_role: Some(crate::flags::auditor_role(s)),
        k8s_auth_enabled: true,
        tier: common::gitlab::Tier::Premium,
        readiness: converged_readiness(s),
    }
}

/// The readiness report's credentials as phase 17 leaves them: one current token per group.
fn converged_readiness(s: &Settings) -> crate::readiness_access::Observed {
    let tokens = s
        .readiness_groups
        .iter()
        .enumerate()
        .map(|(i, g)| {
            let id = 900 + i as u64;
            (
                g.clone(),
                crate::readiness_access::GroupToken {
                    group_id: Some(10 + i as u64),
                    token: common::contract::PromoteTokenObserved {
                        active: Some(common::gitlab::ProjectAccessToken {
                            id,
                            name: crate::readiness_access::TOKEN_NAME.into(),
                            active: true,
                            revoked: false,
                            scopes: vec!["read_api".into()],
                            access_level: common::gitlab::access::MAINTAINER,
                            expires_at: Some(common::dates::format(TODAY + 80)),
                            token: None,
                        }),
                        stored_token_id: Some(id),
                    },
                    foreign: Vec::new(),
                },
            )
        })
        .collect();
    crate::readiness_access::Observed {
        tokens,
        stored_groups: s.readiness_groups.clone(),
        policy: Some(crate::readiness_access::policy()),
        role: Some(crate::readiness_access::role(s)),
        today: TODAY,
    }
}

fn assert_no_secret(text: &str) {
    assert!(!text.contains(SECRET), "the webhook secret leaked:\n{text}");
}

#[test]
fn noop_converged_state_plans_nothing() {
    let s = Settings::example();
    let plan = diff(&s, &converged(&s)).unwrap();
    assert!(plan.is_empty(), "{plan}");
    insta::assert_snapshot!(plan.to_string());
}

#[test]
fn create_secret_hook_and_project_on_a_fresh_platform() {
    let s = Settings::example();
    let o = Observed {
        hooks: Some(Vec::new()),
        secret: None,
        secret_version: 0,
        metadata: BTreeMap::new(),
        project: seed::Observed {
            today: TODAY,
            ..seed::Observed::default()
        },
        flags_project: seed::Observed {
            today: TODAY,
            ..seed::Observed::default()
        },
        auditor_policy: None,
        auditor_role: None,
        ..converged(&s)
    };
    let plan = diff(&s, &o).unwrap();
    assert_eq!(plan.summary().delete, 0, "{plan}");
    assert!(
        plan.summary().create >= 5,
        "secret, hook, project, tag, token: {plan}"
    );
    let mut plan = plan;
    // The seed commit lists every file of the collector's tree: keep their count.
    for change in &mut plan.changes {
        if change.diff.len() > 10 {
            change.diff = vec![format!("{} line(s)", change.diff.len())];
        }
    }
    let text = plan.to_string();
    assert_no_secret(&text);
    insta::assert_snapshot!(text);
}

#[test]
fn update_drifted_hook_fields_and_a_rotated_secret_in_place() {
    let s = Settings::example();
    let mut o = converged(&s);
    let hooks = o.hooks.as_mut().unwrap();
    hooks[0]
        .settings
        .insert("enable_ssl_verification".into(), json!(false));
    hooks[0].settings.insert("job_events".into(), json!(false));
    // The secret was rotated in Vault: the hook's token no longer matches.
    if let Some(secret) = o.secret.as_mut() {
        secret.insert(
            WEBHOOK_SECRET_KEY.to_owned(),
            json!("a-rotated-secret-value"),
        );
    }
    let plan = diff(&s, &o).unwrap();
    assert_eq!(plan.changes.len(), 1, "one hook update: {plan}");
    assert_eq!(plan.summary().update, 1, "{plan}");
    let text = plan.to_string();
    assert_no_secret(&text);
    assert!(!text.contains("a-rotated-secret-value"), "{text}");
    insta::assert_snapshot!(text);
}

#[test]
fn never_touch_what_the_phase_does_not_own() {
    let s = Settings::example();
    let mut o = converged(&s);
    // Other hooks of the group, and another key at the secret's path.
    o.hooks.as_mut().unwrap().push(GroupHook {
        id: 61,
        url: "https://ci-metrics.example.com/hook".into(),
        name: Some("someone-elses".into()),
        settings: serde_json::Map::from_iter([("push_events".to_owned(), Value::Bool(false))]),
    });
    o.secret
        .as_mut()
        .unwrap()
        .insert("database-url".into(), json!("postgres://kept"));
    let plan = diff(&s, &o).unwrap();
    assert!(plan.is_empty(), "{plan}");
    insta::assert_snapshot!(plan.to_string());
}

#[test]
fn the_readiness_reports_producer_is_this_repository_seeded_and_tagged() {
    let s = Settings::example();
    let o = Observed {
        readiness_project: seed::Observed {
            today: TODAY,
            ..seed::Observed::default()
        },
        ..converged(&s)
    };
    let plan = diff(&s, &o).unwrap();
    let names: Vec<String> = plan
        .changes
        .iter()
        .map(|c| format!("{} {}", c.resource, c.name))
        .collect();
    let tag = seeded_projects::this_repository::release_tag();
    for want in [
        "gitlab project platform_services/cicd-buildout".to_owned(),
        "gitlab release protection platform_services/cicd-buildout".to_owned(),
        "gitlab promotion token platform_services/cicd-buildout".to_owned(),
        "gitlab commit platform_services/cicd-buildout@main".to_owned(),
        format!("gitlab tag platform_services/cicd-buildout:{tag}"),
    ] {
        assert!(names.contains(&want), "{want} in {names:?}");
    }
    // Every tracked file of this checkout, the overlays naming this platform's registry.
    let files = crate::readiness::files(&s).unwrap();
    let tracked = seeded_projects::this_repository::files(&s.source_dir).unwrap();
    assert_eq!(
        files.keys().collect::<Vec<_>>(),
        tracked.keys().collect::<Vec<_>>()
    );
    let production = &files["deploy/overlays/production/kustomization.yaml"];
    assert!(
        production.contains(&format!(
            "newName: {}/platform-services/cicd-buildout\n    newTag: {tag}\n",
            s.harbor_host
        )),
        "{production}"
    );
    assert!(files[".gitlab-ci.yml"].contains("SERVICE_NAME: cicd-buildout"));
    assert!(files[".gitlab-ci.yml"].contains(&format!(
        "ref: {}",
        ci_templates_tag_of(&files[".gitlab-ci.yml"])
    )));
}

/// The library tag a pipeline file includes (the same as the collector's: one library version).
fn ci_templates_tag_of(ci: &str) -> String {
    let collector = &crate::project::files(&Settings::example()).unwrap()[".gitlab-ci.yml"];
    let tag = |text: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix("ref: "))
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(tag(ci), tag(collector), "one library version");
    tag(ci)
}

/// The readiness report's credentials (issue 21): a fresh platform plans the Vault policy, the
/// role and one read-only token per hardened group; renewal, a dropped group, a missing group and
/// a hand-made token of the same name.
#[test]
fn readiness_credentials_are_planned_per_group_and_renewed_before_expiry() {
    let mut s = Settings::example();
    s.readiness_groups = vec!["platform_services".into(), "apps/team-a".into()];
    let converged_o = converged(&s);
    assert!(diff(&s, &converged_o).unwrap().is_empty());

    let fresh = Observed {
        readiness: crate::readiness_access::Observed {
            tokens: s
                .readiness_groups
                .iter()
                .map(|g| {
                    (
                        g.clone(),
                        crate::readiness_access::GroupToken {
                            group_id: Some(5),
                            token: common::contract::PromoteTokenObserved::default(),
                            foreign: Vec::new(),
                        },
                    )
                })
                .collect(),
            stored_groups: Vec::new(),
            policy: None,
            role: None,
            today: TODAY,
        },
        ..converged(&s)
    };
    let plan = diff(&s, &fresh).unwrap();
    let names: Vec<(&str, &str)> = plan
        .changes
        .iter()
        .map(|c| (c.resource.as_str(), c.name.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("vault policy", "cicd-readiness"),
            (
                "vault kubernetes role",
                "auth/kubernetes/role/cicd-readiness"
            ),
            ("gitlab group access token", "apps/team-a/cicd-readiness"),
            (
                "gitlab group access token",
                "platform_services/cicd-readiness"
            ),
        ],
        "{plan}"
    );
    // One token per operation, each storing what it made before the next one starts.
    for change in &plan.changes {
        if let Op::ReadinessTokens(list) = &change.op {
            assert_eq!(list.len(), 1, "{plan}");
        }
    }
    assert!(
        plan.to_string().contains("Maintainer, read_api only"),
        "{plan}"
    );

    // 29 days before expiry: rotated (renewed at 30).
    let mut expiring = converged(&s);
    for t in expiring.readiness.tokens.values_mut() {
        if let Some(a) = t.token.active.as_mut() {
            a.expires_at = Some(common::dates::format(TODAY + 29));
        }
    }
    let plan = diff(&s, &expiring).unwrap();
    assert_eq!(plan.summary().update, 2, "{plan}");

    // A group no longer hardened: its token leaves the Vault secret.
    let mut narrowed = s.clone();
    narrowed.readiness_groups = vec!["platform_services".into()];
    let mut o = converged(&s);
    o.readiness.tokens.remove("apps/team-a");
    let plan = diff(&narrowed, &o).unwrap();
    assert_eq!(plan.changes.len(), 1, "{plan}");
    assert_eq!(plan.changes[0].resource, "vault secret");
    assert!(matches!(&plan.changes[0].op, Op::ReadinessTokens(l) if l.is_empty()));

    // A group phase 12 has not created yet: nothing planned, a warning. A hand-made token of the
    // same name with other rights is never adopted (a rotation would keep its rights).
    let mut o = fresh;
    o.readiness.policy = Some(crate::readiness_access::policy());
    o.readiness.role = Some(crate::readiness_access::role(&s));
    o.readiness.tokens.get_mut("apps/team-a").unwrap().group_id = None;
    o.readiness
        .tokens
        .get_mut("platform_services")
        .unwrap()
        .foreign = vec!["id 7 (api, role 50)".into()];
    let plan = diff(&s, &o).unwrap();
    let names: Vec<&str> = plan.changes.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["platform_services/cicd-readiness"], "{plan}");
    assert!(
        plan.warnings
            .iter()
            .any(|w| w.contains("no group apps/team-a")),
        "{plan}"
    );
    assert!(
        plan.warnings
            .iter()
            .any(|w| w.contains("id 7 (api, role 50)")),
        "{plan}"
    );
}

#[test]
fn readiness_vault_access_reads_its_own_secret_only() {
    let s = Settings::example();
    let policy = crate::readiness_access::policy();
    assert_eq!(policy.matches("path \"").count(), 2, "{policy}");
    assert_eq!(
        policy.matches("capabilities = [\"read\"]").count(),
        2,
        "{policy}"
    );
    assert!(policy.contains("path \"kv/data/monitoring/cicd-readiness\""));
    // Phase 14's robot for it (the hand-off: the path phase 14 writes is the one this reads).
    assert!(policy.contains(&format!(
        "path \"kv/data/{}\"",
        common::contract::KV_READINESS_HARBOR
    )));
    let role = crate::readiness_access::role(&s);
    assert_eq!(
        role["bound_service_account_names"],
        json!(["cicd-readiness"])
    );
    assert_eq!(
        role["bound_service_account_namespaces"],
        json!([s.namespace])
    );
    assert_eq!(role["token_policies"], json!(["cicd-readiness"]));
    assert_eq!(role["token_no_default_policy"], json!(true));
    // The CronJob's settings name the role; phase 17 records the tier it read.
    let cfg = common::config::PlatformConfig::example(&[]).unwrap();
    assert_eq!(
        crate::readiness::report_env(&cfg)
            .get(common::env::CICD_READINESS_VAULT_ROLE)
            .map(String::as_str),
        Some("cicd-readiness")
    );
    let mut cm = crate::readiness::env_configmap(&s);
    crate::readiness::record_tier(&mut cm, common::gitlab::Tier::Premium);
    assert_eq!(cm["data"][common::env::CICD_GITLAB_TIER], "premium");
}
