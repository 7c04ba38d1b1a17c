//! The pure diff of phase 12: what to change so GitLab matches the desired state.

#[allow(clippy::wildcard_imports)]
// the reconcile module's types and imports, one module split in two
use super::*;
use codeowners::CodeownersState;

/// The protected-branch view shown in plans.
fn branch_view(b: &ProtectedBranch, tier: Tier) -> Value {
    let roles = |levels: &[AccessLevelEntry]| -> Vec<u8> {
        levels
            .iter()
            .filter(|e| e.is_role())
            .map(|e| e.access_level)
            .collect()
    };
    let mut v = json!({
        "push_access_levels": roles(&b.push_access_levels),
        "merge_access_levels": roles(&b.merge_access_levels),
        "unprotect_access_levels": roles(&b.unprotect_access_levels),
        "allow_force_push": b.allow_force_push,
    });
    if tier.is_paid() {
        v["code_owner_approval_required"] = b.code_owner_approval_required.into();
    }
    v
}

fn desired_branch_view(d: &BranchProtection) -> Value {
    let mut v = json!({
        "push_access_levels": [d.push_access_level],
        "merge_access_levels": [d.merge_access_level],
        "unprotect_access_levels": [d.unprotect_access_level],
        "allow_force_push": d.allow_force_push,
    });
    if let Some(c) = d.code_owner_approval_required {
        v["code_owner_approval_required"] = c.into();
    }
    v
}

/// The `allowed_to_*` changes that leave exactly one role entry at `want`, editing the existing
/// entry in place (`{id, access_level}`) and destroying extra role entries; `None` if already so.
fn access_changes(observed: &[AccessLevelEntry], want: u8) -> Option<Vec<Value>> {
    let roles: Vec<&AccessLevelEntry> = observed.iter().filter(|e| e.is_role()).collect();
    if roles.len() == 1 && roles[0].access_level == want {
        return None;
    }
    let mut changes = Vec::new();
    match roles.first().and_then(|e| e.id) {
        Some(id) => changes.push(json!({"id": id, "access_level": want})),
        None => changes.push(json!({"access_level": want})),
    }
    for extra in roles.iter().skip(1) {
        if let Some(id) = extra.id {
            changes.push(json!({"id": id, "_destroy": true}));
        }
    }
    Some(changes)
}

fn rule_view(rule: &ApprovalRule) -> Value {
    let mut groups: Vec<&str> = rule.groups.iter().map(|g| g.full_path.as_str()).collect();
    groups.sort_unstable();
    let mut users: Vec<String> = rule
        .users
        .iter()
        .filter_map(|u| u["username"].as_str().map(str::to_owned))
        .collect();
    users.sort();
    json!({
        "approvals_required": rule.approvals_required,
        "groups": groups,
        "users": users,
        "protected_branches": rule.protected_branches.iter().map(|b| b.name.as_str()).collect::<Vec<_>>(),
        "applies_to_all_protected_branches": rule.applies_to_all_protected_branches,
    })
}

fn spec_view(rule: &RuleSpec) -> Value {
    json!({
        "approvals_required": rule.approvals_required,
        "groups": rule.groups,
        "users": [],
        "protected_branches": [MAIN_BRANCH],
        "applies_to_all_protected_branches": false,
    })
}

/// Names up to five paths, then how many more.
fn some_paths(paths: &[String]) -> String {
    let mut text = paths.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
    if paths.len() > 5 {
        text.push_str(&format!(" and {} more", paths.len() - 5));
    }
    text
}

