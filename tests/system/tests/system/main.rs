//! One release from a protected tag to production, across every phase (docs/adr/0008).
//!
//! A sandbox where the platform's bash phases ran first (their leftovers, docs/adr/0010) gets phases
//! 12, 12b and 13–18 applied by their binaries (and applied again: zero changes), then
//! each hand-off is checked with both sides running: the CI library's jobs log in to the real
//! `OpenBao` with `id_tokens` signed by the GitLab stand-in's key, for every pipeline kind; promotion
//! commits through the stand-in's API; the ephemeral Application lands in the cluster through the
//! Argo CD stand-in with the token phase 15 minted; images are built, pushed, signed and verified
//! against a real registry. Steps run in order in one test (they share one sandbox); a failing
//! step does not hide the others: every failure is reported at the end.

// Not a journey step: the shared clients against hostile stand-in answers.
mod clients;
mod docs;
mod driver_check;
mod ephemeral;
mod flags;
mod images;
mod jobs;
mod journey;
mod leftovers;
mod onboarding;
mod preflight;
mod pull;
mod readiness;
mod readiness_credentials;
mod release;
mod runners;
mod secrets;
mod world;

use std::panic::AssertUnwindSafe;

use world::World;

/// Runs `step`, turning a panic into a reported failure. `SYSTEM_STEPS` (comma-separated words of
/// step names) runs only the matching steps, for working on one.
fn step(failures: &mut Vec<String>, name: &str, f: impl FnOnce()) {
    if let Ok(only) = std::env::var("SYSTEM_STEPS") {
        if !only
            .split(',')
            .any(|w| !w.is_empty() && name.contains(w.trim()))
        {
            return;
        }
    }
    eprintln!("==> {name}");
    let started = std::time::Instant::now();
    match std::panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(()) => eprintln!("    {name}: ok ({:.1} s)", started.elapsed().as_secs_f64()),
        Err(e) => {
            let message = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_else(|| "panicked".into());
            eprintln!("    {name}: FAILED: {message}");
            failures.push(format!("{name}: {message}"));
        }
    }
}

#[test]
fn one_release_from_a_protected_tag_to_production() {
    let world = World::start();
    let mut failures = Vec::new();
    step(
        &mut failures,
        "runner pools serve every library job",
        || {
            runners::every_job_maps_to_a_deployed_pool(&world);
        },
    );
    step(&mut failures, "pipeline kinds × Vault logins", || {
        journey::each_job_logs_in_exactly_where_it_runs(&world);
    });
    step(&mut failures, "ephemeral environments", || {
        ephemeral::environments_run_their_own_image_and_get_cleaned(&world);
    });
    step(
        &mut failures,
        "pipeline tests reach the ephemeral environment",
        || {
            ephemeral::pipeline_tests_reach_the_main_environment(&world);
        },
    );
    step(&mut failures, "pull credentials", || {
        pull::workload_namespaces_pull_with_the_robot_eso_reads(&world);
    });
    step(&mut failures, "image producers", || {
        images::every_deployed_image_has_a_producer(&world);
    });
    step(
        &mut failures,
        "the bash phases' leftovers converged",
        || {
            leftovers::converged(&world);
        },
    );
    step(
        &mut failures,
        "phase 12b published the platform's SOPs",
        || {
            leftovers::wiki_published(&world);
        },
    );
    step(&mut failures, "secret-access matrix", || {
        secrets::every_subject_reads_exactly_its_paths(&world);
    });
    step(&mut failures, "release: build, push, sign, verify", || {
        release::the_collector_release_is_built_signed_and_verified(&world);
    });
    // Last: onboarding adds services (and their secrets) the steps above do not expect.
    step(&mut failures, "onboard a Go and a Node service", || {
        onboarding::go_and_node_services_are_onboarded_from_nothing(&world);
    });
    step(&mut failures, "onboarding refuses bad names", || {
        onboarding::bad_names_are_refused_without_a_write(&world);
    });
    step(&mut failures, "onboarded projects are usable", || {
        onboarding::onboarded_projects_are_usable(&world);
    });
    step(
        &mut failures,
        "onboarding: feature flags reach the service",
        || {
            flags::a_flag_reaches_the_onboarded_service_prometheus_and_the_auditor(&world);
        },
    );
    step(&mut failures, "onboarding: docs/cicd commands hold", || {
        docs::every_command_and_reference_in_the_docs_holds(&world);
    });
    step(
        &mut failures,
        "preflight: one red row per missing prerequisite",
        || {
            preflight::each_missing_prerequisite_gives_one_red_row(&world);
        },
    );
    step(
        &mut failures,
        "readiness report: live evidence, two drifts",
        || {
            readiness::the_report_reads_live_evidence_and_names_two_drifts(&world);
        },
    );
    step(
        &mut failures,
        "readiness CronJob: producer, grants, kept report, gauges",
        || {
            readiness::the_daily_cronjob_keeps_the_report_its_exporter_serves(&world);
        },
    );
    // Last: it leaves three phases drifted.
    step(&mut failures, "deploy-cluster.sh --check", || {
        driver_check::the_driver_check_names_exactly_the_drifted_phases(&world);
    });
    assert!(
        failures.is_empty(),
        "{} step(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
