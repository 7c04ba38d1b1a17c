//! Per-project service secrets: `kv/services/<project id>` (and anything below it).
//!
//! Each project's main and release pipelines read their own project's secrets only (templated
//! policy `ci-project-secrets`, keyed by the `id_token`'s `project_id` claim). The key is the project
//! id, not its path: `OpenBao` refuses a `/` in a templated segment ("template substitution contains
//! forbidden value"), so `services/<group>/<project>` cannot be templated.
//!
//! Before this layout, phase 13 seeded `services/<service name>` and every service's secrets were
//! readable by every main pipeline. Such a secret is copied to `services/<project id>` with
//! check-and-set 0 (never over an existing one) when its name matches a project of the group; the
//! old one stays where it is (an `ExternalSecret` may still read it), listed in the plan.
//!
//! Also here: the external identity groups that give Keycloak groups their Vault policies.

use std::collections::{BTreeMap, BTreeSet};

use common::contract::kv_service_secrets;
use common::gitlab::GitLabClient;
use common::plan::{Change, Plan};
use common::vault::VaultClient;
use serde_json::{Value, json};

use crate::desired::{Desired, HumanGroup, KvSeed, PLACEHOLDER};
use crate::settings::KV_MOUNT;

/// The keys a service's placeholder secret gets (plan §3.2).
pub const SERVICE_KEYS: &[&str] = &["database-url", "api-keys", "encryption-keys"];

/// A GitLab project a service name resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceProject {
    pub id: u64,
    pub path: String,
}

/// What GitLab and Vault say about the services' secrets.
#[derive(Debug, Clone, Default)]
pub struct ServicesObserved {
    /// Each name of `VAULT_CI_SERVICES` and each old-layout secret's name: its project, if any.
    pub projects: BTreeMap<String, Option<ServiceProject>>,
    /// Names with a secret at the old `services/<name>`.
    pub legacy: BTreeSet<String>,
    /// Project ids that already have `services/<id>`.
    pub present: BTreeSet<u64>,
}

/// An identity group as Vault has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveGroup {
    pub kind: String,
    pub policies: Vec<String>,
    /// `(alias name, mount accessor)`.
    pub alias: Option<(String, String)>,
}

/// A copy or a seed of one project's secrets.
#[derive(Debug, Clone, PartialEq)]
pub enum ServiceOp {
    /// Copy `services/<from>` to `services/<project id>` (check-and-set 0).
    Migrate {
        from: String,
        project: ServiceProject,
    },
    /// Create the placeholder `services/<project id>` of this project.
    Seed { seed: KvSeed, project_path: String },
}

fn is_new_layout(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit())
}

/// Reads the old-layout names, resolves every name to a project, and which targets exist.
pub async fn observe(
    d: &Desired,
    gitlab: &GitLabClient,
    vault: &VaultClient,
    kv_mounted: bool,
) -> anyhow::Result<ServicesObserved> {
    let mut o = ServicesObserved::default();
    if kv_mounted {
        let listed = vault
            .list(
                &format!("listing secrets under {KV_MOUNT}/services"),
                &format!("{KV_MOUNT}/metadata/services"),
            )
            .await?;
        for key in listed {
            // `42/` is a folder of the new layout; `name/` an old folder we leave alone.
            if !key.ends_with('/') && !is_new_layout(&key) {
                o.legacy.insert(key);
            }
        }
    }
    let names: BTreeSet<&String> = d.services.iter().chain(o.legacy.iter()).collect();
    let mut projects = BTreeMap::new();
    for name in names {
        let mut found = None;
        for group in &d.service_groups {
            if let Some(p) = gitlab.project(&format!("{group}/{name}")).await? {
                found = Some(ServiceProject {
                    id: p.id,
                    path: p.path_with_namespace,
                });
                break;
            }
        }
        projects.insert(name.clone(), found);
    }
    if kv_mounted {
        for project in projects.values().flatten() {
            if vault
                .kv2_metadata(KV_MOUNT, &kv_service_secrets(project.id))
                .await?
                .is_some()
            {
                o.present.insert(project.id);
            }
        }
    }
    o.projects = projects;
    Ok(o)
}

