//! The one HTTP client: private CA bundle, timeouts, retries with backoff on 429/5xx/connection
//! errors (honouring `Retry-After`) for idempotent requests only, a pagination helper, request
//! counters, and errors that name the operation and the fix.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::config::{Credential, PlatformConfig, expose};
use crate::error::{Error, Result, error_chain, short_body};

/// Whether a request may be sent again after a failure the server may not have seen the end of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// GET/HEAD/PUT/DELETE, and upserts such as Vault's POST config writes.
    Safe,
    /// Creates something new each time (POST create): a retry could duplicate it.
    Never,
}

impl Retry {
    /// The default for `method`: POST and PATCH never retry, every other method does.
    pub fn for_method(method: &Method) -> Self {
        match *method {
            Method::POST | Method::PATCH => Retry::Never,
            _ => Retry::Safe,
        }
    }
}

/// What to tell the user on 401/403/unreachable for one service.
#[derive(Debug, Clone, Default)]
pub struct Fixes {
    /// For a 401: the credential is invalid or expired.
    pub unauthorized: String,
    /// For a 403: the credential lacks the rights.
    pub forbidden: String,
    /// When the server cannot be reached: URL setting, server up, CA bundle.
    pub unreachable: String,
}

/// A server's answer.
#[derive(Debug, Clone)]
pub struct Response {
    /// HTTP status of the answer.
    pub status: StatusCode,
    /// Headers of the answer (`Link` for pagination, `Retry-After`).
    pub headers: HeaderMap,
    /// The body as text; empty when it could not be read.
    pub body: String,
}

impl Response {
    /// Decodes the body as JSON; a failure is an [`Error::Decode`] naming `service`, `operation`
    /// and `url`.
    pub fn json<T: DeserializeOwned>(
        &self,
        service: &'static str,
        operation: &str,
        url: &str,
    ) -> Result<T> {
        serde_json::from_str(&self.body).map_err(|e| Error::Decode {
            service,
            operation: operation.to_owned(),
            url: url.to_owned(),
            cause: format!("{e} in {}", short_body(&self.body)),
        })
    }
}

/// Counts of requests actually sent (retries included), by kind.
#[derive(Debug, Default)]
pub struct RequestStats {
    /// GET, HEAD, OPTIONS and Vault LIST requests.
    pub reads: AtomicU64,
    /// Every other request.
    pub writes: AtomicU64,
    /// Requests sent again after a 429, a 5xx or a connection error.
    pub retries: AtomicU64,
}

/// A client for one service at one base URL with one credential.
#[derive(Clone)]
pub struct ApiClient {
    service: &'static str,
    base: String,
    client: reqwest::Client,
    auth: Option<(HeaderName, Credential, &'static str)>,
    retries: u32,
    fixes: Arc<Fixes>,
    stats: Arc<RequestStats>,
    /// Backoff unit; tests shorten it.
    backoff: Duration,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiClient")
            .field("service", &self.service)
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// The builder of every client that carries a credential: timeouts, the user agent, and no
/// redirects — reqwest would send `PRIVATE-TOKEN` or `X-Vault-Token` to wherever a server (or a
/// proxy in front of it) redirects, so a 3xx is an answer, not a hop.
pub fn client_builder(timeout: Duration) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(10).min(timeout))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("cicd-buildout/", env!("CARGO_PKG_VERSION")))
}

/// Builds the shared reqwest client: platform CA trusted in addition to the system roots; TLS
/// verification is never disabled; redirects are not followed ([`client_builder`]).
pub fn build_reqwest(cfg: &PlatformConfig) -> Result<reqwest::Client> {
    let mut builder = client_builder(cfg.http_timeout);
    if let Some(pem) = cfg.ca_pem()? {
        let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes()).map_err(|e| {
            Error::Config(format!(
                "CICD_CA_BUNDLE is not a PEM certificate bundle: {e}"
            ))
        })?;
        builder = builder.tls_certs_merge(certs);
    }
    builder
        .build()
        .map_err(|e| Error::Config(format!("cannot build the HTTP client: {e}")))
}

