//! Every library job that logs in to Vault, in every kind of pipeline (docs/adr/0008): the job's
//! rules say whether GitLab would run it (gitlab-ci-local `--list-csv` on the packet-relay project
//! exactly as phase 18 seeded it, with the group variables phase 14 set), and then:
//! - where it runs, the job itself runs (gitlab-ci-local, shell executor): its own login snippet
//!   with an `id_token` carrying exactly GitLab's claims for that kind, signed by the GitLab
//!   stand-in's key, against the real `OpenBao`; the tools after the login are test doubles that
//!   record the credentials they were handed (compared by SHA-256 with the robots Harbor issued),
//!   except `curl` (promotion talks to the GitLab stand-in for real) and `argocd` (a REST client
//!   of the Argo CD stand-in, which checks the token phase 15 minted);
//! - where it does not run, every role the job can use refuses that kind's `id_token`.

use std::fmt::Write as _;

use ci_templates::local_run::{LocalRepo, MR_SOURCE_BRANCH, PipelineKind};
use common::contract;
use sandbox::keys::PipelineClaims;
use serde_json::{Value, json};

use crate::jobs::JobRunner;
use crate::world::{GROUP, World, documents, kustomize, sha256};

/// The project the journey runs: the arcade's router, whose v0.1.0 release phase 18 deploys.
pub const PROJECT: &str = "packet-relay";
pub const RELEASE_TAG: &str = "v0.1.0";

/// A pipeline kind with the `id_token` claims GitLab sends for it.
struct Kind {
    name: &'static str,
    gcl: PipelineKind,
    claims: PipelineClaims,
}

fn kinds() -> Vec<Kind> {
    vec![
        Kind {
            name: "main",
            gcl: PipelineKind::Main,
            claims: PipelineClaims::branch("main", true),
        },
        Kind {
            name: "protected v* tag",
            gcl: PipelineKind::ReleaseTag(RELEASE_TAG.into()),
            claims: PipelineClaims::tag(RELEASE_TAG, true),
        },
        Kind {
            name: "merge request",
            gcl: PipelineKind::MergeRequest,
            claims: PipelineClaims::merge_request(MR_SOURCE_BRANCH),
        },
        Kind {
            name: "unprotected branch",
            gcl: PipelineKind::Branch("feature/unreviewed".into()),
            claims: PipelineClaims::branch("feature/unreviewed", false),
        },
        Kind {
            name: "unprotected v* tag",
            gcl: PipelineKind::UnprotectedTag("v9.9.9".into()),
            claims: PipelineClaims::tag("v9.9.9", false),
        },
    ]
}

/// A job that logs in: the roles it may use, and the kinds it must run on (ADR 0008, decision 1).
struct LoginJob {
    name: &'static str,
    roles: &'static [&'static str],
    runs_on: &'static [&'static str],
}

const JOBS: &[LoginJob] = &[
    LoginJob {
        name: "build-image",
        roles: &[contract::ROLE_IMAGE, contract::ROLE_MERGE_REQUEST],
        runs_on: &["main", "protected v* tag", "merge request"],
    },
    LoginJob {
        name: "image-scan",
        roles: &[contract::ROLE_IMAGE],
        runs_on: &["main", "protected v* tag"],
    },
    LoginJob {
        name: "image-sbom",
        roles: &[contract::ROLE_IMAGE],
        runs_on: &["main", "protected v* tag"],
    },
    LoginJob {
        name: "sign-image",
        roles: &[contract::ROLE_SIGN, contract::ROLE_IMAGE],
        runs_on: &["main", "protected v* tag"],
    },
    LoginJob {
        name: "release-tag",
        roles: &[contract::ROLE_RELEASE],
        runs_on: &["protected v* tag"],
    },
    LoginJob {
        name: "deploy-ephemeral",
        roles: &[contract::ROLE_DEPLOY],
        runs_on: &["main"],
    },
    LoginJob {
        name: "cleanup-ephemeral",
        roles: &[contract::ROLE_DEPLOY],
        runs_on: &["main"],
    },
    LoginJob {
        name: "promote-artifact",
        roles: &[contract::ROLE_PROMOTE],
        runs_on: &["main"],
    },
];

/// The roles a job logs in with in a kind where it runs.
fn roles_used(job: &str, kind: &str) -> Vec<&'static str> {
    match (job, kind) {
        ("build-image", "merge request") => vec![contract::ROLE_MERGE_REQUEST],
        ("sign-image", _) => vec![contract::ROLE_SIGN, contract::ROLE_IMAGE],
        ("deploy-ephemeral" | "cleanup-ephemeral", _) => vec![contract::ROLE_DEPLOY],
        ("promote-artifact", _) => vec![contract::ROLE_PROMOTE],
        ("release-tag", _) => vec![contract::ROLE_RELEASE],
        _ => vec![contract::ROLE_IMAGE],
    }
}

