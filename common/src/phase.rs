//! The reconcile runner every phase goes through: [`Phase`] (observe → pure diff → objects →
//! execute) and [`run_phase`], which makes `plan`, `apply`, `check` and `--output json` behave the
//! same in every binary.

use std::time::Duration;

use serde_json::{Value, json};

use crate::cli::{EXIT_DRIFT, EXIT_OK, GlobalArgs, Mode, Output};
use crate::kube::{KubeClient, ObjectPlanner};
use crate::plan::Plan;
use crate::redact;

/// Where a change runs during `apply`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Lane {
    /// Before everything else, one at a time in plan order (things others depend on).
    Serial,
    /// After the serial changes; changes of one lane run in plan order, lanes run side by side
    /// (up to [`Phase::concurrency`]).
    Parallel(String),
}

/// What executing one change did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The change was made.
    Applied,
    /// The server refused something the phase can only report; counted as not applied.
    Skipped(String),
}

/// A Kubernetes object of a phase's desired state, planned by a server-side dry run
/// ([`ObjectPlanner::add_all`]) rather than by the phase's pure diff.
#[derive(Debug, Clone)]
pub struct DesiredObject<Op> {
    /// The object as it is applied (server-side apply body).
    pub object: Value,
    /// The CRD its kind needs, when it is a custom resource.
    pub crd: Option<&'static str>,
    /// What installs that CRD, for the message when it is missing.
    pub installed_by: &'static str,
    /// The change that applies it.
    pub op: Op,
}