impl ApiClient {
    /// A client of `service` (its name in errors) at `base`, without a credential; [`Retry::Safe`]
    /// requests are retried up to `retries` times.
    pub fn new(service: &'static str, base: &str, client: reqwest::Client, retries: u32) -> Self {
        Self {
            service,
            base: base.trim_end_matches('/').to_owned(),
            client,
            auth: None,
            retries,
            fixes: Arc::new(Fixes::default()),
            stats: Arc::new(RequestStats::default()),
            backoff: Duration::from_millis(250),
        }
    }

    /// Sends `credential` in `header` (e.g. `X-Vault-Token`, `PRIVATE-TOKEN`); `scheme` prefixes it ("Bearer ").
    #[must_use]
    pub fn with_auth(
        mut self,
        header: &'static str,
        scheme: &'static str,
        credential: Credential,
    ) -> Self {
        self.auth = Some((HeaderName::from_static(header), credential, scheme));
        self
    }

    /// Sets what errors tell the user on 401, 403 and unreachable.
    #[must_use]
    pub fn with_fixes(mut self, fixes: Fixes) -> Self {
        self.fixes = Arc::new(fixes);
        self
    }

    /// Sets the backoff unit, doubled per retry up to 10 s (tests shorten it).
    #[must_use]
    pub fn with_backoff(mut self, unit: Duration) -> Self {
        self.backoff = unit;
        self
    }

    /// The base URL, without a trailing slash.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Counters of the requests sent, shared with every clone of this client.
    pub fn stats(&self) -> &RequestStats {
        &self.stats
    }

