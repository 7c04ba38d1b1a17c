//! The reconcile model's plan: a list of [`Change`]s computed by a pure `diff(desired, observed)`,
//! rendered as text (`Display`) or JSON (`Serialize`), with secrets masked. Each change carries a
//! phase-specific operation `A` that the executor performs; nothing else is ever written.

use std::fmt;

use serde::Serialize;
use serde_json::Value;

use crate::redact::{self, MASK};

/// What a change does to its object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Creates the object (`+` in plan text).
    Create,
    /// Changes some of its fields (`~`).
    Update,
    /// Removes it (`-`).
    Delete,
}

impl Action {
    fn symbol(self) -> &'static str {
        match self {
            Action::Create => "+",
            Action::Update => "~",
            Action::Delete => "-",
        }
    }
}

/// One change to one object.
#[derive(Debug, Clone, Serialize)]
pub struct Change<A> {
    /// What the change does, rendered as `+`, `~` or `-`.
    pub action: Action,
    /// What kind of object, e.g. `vault policy`, `kubernetes ClusterSecretStore`.
    pub resource: String,
    /// The object's name, e.g. `ci-admin`.
    pub name: String,
    /// Human-readable field or line differences (already masked).
    pub diff: Vec<String>,
    /// The managed fields as they are (masked); `None` for a create.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<Value>,
    /// The managed fields as they will be (masked); `None` for a delete.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<Value>,
    /// Why the change is there when the desired state alone does not say it, e.g. a leftover of
    /// the platform's bash phases ([`crate::contract::LEFT_BY_BASH`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What the executor does; not part of the rendered plan.
    #[serde(skip)]
    pub op: A,
}

impl<A> Change<A> {
    /// A new object. Fields named in `sensitive` print as `(sensitive)`.
    pub fn create(resource: &str, name: &str, after: Value, sensitive: &[&str], op: A) -> Self {
        let after = mask_fields(after, sensitive);
        let diff = describe_new(&after);
        Self {
            action: Action::Create,
            resource: resource.to_owned(),
            name: name.to_owned(),
            diff,
            before: None,
            after: Some(after),
            reason: None,
            op,
        }
    }

    /// An object to update; `before`/`after` hold only the fields we manage.
    pub fn update(
        resource: &str,
        name: &str,
        before: Value,
        after: Value,
        sensitive: &[&str],
        op: A,
    ) -> Self {
        let before = mask_fields(before, sensitive);
        let after = mask_fields(after, sensitive);
        let diff = diff_values(&before, &after);
        Self {
            action: Action::Update,
            resource: resource.to_owned(),
            name: name.to_owned(),
            diff,
            before: Some(before),
            after: Some(after),
            reason: None,
            op,
        }
    }

    /// An object to delete; `before` is what goes. Fields named in `sensitive` print as
    /// `(sensitive)`.
    pub fn delete(resource: &str, name: &str, before: Value, sensitive: &[&str], op: A) -> Self {
        let before = mask_fields(before, sensitive);
        Self {
            action: Action::Delete,
            resource: resource.to_owned(),
            name: name.to_owned(),
            diff: Vec::new(),
            before: Some(before),
            after: None,
            reason: None,
            op,
        }
    }