impl<Op> DesiredObject<Op> {
    /// An object whose CRD (if any) `installed_by` provides, applied by `op(object, crd)`.
    pub fn new(
        object: Value,
        crd: Option<&'static str>,
        installed_by: &'static str,
        op: impl FnOnce(Value, Option<&'static str>) -> Op,
    ) -> Self {
        Self {
            op: op(object.clone(), crd),
            object,
            crd,
            installed_by,
        }
    }

    /// [`DesiredObject::new`] for a list of objects sharing `installed_by` and `op`.
    pub fn each(
        objects: impl IntoIterator<Item = (Value, Option<&'static str>)>,
        installed_by: &'static str,
        op: impl Fn(Value, Option<&'static str>) -> Op,
    ) -> Vec<Self> {
        objects
            .into_iter()
            .map(|(object, crd)| Self::new(object, crd, installed_by, &op))
            .collect()
    }
}

/// The one reconcile shape of every phase: observe → pure diff (plus the Kubernetes objects,
/// planned by server-side dry run) → execute each change. `observe` and the dry runs only read.
#[allow(async_fn_in_trait)] // used with static dispatch only
pub trait Phase {
    /// What [`Phase::execute`] performs for one change of the plan.
    type Op;
    /// Everything `diff` and `objects` need to know about the live state.
    type Observed;
    /// e.g. `13 vault-cicd`.
    fn name(&self) -> &str;
    /// Reads the live state. No writes.
    async fn observe(&self) -> anyhow::Result<Self::Observed>;
    /// The pure diff of the API-managed state (no I/O): what to change, in apply order.
    fn diff(&self, observed: &Self::Observed) -> anyhow::Result<Plan<Self::Op>>;
    /// The Kubernetes objects of the desired state (pure); [`run_phase`] plans them by server-side
    /// dry run through [`Phase::kube`].
    fn objects(&self, _observed: &Self::Observed) -> anyhow::Result<Vec<DesiredObject<Self::Op>>> {
        Ok(Vec::new())
    }
    /// The client and CRD wait that plan [`Phase::objects`]; `None` for a phase without objects.
    fn kube(&self) -> Option<(&KubeClient, Duration)> {
        None
    }
    /// Whether the objects apply before the diff's changes (a change depends on an object).
    fn objects_first(&self) -> bool {
        false
    }
    /// Performs one change.
    async fn execute(&self, op: &Self::Op) -> anyhow::Result<Outcome>;
    /// The lane of a change; everything is serial unless a phase says otherwise.
    fn lane(&self, _op: &Self::Op) -> Lane {
        Lane::Serial
    }
    /// How many parallel lanes run at once.
    fn concurrency(&self) -> usize {
        1
    }
}

/// The whole plan of a phase: its diff and its objects, in apply order. Only reads.
pub async fn plan<P: Phase>(phase: &P) -> anyhow::Result<Plan<P::Op>> {
    let observed = phase.observe().await?;
    let diff = phase.diff(&observed)?;
    let objects = phase.objects(&observed)?;
    if objects.is_empty() {
        return Ok(diff);
    }
    let Some((kube, crd_wait)) = phase.kube() else {
        anyhow::bail!(
            "{}: the phase has Kubernetes objects but no Kubernetes client (a bug)",
            phase.name()
        );
    };
    let mut object_plan = Plan::new(&diff.phase);
    ObjectPlanner::new(kube, crd_wait)
        .add_all(&mut object_plan, objects)
        .await?;
    Ok(if phase.objects_first() {
        object_plan.append(diff)
    } else {
        diff.append(object_plan)
    })
}

/// What `apply` did.
#[derive(Default)]
struct Applied {
    count: usize,
    skipped: Vec<String>,
    /// The first failure (index in the plan, error).
    failure: Option<(usize, anyhow::Error)>,
}

/// Executes the plan's changes: serial ones first, then the parallel lanes. After a failure no
/// new change starts; the ones already running finish.
async fn apply_changes<P: Phase>(phase: &P, plan: &Plan<P::Op>) -> Applied {
    use futures::StreamExt as _;
    let total = plan.changes.len();
    let mut serial = Vec::new();
    let mut lanes: Vec<(String, Vec<usize>)> = Vec::new();
    let mut lane_index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for (index, change) in plan.changes.iter().enumerate() {
        match phase.lane(&change.op) {
            Lane::Serial => serial.push(index),
            Lane::Parallel(key) => {
                let slot = *lane_index.entry(key.clone()).or_insert_with(|| {
                    lanes.push((key, Vec::new()));
                    lanes.len() - 1
                });
                lanes[slot].1.push(index);
            }
        }
    }
    let state = std::sync::Mutex::new(Applied::default());
    let failed = std::sync::atomic::AtomicBool::new(false);
    let run_one = |index: usize| {
        let state = &state;
        let failed = &failed;
        async move {
            if failed.load(std::sync::atomic::Ordering::SeqCst) {
                return false;
            }
            let change = &plan.changes[index];
            tracing::info!(
                "applying {}/{total}: {} {}",
                index + 1,
                change.action_word(),
                change.title()
            );
            let outcome = phase.execute(&change.op).await;
            let mut s = state
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            match outcome {
                Ok(Outcome::Applied) => s.count += 1,
                Ok(Outcome::Skipped(warning)) => {
                    s.skipped.push(format!("{}: {warning}", change.title()));
                }
                Err(e) => {
                    failed.store(true, std::sync::atomic::Ordering::SeqCst);
                    if s.failure.as_ref().is_none_or(|(i, _)| index < *i) {
                        s.failure = Some((index, e));
                    }
                    return false;
                }
            }
            true
        }
    };
    for index in serial {
        if !run_one(index).await {
            break;
        }
    }
    if !failed.load(std::sync::atomic::Ordering::SeqCst) {
        futures::stream::iter(lanes)
            .map(|(_, indices)| async move {
                for index in indices {
                    if !run_one(index).await {
                        break;
                    }
                }
            })
            .buffer_unordered(phase.concurrency().max(1))
            .collect::<Vec<()>>()
            .await;
    }
    state
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Plans and applies `phase` without printing: for a phase that another one runs as a step of its
/// own change. Returns how many changes were applied.
pub async fn apply_quietly<P: Phase>(phase: &P) -> anyhow::Result<usize> {
    let plan = plan(phase).await?;
    let done = apply_changes(phase, &plan).await;
    if let Some((index, e)) = done.failure {
        let change = &plan.changes[index];
        return Err(e.context(format!(
            "{}: applying {} {}",
            plan.phase,
            change.action_word(),
            change.title()
        )));
    }
    Ok(done.count)
}

/// Runs `plan`, `apply` or `check` (or, with `--adopt-report`, the report of the bash phases'
/// leftovers) and prints the result; returns the exit code.
pub async fn run_phase<P: Phase>(phase: &P, mode: Mode, args: &GlobalArgs) -> anyhow::Result<u8> {
    if args.adopt_report {
        let plan = plan(phase).await?;
        print_adopt_report(&plan, args.output)?;
        return Ok(EXIT_OK);
    }
    run_mode(phase, mode, args.output).await
}

/// The leftovers of the platform's bash phases in `plan`: what was found and what `apply` does
/// with each, then the plan's warnings (what was found but is kept, and why). Writes nothing.
fn print_adopt_report<A>(plan: &Plan<A>, output: Output) -> anyhow::Result<()> {
    let leftovers: Vec<_> = plan
        .changes
        .iter()
        .filter(|c| c.is_bash_leftover())
        .collect();
    match output {
        Output::Json => {
            let rows: Vec<Value> = leftovers
                .iter()
                .map(|c| {
                    json!({
                        "resource": c.resource,
                        "name": c.name,
                        "action": c.action,
                        "reason": c.reason,
                    })
                })
                .collect();
            // Warnings carry what was found but is kept (e.g. objects another owner took over,
            // pages left until `--prune`, leftovers the token may not list).
            let doc = json!({"phase": plan.phase, "mode": "adopt-report", "leftovers": rows, "warnings": plan.warnings});
            println!("{}", redact::redact(&serde_json::to_string_pretty(&doc)?));
        }
        Output::Text => {
            let mut out = format!(
                "{}: {} leftover(s) of the bash phases\n",
                plan.phase,
                leftovers.len()
            );
            for c in &leftovers {
                out.push_str(&format!(
                    "  {} {}: apply will {} it ({})\n",
                    c.resource,
                    c.name,
                    c.action_word(),
                    c.reason.as_deref().unwrap_or_default()
                ));
            }
            for warning in &plan.warnings {
                out.push_str(&format!("  ! warning: {warning}\n"));
            }
            print!("{}", redact::redact(&out));
        }
    }
    Ok(())
}

async fn run_mode<P: Phase>(phase: &P, mode: Mode, output: Output) -> anyhow::Result<u8> {
    let mut plan = plan(phase).await?;
    let mut applied = 0usize;
    let mut skipped: Vec<String> = Vec::new();
    if mode == Mode::Apply {
        if output == Output::Text {
            print!("{}", redact::redact(&plan.to_string()));
        }
        let total = plan.changes.len();
        let done = apply_changes(phase, &plan).await;
        applied = done.count;
        skipped = done.skipped;
        if let Some((index, e)) = done.failure {
            let change = &plan.changes[index];
            return Err(e.context(format!(
                "applying change {}/{total} ({} {}) after {applied} applied; fix the cause and rerun apply to finish",
                index + 1,
                change.action_word(),
                change.title()
            )));
        }
        plan.warnings.extend(skipped.iter().cloned());
    }
    match output {
        Output::Json => {
            let mut doc = plan.to_json();
            doc["mode"] = json!(match mode {
                Mode::Plan => "plan",
                Mode::Apply => "apply",
                Mode::Check => "check",
            });
            if mode == Mode::Apply {
                doc["applied"] = json!(applied);
                doc["skipped"] = json!(skipped.len());
            }
            println!("{}", redact::redact(&serde_json::to_string_pretty(&doc)?));
        }
        Output::Text => match mode {
            Mode::Apply => {
                for warning in &skipped {
                    println!("  ! not applied: {}", redact::redact(warning));
                }
                println!(
                    "{}: applied {applied} change(s), {} not applied",
                    plan.phase,
                    skipped.len()
                );
            }
            Mode::Plan | Mode::Check => print!("{}", redact::redact(&plan.to_string())),
        },
    }
    Ok(if mode == Mode::Check && !plan.is_empty() {
        EXIT_DRIFT
    } else {
        EXIT_OK
    })
}

impl<A> crate::plan::Change<A> {
    fn action_word(&self) -> &'static str {
        match self.action {
            crate::plan::Action::Create => "create",
            crate::plan::Action::Update => "update",
            crate::plan::Action::Delete => "delete",
        }
    }
}

/// Locks a mutex a phase uses to remember what `apply` created (ids learned mid-apply); a
/// poisoned lock still holds valid data, since every writer only inserts.
pub fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
