//! GitLab's `rules:if` expressions, evaluated as GitLab does (`doc/ci/jobs/job_rules.md` "CI/CD variable
//! expressions"): `$VAR` / `${VAR}` (true when defined and not empty), string literals in double or
//! single quotes, `null`, `==` and `!=`, `=~` and `!~` against a `/regex/` (RE2 syntax; flag `i`),
//! `&&` binding tighter than `||`, and parentheses. gitlab-ci-local 4.73 does not apply
//! `workflow:rules`, so the local runner decides with this whether GitLab would create a pipeline.

use std::collections::BTreeMap;

use anyhow::{Context as _, bail};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Var(String),
    Str(String),
    Null,
    Regex(String, bool),
    Op(&'static str),
    Open,
    Close,
}

fn tokens(expr: &str) -> anyhow::Result<Vec<Token>> {
    let chars: Vec<char> = expr.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '$' {
            let braced = chars.get(i + 1) == Some(&'{');
            let start = i + 1 + usize::from(braced);
            let mut end = start;
            while end < chars.len() && (chars[end].is_ascii_alphanumeric() || chars[end] == '_') {
                end += 1;
            }
            if end == start {
                bail!("`{expr}`: `$` without a variable name");
            }
            out.push(Token::Var(chars[start..end].iter().collect()));
            i = end + usize::from(braced);
        } else if c == '"' || c == '\'' {
            let end = chars[i + 1..]
                .iter()
                .position(|x| *x == c)
                .with_context(|| format!("`{expr}`: unterminated string"))?;
            out.push(Token::Str(chars[i + 1..i + 1 + end].iter().collect()));
            i += end + 2;
        } else if c == '/' {
            let mut end = i + 1;
            while end < chars.len() && chars[end] != '/' {
                end += if chars[end] == '\\' { 2 } else { 1 };
            }
            if end >= chars.len() {
                bail!("`{expr}`: unterminated regular expression");
            }
            let pattern: String = chars[i + 1..end].iter().collect();
            let mut flags_end = end + 1;
            while flags_end < chars.len() && chars[flags_end].is_ascii_alphabetic() {
                flags_end += 1;
            }
            let flags: String = chars[end + 1..flags_end].iter().collect();
            out.push(Token::Regex(pattern, flags.contains('i')));
            i = flags_end;
        } else if c == '(' {
            out.push(Token::Open);
            i += 1;
        } else if c == ')' {
            out.push(Token::Close);
            i += 1;
        } else {
            let rest: String = chars[i..].iter().take(4).collect();
            let op = ["&&", "||", "==", "!=", "=~", "!~"]
                .into_iter()
                .find(|op| rest.starts_with(op));
            if let Some(op) = op {
                out.push(Token::Op(op));
                i += 2;
            } else if rest.starts_with("null") {
                out.push(Token::Null);
                i += 4;
            } else {
                bail!("`{expr}`: unexpected `{c}`");
            }
        }
    }
    Ok(out)
}

struct Parser<'a> {
    tokens: Vec<Token>,
    at: usize,
    vars: &'a BTreeMap<String, String>,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn or(&mut self) -> anyhow::Result<bool> {
        let mut value = self.and()?;
        while self.peek() == Some(&Token::Op("||")) {
            self.at += 1;
            let right = self.and()?;
            value = value || right;
        }
        Ok(value)
    }

    fn and(&mut self) -> anyhow::Result<bool> {
        let mut value = self.unary()?;
        while self.peek() == Some(&Token::Op("&&")) {
            self.at += 1;
            let right = self.unary()?;
            value = value && right;
        }
        Ok(value)
    }

    fn operand(&mut self) -> anyhow::Result<Option<String>> {
        let token = self.peek().cloned().context("an operand is missing")?;
        self.at += 1;
        match token {
            Token::Var(name) => Ok(self.vars.get(&name).cloned()),
            Token::Str(s) => Ok(Some(s)),
            Token::Null => Ok(None),
            other => bail!("{other:?} is not an operand"),
        }
    }

    fn unary(&mut self) -> anyhow::Result<bool> {
        if self.peek() == Some(&Token::Open) {
            self.at += 1;
            let value = self.or()?;
            if self.peek() != Some(&Token::Close) {
                bail!("a `(` is not closed");
            }
            self.at += 1;
            return Ok(value);
        }
        let left = self.operand()?;
        match self.peek().cloned() {
            Some(Token::Op(op @ ("==" | "!="))) => {
                self.at += 1;
                let right = self.operand()?;
                // An empty variable is an empty string; an undefined one is null.
                Ok((left == right) == (op == "=="))
            }
            Some(Token::Op(op @ ("=~" | "!~"))) => {
                self.at += 1;
                let Some(Token::Regex(pattern, insensitive)) = self.peek().cloned() else {
                    bail!("`{op}` needs a /regular expression/");
                };
                self.at += 1;
                let re = regex::RegexBuilder::new(&pattern)
                    .case_insensitive(insensitive)
                    .build()
                    .with_context(|| format!("/{pattern}/ is not a regular expression"))?;
                let matched = left.as_deref().is_some_and(|v| re.is_match(v));
                Ok(matched == (op == "=~"))
            }
            _ => Ok(left.is_some_and(|v| !v.is_empty())),
        }
    }
}

