//! Process-wide secret redaction: every secret value loaded by [`crate::config`] is registered
//! here, and every byte the tools print (plans, JSON, errors, warnings, logs, panics) passes
//! through [`redact`]. Defence in depth: plans already mark sensitive fields, this catches
//! anything that slips past.
//!
//! A secret is also masked in the forms it takes on the wire: percent-encoded (in a URL or a form
//! body) and base64 (standard and URL-safe, with and without padding). A secret shorter than
//! [`SHORT`] characters is masked only where it stands as a whole word, so that a short password
//! such as `abc` does not garble every word containing those letters.

use std::io::Write;
use std::sync::{OnceLock, RwLock};

use base64::Engine as _;

/// What a secret prints as.
pub const MASK: &str = "(sensitive)";

/// Secrets shorter than this are masked as whole words only.
pub const SHORT: usize = 6;

#[derive(Default)]
struct Registry {
    /// Longest first, so a secret containing another is masked whole.
    long: Vec<String>,
    short: Vec<String>,
}

fn registry() -> &'static RwLock<Registry> {
    static SECRETS: OnceLock<RwLock<Registry>> = OnceLock::new();
    SECRETS.get_or_init(|| RwLock::new(Registry::default()))
}

/// The forms a secret takes in output: as is, percent-encoded, base64.
fn forms(secret: &str) -> Vec<String> {
    let mut out = vec![secret.to_owned()];
    let percent: String = secret
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let form: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
    out.extend([percent.clone(), percent.to_ascii_lowercase(), form]);
    for engine in [
        &base64::engine::general_purpose::STANDARD,
        &base64::engine::general_purpose::STANDARD_NO_PAD,
        &base64::engine::general_purpose::URL_SAFE,
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ] {
        out.push(engine.encode(secret.as_bytes()));
    }
    out.sort();
    out.dedup();
    out
}

/// Registers a secret value (and its encoded forms) so that it never appears in output.
pub fn register(secret: &str) {
    let secret = secret.trim();
    if secret.is_empty() {
        return;
    }
    let mut r = registry()
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if secret.chars().count() < SHORT {
        if !r.short.iter().any(|s| s == secret) {
            r.short.push(secret.to_owned());
        }
        return;
    }
    for form in forms(secret) {
        if !r.long.contains(&form) {
            r.long.push(form);
        }
    }
    r.long.sort_by_key(|s| std::cmp::Reverse(s.len()));
}

/// `text` with every occurrence of the short `secret` that stands as a whole word masked.
fn mask_words(text: &str, secret: &str) -> String {
    let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '-');
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(secret) {
        let before = if at > 0 {
            rest[..at].chars().last()
        } else {
            out.chars().last()
        };
        let after = rest[at + secret.len()..].chars().next();
        out.push_str(&rest[..at]);
        if word(before) || word(after) {
            out.push_str(secret);
        } else {
            out.push_str(MASK);
        }
        rest = &rest[at + secret.len()..];
    }
    out.push_str(rest);
    out
}

/// `text` with the user info of every URL in it (`scheme://user:password@host`) replaced by
/// [`MASK`]: a credential in a URL is masked whether or not it was ever registered. A password
/// written with a raw `/`, `?` or `#` (not percent-encoded, as people do write them) is masked to
/// its `@` too: after `user:` comes something that is not a port.
fn mask_url_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (before, after) = rest.split_at(i + 3);
        out.push_str(before);
        // The URL as written: up to a space or a closing quote or bracket.
        let span = after
            .find(|c: char| {
                matches!(c, '"' | '\'' | '<' | '>' | '`' | ')' | ']' | ',') || c.is_whitespace()
            })
            .unwrap_or(after.len());
        let authority_end = after[..span].find(['/', '?', '#']).unwrap_or(span);
        let authority = &after[..authority_end];
        let userinfo_end = authority.rfind('@').or_else(|| {
            // `user:pa/ss@host`: a colon whose next character is not a port's digit, and an
            // `@` later in the URL.
            let (user, after_colon) = authority.split_once(':')?;
            let looks_like_password = !user.is_empty()
                && !after_colon.starts_with(|c: char| c.is_ascii_digit())
                && authority_end < span;
            looks_like_password
                .then(|| {
                    after[authority_end..span]
                        .find('@')
                        .map(|at| authority_end + at)
                })
                .flatten()
        });
        let end = match userinfo_end {
            Some(at) => {
                out.push_str(MASK);
                at
            }
            None => 0,
        };
        rest = &after[end..];
        // Copy the rest of this URL's authority as is (it holds no further `://`).
        let copied = authority_end.saturating_sub(end).min(rest.len());
        out.push_str(&rest[..copied]);
        rest = &rest[copied..];
    }
    out.push_str(rest);
    out
}