/// The pure diff: what to change so GitLab matches the desired state.
pub fn diff(desired: &Desired, o: &Observed) -> anyhow::Result<Plan<Op>> {
    let (settings, prune) = (&desired.settings, desired.prune);
    let mut plan = Plan::new(PHASE_NAME);
    let tier = o.tier;
    if !tier.is_paid() && !o.projects.is_empty() {
        for feature in [
            "approval rules (Senior Review Required, Production Approval) need GitLab Premium: skipped",
            "approval settings (no author approval, committers cannot approve, reset on push) need GitLab Premium: skipped",
            "code-owner approval on protected main needs GitLab Premium: skipped",
            "merge trains and merged results pipelines need GitLab Premium: skipped",
        ] {
            plan.warn(format!("GitLab Free: {feature}"));
        }
    }

    // Approver groups (Premium): the parent, then the mirrors, created before rules use them.
    for (path, group) in &o.groups {
        if group.is_none() {
            plan.push(Change::create(
                "gitlab group",
                path,
                json!({"visibility": "private", "purpose": "approver group mirrored from Keycloak"}),
                &[],
                Op::CreateGroup { path: path.clone() },
            ));
        }
    }

    let want_settings = Value::Object(desired::project_settings(settings, tier));
    let want_branch = desired::branch_protection(tier);
    let want_approvals = Value::Object(desired::approval_settings());
    let mut frozen_levels = Vec::new();
    let mut empty_repositories: Vec<String> = Vec::new();
    for state in &o.projects {
        let p = &state.project;
        let path = &p.path_with_namespace;
        let have = Value::Object(p.settings.clone());
        if let Some((before, after)) = changed_fields(&have, &want_settings) {
            plan.push(Change::update(
                "project settings",
                path,
                before,
                after.clone(),
                &[],
                Op::EditProject {
                    project: p.id,
                    body: after,
                },
            ));
        }

        let branch_name = format!("{path}:{MAIN_BRANCH}");
        match &state.main {
            None => {
                let mut body = json!({
                    "name": want_branch.name,
                    "push_access_level": want_branch.push_access_level,
                    "merge_access_level": want_branch.merge_access_level,
                    "unprotect_access_level": want_branch.unprotect_access_level,
                    "allow_force_push": want_branch.allow_force_push,
                });
                if let Some(c) = want_branch.code_owner_approval_required {
                    body["code_owner_approval_required"] = c.into();
                }
                plan.push(Change::create(
                    "protected branch",
                    &branch_name,
                    desired_branch_view(&want_branch),
                    &[],
                    Op::ProtectBranch {
                        project: p.id,
                        body,
                    },
                ));
            }
            Some(main) => {
                let mut body = Map::new();
                if main.allow_force_push != want_branch.allow_force_push {
                    body.insert(
                        "allow_force_push".into(),
                        want_branch.allow_force_push.into(),
                    );
                }
                if let Some(c) = want_branch.code_owner_approval_required {
                    if main.code_owner_approval_required != c {
                        body.insert("code_owner_approval_required".into(), c.into());
                    }
                }
                let mut levels_differ = false;
                for (key, have, want) in [
                    (
                        "allowed_to_push",
                        &main.push_access_levels,
                        want_branch.push_access_level,
                    ),
                    (
                        "allowed_to_merge",
                        &main.merge_access_levels,
                        want_branch.merge_access_level,
                    ),
                    (
                        "allowed_to_unprotect",
                        &main.unprotect_access_levels,
                        want_branch.unprotect_access_level,
                    ),
                ] {
                    if let Some(changes) = access_changes(have, want) {
                        levels_differ = true;
                        if tier.is_paid() {
                            body.insert(key.into(), Value::Array(changes));
                        }
                    }
                }
                if levels_differ && !tier.is_paid() {
                    frozen_levels.push(path.clone());
                }
                if !body.is_empty() {
                    let before = branch_view(main, tier);
                    let mut after = before.clone();
                    let want_view = desired_branch_view(&want_branch);
                    for key in ["allow_force_push", "code_owner_approval_required"] {
                        if body.contains_key(key) {
                            after[key] = want_view[key].clone();
                        }
                    }
                    for (key, view) in [
                        ("allowed_to_push", "push_access_levels"),
                        ("allowed_to_merge", "merge_access_levels"),
                        ("allowed_to_unprotect", "unprotect_access_levels"),
                    ] {
                        if body.contains_key(key) {
                            after[view] = want_view[view].clone();
                        }
                    }
                    plan.push(Change::update(
                        "protected branch",
                        &branch_name,
                        before,
                        after,
                        &[],
                        Op::UpdateProtectedBranch {
                            project: p.id,
                            body: Value::Object(body),
                        },
                    ));
                }
            }
        }

        diff_release_tag(&mut plan, state);

        if let Some(have) = &state.approval_settings {
            let have = Value::Object(have.clone());
            if let Some((before, after)) = changed_fields(&have, &want_approvals) {
                plan.push(Change::update(
                    "approval settings",
                    path,
                    before,
                    after.clone(),
                    &[],
                    Op::UpdateApprovalSettings {
                        project: p.id,
                        body: after,
                    },
                ));
            }
        }

        if tier.is_paid() {
            diff_rules(&mut plan, state, settings);
        }
        match &state.codeowners {
            CodeownersState::Missing { branch } => {
                let content = codeowners::render(state.kind, settings);
                plan.push(Change::create(
                    "codeowners",
                    &format!("{path}:{}", codeowners::DEFAULT_LOCATION),
                    json!({"branch": branch, "content": content}),
                    &[],
                    Op::CreateCodeowners {
                        project: p.id,
                        branch: branch.clone(),
                        content,
                    },
                ));
            }
            CodeownersState::EmptyRepository => empty_repositories.push(path.clone()),
            CodeownersState::Present(_) => {}
        }
    }
    if !empty_repositories.is_empty() {
        plan.warn(format!(
            "{} empty repositor{} get no CODEOWNERS yet (a commit would create the default branch before the team's first push); rerun after their first commit: {}",
            empty_repositories.len(),
            if empty_repositories.len() == 1 { "y" } else { "ies" },
            some_paths(&empty_repositories)
        ));
    }
    if !frozen_levels.is_empty() {
        plan.warn(format!(
            "GitLab Free cannot change who may push, merge or unprotect on an existing protected branch in place (allowed_to_* is Premium), and this phase never unprotects to re-protect: set Maintainers/Maintainers/Administrators by hand on {} project(s): {}",
            frozen_levels.len(),
            some_paths(&frozen_levels)
        ));
    }

    if let Some(keycloak) = &o.keycloak {
        for name in &o.missing_keycloak_groups {
            plan.warn(format!(
                "Keycloak group {name} does not exist in the realm: nobody gets access through it"
            ));
        }
        let (memberships, missing) = desired::memberships(settings, tier, keycloak, &o.users);
        for target in &memberships {
            diff_members(&mut plan, target, o, prune);
        }
        report_missing(&mut plan, &missing);
    }
    if o.registry_running {
        // The instance registry is a Helm value: report it, with the values to apply.
        plan.warn(format!(
            "GitLab's container registry still runs (Deployment {ns}/gitlab-registry): it is a Helm value, and this phase has no helm CLI — apply gitlab-harden/helm/registry-off.values.yaml with `helm upgrade gitlab gitlab/gitlab -n {ns} --reuse-values -f registry-off.values.yaml` (per project, registry access is already disabled)",
            ns = settings.gitlab_namespace
        ));
    }
    Ok(plan)
}