/// One run's outcome, for the table.
struct Row {
    job: &'static str,
    kind: &'static str,
    runs: bool,
    logins: Vec<String>,
    evidence: String,
}

pub fn each_job_logs_in_exactly_where_it_runs(world: &World) {
    let path = format!("{GROUP}/{PROJECT}");
    let runner = JobRunner::new(world, PROJECT, true, &[]);
    let repo = &runner.repo;
    let harbor = world.harbor_registry();
    assert_eq!(
        runner.variable("HARBOR_REGISTRY"),
        Some(harbor.as_str()),
        "phase 14's registry variable"
    );

    let (push_user, push_secret) = world.robot("ci-push");
    let (scratch_user, scratch_secret) = world.robot("ci-scratch-push");
    let mut rows: Vec<Row> = Vec::new();
    let mut digest = String::new();
    for kind in kinds() {
        let jobs = repo
            .jobs_of(&kind.gcl, &[])
            .unwrap_or_else(|e| panic!("{}: {e}", kind.name));
        let token = world.id_token(&path, &kind.claims);
        for job in JOBS {
            let runs = jobs.contains(job.name);
            assert_eq!(
                runs,
                job.runs_on.contains(&kind.name),
                "{} in a {} pipeline: GitLab would {}run it",
                job.name,
                kind.name,
                if runs { "" } else { "not " }
            );
            let used = if runs {
                roles_used(job.name, kind.name)
            } else {
                vec![]
            };
            let mut logins = Vec::new();
            for role in job.roles {
                let (status, answer) = world.vault_login(role, &token);
                let expected = if used.contains(role) { 200 } else { 400 };
                assert_eq!(
                    status, expected,
                    "{} ({}) logging in as {role}: {answer}",
                    job.name, kind.name
                );
                logins.push(format!("{role}={status}"));
            }
            let mut evidence = String::new();
            if runs {
                let extra: Vec<(&str, String)> = if digest.is_empty() {
                    vec![]
                } else {
                    vec![("IMAGE_DIGEST", digest.clone())]
                };
                let (run, recorded) = runner.run(world, job.name, &kind.gcl, &kind.claims, &extra);
                assert_eq!(
                    run.verdict(job.name),
                    "PASS",
                    "{} in a {} pipeline:\n{}",
                    job.name,
                    kind.name,
                    run.output
                );
                // Every job logs in to Vault with curl or wget, whose arguments the doubles record.
                assert!(
                    recorded.contains("http-calls="),
                    "{}: no HTTP call recorded\n{recorded}",
                    job.name
                );
                evidence = recorded;
                assert!(
                    !run.output.contains(&push_secret) && !run.output.contains(&token),
                    "{}: a secret in the job log",
                    job.name
                );
                let (robot_user, robot_secret, repository) = if kind.name == "merge request" {
                    (
                        &scratch_user,
                        &scratch_secret,
                        format!("{harbor}/{}/{PROJECT}", contract::HARBOR_SCRATCH_PROJECT),
                    )
                } else {
                    (
                        &push_user,
                        &push_secret,
                        format!("{harbor}/platform-services/{PROJECT}"),
                    )
                };
                let credentials = format!("user={robot_user} pass_sha={}", sha256(robot_secret));
                match job.name {
                    "build-image" => {
                        assert!(
                            evidence.contains(&format!(
                                "kaniko {credentials} destination={repository}:"
                            )),
                            "{evidence}"
                        );
                        if kind.name == "main" {
                            digest = repo
                                .artifact("build-image", "image.digest")
                                .expect("image.digest");
                        }
                        if kind.name == "merge request" {
                            merge_request_environment_runs_it(world, &evidence);
                        }
                    }
                    "image-scan" => assert!(
                        evidence
                            .contains(&format!("trivy {credentials} ref={repository}@{digest}")),
                        "{evidence}"
                    ),
                    "image-sbom" => assert!(
                        evidence.contains(&format!("syft {credentials} ref={repository}@{digest}")),
                        "{evidence}"
                    ),
                    "sign-image" => {
                        assert!(
                            evidence
                                .contains(&format!("cosign-login registry={harbor} {credentials}")),
                            "{evidence}"
                        );
                        assert!(evidence.contains("transit=200"), "{evidence}");
                    }
                    "release-tag" => assert!(
                        evidence.contains(&format!(
                            "skopeo {credentials} destination=docker://{repository}:{RELEASE_TAG}"
                        )),
                        "{evidence}"
                    ),
                    "deploy-ephemeral" => {
                        assert!(
                            evidence
                                .contains("argocd POST /api/v1/applications?upsert=true -> 200"),
                            "{evidence}"
                        );
                        ephemeral_application_is_this_pipelines(world, repo, &digest, &harbor);
                    }
                    "cleanup-ephemeral" => {
                        assert!(evidence.contains("argocd DELETE"), "{evidence}");
                    }
                    "promote-artifact" => {
                        promotion_landed(world, &path, &digest, &harbor);
                        promotion_reruns_converge(world, &runner, &kind, &digest);
                        evidence = run
                            .output
                            .lines()
                            .filter(|l| l.contains("committed ") || l.contains("opened "))
                            .map(|l| l.rsplit("> ").next().unwrap_or(l).trim().to_owned())
                            .collect::<Vec<_>>()
                            .join("\n");
                    }
                    _ => {}
                }
            }
            rows.push(Row {
                job: job.name,
                kind: kind.name,
                runs,
                logins,
                // The secrets' hashes stay out of the table.
                evidence: evidence
                    .lines()
                    .map(|l| {
                        l.split_whitespace()
                            .filter(|w| !w.starts_with("pass_sha="))
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                    .collect::<Vec<_>>()
                    .join("; "),
            });
        }
    }
    print_table(&rows);

    // A merge request pipeline of a protected source branch (an MR from `main`, or its merged
    // result) carries `ref_protected: "true"` but runs unreviewed content: only the MR role opens.
    let from_main = PipelineClaims {
        source: "merge_request_event",
        ..PipelineClaims::branch("main", true)
    };
    let token = world.id_token(&path, &from_main);
    let roles: std::collections::BTreeSet<&str> =
        JOBS.iter().flat_map(|j| j.roles.iter().copied()).collect();
    for role in roles {
        let (status, answer) = world.vault_login(role, &token);
        let expected = if role == contract::ROLE_MERGE_REQUEST {
            200
        } else {
            400
        };
        assert_eq!(
            status, expected,
            "a merge request pipeline from protected main as {role}: {answer}"
        );
    }
}

fn print_table(rows: &[Row]) {
    let mut out = format!(
        "{:<18} {:<19} {:<5} {:<42} {}\n",
        "job", "pipeline", "runs", "Vault logins (role=status)", "what the job did with it"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{:<18} {:<19} {:<5} {:<42} {}",
            r.job,
            r.kind,
            if r.runs { "yes" } else { "no" },
            r.logins.join(" "),
            r.evidence
        );
    }
    eprint!("{out}");
    let artifacts =
        sandbox::support::target_dir(env!("CARGO_TARGET_TMPDIR")).join("test-artifacts/system");
    std::fs::create_dir_all(&artifacts).expect("artifacts");
    std::fs::write(artifacts.join("journey.txt"), out).expect("journey.txt");
}

/// deploy-ephemeral left an Application in the cluster (through the Argo CD stand-in, with the
/// token phase 15 minted) whose namespace the cleaner may delete and whose overlay renders the
/// image build-image produced in this pipeline.
fn ephemeral_application_is_this_pipelines(
    world: &World,
    repo: &LocalRepo,
    digest: &str,
    harbor: &str,
) {
    let manifest = repo
        .artifact("deploy-ephemeral", "ephemeral-application.yaml")
        .expect("the Application manifest");
    let wanted: Value = serde_saphyr::from_str(&manifest).expect("YAML");
    let live = world
        .live(&json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": {"name": wanted["metadata"]["name"], "namespace": "argocd"}}))
        .expect("the Application is in the cluster");
    assert_eq!(live["spec"]["project"], "ephemeral");
    let labels = &live["spec"]["syncPolicy"]["managedNamespaceMetadata"]["labels"];
    assert_eq!(labels[contract::EPHEMERAL_LABEL], "true");
    assert_eq!(labels[contract::TTL_LABEL], contract::EPHEMERAL_TTL);
    assert_eq!(labels[contract::HARBOR_PULL_LABEL], "true");
    // The same labels as the per-MR environments' (phase 15), which the cleaner selects on.
    assert_eq!(
        *labels,
        argo_delivery::desired::ephemeral_namespace_labels(contract::EPHEMERAL_TTL)
    );
    std::fs::write(
        world
            .scratch
            .path()
            .join(crate::ephemeral::MAIN_LABELS_FILE),
        labels.to_string(),
    )
    .expect("write");
    let image = live["spec"]["source"]["kustomize"]["images"][0]
        .as_str()
        .expect("an image override")
        .to_owned();
    let rendered = render_with_image(
        world,
        &format!("{GROUP}/{PROJECT}"),
        live["spec"]["source"]["path"].as_str().unwrap(),
        &image,
    );
    let wanted_image = format!("{harbor}/platform-services/{PROJECT}@{digest}");
    assert!(
        rendered.contains(&format!("image: {wanted_image}")),
        "the ephemeral overlay renders {wanted_image}:\n{rendered}"
    );
}

/// The per-MR Application phase 15's `ApplicationSet` makes for this MR renders exactly the image
/// the MR pipeline's build-image pushed (the generator's `head_sha` is the pipeline's commit).
fn merge_request_environment_runs_it(world: &World, evidence: &str) {
    let destination = evidence
        .split("destination=")
        .nth(1)
        .and_then(|d| d.split_whitespace().next())
        .expect("build-image's destination");
    let (_, head_sha) = destination.rsplit_once(':').expect("a tag");
    let appset = world
        .live(&json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "ApplicationSet", "metadata": {"name": format!("ephemeral-{PROJECT}"), "namespace": "argocd"}}))
        .expect("phase 15's ApplicationSet");
    let source = &appset["spec"]["template"]["spec"]["source"];
    // What the pull-request generator fills in for MR !7 at that head.
    let image = source["kustomize"]["images"][0]
        .as_str()
        .expect("an image override")
        .replace("{{ .head_sha }}", head_sha);
    let overlay = source["path"].as_str().expect("a path");
    let rendered = render_with_image(world, &format!("{GROUP}/{PROJECT}"), overlay, &image);
    assert!(
        rendered.contains(&format!("image: {destination}")),
        "the MR environment renders {destination}:\n{rendered}"
    );
}

