//! The env file (`scripts/.env`), read as bash reads it. The platform's own `deploy-cluster.sh`
//! `source`s the same file, so a value must mean the same thing to both. This is the subset of
//! bash the file may use, each rule as bash applies it to an assignment:
//! - `KEY=value` lines, optionally after `export `; blank lines and `#` comments; a `#` after
//!   whitespace starts a comment;
//! - single quotes keep everything literally (no `$`, no escapes), and may span lines;
//! - double quotes expand `$NAME` and `${NAME}`, and `\` escapes only `$`, `` ` ``, `"`, `\` and a
//!   newline; they may span lines;
//! - unquoted, `\` escapes the next character (`\` and a newline continue the line), `$NAME` and
//!   `${NAME}` expand, and `~` at the start or after a `:` is `$HOME` (so `KUBECONFIG=~/a:~/b`);
//! - `$NAME` reads a key set earlier in the file, else the process environment, else is empty.
//!
//! Anything else bash would run or expand differently — command substitution, `${NAME:-x}` and
//! the other operators, `$1`, `$UID` and the other variables bash sets itself, `$'…'`, `~user`, an unquoted space, `;`, `|`, `&`, `<`, `>`,
//! parentheses — is one clear error naming the line and the fix. The product never runs bash to
//! read the file; the tests compare every case with bash's own reading.

use std::collections::BTreeMap;

/// Why a line of the file is not in the supported subset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvFileError {
    /// 1-based line where the offending assignment starts.
    pub line: usize,
    /// What is wrong, and the fix.
    pub message: String,
}

impl std::fmt::Display for EnvFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// Parses env-file text; `lookup` gives the process environment for `$NAME` not set earlier in
/// the file and `HOME` for `~`. The assignments in order (a later one wins in the map).
pub fn parse(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<BTreeMap<String, String>, EnvFileError> {
    let mut parser = Parser {
        chars: text.chars().collect(),
        pos: 0,
        line: 1,
        vars: BTreeMap::new(),
        lookup,
    };
    parser.file()?;
    Ok(parser.vars)
}

struct Parser<'a> {
    chars: Vec<char>,
    pos: usize,
    line: usize,
    vars: BTreeMap<String, String>,
    lookup: &'a dyn Fn(&str) -> Option<String>,
}