    /// The absolute URL of `path`: under the base URL, or `path` itself when it is already absolute
    /// (pagination links).
    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_owned()
        } else {
            format!("{}/{}", self.base, path.trim_start_matches('/'))
        }
    }

    /// Sends a request, retrying per [`Retry`]; any status is returned (see [`ApiClient::expect`]).
    pub async fn send(
        &self,
        operation: &str,
        method: Method,
        path: &str,
        body: Option<&Value>,
        retry: Retry,
    ) -> Result<Response> {
        let url = self.url(path);
        let is_write = !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS)
            && method.as_str() != "LIST";
        let mut attempt = 0u32;
        loop {
            let mut req = self.client.request(method.clone(), &url);
            if let Some((header, credential, scheme)) = &self.auth {
                let mut value = HeaderValue::from_str(&format!("{scheme}{}", expose(credential)))
                    .map_err(|_| {
                    Error::Config(format!(
                        "the credential from {} contains characters not allowed in a header",
                        credential.source
                    ))
                })?;
                value.set_sensitive(true);
                req = req.header(header.clone(), value);
            }
            if let Some(body) = body {
                req = req.json(body);
            }
            if is_write {
                self.stats.writes.fetch_add(1, Ordering::Relaxed);
            } else {
                self.stats.reads.fetch_add(1, Ordering::Relaxed);
            }
            let outcome = req.send().await;
            let may_retry = retry == Retry::Safe && attempt < self.retries;
            match outcome {
                Ok(resp) => {
                    let status = resp.status();
                    let headers = resp.headers().clone();
                    let transient =
                        status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error();
                    if transient && may_retry {
                        let wait =
                            retry_after(&headers).unwrap_or_else(|| self.backoff_for(attempt));
                        tracing::warn!(
                            "{} from {} {operation} ({method} {url}); retrying in {:.1}s",
                            status.as_u16(),
                            self.service,
                            wait.as_secs_f64()
                        );
                        self.stats.retries.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(wait).await;
                        attempt += 1;
                        continue;
                    }
                    let body = resp.text().await.unwrap_or_default();
                    tracing::debug!("{method} {url} -> {}", status.as_u16());
                    return Ok(Response {
                        status,
                        headers,
                        body,
                    });
                }
                Err(err) => {
                    if may_retry && (err.is_connect() || err.is_timeout() || err.is_request()) {
                        let wait = self.backoff_for(attempt);
                        tracing::warn!(
                            "{} {operation}: {err}; retrying in {:.1}s",
                            self.service,
                            wait.as_secs_f64()
                        );
                        self.stats.retries.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(wait).await;
                        attempt += 1;
                        continue;
                    }
                    return Err(Error::Unreachable {
                        service: self.service,
                        operation: operation.to_owned(),
                        method: method.to_string(),
                        url,
                        cause: describe_reqwest_error(&err),
                        fix: self.fixes.unreachable.clone(),
                    });
                }
            }
        }
    }

    /// Turns a non-2xx answer into an [`Error::Api`] with the service's fix for 401/403.
    pub fn expect(
        &self,
        operation: &str,
        method: &Method,
        path: &str,
        resp: Response,
    ) -> Result<Response> {
        if resp.status.is_success() {
            return Ok(resp);
        }
        let fix = match resp.status {
            StatusCode::UNAUTHORIZED => self.fixes.unauthorized.clone(),
            StatusCode::FORBIDDEN => self.fixes.forbidden.clone(),
            _ => String::new(),
        };
        Err(Error::Api {
            service: self.service,
            operation: operation.to_owned(),
            method: method.to_string(),
            url: self.url(path),
            status: resp.status.as_u16(),
            body: short_body(&resp.body),
            fix,
        })
    }

    /// Sends and requires a 2xx answer.
    pub async fn call(
        &self,
        operation: &str,
        method: Method,
        path: &str,
        body: Option<&Value>,
        retry: Retry,
    ) -> Result<Response> {
        let resp = self
            .send(operation, method.clone(), path, body, retry)
            .await?;
        self.expect(operation, &method, path, resp)
    }

    /// `DELETE path`: done when the server answers 2xx, and also on 404 — the object is already
    /// gone (a retried DELETE whose first attempt succeeded, or a concurrent removal).
    pub async fn delete(&self, operation: &str, path: &str) -> Result<()> {
        match self
            .call(operation, Method::DELETE, path, None, Retry::Safe)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.status() == Some(404) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Sends, requires a 2xx answer and decodes its JSON body.
    pub async fn call_json<T: DeserializeOwned>(
        &self,
        operation: &str,
        method: Method,
        path: &str,
        body: Option<&Value>,
        retry: Retry,
    ) -> Result<T> {
        let resp = self.call(operation, method, path, body, retry).await?;
        resp.json(self.service, operation, &self.url(path))
    }

    /// Every page of a list (see [`ApiClient::get_all_pages`]), each item decoded as `T`.
    pub async fn get_all<T: DeserializeOwned>(
        &self,
        operation: &str,
        path: &str,
    ) -> Result<Vec<T>> {
        self.get_all_pages(operation, path)
            .await?
            .into_iter()
            .map(|item| {
                serde_json::from_value(item).map_err(|e| Error::Decode {
                    service: self.service,
                    operation: operation.to_owned(),
                    url: self.url(path),
                    cause: e.to_string(),
                })
            })
            .collect()
    }

    /// GET a JSON document; `None` on 404.
    pub async fn get_optional<T: DeserializeOwned>(
        &self,
        operation: &str,
        path: &str,
    ) -> Result<Option<T>> {
        let resp = self
            .send(operation, Method::GET, path, None, Retry::Safe)
            .await?;
        if resp.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let resp = self.expect(operation, &Method::GET, path, resp)?;
        resp.json(self.service, operation, &self.url(path))
            .map(Some)
    }

    /// GET every page of a list, following `Link: <…>; rel="next"` (GitLab, Harbor) until none is left.
    pub async fn get_all_pages(&self, operation: &str, path: &str) -> Result<Vec<Value>> {
        let mut items = Vec::new();
        let mut next = Some(self.url(path));
        let mut pages = 0usize;
        while let Some(url) = next.take() {
            pages += 1;
            if pages > 10_000 {
                return Err(Error::Decode {
                    service: self.service,
                    operation: operation.to_owned(),
                    url,
                    cause: "more than 10,000 pages: the server's Link headers loop".to_owned(),
                });
            }
            let resp = self
                .call(operation, Method::GET, &url, None, Retry::Safe)
                .await?;
            let page: Value = resp.json(self.service, operation, &url)?;
            match page {
                Value::Array(list) => items.extend(list),
                other => {
                    return Err(Error::Decode {
                        service: self.service,
                        operation: operation.to_owned(),
                        url,
                        cause: format!(
                            "expected a JSON list, got {}",
                            short_body(&other.to_string())
                        ),
                    });
                }
            }
            next = self.next_page(operation, &url, &resp.headers)?;
        }
        Ok(items)
    }

    /// The next page: the `Link` target resolved against the page that sent it (Harbor sends
    /// links relative to its host), and only on the configured origin. A link elsewhere — a
    /// proxy that makes GitLab emit `http://` links, a server's wrong external URL — would carry
    /// the credential there, so it is refused with the fix.
    fn next_page(
        &self,
        operation: &str,
        current: &str,
        headers: &HeaderMap,
    ) -> Result<Option<String>> {
        let Some(target) = next_link(headers) else {
            return Ok(None);
        };
        let refuse = |cause: String| Error::Decode {
            service: self.service,
            operation: operation.to_owned(),
            url: current.to_owned(),
            cause,
        };
        let resolved = url::Url::parse(current)
            .and_then(|page| page.join(&target))
            .map_err(|e| refuse(format!("the next-page link {target:?} is not a URL: {e}")))?;
        let base = url::Url::parse(&self.base)
            .map_err(|e| refuse(format!("the base URL is not a URL: {e}")))?;
        if resolved.origin() != base.origin() {
            return Err(refuse(format!(
                "the next-page link points at {}, not at {}: the credential is not sent there (fix the server's external URL, or the proxy that rewrites it)",
                resolved.origin().ascii_serialization(),
                base.origin().ascii_serialization()
            )));
        }
        Ok(Some(resolved.to_string()))
    }

    fn backoff_for(&self, attempt: u32) -> Duration {
        // Exponential with a little jitter from the clock, capped at 10 s.
        let base = self.backoff.saturating_mul(2u32.saturating_pow(attempt));
        let jitter = Duration::from_millis(u64::from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_millis())
                % 100,
        ));
        (base + jitter).min(Duration::from_secs(10))
    }
}

