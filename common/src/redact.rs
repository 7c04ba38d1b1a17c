//! Process-wide secret redaction: every secret value loaded by [`crate::config`] is registered
//! here, and every byte the tools print (plans, JSON, errors, logs) passes through [`redact`].
//! Defence in depth: plans already mark sensitive fields, this catches anything that slips past.

use std::io::Write;
use std::sync::{OnceLock, RwLock};

/// What a secret prints as.
pub const MASK: &str = "(sensitive)";

fn registry() -> &'static RwLock<Vec<String>> {
    static SECRETS: OnceLock<RwLock<Vec<String>>> = OnceLock::new();
    SECRETS.get_or_init(|| RwLock::new(Vec::new()))
}

/// Registers a secret value so that it never appears in output. Values shorter than 6
/// characters are ignored: masking them would garble ordinary text and they are not real secrets.
pub fn register(secret: &str) {
    let secret = secret.trim();
    if secret.len() < 6 {
        return;
    }
    let mut secrets = registry()
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if !secrets.iter().any(|s| s == secret) {
        secrets.push(secret.to_owned());
        // Longest first, so a secret containing another is masked whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }
}

/// Returns `text` with every registered secret replaced by [`MASK`].
pub fn redact(text: &str) -> String {
    let secrets = registry()
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut out = text.to_owned();
    for secret in secrets.iter() {
        if out.contains(secret.as_str()) {
            out = out.replace(secret.as_str(), MASK);
        }
    }
    out
}

/// A writer that redacts whole buffers before passing them on (tracing writes one event per call).
pub struct RedactingWriter<W: Write>(pub W);

impl<W: Write> Write for RedactingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        self.0.write_all(redact(&text).as_bytes())?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_secrets_are_masked_everywhere_in_text() {
        register("s3cr3t-token-value");
        register("abc"); // too short: ignored
        let out = redact("token=s3cr3t-token-value and again s3cr3t-token-value, abc stays");
        assert_eq!(out, "token=(sensitive) and again (sensitive), abc stays");
    }

    #[test]
    fn redacting_writer_masks_log_lines() {
        register("log-secret-123456");
        let mut buf = Vec::new();
        RedactingWriter(&mut buf)
            .write_all(b"GET with log-secret-123456\n")
            .unwrap();
        assert_eq!(String::from_utf8(buf).unwrap(), "GET with (sensitive)\n");
    }
}