/// Protected `v*` on every project and tier: created when missing; other create levels are
/// replaced (unprotect + protect), which is safe for tags: nothing refers to a protected tag.
fn diff_release_tag(plan: &mut Plan<Op>, state: &ProjectState) {
    let want = desired::release_tag_protection();
    let p = &state.project;
    let title = format!("{}:{}", p.path_with_namespace, want.name);
    let after = json!({"create_access_levels": [want.create_access_level]});
    match &state.release_tag {
        None => plan.push(Change::create(
            "protected tag",
            &title,
            after,
            &[],
            Op::ProtectTag {
                project: p.id,
                body: protect_tag_body(&want.name, want.create_access_level, None),
            },
        )),
        Some(tag) if !tag.allows_only(want.create_access_level) => plan.push(Change::update(
            "protected tag",
            &title,
            json!({"create_access_levels": tag.create_roles()}),
            after,
            &[],
            Op::ReprotectTag {
                project: p.id,
                name: want.name.clone(),
                body: protect_tag_body(&want.name, want.create_access_level, Some(tag)),
            },
        )),
        Some(_) => {}
    }
}

fn diff_rules(plan: &mut Plan<Op>, state: &ProjectState, settings: &Settings) {
    let p = &state.project;
    let path = &p.path_with_namespace;
    let branch = state.main.as_ref().map(|b| b.id);
    let wanted = desired::approval_rules(state.kind, settings);
    let mut by_name: BTreeMap<&str, Vec<&ApprovalRule>> = BTreeMap::new();
    for rule in &state.rules {
        if rule.rule_type == "regular" || rule.rule_type.is_empty() {
            by_name.entry(rule.name.as_str()).or_default().push(rule);
        }
    }
    for list in by_name.values_mut() {
        list.sort_by_key(|r| r.id);
    }
    // The rule kept per managed name: the one already as wanted, else the oldest, so a rerun
    // keeps the same rule and the others are duplicates.
    let keep: Vec<(&RuleSpec, Option<&ApprovalRule>)> = wanted
        .iter()
        .map(|spec| {
            let kept = by_name.get(spec.name.as_str()).and_then(|list| {
                list.iter()
                    .find(|r| rule_view(r) == spec_view(spec))
                    .or_else(|| list.first())
                    .copied()
            });
            (spec, kept)
        })
        .collect();
    let kept_ids: BTreeSet<u64> = keep.iter().filter_map(|(_, r)| r.map(|r| r.id)).collect();
    // Duplicates of a managed rule, and managed rules this kind of project should not have. They
    // go first: GitLab checks a rule's name is unique in the project on every save, so the kept
    // rule can only be updated once its duplicates are gone (same lane, plan order).
    for name in MANAGED_RULES {
        let Some(list) = by_name.get(name) else {
            continue;
        };
        for rule in list.iter().filter(|r| !kept_ids.contains(&r.id)) {
            let change = Change::delete(
                "approval rule",
                &format!("{path}: {} (id {})", rule.name, rule.id),
                rule_view(rule),
                &[],
                Op::DeleteApprovalRule {
                    project: p.id,
                    id: rule.id,
                },
            );
            plan.push(if leftovers::is_bash_rule(rule) {
                change.left_by_bash(leftovers::BASH_RULE)
            } else {
                change
            });
        }
    }
    for (spec, kept) in keep {
        let title = format!("{path}: {}", spec.name);
        match kept {
            None => plan.push(Change::create(
                "approval rule",
                &title,
                spec_view(spec),
                &[],
                Op::CreateApprovalRule {
                    project: p.id,
                    rule: spec.clone(),
                    branch,
                },
            )),
            Some(rule) => {
                let (have, want) = (rule_view(rule), spec_view(spec));
                if have != want {
                    let change = Change::update(
                        "approval rule",
                        &title,
                        have,
                        want,
                        &[],
                        Op::UpdateApprovalRule {
                            project: p.id,
                            id: rule.id,
                            rule: spec.clone(),
                            branch,
                        },
                    );
                    // The bash phase's rule becomes ours in place (adopted, not recreated).
                    plan.push(if leftovers::is_bash_rule(rule) {
                        change.left_by_bash(leftovers::BASH_RULE)
                    } else {
                        change
                    });
                }
            }
        }
    }
}