/// Returns `text` with every registered secret, and the user info of every URL, replaced by
/// [`MASK`].
pub fn redact(text: &str) -> String {
    let r = registry()
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut out = if text.contains("://") {
        mask_url_userinfo(text)
    } else {
        text.to_owned()
    };
    for secret in &r.long {
        if out.contains(secret.as_str()) {
            out = out.replace(secret.as_str(), MASK);
        }
    }
    for secret in &r.short {
        if out.contains(secret.as_str()) {
            out = mask_words(&out, secret);
        }
    }
    out
}

/// Prints panics as one redacted line on stderr (the default hook would print the message, and
/// any secret in it, as is).
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let payload = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(a panic without a message)".to_owned());
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!("panic{at}: {}", redact(&payload));
    }));
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
        register("abc"); // short: masked as a whole word only
        let out = redact("token=s3cr3t-token-value and again s3cr3t-token-value, abcdef stays");
        assert_eq!(out, "token=(sensitive) and again (sensitive), abcdef stays");
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
    #[test]
    fn encoded_forms_are_masked_too() {
        let secret = "p@ss w0rd/with+symbols";
        register(secret);
        let percent = "p%40ss%20w0rd%2Fwith%2Bsymbols";
        let form: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
        let b64 = base64::engine::general_purpose::STANDARD.encode(secret);
        let url_safe = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret);
        for shown in [percent.to_owned(), form, b64, url_safe] {
            let out = redact(&format!("https://u:{shown}@host/"));
            assert!(!out.contains(&shown), "{shown} → {out}");
            assert!(out.contains(MASK), "{out}");
        }
    }

    #[test]
    fn url_user_info_is_masked_without_registration() {
        assert_eq!(
            redact("GET https://ci:glpat-unregistered-1@gitlab.example.com/api/v4 failed"),
            "GET https://(sensitive)@gitlab.example.com/api/v4 failed"
        );
        assert_eq!(
            redact("postgres://dora:pw@db:5432/dora and http://plain.host/x"),
            "postgres://(sensitive)@db:5432/dora and http://plain.host/x"
        );
        // No user info: unchanged, and so is an scp-style git address.
        assert_eq!(
            redact("git@gitlab.example.com:g/p.git"),
            "git@gitlab.example.com:g/p.git"
        );
        assert_eq!(
            redact("see https://a.example/b@c"),
            "see https://a.example/b@c"
        );
        assert_eq!(
            redact("https://host:8080/b@c and https://a.example/x?u=a:b@c"),
            "https://host:8080/b@c and https://a.example/x?u=a:b@c"
        );
        // Passwords with raw `/`, `?`, `#`, `@`, as people write them in settings.
        for (url, masked) in [
            (
                "postgres://dora:p/ss@db:5432/dora",
                "postgres://(sensitive)@db:5432/dora",
            ),
            (
                "https://ci:p#w?d@gitlab.example.com/api",
                "https://(sensitive)@gitlab.example.com/api",
            ),
            (
                "https://ci:p@ss@gitlab.example.com/",
                "https://(sensitive)@gitlab.example.com/",
            ),
        ] {
            assert_eq!(redact(url), masked, "{url}");
        }
    }

    #[test]
    fn short_secrets_are_masked_as_whole_words() {
        register("q7x");
        assert_eq!(
            redact("password=q7x, and q7xyz or aq7x stay; (q7x) goes"),
            "password=(sensitive), and q7xyz or aq7x stay; ((sensitive)) goes"
        );
    }

    /// A panic with a secret in its message, in a process of its own with the hook every binary
    /// installs (`cli::init`): stderr shows the mask, never the secret.
    #[test]
    fn a_panic_prints_the_mask() {
        const SECRET: &str = "panic-secret-7d1e9a";
        if std::env::var_os("CICD_REDACT_PANIC_CHILD").is_some() {
            register(SECRET);
            install_panic_hook();
            panic!("could not log in with token {SECRET}");
        }
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "redact::tests::a_panic_prints_the_mask",
                "--nocapture",
            ])
            .env("CICD_REDACT_PANIC_CHILD", "1")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "the child panicked");
        assert!(!stderr.contains(SECRET), "{stderr}");
        assert!(
            stderr.contains("could not log in with token (sensitive)"),
            "{stderr}"
        );
    }
}
