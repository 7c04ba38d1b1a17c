//! The errors every client returns. API errors carry the operation, method, URL, status and the
//! server's answer, plus a fix a platform engineer can act on; `Display` is one line.

use crate::redact::redact;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered with a non-success status.
    #[error("{status} from {service} {operation} ({method} {url}): {body}{}", fix_suffix(.fix))]
    Api {
        service: &'static str,
        operation: String,
        method: String,
        url: String,
        status: u16,
        body: String,
        fix: String,
    },
    /// The server could not be reached (DNS, connect, TLS, timeout) after retries.
    #[error("could not reach {service} {operation} ({method} {url}): {cause}{}", fix_suffix(.fix))]
    Unreachable {
        service: &'static str,
        operation: String,
        method: String,
        url: String,
        cause: String,
        fix: String,
    },
    /// The server answered 2xx with something we could not understand.
    #[error("unexpected answer from {service} {operation} ({url}): {cause}")]
    Decode {
        service: &'static str,
        operation: String,
        url: String,
        cause: String,
    },
    /// Bad or missing configuration; the message says what to set.
    #[error("configuration: {0}")]
    Config(String),
    /// A Kubernetes API error.
    #[error("{status} from Kubernetes {operation}: {message}{}", fix_suffix(.fix))]
    Kube {
        operation: String,
        status: u16,
        message: String,
        fix: String,
    },
    /// A precondition the tool cannot fix by itself.
    #[error("{operation}: {message}")]
    Precondition { operation: String, message: String },
}

fn fix_suffix(fix: &str) -> String {
    if fix.is_empty() {
        String::new()
    } else {
        format!(" — {fix}")
    }
}

impl Error {
    /// HTTP status of an API error, if any.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api { status, .. } | Error::Kube { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The one-line message, with every registered secret masked.
    pub fn one_line(&self) -> String {
        redact(&self.to_string()).replace('\n', " ")
    }
}

/// Shortens a response body for an error message (servers can answer with whole HTML pages).
pub fn short_body(body: &str) -> String {
    let compact: String = body.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out: String = compact.chars().take(300).collect();
    if compact.chars().count() > 300 {
        out.push('…');
    }
    if out.is_empty() {
        "(empty body)".to_owned()
    } else {
        redact(&out)
    }
}

/// An error and its sources on one line (`a: b: c`).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
