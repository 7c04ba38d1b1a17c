//! Operating the CI/CD layer (issue 21):
//! - [`preflight`]: `cicd-preflight`, every prerequisite of the phases about to run, checked
//!   before the driver starts the first of them (`scripts/deploy-cluster.sh`);
//! - [`readiness`]: `cicd-readiness`, the plan's success criteria (MinimumCD checklist, DORA
//!   targets, operational readiness) evaluated live against the platform, and `serve`, which
//!   exports the last saved report as the gauges `cicd_readiness{section,check}`.

pub mod preflight;
pub mod readiness;

use std::path::PathBuf;

use clap::Parser;
use common::cli::{EXIT_ERROR, EXIT_OK, GlobalArgs, Output, init};

#[derive(Parser)]
#[command(
    name = "cicd-preflight",
    version,
    about = "Checks every prerequisite of phases 12–18 (GitLab, Vault, Harbor, Keycloak, CRDs, monitoring) and prints one table; writes nothing, exit 1 when one is missing"
)]
pub struct PreflightCli {
    #[command(flatten)]
    pub global: GlobalArgs,
    /// Check what phases N…18 need (the driver's --from).
    #[arg(long, value_name = "N", conflicts_with = "only")]
    pub from: Option<String>,
    /// Check what phase N alone needs (the driver's --only).
    #[arg(long, value_name = "N", conflicts_with = "phases")]
    pub only: Option<String>,
    /// Check what exactly these phases need (comma-separated; the driver passes the phases it
    /// is about to run, without those its switches skip).
    #[arg(
        long,
        value_name = "N,…",
        value_delimiter = ',',
        conflicts_with = "from"
    )]
    pub phases: Vec<String>,
}

/// Runs the preflight; exit 0 when nothing is missing, 1 otherwise.
pub async fn run_preflight(cli: PreflightCli) -> anyhow::Result<u8> {
    let cfg = init(&cli.global)?;
    let selected = if cli.phases.is_empty() {
        preflight::select(cli.from.as_deref(), cli.only.as_deref())?
    } else {
        preflight::listed(&cli.phases)?
    };
    let sandbox = cfg.environment().get(common::env::CICD_SANDBOX) == Some("true");
    let rows = preflight::probe_all(&cfg, &selected, sandbox).await;
    let failed = preflight::failed(&rows);
    match cli.global.output {
        Output::Json => println!(
            "{}",
            common::redact::redact(&serde_json::to_string_pretty(&serde_json::json!({
                "phases": selected,
                "ok": !failed,
                "rows": rows,
            }))?)
        ),
        Output::Text => print!(
            "{}",
            common::redact::redact(&preflight::render_text(&rows, &selected))
        ),
    }
    Ok(if failed { EXIT_ERROR } else { EXIT_OK })
}

#[derive(Parser)]
#[command(
    name = "cicd-readiness",
    version,
    about = "Evaluates the plan's success criteria live (MinimumCD checklist, DORA targets, operational readiness): each row pass, fail or unknown, with its evidence and fix; writes nothing to the platform"
)]
pub struct ReadinessCli {
    #[command(flatten)]
    pub global: GlobalArgs,
    /// Attestations of what no API proves (runbooks reviewed, drills done), YAML; also
    /// `CICD_READINESS_ATTESTATIONS`.
    #[arg(long, value_name = "FILE", env = common::env::CICD_READINESS_ATTESTATIONS)]
    pub attestations: Option<PathBuf>,
    /// Also write the report as JSON to FILE (what `serve` exports).
    #[arg(long, value_name = "FILE")]
    pub write_json: Option<PathBuf>,
    /// Also write the report as Markdown to FILE.
    #[arg(long, value_name = "FILE")]
    pub write_markdown: Option<PathBuf>,
    /// Also write the report as one self-contained HTML page to FILE.
    #[arg(long, value_name = "FILE")]
    pub write_html: Option<PathBuf>,
    /// A missing attestation file is an empty set rather than an error (the daily `CronJob`
    /// mounts the ops team's `ConfigMap` cicd-readiness-attestations only when it exists).
    #[arg(long, requires = "attestations")]
    pub attestations_if_present: bool,
    /// Keep the report (JSON, Markdown, HTML) in `ConfigMap` `[NAMESPACE/]NAME` (default namespace:
    /// `OBS_NAMESPACE`), by server-side apply: the daily `CronJob`'s one write, which `serve` in
    /// the exporter reads.
    #[arg(long, value_name = "[NAMESPACE/]NAME")]
    pub write_configmap: Option<String>,
    /// Exit 2 when a row fails (for a scheduled check); default: exit 0 once the report is made.
    #[arg(long)]
    pub fail_on_red: bool,
    #[command(subcommand)]
    pub command: Option<ReadinessCommand>,
}

#[derive(clap::Subcommand)]
pub enum ReadinessCommand {
    /// Serve the last saved JSON report as Prometheus gauges (`/metrics`).
    Serve {
        /// The JSON report the daily run writes (`--write-json`).
        #[arg(long, value_name = "FILE")]
        report: PathBuf,
        /// Address to listen on.
        #[arg(long, default_value = "0.0.0.0:9465")]
        listen: String,
    },
}

/// Writes `text` to `path` readable by others (a report holds no secret: evidence is redacted).
fn write_file(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let partial = path.with_extension("partial");
    std::fs::write(&partial, text).with_context(|| format!("writing {}", partial.display()))?;
    std::fs::rename(&partial, path).with_context(|| format!("writing {}", path.display()))
}

/// Runs the readiness report (or `serve`).
pub async fn run_readiness(cli: ReadinessCli) -> anyhow::Result<u8> {
    let cfg = init(&cli.global)?;
    if let Some(ReadinessCommand::Serve { report, listen }) = cli.command {
        return readiness::serve::run(report, &listen)
            .await
            .map(|()| EXIT_OK);
    }
    let attestation_file = cli
        .attestations
        .as_deref()
        .filter(|p| !cli.attestations_if_present || p.exists());
    let attestations = readiness::Attestations::load(attestation_file)?;
    let report = readiness::evaluate(&cfg, &attestations).await?;
    let json = common::redact::redact(&serde_json::to_string_pretty(&report)?);
    if let Some(p) = &cli.write_json {
        write_file(p, &json)?;
    }
    if let Some(p) = &cli.write_markdown {
        write_file(p, &common::redact::redact(&readiness::markdown(&report)))?;
    }
    if let Some(p) = &cli.write_html {
        write_file(p, &common::redact::redact(&readiness::html(&report)))?;
    }
    if let Some(target) = &cli.write_configmap {
        let default_ns = cfg
            .environment()
            .get(common::env::OBS_NAMESPACE)
            .unwrap_or("monitoring");
        readiness::keep::write_configmap(&cfg, target, default_ns, &report, &json).await?;
    }
    match cli.global.output {
        Output::Json => println!("{json}"),
        Output::Text => print!("{}", common::redact::redact(&readiness::text(&report))),
    }
    let (_, failed, _) = report.counts();
    Ok(if cli.fail_on_red && failed > 0 {
        common::cli::EXIT_DRIFT
    } else {
        EXIT_OK
    })
}