/// `kubectl kustomize` of `overlay` of the project's `main` with Argo CD's `kustomize.images`
/// override applied as Argo CD applies it: `kustomize edit set image <name>=<reference>` in the
/// overlay itself (its `images` entry for that name replaced), then build.
pub fn render_with_image(world: &World, project: &str, overlay: &str, image: &str) -> String {
    static RENDERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = RENDERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = world.dir(&format!("render-{n}"));
    world.checkout(project, "main", &dir);
    let (name, reference) = image.split_once('=').expect("name=reference");
    let mut entry = json!({"name": name});
    if let Some((new_name, digest)) = reference.split_once('@') {
        entry["newName"] = json!(new_name);
        entry["digest"] = json!(digest);
    } else {
        let (new_name, tag) = reference.rsplit_once(':').expect("a tag");
        entry["newName"] = json!(new_name);
        entry["newTag"] = json!(tag);
    }
    let file = dir.join(overlay).join("kustomization.yaml");
    let mut kustomization: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(&file).expect("the overlay"))
            .expect("YAML");
    let images = kustomization["images"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|i| i["name"] != name)
        .chain(std::iter::once(entry))
        .collect::<Vec<_>>();
    kustomization["images"] = Value::Array(images);
    // JSON is YAML: kustomize reads it as it is.
    std::fs::write(&file, kustomization.to_string()).expect("write");
    kustomize(&dir.join(overlay))
}

