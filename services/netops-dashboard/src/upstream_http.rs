//! Reading the dashboard's sources (routers' `/metrics`, Prometheus) safely: answers are read
//! chunk by chunk and refused as soon as they pass a size cap (not after the whole body is in
//! memory), and what a failure shows — in `/api/topology`, which is public, and in the logs —
//! never carries a URL's user info or a raw library error.

use anyhow::bail;
use url::Url;

/// `url` without user name and password, for messages.
pub fn shown(url: &Url) -> String {
    let mut url = url.clone();
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.to_string()
}

/// The body of `response`, read chunk by chunk and refused once it passes `max` bytes (a
/// declared Content-Length over it is refused before reading).
pub async fn read_capped(mut response: reqwest::Response, max: usize) -> anyhow::Result<Vec<u8>> {
    if response.content_length().is_some_and(|n| n > max as u64) {
        bail!("answer larger than {max} bytes");
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(reqwest::Error::without_url)?
    {
        if body.len() + chunk.len() > max {
            bail!("answer larger than {max} bytes");
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A short, public reason for a failed read: what kind of failure, never the URL or the
/// library's own text (which can carry URLs with credentials, addresses and versions).
pub fn public_reason(e: &anyhow::Error) -> String {
    for cause in e.chain() {
        if let Some(e) = cause.downcast_ref::<reqwest::Error>() {
            return if e.is_timeout() {
                "no answer in time".into()
            } else if e.is_connect() {
                "not reachable".into()
            } else if let Some(status) = e.status() {
                format!("HTTP {}", status.as_u16())
            } else if e.is_body() || e.is_decode() {
                "answer broken off or malformed".into()
            } else {
                "request failed".into()
            };
        }
    }
    match e.chain().last() {
        Some(last) => public_text(&last.to_string()),
        None => "failed".into(),
    }
}

/// The dashboard's own error texts are public as they are, except that any URL in them loses
/// its user info.
fn public_text(text: &str) -> String {
    text.split(' ')
        .map(|word| match Url::parse(word) {
            Ok(url) if !url.username().is_empty() || url.password().is_some() => shown(&url),
            _ => word.to_owned(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_user_info() {
        let url = Url::parse("http://admin:s3cret@prometheus:9090/api/v1/query").unwrap();
        assert_eq!(shown(&url), "http://prometheus:9090/api/v1/query");
        let e = anyhow::anyhow!("Prometheus http://admin:s3cret@prometheus:9090/ said no");
        assert_eq!(
            public_reason(&e),
            "Prometheus http://prometheus:9090/ said no"
        );
    }
}