/// The value of one `rules:if` expression with `vars` (an empty value counts as unset).
pub fn evaluate(expr: &str, vars: &BTreeMap<String, String>) -> anyhow::Result<bool> {
    let mut parser = Parser {
        tokens: tokens(expr)?,
        at: 0,
        vars,
    };
    let value = parser
        .or()
        .with_context(|| format!("evaluating `{expr}`"))?;
    if parser.at != parser.tokens.len() {
        bail!("`{expr}`: unexpected tokens after the expression");
    }
    Ok(value)
}

/// Whether `workflow:rules` let GitLab create the pipeline: the first rule that matches decides
/// (`when: never` refuses); no rule matching refuses; no rules at all creates it.
pub fn workflow_creates_pipeline(
    workflow: &Value,
    vars: &BTreeMap<String, String>,
) -> anyhow::Result<bool> {
    let Some(rules) = workflow["rules"].as_array() else {
        return Ok(true);
    };
    for rule in rules {
        let matches = match rule["if"].as_str() {
            Some(expr) => evaluate(expr, vars)?,
            None => true,
        };
        if matches {
            return Ok(rule["when"].as_str() != Some("never"));
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn gitlab_expressions() {
        let v = vars(&[
            ("CI_COMMIT_TAG", "v1.2.3"),
            ("CI_COMMIT_REF_PROTECTED", "true"),
            ("CI_COMMIT_BRANCH", ""),
            ("CI_DEFAULT_BRANCH", "main"),
            (
                "MSG",
                "Merge branch 'promote/x'\n\nPromote x 1a2b3c4d to production",
            ),
        ]);
        let t = |e: &str| evaluate(e, &v).unwrap();
        assert!(t(
            r#"$CI_COMMIT_TAG =~ /^v[0-9]+\.[0-9]+\.[0-9]+$/ && $CI_COMMIT_REF_PROTECTED == "true""#
        ));
        assert!(!t(r"$CI_COMMIT_TAG =~ /^v[0-9]+$/"));
        assert!(!t("$CI_COMMIT_BRANCH"), "empty is false");
        assert!(!t("$UNDEFINED"));
        assert!(!t("$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH"));
        assert!(t("$UNDEFINED == null && $CI_COMMIT_TAG != null"));
        assert!(t("$MSG =~ /Promote [^ ]+ [0-9a-f]+ to production/"));
        assert!(t("$UNDEFINED !~ /anything/"));
        assert!(t(
            "($CI_COMMIT_BRANCH || $CI_COMMIT_TAG) && $CI_DEFAULT_BRANCH == 'main'"
        ));
        assert!(t("$CI_COMMIT_TAG =~ /^V1/i"));
        assert!(
            t("$UNDEFINED || $CI_COMMIT_TAG && $CI_DEFAULT_BRANCH"),
            "&& binds tighter"
        );
        assert!(evaluate("$A ==", &v).is_err());
        assert!(evaluate("($A", &v).is_err());
    }

    #[test]
    fn workflow_rules_decide_in_order() {
        let workflow = serde_json::json!({"rules": [
            {"if": "$CI_PIPELINE_SOURCE == \"merge_request_event\""},
            {"if": "$CI_COMMIT_BRANCH && $CI_OPEN_MERGE_REQUESTS", "when": "never"},
            {"if": "$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH"},
        ]});
        let run =
            |pairs: &[(&str, &str)]| workflow_creates_pipeline(&workflow, &vars(pairs)).unwrap();
        assert!(run(&[("CI_PIPELINE_SOURCE", "merge_request_event")]));
        assert!(!run(&[
            ("CI_COMMIT_BRANCH", "main"),
            ("CI_DEFAULT_BRANCH", "main"),
            ("CI_OPEN_MERGE_REQUESTS", "!1")
        ]));
        assert!(run(&[
            ("CI_COMMIT_BRANCH", "main"),
            ("CI_DEFAULT_BRANCH", "main")
        ]));
        assert!(
            !run(&[
                ("CI_COMMIT_BRANCH", "feature"),
                ("CI_DEFAULT_BRANCH", "main")
            ]),
            "no rule matches"
        );
        assert!(workflow_creates_pipeline(&serde_json::json!({}), &vars(&[])).unwrap());
    }
}
