//! Facts about the CI template library that the services need too. Not behind the `platform`
//! feature: the DORA collector builds `common` without it (its standalone GitLab project carries
//! `common/`), and `.ci/run` builds each crate alone so feature unification cannot hide that.

/// The stages of the template library's pipelines (`ci-templates/library/templates/stages.yml`, plan
/// §1.1 and §1.4), in order: the DORA collector keeps a series for each whatever its label cap,
/// and ci-templates checks this list against the file.
pub const LIBRARY_STAGES: &[&str] = &[
    "pre-build",
    "build",
    "test",
    "scan",
    "package",
    "publish",
    "deploy",
    "acceptance",
    "cleanup",
    "promote",
];