/// `Retry-After` in seconds (the form GitLab, Harbor and Vault send), capped at 60 s.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let secs: u64 = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs.min(60)))
}

/// The `rel="next"` target of a `Link` header.
pub fn next_link(headers: &HeaderMap) -> Option<String> {
    let link = headers.get(reqwest::header::LINK)?.to_str().ok()?;
    link.split(',').find_map(|part| {
        let mut pieces = part.split(';');
        let target = pieces.next()?.trim();
        let is_next = pieces.any(|p| {
            let p = p.trim().replace(' ', "");
            p == "rel=\"next\"" || p == "rel=next"
        });
        (is_next && target.starts_with('<') && target.ends_with('>'))
            .then(|| target[1..target.len() - 1].to_owned())
    })
}

fn describe_reqwest_error(err: &reqwest::Error) -> String {
    use std::error::Error as _;
    let mut text = if err.is_timeout() {
        "timed out".to_owned()
    } else if err.is_connect() {
        "connection failed".to_owned()
    } else {
        "request failed".to_owned()
    };
    if let Some(source) = err.source() {
        text.push_str(": ");
        text.push_str(&error_chain(source));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_link_finds_the_next_page() {
        let mut h = HeaderMap::new();
        h.insert(
            reqwest::header::LINK,
            HeaderValue::from_static(
                r#"<https://g/api/v4/projects?page=1>; rel="prev", <https://g/api/v4/projects?page=3>; rel="next", <https://g/x?page=9>; rel="last""#,
            ),
        );
        assert_eq!(
            next_link(&h).as_deref(),
            Some("https://g/api/v4/projects?page=3")
        );
        h.insert(
            reqwest::header::LINK,
            HeaderValue::from_static(r#"<https://g/x?page=9>; rel="last""#),
        );
        assert_eq!(next_link(&h), None);
    }

    #[test]
    fn retry_after_is_read_in_seconds_and_capped() {
        let mut h = HeaderMap::new();
        h.insert(reqwest::header::RETRY_AFTER, HeaderValue::from_static("2"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert(
            reqwest::header::RETRY_AFTER,
            HeaderValue::from_static("3600"),
        );
        assert_eq!(retry_after(&h), Some(Duration::from_secs(60)));
    }

    #[test]
    fn only_idempotent_methods_retry_by_default() {
        assert_eq!(Retry::for_method(&Method::GET), Retry::Safe);
        assert_eq!(Retry::for_method(&Method::PUT), Retry::Safe);
        assert_eq!(Retry::for_method(&Method::DELETE), Retry::Safe);
        assert_eq!(Retry::for_method(&Method::POST), Retry::Never);
    }
}