fn role(level: u8) -> String {
    format!("{} ({level})", access::name(level))
}

fn diff_members(plan: &mut Plan<Op>, target: &GroupMembership, o: &Observed, prune: bool) {
    let group = &target.group;
    let current: BTreeMap<u64, u8> = o
        .members
        .get(group)
        .map(|m| m.iter().map(|m| (m.id, m.access_level)).collect())
        .unwrap_or_default();
    let username = |id: u64| {
        o.users
            .by_id(id)
            .map_or_else(|| format!("user {id}"), |u| u.username.clone())
    };
    for (user, grant) in &target.grants {
        let title = format!("{group}: {}", username(*user));
        let because: Vec<&str> = grant.because.iter().map(String::as_str).collect();
        match current.get(user) {
            None => plan.push(Change::create(
                "group member",
                &title,
                json!({"role": role(grant.level), "keycloak_groups": because}),
                &[],
                Op::AddMember {
                    group: group.clone(),
                    user: *user,
                    level: grant.level,
                },
            )),
            Some(have)
                if *have < grant.level
                    || (prune && *have > grant.level && *user != o.token_user) =>
            {
                plan.push(Change::update(
                    "group member",
                    &title,
                    json!({"role": role(*have)}),
                    json!({"role": role(grant.level), "keycloak_groups": because}),
                    &[],
                    Op::EditMember {
                        group: group.clone(),
                        user: *user,
                        level: grant.level,
                    },
                ));
            }
            Some(_) => {}
        }
    }
    if !prune {
        return;
    }
    let mut unknown = Vec::new();
    for (user, level) in &current {
        if target.grants.contains_key(user) || *user == o.token_user {
            continue;
        }
        match o.users.by_id(*user) {
            Some(u) if u.is_automation() => {}
            Some(u) => plan.push(Change::delete(
                "group member",
                &format!("{group}: {}", u.username),
                json!({"role": role(*level), "reason": "no mapped Keycloak group grants access"}),
                &[],
                Op::RemoveMember {
                    group: group.clone(),
                    user: *user,
                },
            )),
            None => unknown.push(format!("user {user}")),
        }
    }
    if !unknown.is_empty() {
        plan.warn(format!(
            "--prune left {} member(s) of {group} alone: not active users the token can see ({})",
            unknown.len(),
            some_paths(&unknown)
        ));
    }
}

fn report_missing(plan: &mut Plan<Op>, missing: &[MissingUser]) {
    if missing.is_empty() {
        return;
    }
    let names: Vec<String> = missing
        .iter()
        .map(|m| {
            format!(
                "{} ({})",
                m.username,
                m.groups.iter().cloned().collect::<Vec<_>>().join(", ")
            )
        })
        .collect();
    plan.warn(format!(
        "{} Keycloak user(s) have no GitLab account yet (they get one at their first sign-in; the next run grants their access): {}",
        missing.len(),
        some_paths(&names)
    ));
}