/// promote-artifact committed the digest to the overlay the staging Application tracks, and
/// opened the production promotion MR with the same digest.
fn promotion_landed(world: &World, path: &str, digest: &str, harbor: &str) {
    let staging_app = world
        .live(&json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": {"name": format!("{PROJECT}-staging"), "namespace": "argocd"}}))
        .expect("phase 15's staging Application");
    let overlay = staging_app["spec"]["source"]["path"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(staging_app["spec"]["source"]["targetRevision"], "main");
    assert!(
        staging_app["spec"]["source"]["repoURL"]
            .as_str()
            .unwrap()
            .ends_with(&format!("{path}.git"))
    );
    let dir = world.dir("promoted-staging");
    world.checkout(path, "main", &dir);
    let rendered = kustomize(&dir.join(&overlay));
    let image = format!("{harbor}/platform-services/{PROJECT}@{digest}");
    assert!(
        documents(&rendered)
            .iter()
            .any(|d| d.to_string().contains(&image)),
        "kubectl kustomize {overlay} renders {image}"
    );
    let gl = world.sandbox.gitlab.as_ref().unwrap().lock();
    let project = gl.project_by_path(path).unwrap();
    let last = project.repository.commits.last().unwrap();
    assert!(
        last.1.contains("[skip ci]"),
        "the staging commit starts no pipeline: {}",
        last.1
    );
    let mr = project
        .delivery
        .merge_requests
        .iter()
        .find(|m| {
            m.state == "opened" && m.source_branch.starts_with(&format!("promote/{PROJECT}-"))
        })
        .expect("the production promotion MR");
    assert_eq!(mr.target_branch, "main");
    assert!(
        mr.title.starts_with(&format!("Promote {PROJECT} "))
            && mr.title.ends_with(" to production")
    );
    let production_app = world
        .live(&json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": {"name": PROJECT, "namespace": "argocd"}}))
        .expect("phase 15's production Application");
    let production_overlay = production_app["spec"]["source"]["path"].as_str().unwrap();
    let branch = &project.repository.branches[&mr.source_branch];
    let pinned = &branch.files[&format!("{production_overlay}/kustomization.yaml")];
    assert!(pinned.contains(&format!("digest: {digest}")), "{pinned}");
    assert!(
        !project.repository.files[&format!("{production_overlay}/kustomization.yaml")]
            .contains(digest),
        "production changes only when the MR is merged"
    );
}

/// Rerunning promote-artifact converges: after a run that made the branch but opened no merge
/// request (here: the request is gone), it opens one on that branch without a second commit
/// (GitLab refuses `start_branch` onto an existing branch); with the request open, it stops.
fn promotion_reruns_converge(world: &World, runner: &JobRunner, kind: &Kind, digest: &str) {
    let path = format!("{GROUP}/{PROJECT}");
    let (branch, commits) = {
        let mut gl = world.sandbox.gitlab.as_ref().unwrap().lock();
        let project = gl.project_by_path_mut(&path).unwrap();
        let requests = &mut project.delivery.merge_requests;
        let at = requests
            .iter()
            .position(|m| m.state == "opened" && m.source_branch.starts_with("promote/"))
            .expect("the promotion MR");
        let branch = requests.remove(at).source_branch;
        (branch, project.repository.commits.len())
    };
    let extra = [("IMAGE_DIGEST", digest.to_owned())];
    let (again, _) = runner.run(world, "promote-artifact", &kind.gcl, &kind.claims, &extra);
    assert_eq!(
        again.verdict("promote-artifact"),
        "PASS",
        "{}",
        again.output
    );
    {
        let gl = world.sandbox.gitlab.as_ref().unwrap().lock();
        let project = gl.project_by_path(&path).unwrap();
        assert_eq!(
            project.repository.commits.len(),
            commits,
            "no second commit"
        );
        assert_eq!(
            project
                .delivery
                .merge_requests
                .iter()
                .filter(|m| m.state == "opened" && m.source_branch == branch)
                .count(),
            1,
            "the merge request is opened again from {branch}"
        );
    }
    let (third, _) = runner.run(world, "promote-artifact", &kind.gcl, &kind.claims, &extra);
    assert!(third.output.contains("is already open"), "{}", third.output);
    {
        let gl = world.sandbox.gitlab.as_ref().unwrap().lock();
        assert_eq!(
            gl.project_by_path(&path)
                .unwrap()
                .delivery
                .merge_requests
                .iter()
                .filter(|m| m.source_branch.starts_with("promote/"))
                .count(),
            1,
            "no duplicate merge request"
        );
    }

    // Once the promotion is merged (main's production overlay pins the digest, the branch still
    // there), a rerun opens nothing.
    let production_file = {
        let mut gl = world.sandbox.gitlab.as_ref().unwrap().lock();
        let project = gl.project_by_path_mut(&path).unwrap();
        project.delivery.merge_requests.clear();
        let merged = project.repository.branches[&branch].clone();
        let file = merged
            .files
            .keys()
            .find(|f| {
                f.ends_with("kustomization.yaml")
                    && merged.files[*f].contains(digest)
                    && !f.contains("staging")
            })
            .expect("the pinned production overlay")
            .clone();
        project
            .repository
            .files
            .insert(file.clone(), merged.files[&file].clone());
        file
    };
    let (after_merge, _) = runner.run(world, "promote-artifact", &kind.gcl, &kind.claims, &extra);
    assert_eq!(
        after_merge.verdict("promote-artifact"),
        "PASS",
        "{}",
        after_merge.output
    );
    assert!(
        after_merge.output.contains("production already runs"),
        "{production_file}: {}",
        after_merge.output
    );
    let gl = world.sandbox.gitlab.as_ref().unwrap().lock();
    assert!(
        gl.project_by_path(&path)
            .unwrap()
            .delivery
            .merge_requests
            .is_empty(),
        "a merged promotion is not opened again"
    );
}