    /// The same change, carrying why it is there (printed under it, and `reason` in JSON).
    #[must_use]
    pub fn because(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    /// A change to a leftover of the platform's bash phases, identified by `identity` (the exact
    /// fields that tell it apart from anything a phase of ours creates).
    #[must_use]
    pub fn left_by_bash(self, identity: &str) -> Self {
        self.because(format!("{}: {identity}", crate::contract::LEFT_BY_BASH))
    }

    /// Whether this change removes or adopts a leftover of the bash phases.
    pub fn is_bash_leftover(&self) -> bool {
        self.reason
            .as_deref()
            .is_some_and(|r| r.starts_with(crate::contract::LEFT_BY_BASH))
    }

    /// The object's title, e.g. `vault policy ci-admin`.
    pub fn title(&self) -> String {
        format!("{} {}", self.resource, self.name)
    }
}

/// What a phase would change (or changed), plus warnings about things it cannot change itself.
#[derive(Debug, Clone, Serialize)]
pub struct Plan<A> {
    /// The phase's name, e.g. `13 vault-cicd`, which heads the plan.
    pub phase: String,
    /// The changes, in apply order.
    pub changes: Vec<Change<A>>,
    /// What the phase cannot change itself, and changes `apply` skipped; printed after the
    /// changes.
    pub warnings: Vec<String>,
}

/// How many changes of each action a plan holds (`summary` in its JSON).
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Summary {
    /// Objects to create.
    pub create: usize,
    /// Objects to update.
    pub update: usize,
    /// Objects to delete.
    pub delete: usize,
}

impl<A> Plan<A> {
    /// An empty plan of `phase` (e.g. `13 vault-cicd`).
    pub fn new(phase: &str) -> Self {
        Self {
            phase: phase.to_owned(),
            changes: Vec::new(),
            warnings: Vec::new(),
        }
    }
    /// `true` when nothing would change (warnings do not count): `check` exits 0.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
    /// Adds a change after the others (apply order).
    pub fn push(&mut self, change: Change<A>) {
        self.changes.push(change);
    }
    /// Adds a warning.
    pub fn warn(&mut self, warning: impl Into<String>) {
        self.warnings.push(warning.into());
    }
    /// This plan's changes and warnings, then `other`'s.
    #[must_use]
    pub fn append(mut self, other: Plan<A>) -> Self {
        self.changes.extend(other.changes);
        self.warnings.extend(other.warnings);
        self
    }
    /// Counts the changes per action.
    pub fn summary(&self) -> Summary {
        let count = |a| self.changes.iter().filter(|c| c.action == a).count();
        Summary {
            create: count(Action::Create),
            update: count(Action::Update),
            delete: count(Action::Delete),
        }
    }
}

impl<A> Plan<A> {
    /// JSON rendering, masked.
    pub fn to_json(&self) -> Value {
        let value = serde_json::json!({
            "phase": self.phase,
            "summary": self.summary(),
            "changes": self.changes,
            "warnings": self.warnings,
        });
        redact_json(value)
    }
}

impl<A> fmt::Display for Plan<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.summary();
        let mut out = String::new();
        if self.changes.is_empty() {
            out.push_str(&format!(
                "{}: no changes, everything is as desired\n",
                self.phase
            ));
        } else {
            out.push_str(&format!(
                "{}: {} change(s): {} to create, {} to update, {} to delete\n",
                self.phase,
                self.changes.len(),
                s.create,
                s.update,
                s.delete
            ));
            for change in &self.changes {
                out.push_str(&format!(
                    "  {} {} {}\n",
                    change.action.symbol(),
                    change.resource,
                    change.name
                ));
                for line in &change.diff {
                    out.push_str(&format!("      {line}\n"));
                }
                if let Some(reason) = &change.reason {
                    out.push_str(&format!("      reason: {reason}\n"));
                }
            }
        }
        for warning in &self.warnings {
            out.push_str(&format!("  ! warning: {warning}\n"));
        }
        f.write_str(&redact::redact(&out))
    }
}

/// The top-level keys of `want` whose value differs in `have` (a missing key counts as `null`):
/// `(before, after)`, both restricted to those keys, or `None` when nothing differs. Keys that
/// only `have` carries (server defaults, fields we do not manage) never count. A `want` that is
/// not an object compares as a whole.
pub fn changed_fields(have: &Value, want: &Value) -> Option<(Value, Value)> {
    let Some(want_fields) = want.as_object() else {
        // Not an object: it compares as a whole.
        return (have != want).then(|| (have.clone(), want.clone()));
    };
    let mut before = serde_json::Map::new();
    let mut after = serde_json::Map::new();
    for (key, value) in want_fields {
        let current = have.get(key).cloned().unwrap_or(Value::Null);
        if &current != value {
            before.insert(key.clone(), current);
            after.insert(key.clone(), value.clone());
        }
    }
    (!after.is_empty()).then_some((Value::Object(before), Value::Object(after)))
}

/// Replaces the values of the named top-level (or nested) keys with [`MASK`].
pub fn mask_fields(value: Value, sensitive: &[&str]) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    if sensitive.contains(&k.as_str()) && !v.is_null() {
                        (k, Value::String(MASK.to_owned()))
                    } else {
                        (k, mask_fields(v, sensitive))
                    }
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|v| mask_fields(v, sensitive))
                .collect(),
        ),
        other => other,
    }
}

fn redact_json(value: Value) -> Value {
    match value {
        Value::String(s) => Value::String(redact::redact(&s)),
        Value::Array(items) => Value::Array(items.into_iter().map(redact_json).collect()),
        Value::Object(map) => {
            Value::Object(map.into_iter().map(|(k, v)| (k, redact_json(v))).collect())
        }
        other => other,
    }
}

fn describe_new(after: &Value) -> Vec<String> {
    match after {
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| format!("+ {k}: {}", short(v)))
            .collect(),
        Value::String(text) if text.contains('\n') => {
            text.lines().map(|l| format!("+ {l}")).collect()
        }
        other => vec![format!("+ {}", short(other))],
    }
}

fn short(value: &Value) -> String {
    let text = match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if text.contains('\n') {
        format!("({} lines)", text.lines().count())
    } else if text.chars().count() > 120 {
        format!("{}…", text.chars().take(117).collect::<String>())
    } else {
        text
    }
}

/// Field-level differences between two JSON values, as lines such as `~ token_ttl: 7200 -> 3600`.
/// Multi-line strings (policies, certificates) are diffed line by line.
pub fn diff_values(before: &Value, after: &Value) -> Vec<String> {
    let mut out = Vec::new();
    diff_into("", before, after, &mut out);
    out
}

