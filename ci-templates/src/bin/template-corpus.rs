//! Runs the template library's corpus (ci-templates/corpus/corpus.toml): every project's merge
//! request pipeline under gitlab-ci-local, each job's verdict compared with the recorded one.
//! `template-corpus [--only NAME…] [--markdown FILE] [--commit SHA] [--logs DIR]`; exit 1 when a
//! verdict differs. `--logs` keeps each project's whole pipeline output (`DIR/<name>.log`).
//! scripts/corpus.sh is the way to call it.

use std::path::PathBuf;

use anyhow::Context as _;
use ci_templates::corpus;

fn main() -> anyhow::Result<()> {
    let mut only = Vec::new();
    let mut markdown: Option<PathBuf> = None;
    let mut commit = String::from("(uncommitted)");
    let mut logs: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--only" => only.push(args.next().context("--only needs a project name")?),
            "--markdown" => markdown = Some(args.next().context("--markdown needs a file")?.into()),
            "--commit" => commit = args.next().context("--commit needs a value")?,
            "--logs" => logs = Some(args.next().context("--logs needs a directory")?.into()),
            other => anyhow::bail!(
                "unknown argument {other}: template-corpus [--only NAME…] [--markdown FILE] [--commit SHA] [--logs DIR]"
            ),
        }
    }
    let projects: Vec<_> = corpus::projects()?
        .into_iter()
        .filter(|p| only.is_empty() || only.contains(&p.name))
        .collect();
    if projects.is_empty() {
        anyhow::bail!("no corpus project is named {only:?}");
    }
    let work = tempfile::Builder::new()
        .prefix("template-corpus-")
        .tempdir()?;
    let cache = corpus::cache_dir();
    let mut runs = Vec::new();
    let mut problems = Vec::new();
    for project in &projects {
        eprintln!(
            "corpus: {} ({}, {})",
            project.name, project.language, project.layout
        );
        let source = corpus::fetch(project, &cache, work.path())
            .with_context(|| format!("fetching {}", project.name))?;
        let run = corpus::run_project(project, &source)?;
        for job in &run.jobs {
            eprintln!(
                "corpus: {} / {}: {}{}",
                project.name,
                job.job,
                job.verdict,
                if job.reason.is_empty() {
                    String::new()
                } else {
                    format!(" — {}", job.reason)
                }
            );
        }
        eprintln!("corpus: {}: {:.0} s", project.name, run.wall_seconds);
        if let Some(dir) = &logs {
            std::fs::create_dir_all(dir)?;
            let file = dir.join(format!("{}.log", project.name));
            std::fs::write(&file, &run.output)
                .with_context(|| format!("writing {}", file.display()))?;
        }
        problems.extend(corpus::unexpected(project, &run));
        runs.push(run);
    }
    if let Some(path) = markdown {
        std::fs::write(
            &path,
            corpus::markdown(&projects, &runs, &corpus::missing_layouts()?, &commit),
        )
        .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("corpus: wrote {}", path.display());
    }
    for p in &problems {
        eprintln!("corpus: UNEXPECTED {p}");
    }
    if problems.is_empty() {
        eprintln!("corpus: {} projects, every verdict as recorded", runs.len());
        Ok(())
    } else {
        std::process::exit(1)
    }
}