/// The pure diff: migrations first, then placeholders for configured services still without one.
pub fn diff<Op>(
    plan: &mut Plan<Op>,
    d: &Desired,
    o: &ServicesObserved,
    op: impl Fn(ServiceOp) -> Op,
) {
    let mut planned: BTreeSet<u64> = BTreeSet::new();
    for name in &o.legacy {
        match o.projects.get(name).cloned().flatten() {
            Some(project) if !o.present.contains(&project.id) && planned.insert(project.id) => {
                plan.push(Change::create(
                    "vault kv secret",
                    &format!("{KV_MOUNT}/{}", kv_service_secrets(project.id)),
                    json!({"copied_from": format!("{KV_MOUNT}/services/{name}"), "project": project.path, "check_and_set": 0, "values": "(sensitive)"}),
                    &[],
                    op(ServiceOp::Migrate {
                        from: name.clone(),
                        project,
                    }),
                ));
            }
            Some(_) => {}
            None => plan.warn(format!(
                "{KV_MOUNT}/services/{name} (old layout) matches no project {}: it stays, and no CI role reads it; move it to {KV_MOUNT}/services/<project id> by hand",
                d.service_groups
                    .iter()
                    .map(|g| format!("{g}/{name}"))
                    .collect::<Vec<_>>()
                    .join(" or ")
            )),
        }
    }
    for name in &d.services {
        match o.projects.get(name).cloned().flatten() {
            Some(project) if !o.present.contains(&project.id) && planned.insert(project.id) => {
                let seed = KvSeed {
                    path: kv_service_secrets(project.id),
                    data: SERVICE_KEYS
                        .iter()
                        .map(|k| ((*k).to_owned(), PLACEHOLDER.to_owned()))
                        .collect(),
                    placeholder: true,
                    eso_reads: true,
                };
                plan.push(Change::create(
                    "vault kv secret",
                    &format!("{KV_MOUNT}/{}", seed.path),
                    json!({"keys": SERVICE_KEYS, "placeholder": true, "project": project.path, "values": PLACEHOLDER}),
                    &[],
                    op(ServiceOp::Seed {
                        seed,
                        project_path: project.path,
                    }),
                ));
            }
            Some(_) => {}
            None => plan.warn(format!(
                "service {name} ({}) has no GitLab project {}: its secrets {KV_MOUNT}/services/<project id> are created once the project exists; rerun then",
                common::env::VAULT_CI_SERVICES,
                d.service_groups
                    .iter()
                    .map(|g| format!("{g}/{name}"))
                    .collect::<Vec<_>>()
                    .join(" or ")
            )),
        }
    }
}

/// Copies an old-layout secret (data and its custom metadata) with check-and-set 0. `false`: the
/// target was written by someone else meanwhile (theirs wins).
pub async fn migrate(
    vault: &VaultClient,
    from: &str,
    project: &ServiceProject,
) -> anyhow::Result<bool> {
    let source = format!("services/{from}");
    let data: BTreeMap<String, String> = vault
        .kv2_read(KV_MOUNT, &source)
        .await?
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| {
            let text = match v {
                Value::String(s) => s,
                other => other.to_string(),
            };
            (k, text)
        })
        .collect();
    let mut meta = vault
        .kv2_metadata(KV_MOUNT, &source)
        .await?
        .map(|m| m.custom_metadata)
        .unwrap_or_default();
    meta.insert("managed-by".into(), "cicd-buildout".into());
    meta.insert("migrated-from".into(), format!("{KV_MOUNT}/{source}"));
    meta.insert("project".into(), project.path.clone());
    create_once(vault, &kv_service_secrets(project.id), &data, &meta).await
}

/// A placeholder seed, tagged with its project.
pub async fn seed(vault: &VaultClient, seed: &KvSeed, project_path: &str) -> anyhow::Result<bool> {
    let mut meta: BTreeMap<String, String> = [
        ("managed-by".to_owned(), "cicd-buildout".to_owned()),
        ("placeholder".to_owned(), "true".to_owned()),
    ]
    .into();
    meta.insert("project".into(), project_path.to_owned());
    create_once(vault, &seed.path, &seed.data, &meta).await
}