fn diff_into(path: &str, before: &Value, after: &Value, out: &mut Vec<String>) {
    if before == after {
        return;
    }
    match (before, after) {
        (Value::Object(b), Value::Object(a)) => {
            let keys: std::collections::BTreeSet<&String> = b.keys().chain(a.keys()).collect();
            for key in keys {
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match (b.get(key), a.get(key)) {
                    (Some(bv), Some(av)) => diff_into(&child, bv, av, out),
                    (None, Some(av)) => out.push(format!("+ {child}: {}", short(av))),
                    (Some(bv), None) => out.push(format!("- {child}: {}", short(bv))),
                    (None, None) => {}
                }
            }
        }
        (Value::String(b), Value::String(a)) if b.contains('\n') || a.contains('\n') => {
            let label = if path.is_empty() {
                String::new()
            } else {
                format!("{path}: ")
            };
            let text_diff = similar::TextDiff::from_lines(b.as_str(), a.as_str());
            for change in text_diff.iter_all_changes() {
                let sign = match change.tag() {
                    similar::ChangeTag::Delete => "-",
                    similar::ChangeTag::Insert => "+",
                    similar::ChangeTag::Equal => continue,
                };
                out.push(format!(
                    "{sign} {label}{}",
                    change.value().trim_end_matches('\n')
                ));
            }
        }
        _ => {
            let label = if path.is_empty() {
                "value".to_owned()
            } else {
                path.to_owned()
            };
            out.push(format!("~ {label}: {} -> {}", short(before), short(after)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_fields_keeps_only_the_keys_we_set_that_differ() {
        let have = json!({"a": 1, "b": "x", "server_default": true});
        let want = json!({"a": 1, "b": "y", "c": false});
        let (before, after) = changed_fields(&have, &want).unwrap();
        assert_eq!(
            before,
            json!({"b": "x", "c": null}),
            "a missing key reads as null"
        );
        assert_eq!(after, json!({"b": "y", "c": false}));
        assert_eq!(
            changed_fields(&have, &json!({"a": 1})),
            None,
            "foreign keys never count"
        );
        assert_eq!(
            changed_fields(&json!({}), &json!({"c": null})),
            None,
            "missing = null"
        );
        assert_eq!(
            changed_fields(&json!("old"), &json!("new")),
            Some((json!("old"), json!("new"))),
            "a non-object compares as a whole"
        );
        assert_eq!(changed_fields(&json!(3), &json!(3)), None);
    }

    #[test]
    fn append_keeps_changes_and_warnings_in_order() {
        let mut first: Plan<u8> = Plan::new("p");
        first.push(Change::create("thing", "a", json!({}), &[], 1));
        first.warn("w1");
        let mut second: Plan<u8> = Plan::new("p");
        second.push(Change::create("thing", "b", json!({}), &[], 2));
        second.warn("w2");
        let both = first.append(second);
        assert_eq!(
            both.changes.iter().map(|c| c.op).collect::<Vec<_>>(),
            [1, 2]
        );
        assert_eq!(both.warnings, ["w1", "w2"]);
    }
    use serde_json::json;

    #[test]
    fn an_empty_plan_says_so() {
        let plan: Plan<()> = Plan::new("13 vault-cicd");
        assert!(plan.is_empty());
        assert!(plan.to_string().contains("no changes"));
    }

    #[test]
    fn field_diff_names_each_changed_field() {
        let lines = diff_values(
            &json!({"token_ttl": 7200, "bound_claims": {"ref": ["main"]}, "gone": 1}),
            &json!({"token_ttl": 3600, "bound_claims": {"ref": ["main", "release/*"]}, "new": true}),
        );
        assert_eq!(
            lines,
            vec![
                r#"~ bound_claims.ref: ["main"] -> ["main","release/*"]"#.to_owned(),
                "- gone: 1".to_owned(),
                "+ new: true".to_owned(),
                "~ token_ttl: 7200 -> 3600".to_owned(),
            ]
        );
    }

    #[test]
    fn multi_line_text_is_diffed_line_by_line() {
        let lines = diff_values(&json!("a\nb\nc\n"), &json!("a\nB\nc\n"));
        assert_eq!(lines, vec!["- b".to_owned(), "+ B".to_owned()]);
    }

    #[test]
    fn sensitive_fields_never_render() {
        let mut plan = Plan::new("t");
        plan.push(Change::create(
            "vault kv",
            "ci/x",
            json!({"password": "hunter2-long", "user": "u"}),
            &["password"],
            (),
        ));
        plan.push(Change::update(
            "cfg",
            "y",
            json!({"jwt": "old-jwt-value"}),
            json!({"jwt": "new-jwt-value"}),
            &["jwt"],
            (),
        ));
        let text = plan.to_string();
        let json = plan.to_json().to_string();
        for secret in ["hunter2-long", "old-jwt-value", "new-jwt-value"] {
            assert!(
                !text.contains(secret) && !json.contains(secret),
                "{secret} leaked"
            );
        }
        assert!(text.contains("(sensitive)"));
        assert_eq!(
            plan.summary(),
            Summary {
                create: 1,
                update: 1,
                delete: 0
            }
        );
    }
}
