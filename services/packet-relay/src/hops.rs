//! Next hops: `NEXT_HOPS` (`http://host:port` or `name=http://host:port`, comma-separated) and
//! the generator's `GENERATOR_TARGET`.

use anyhow::{Context as _, bail};
use reqwest::Url;

/// One configured next hop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hop {
    /// The `to` label of the link: the given name, else the URL's host (`ip:port` for an IP).
    pub name: String,
    /// The URL as configured (the `url` label of `relay_next_hop_info`).
    pub url: String,
    /// Where packets are posted.
    pub endpoint: Url,
}

/// Splits `name=url`; a plain URL has no name.
fn split_name(entry: &str) -> (Option<&str>, &str) {
    match entry.split_once('=') {
        Some((name, url)) if !name.contains("://") && !name.contains('/') => {
            (Some(name.trim()), url.trim())
        }
        _ => (None, entry),
    }
}

/// The hop name of a URL: its host, or `ip:port` when the host is an IP address.
pub fn host_name(url: &Url) -> String {
    match url.host() {
        Some(url::Host::Domain(d)) => d.to_owned(),
        Some(url::Host::Ipv4(ip)) => format!("{ip}:{}", url.port_or_known_default().unwrap_or(80)),
        Some(url::Host::Ipv6(ip)) => {
            format!("[{ip}]:{}", url.port_or_known_default().unwrap_or(80))
        }
        None => String::new(),
    }
}

fn parse_url(setting: &str, url: &str) -> anyhow::Result<Url> {
    let parsed = Url::parse(url)
        .with_context(|| format!("{setting}: {url:?} is not a URL like http://router-east:8080"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
        bail!("{setting}: {url:?} is not an http:// URL with a host");
    }
    Ok(parsed)
}

/// Parses one `[name=]url` entry; `path` is appended to the URL's path (`/relay` for next hops).
pub fn parse_one(setting: &str, entry: &str, path: &str) -> anyhow::Result<Hop> {
    let entry = entry.trim();
    let (name, url) = split_name(entry);
    let mut endpoint = parse_url(setting, url)?;
    if !path.is_empty() {
        let base = endpoint.path().trim_end_matches('/').to_owned();
        endpoint.set_path(&format!("{base}{path}"));
    }
    let name = match name {
        Some("") => bail!("{setting}: {entry:?} has an empty name before '='"),
        Some(n) => n.to_owned(),
        None => host_name(&endpoint),
    };
    Ok(Hop {
        name,
        url: url.to_owned(),
        endpoint,
    })
}

/// Parses `NEXT_HOPS`; empty means a terminal router.
pub fn parse_next_hops(value: &str) -> anyhow::Result<Vec<Hop>> {
    let hops = value
        .split(',')
        .filter(|e| !e.trim().is_empty())
        .map(|e| parse_one(crate::env::NEXT_HOPS, e, "/relay"))
        .collect::<anyhow::Result<Vec<_>>>()?;
    for (i, hop) in hops.iter().enumerate() {
        if hops[..i].iter().any(|h| h.name == hop.name) {
            bail!(
                "{}: two next hops are named {:?}; give them distinct names with name=url",
                crate::env::NEXT_HOPS,
                hop.name
            );
        }
    }
    Ok(hops)
}

/// Parses `GENERATOR_TARGET` (the full URL packets are posted to, `/relay` included).
pub fn parse_target(value: &str) -> anyhow::Result<Hop> {
    parse_one(crate::env::GENERATOR_TARGET, value, "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_name_eq_or_the_host() {
        let hops = parse_next_hops(
            " http://router-north:8080 , east=http://10.0.0.5:8080/, http://127.0.0.1:9,,http://[::1]:7",
        )
        .unwrap();
        let got: Vec<(&str, &str, &str)> = hops
            .iter()
            .map(|h| (h.name.as_str(), h.url.as_str(), h.endpoint.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "router-north",
                    "http://router-north:8080",
                    "http://router-north:8080/relay"
                ),
                (
                    "east",
                    "http://10.0.0.5:8080/",
                    "http://10.0.0.5:8080/relay"
                ),
                (
                    "127.0.0.1:9",
                    "http://127.0.0.1:9",
                    "http://127.0.0.1:9/relay"
                ),
                ("[::1]:7", "http://[::1]:7", "http://[::1]:7/relay"),
            ]
        );
        assert!(parse_next_hops("").unwrap().is_empty());
        assert!(parse_next_hops(" , ").unwrap().is_empty());
    }

    #[test]
    fn a_default_port_names_an_ip_hop_too() {
        assert_eq!(
            parse_next_hops("http://10.0.0.99").unwrap()[0].name,
            "10.0.0.99:80"
        );
    }

    #[test]
    fn bad_hops_are_refused_with_the_setting_named() {
        for bad in [
            "router-east:8080",
            "ftp://x:1",
            "=http://x:1",
            "a=http://x:1,a=http://y:1",
            "http://a:1,http://a:2",
        ] {
            let e = parse_next_hops(bad).unwrap_err().to_string();
            assert!(e.starts_with("NEXT_HOPS"), "{bad}: {e}");
        }
    }

    #[test]
    fn the_generator_target_keeps_its_path() {
        let t = parse_target("http://router-west:8080/relay").unwrap();
        assert_eq!(
            (t.name.as_str(), t.endpoint.as_str()),
            ("router-west", "http://router-west:8080/relay")
        );
        let t = parse_target("west=http://127.0.0.1:5000/relay").unwrap();
        assert_eq!(t.name, "west");
    }
}
