//! `onboard-service`: the golden path from "new service" to "canary in production" (plan §6.4).
//!
//! `onboard-service NAME --lang go|node|python|rust [--strategy canary|bluegreen] [plan|apply|check]`
//! creates, from the service template phase 14 seeds (`platform_services/service-template`, read
//! back at its version tag):
//! 1. the service's entry in the service catalog (`ConfigMap` `cicd-service-catalog`), first, so a
//!    rerun after a crash recognises the project as its own;
//! 2. the GitLab project, `main` and `v*` protected, its promotion token in Vault, one commit of the
//!    rendered template, the release tag `v0.1.0` (`seeded_projects::seed`, as phases 17 and 18 do);
//! 3. its placeholder service secrets at `kv/services/<project id>` (phase 13's layout);
//! 4. phase 12's hardening of the project (`gitlab_harden`, the phase's own code);
//! 5. phase 15's objects for it: namespaces, staging and production Applications, the per-MR
//!    `ApplicationSet` (`argo_delivery::desired`, applied with phase 15's field manager, so phase
//!    15's next run finds nothing to change).
//!
//! Its images go to the shared Harbor project of the platform's services (plan §3.3), pushed by
//! `ci-push`: no robot of its own. Names that Kubernetes, Harbor or GitLab would refuse are refused
//! before anything is read ([`common::contract::service_name_problem`]).

pub mod reconcile;
pub mod request;

use clap::Parser;
use common::cli::{GlobalArgs, Mode, init};
use common::phase::run_phase;

use crate::request::{Pattern, Request};

#[derive(Parser)]
#[command(
    name = "onboard-service",
    version,
    about = "Create a service from the platform's service template: GitLab project, Vault paths, catalog entry and Argo CD Applications"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The service's name: GitLab project, image repository, Kubernetes names (lowercase letters,
    /// digits and '-', at most 39 characters). A name starting with '-' is taken as a name (and
    /// refused with the rule it breaks), not as an option.
    #[arg(allow_hyphen_values = true)]
    pub name: String,
    /// The template language: go, node, python or rust.
    #[arg(long = "lang", value_name = "LANGUAGE")]
    pub language: String,
    /// The library pattern of its pipeline (microservice: the template's deployed service).
    #[arg(long, value_enum, default_value_t = Pattern::Microservice)]
    pub pattern: Pattern,
    /// Argo Rollouts strategy of its production overlay.
    #[arg(long, default_value = "canary", value_parser = ["canary", "bluegreen"])]
    pub strategy: String,
    #[command(subcommand)]
    pub mode: Option<Mode>,
}

/// Runs the CLI; returns the exit code. The request is checked before anything is read.
pub async fn run(cli: Cli) -> anyhow::Result<u8> {
    let request = Request::new(&cli.name, &cli.language, cli.pattern, &cli.strategy)?;
    let cfg = init(&cli.global)?;
    let phase = reconcile::Onboarding::connect(&cfg, request).await?;
    run_phase(&phase, cli.mode.unwrap_or(Mode::Plan), &cli.global).await
}