/// Variables bash sets or computes itself (bash(1), "Shell Variables"): `$UID` in the file means
/// bash's value to `deploy-cluster.sh`, whatever the environment holds. `BASH*` too.
const BASH_OWN_VARIABLES: &[&str] = &[
    "_",
    "RANDOM",
    "SRANDOM",
    "SECONDS",
    "LINENO",
    "UID",
    "EUID",
    "PPID",
    "GROUPS",
    "HOSTNAME",
    "HOSTTYPE",
    "OSTYPE",
    "MACHTYPE",
    "SHLVL",
    "SHELLOPTS",
    "FUNCNAME",
    "EPOCHSECONDS",
    "EPOCHREALTIME",
    "OPTIND",
    "IFS",
    "PS4",
];

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_name(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += 1;
        if c == '\n' {
            self.line += 1;
        }
        Some(c)
    }

    fn fail<T>(line: usize, message: impl Into<String>) -> Result<T, EnvFileError> {
        Err(EnvFileError {
            line,
            message: message.into(),
        })
    }

    fn skip_blanks(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t')) {
            self.bump();
        }
    }

    fn skip_comment(&mut self) {
        while !matches!(self.peek(), None | Some('\n')) {
            self.bump();
        }
    }

    fn file(&mut self) -> Result<(), EnvFileError> {
        loop {
            self.skip_blanks();
            match self.peek() {
                None => return Ok(()),
                Some('\n') => {
                    self.bump();
                }
                Some('#') => self.skip_comment(),
                Some(_) => self.statement()?,
            }
        }
    }

    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(c) = self.peek().filter(|c| is_name(*c)) {
            name.push(c);
            self.bump();
        }
        name
    }

    /// One `[export ]KEY=value` (or a bare `export KEY`, which sets nothing) up to the end of
    /// its line.
    fn statement(&mut self) -> Result<(), EnvFileError> {
        let line = self.line;
        let start = self.pos;
        let mut name = if self.peek().is_some_and(is_name_start) {
            self.name()
        } else {
            String::new()
        };
        if name == "export" && matches!(self.peek(), Some(' ' | '\t')) {
            self.skip_blanks();
            name = if self.peek().is_some_and(is_name_start) {
                self.name()
            } else {
                String::new()
            };
            if !name.is_empty() && matches!(self.peek(), None | Some(' ' | '\t' | '\n' | '#')) {
                // `export KEY`: marks an existing variable; assigns nothing.
                return self.end_of_line(line);
            }
        }
        if name.is_empty() || self.peek() != Some('=') {
            let text: String = self.chars[start..]
                .iter()
                .take_while(|c| **c != '\n')
                .collect();
            return Self::fail(
                line,
                format!(
                    "{:?} is not KEY=value (a name of letters, digits and _, then = with no space around it)",
                    text.chars().take(40).collect::<String>()
                ),
            );
        }
        self.bump(); // '='
        let value = self.value(line, &name)?;
        self.end_of_line(line)?;
        self.vars.insert(name, value);
        Ok(())
    }

    fn end_of_line(&mut self, line: usize) -> Result<(), EnvFileError> {
        let blanks = matches!(self.peek(), Some(' ' | '\t'));
        self.skip_blanks();
        match self.peek() {
            None | Some('\n') => Ok(()),
            Some('#') if blanks => {
                self.skip_comment();
                Ok(())
            }
            Some(_) => Self::fail(
                line,
                "more text after the value: bash would run it as a command; quote a value that contains spaces",
            ),
        }
    }

    fn value(&mut self, line: usize, key: &str) -> Result<String, EnvFileError> {
        let mut out = String::new();
        // `~` expands at the start of the value and after each unquoted ':'.
        let mut tilde_here = true;
        loop {
            let Some(c) = self.peek() else {
                return Ok(out);
            };
            let at_tilde = std::mem::take(&mut tilde_here);
            match c {
                ' ' | '\t' | '\n' => return Ok(out),
                '\'' => {
                    self.bump();
                    loop {
                        match self.bump() {
                            None => {
                                return Self::fail(
                                    line,
                                    format!("{key}: a single quote is never closed"),
                                );
                            }
                            Some('\'') => break,
                            Some(c) => out.push(c),
                        }
                    }
                }
                '"' => {
                    self.bump();
                    self.double_quoted(line, key, &mut out)?;
                }
                '\\' => {
                    self.bump();
                    match self.bump() {
                        // A line continuation.
                        Some('\n') | None => {}
                        Some(c) => out.push(c),
                    }
                }
                '$' => self.dollar(line, key, &mut out, false)?,
                '`' => {
                    return Self::fail(
                        line,
                        format!(
                            "{key}: command substitution (`…`) is not supported: write the value itself"
                        ),
                    );
                }
                ';' | '&' | '|' | '<' | '>' | '(' | ')' => {
                    return Self::fail(
                        line,
                        format!("{key}: {c:?} is shell syntax bash would act on: quote the value"),
                    );
                }
                '~' if at_tilde => {
                    self.bump();
                    match self.peek() {
                        None | Some('/' | ':' | ' ' | '\t' | '\n') => {
                            // bash's tilde reads HOME as it stands, set earlier in the file too.
                            out.push_str(&self.var("HOME"));
                        }
                        Some(_) => {
                            return Self::fail(
                                line,
                                format!("{key}: ~user is not supported: write the path"),
                            );
                        }
                    }
                }
                ':' => {
                    self.bump();
                    out.push(':');
                    tilde_here = true;
                }
                c => {
                    self.bump();
                    out.push(c);
                }
            }
        }
    }

    fn double_quoted(
        &mut self,
        line: usize,
        key: &str,
        out: &mut String,
    ) -> Result<(), EnvFileError> {
        loop {
            match self.peek() {
                None => return Self::fail(line, format!("{key}: a double quote is never closed")),
                Some('"') => {
                    self.bump();
                    return Ok(());
                }
                Some('\\') => {
                    self.bump();
                    match self.bump() {
                        Some('\n') => {}
                        Some(c @ ('$' | '`' | '"' | '\\')) => out.push(c),
                        Some(c) => {
                            out.push('\\');
                            out.push(c);
                        }
                        None => {
                            return Self::fail(
                                line,
                                format!("{key}: a double quote is never closed"),
                            );
                        }
                    }
                }
                Some('$') => self.dollar(line, key, out, true)?,
                Some('`') => {
                    return Self::fail(
                        line,
                        format!(
                            "{key}: command substitution (`…`) is not supported: write the value itself"
                        ),
                    );
                }
                Some(c) => {
                    self.bump();
                    out.push(c);
                }
            }
        }
    }

    /// `$…` at the current position.
    fn dollar(
        &mut self,
        line: usize,
        key: &str,
        out: &mut String,
        quoted: bool,
    ) -> Result<(), EnvFileError> {
        self.bump(); // '$'
        match self.peek() {
            Some(c) if is_name_start(c) => {
                let name = self.name();
                out.push_str(&self.expand(line, key, &name)?);
            }
            Some('{') => {
                self.bump();
                let name = self.name();
                if name.is_empty() || self.peek() != Some('}') {
                    return Self::fail(
                        line,
                        format!(
                            "{key}: only ${{NAME}} is supported, not default values or other operators: write the value itself"
                        ),
                    );
                }
                self.bump();
                out.push_str(&self.expand(line, key, &name)?);
            }
            Some('(') => {
                return Self::fail(
                    line,
                    format!(
                        "{key}: command substitution $(…) is not supported: write the value itself"
                    ),
                );
            }
            Some('\'' | '"') if !quoted => {
                return Self::fail(
                    line,
                    format!("{key}: $'…' and $\"…\" quoting is not supported: use plain quotes"),
                );
            }
            Some(c) if c.is_ascii_digit() || "$?!#@*-".contains(c) => {
                return Self::fail(
                    line,
                    format!("{key}: ${c} is a shell special parameter: write the value itself"),
                );
            }
            // A `$` before anything else is itself, as in bash.
            _ => out.push('$'),
        }
        Ok(())
    }

    /// `$name` as bash expands it, refusing the variables bash sets itself (its value would be
    /// bash's, not the file's or the environment's).
    fn expand(&self, line: usize, key: &str, name: &str) -> Result<String, EnvFileError> {
        if BASH_OWN_VARIABLES.contains(&name) || name.starts_with("BASH") {
            return Self::fail(
                line,
                format!("{key}: ${name} is a variable bash sets itself: write the value itself"),
            );
        }
        Ok(self.var(name))
    }

    fn var(&self, name: &str) -> String {
        self.vars
            .get(name)
            .cloned()
            .or_else(|| (self.lookup)(name))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each case: env-file text, and the keys to compare. The expected values are bash's own:
    /// `set -a; . FILE` in a clean environment with `HOME` and `FROM_PROCESS` set, then each key
    /// printed. The test needs bash (the product does not).
    const AGREES_WITH_BASH: &[(&str, &[&str])] = &[
        ("A=plain", &["A"]),
        ("export A=exported", &["A"]),
        ("A='single $HOME \\n \" kept'", &["A"]),
        ("A=\"double $HOME and ${FROM_PROCESS}\"", &["A"]),
        ("A=\"escapes \\$ \\` \\\" \\\\ \\n kept\"", &["A"]),
        ("A=first\nB=$A-second\nC=\"${B}/third\"", &["A", "B", "C"]),
        ("A=$FROM_PROCESS", &["A"]),
        ("A=$UNSET_ANYWHERE", &["A"]),
        ("A=unquoted\\ space\\$x", &["A"]),
        ("A=~/kube/config", &["A"]),
        ("A=~/a:~/b:/c/~d", &["A"]),
        ("A='~/quoted'", &["A"]),
        ("A=x~/not-start", &["A"]),
        ("A=value # a comment", &["A"]),
        ("A=value#not-a-comment", &["A"]),
        ("# comment\n\n   B=indented\n\tC=tab", &["B", "C"]),
        ("A=", &["A"]),
        ("A=''", &["A"]),
        ("A=\"multi\nline\"", &["A"]),
        ("A='multi\nline'", &["A"]),
        ("A=one\\\ntwo", &["A"]),
        ("A=cost$", &["A"]),
        ("A=$/x", &["A"]),
        ("A=\"$\"", &["A"]),
        ("A=\"a$'b\"", &["A"]),
        ("A={a,b}", &["A"]),
        ("A=*.yaml", &["A"]),
        ("A=x=y=z", &["A"]),
        ("A=pa'ss'\"word\"", &["A"]),
        ("A=first\nA=second", &["A"]),
        ("export B", &["B"]),
        ("A=\"it's\"", &["A"]),
        ("A='say \"hi\"'", &["A"]),
        // Tilde reads HOME as the file left it.
        ("HOME=/srv/ops\nA=~/kube/config:~/b", &["A"]),
    ];

    fn lookup(name: &str) -> Option<String> {
        match name {
            "HOME" => Some("/home/tester".into()),
            "FROM_PROCESS" => Some("from-the-process".into()),
            _ => None,
        }
    }

    fn bash_reads(text: &str, keys: &[&str]) -> Vec<(String, String)> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("x.env");
        std::fs::write(&file, text).unwrap();
        let script = "set -a; . \"$1\" || exit 3; shift; for k in \"$@\"; do printf '%s=%s\\0' \"$k\" \"${!k}\"; done";
        let out = std::process::Command::new("bash")
            .args(["-c", script, "bash"])
            .arg(&file)
            .args(keys)
            .env_clear()
            .env("HOME", "/home/tester")
            .env("FROM_PROCESS", "from-the-process")
            .env("PATH", "/usr/bin:/bin")
            .output()
            .expect("bash");
        assert!(
            out.status.success(),
            "bash refused {text:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .split('\0')
            .filter(|s| !s.is_empty())
            .map(|kv| {
                let (k, v) = kv.split_once('=').unwrap();
                (k.to_owned(), v.to_owned())
            })
            .collect()
    }

    #[test]
    fn values_are_what_bash_reads() {
        let mut compared = 0;
        for (text, keys) in AGREES_WITH_BASH {
            let ours = parse(text, &lookup).unwrap_or_else(|e| panic!("{text:?}: {e}"));
            let bash = bash_reads(text, keys);
            for (k, v) in &bash {
                assert_eq!(ours.get(k).map_or("", String::as_str), v, "{text:?}: {k}");
                compared += 1;
            }
        }
        assert!(compared >= 30, "{compared} values compared");
    }

    /// What bash would run, or expand in ways the file must not depend on, is one error naming
    /// the line.
    #[test]
    fn what_bash_would_run_is_refused_with_the_line() {
        for (text, line, says) in [
            ("A=$(whoami)", 1, "command substitution"),
            ("\nA=`whoami`", 2, "command substitution"),
            ("A=\"$(id)\"", 1, "command substitution"),
            ("A=${B:-default}", 1, "operators"),
            ("A=$1", 1, "special parameter"),
            ("A=$'\\n'", 1, "quoting"),
            ("A=two words", 1, "quote a value"),
            ("A = spaced", 1, "not KEY=value"),
            ("A=x;rm -rf /", 1, "shell syntax"),
            ("A=a|b", 1, "shell syntax"),
            ("A=~root/x", 1, "~user"),
            ("A='never closed", 1, "never closed"),
            ("A=\"never closed", 1, "never closed"),
            ("1A=x", 1, "not KEY=value"),
            ("A=ok\nB=(array)", 2, "shell syntax"),
            ("A=$UID", 1, "bash sets itself"),
            ("A=\"${RANDOM}\"", 1, "bash sets itself"),
            ("A=$BASH_VERSION", 1, "bash sets itself"),
            ("A=$_", 1, "bash sets itself"),
        ] {
            let e = parse(text, &lookup).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e}");
            assert!(e.message.contains(says), "{text:?}: {e}");
        }
    }
}
