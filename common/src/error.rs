//! The errors every client returns. API errors carry the operation, method, URL, status and the
//! server's answer, plus a fix a platform engineer can act on; `Display` is one line.

use crate::redact::redact;

/// The result of every client call, with [`Error`] by default.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong in a client call; `Display` is one line naming the operation and, where one is
/// known, the fix.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server answered with a non-success status.
    #[error("{status} from {service} {operation} ({method} {url}): {body}{}", fix_suffix(.fix))]
    Api {
        /// The service's name in messages, e.g. `GitLab`.
        service: &'static str,
        /// What was being done, e.g. `reading group platform_services`.
        operation: String,
        /// HTTP method of the request.
        method: String,
        /// URL of the request.
        url: String,
        /// HTTP status of the answer.
        status: u16,
        /// The server's answer, shortened and redacted ([`short_body`]).
        body: String,
        /// What to do about a 401 or 403; empty for other statuses.
        fix: String,
    },
    /// The server could not be reached (DNS, connect, TLS, timeout) after retries.
    #[error("could not reach {service} {operation} ({method} {url}): {cause}{}", fix_suffix(.fix))]
    Unreachable {
        /// The service's name in messages, e.g. `GitLab`.
        service: &'static str,
        /// What was being done, e.g. `reading group platform_services`.
        operation: String,
        /// HTTP method of the request; empty for Kubernetes.
        method: String,
        /// URL of the request; empty for Kubernetes.
        url: String,
        /// Why it failed (timeout, connection, TLS, …) with the underlying errors.
        cause: String,
        /// What to check, e.g. the URL setting, that the server is up, the CA bundle.
        fix: String,
    },
    /// The server answered 2xx with something we could not understand.
    #[error("unexpected answer from {service} {operation} ({url}): {cause}")]
    Decode {
        /// The service's name in messages, e.g. `GitLab`.
        service: &'static str,
        /// What was being done, e.g. `reading group platform_services`.
        operation: String,
        /// URL of the request.
        url: String,
        /// What did not decode: serde's message and, where it helps, the start of the body.
        cause: String,
    },
    /// Bad or missing configuration; the message says what to set.
    #[error("configuration: {0}")]
    Config(String),
    /// A Kubernetes API error.
    #[error("{status} from Kubernetes {operation}: {message}{}", fix_suffix(.fix))]
    Kube {
        /// What was being done, e.g. `applying Namespace demo-apps`.
        operation: String,
        /// Status code of the API server's answer.
        status: u16,
        /// The API server's message, redacted and cut after 600 characters.
        message: String,
        /// What to do about a 401 or 403; empty otherwise.
        fix: String,
    },
    /// A precondition the tool cannot fix by itself.
    #[error("{operation}: {message}")]
    Precondition {
        /// What was being done, e.g. `waiting for CRD applications.argoproj.io`.
        operation: String,
        /// What is missing or wrong, and how to fix it.
        message: String,
    },
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
