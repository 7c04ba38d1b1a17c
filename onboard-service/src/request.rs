//! What the operator asked for, checked before anything is read or written.

use anyhow::bail;
use common::contract::{Strategy, service_name_problem};
use seeded_projects::service_template::Language;

/// The library pattern of the service's pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Pattern {
    /// A deployed service: image, ephemeral environment, staging and production (the template).
    Microservice,
}

/// One onboarding request, valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub name: String,
    pub language: Language,
    pub pattern: Pattern,
    pub strategy: Strategy,
}

impl Request {
    /// Checks the name against the rules of Kubernetes, Harbor and GitLab, and the language.
    pub fn new(
        name: &str,
        language: &str,
        pattern: Pattern,
        strategy: &str,
    ) -> anyhow::Result<Self> {
        if let Some(problem) = service_name_problem(name) {
            bail!("service name {name:?} refused: {problem}");
        }
        let strategy = match strategy {
            "canary" => Strategy::Canary,
            "bluegreen" => Strategy::BlueGreen,
            other => bail!("--strategy {other}: canary or bluegreen"),
        };
        Ok(Self {
            name: name.to_owned(),
            language: Language::parse(language)?,
            pattern,
            strategy,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_issue_s_bad_names_are_refused_with_the_rule() {
        for (name, rule) in [
            ("Bad_Name", "RFC 1123"),
            (&"a".repeat(64) as &str, "at most 39"),
            ("-x", "start and end with a letter or digit"),
        ] {
            let e = Request::new(name, "go", Pattern::Microservice, "canary")
                .unwrap_err()
                .to_string();
            assert!(e.contains(rule) && e.contains("refused"), "{name}: {e}");
        }
        assert!(Request::new("billing", "cobol", Pattern::Microservice, "canary").is_err());
        let ok = Request::new("billing", "node", Pattern::Microservice, "bluegreen").unwrap();
        assert_eq!(ok.strategy, Strategy::BlueGreen);
    }
}