async fn create_once(
    vault: &VaultClient,
    path: &str,
    data: &BTreeMap<String, String>,
    meta: &BTreeMap<String, String>,
) -> anyhow::Result<bool> {
    match vault.kv2_create(KV_MOUNT, path, data, meta).await {
        Ok(()) => Ok(true),
        Err(common::Error::Api {
            status: 400, body, ..
        }) if body.contains("check-and-set") => Ok(false),
        Err(e) => Err(e.into()),
    }
}

// --- People: Keycloak groups → Vault identity groups ------------------------------------------------

/// Reads each group (`identity/group/name/<name>`); `None` when absent.
pub async fn observe_groups(
    vault: &VaultClient,
    groups: &[HumanGroup],
) -> anyhow::Result<BTreeMap<String, Option<LiveGroup>>> {
    let mut out = BTreeMap::new();
    for g in groups {
        let live = vault
            .read(
                &format!("reading vault identity group {}", g.name),
                &format!("identity/group/name/{}", g.name),
            )
            .await?;
        out.insert(
            g.name.clone(),
            live.map(|v| {
                let mut policies: Vec<String> = v["policies"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|p| p.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                policies.sort();
                LiveGroup {
                    kind: v["type"].as_str().unwrap_or_default().to_owned(),
                    policies,
                    alias: v["alias"]["name"].as_str().map(|n| {
                        (
                            n.to_owned(),
                            v["alias"]["mount_accessor"]
                                .as_str()
                                .unwrap_or_default()
                                .to_owned(),
                        )
                    }),
                }
            }),
        );
    }
    Ok(out)
}

/// The pure diff of one group: create it, or fix its policies or alias. `accessor` is the mount's,
/// when the mount exists already.
pub fn group_change(
    g: &HumanGroup,
    live: Option<&LiveGroup>,
    accessor: Option<&str>,
) -> Option<(bool, Value)> {
    let wanted =
        json!({"type": "external", "policies": g.policies, "alias": g.name, "mount": g.mount});
    match live {
        None => Some((true, wanted)),
        Some(l) => {
            let alias_ok = l
                .alias
                .as_ref()
                .is_some_and(|(name, acc)| name == &g.name && accessor.is_some_and(|a| a == acc));
            (l.kind != "external" || l.policies != g.policies || !alias_ok)
                .then_some((false, wanted))
        }
    }
}

/// Creates or updates the external group, then its alias on the mount (looked up now: the mount
/// may be new in this plan).
pub async fn apply_group(vault: &VaultClient, g: &HumanGroup) -> anyhow::Result<()> {
    let accessor = vault
        .auth_mounts()
        .await?
        .get(&format!("{}/", g.mount))
        .map(|m| m.accessor.clone())
        .filter(|a| !a.is_empty())
        .ok_or_else(|| common::Error::Precondition {
            operation: format!("writing vault identity group {}", g.name),
            message: format!(
                "auth method {}/ does not exist yet: rerun `vault-cicd apply`",
                g.mount
            ),
        })?;
    vault
        .write(
            &format!("writing vault identity group {}", g.name),
            &format!("identity/group/name/{}", g.name),
            &json!({"type": "external", "policies": g.policies,
                    "metadata": {"managed-by": "cicd-buildout", "keycloak-group": g.name}}),
        )
        .await?;
    let group = vault
        .read(
            &format!("reading vault identity group {}", g.name),
            &format!("identity/group/name/{}", g.name),
        )
        .await?
        .unwrap_or_default();
    let id = group["id"].as_str().unwrap_or_default().to_owned();
    let alias_ok = group["alias"]["name"] == json!(g.name)
        && group["alias"]["mount_accessor"] == json!(accessor);
    if !alias_ok {
        match group["alias"]["id"].as_str().filter(|a| !a.is_empty()) {
            // An alias on another mount or with another name: point it at ours.
            Some(alias_id) => {
                vault
                    .write(
                        &format!("updating the alias of vault identity group {}", g.name),
                        &format!("identity/group-alias/id/{alias_id}"),
                        &json!({"name": g.name, "mount_accessor": accessor, "canonical_id": id}),
                    )
                    .await?;
            }
            None => {
                vault
                    .write(
                        &format!("creating the alias of vault identity group {}", g.name),
                        "identity/group-alias",
                        &json!({"name": g.name, "mount_accessor": accessor, "canonical_id": id}),
                    )
                    .await?;
            }
        }
    }
    Ok(())
}
