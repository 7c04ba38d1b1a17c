//! Direct mode: the Prometheus text exposition format (version 0.0.4) of a router's `/metrics`,
//! parsed into samples, and the relay series of the contract picked out of them.
//!
//! Only what the format allows a router to write is handled: `# HELP`/`# TYPE` and other comments,
//! `name value [timestamp]`, `name{label="value",…} value [timestamp]` with `\\`, `\"` and `\n`
//! escapes in label values, and `NaN`/`+Inf`/`-Inf` values. A line that is none of these is
//! skipped (one bad line must not blank the whole router).

use std::collections::BTreeMap;

/// One sample: metric name, labels, value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, name: &str) -> &str {
        self.labels.get(name).map_or("", String::as_str)
    }
}

/// Parses a whole exposition; unparsable lines are skipped.
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines().filter_map(parse_line).collect()
}

/// Parses one sample line (`None` for comments, blank and malformed lines).
pub fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return None;
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let (parsed, after) = parse_labels(inner)?;
        labels = parsed;
        rest = after;
    }
    if !rest.starts_with([' ', '\t']) {
        return None;
    }
    let mut fields = rest.split_ascii_whitespace();
    let value = parse_value(fields.next()?)?;
    // An optional timestamp (integer milliseconds); anything more is malformed.
    if let Some(ts) = fields.next() {
        ts.parse::<i64>().ok()?;
    }
    if fields.next().is_some() {
        return None;
    }
    Some(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// `label="value",…}` → labels and what follows the `}`.
fn parse_labels(mut s: &str) -> Option<(BTreeMap<String, String>, &str)> {
    let mut labels = BTreeMap::new();
    loop {
        s = s.trim_start();
        if let Some(after) = s.strip_prefix('}') {
            return Some((labels, after));
        }
        let eq = s.find('=')?;
        let key = s[..eq].trim();
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return None;
        }
        s = s[eq + 1..].trim_start().strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '"' => break i,
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                c => value.push(c),
            }
        };
        labels.insert(key.to_string(), value);
        s = s[end + 1..].trim_start();
        if let Some(after) = s.strip_prefix(',') {
            s = after;
        } else if !s.starts_with('}') {
            return None;
        }
    }
}

fn parse_value(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => text.parse().ok(),
    }
}

/// A link counter series: which link, and the identity of the series (for reset tracking).
#[derive(Debug, Clone, PartialEq)]
pub struct LinkCounter {
    pub from: String,
    pub to: String,
    /// The series' distinguishing labels beyond from/to (e.g. `reason=connect`), for deltas.
    pub series: String,
    pub value: f64,
}

/// What one router's `/metrics` says, per the contract (see `docs/netops-dashboard.md`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RouterMetrics {
    /// `relay_build_info{service,version}`: the versions running (one per process).
    pub versions: Vec<String>,
    /// `relay_link_packets_total{from,to}`.
    pub packets: Vec<LinkCounter>,
    /// `relay_link_drops_total{from,to,reason}`.
    pub drops: Vec<LinkCounter>,
    /// `relay_next_hop_info{from,to,url} 1`: the links configured now.
    pub next_hops: Vec<(String, String)>,
    /// `relay_generator_packets_total{from,to,outcome="delivered"}`.
    pub generator_delivered: Vec<LinkCounter>,
    /// `relay_generator_packets_total{from,to,outcome="lost"}`.
    pub generator_lost: Vec<LinkCounter>,
}

impl RouterMetrics {
    /// Picks the relay series out of a parsed exposition. `service` is the scraped router's
    /// name: a `relay_build_info` of another service (none is expected) is ignored.
    pub fn from_samples(service: &str, samples: &[Sample]) -> Self {
        let mut m = RouterMetrics::default();
        let counter = |s: &Sample, extra: &str| LinkCounter {
            from: s.label("from").to_string(),
            to: s.label("to").to_string(),
            series: extra.to_string(),
            value: s.value,
        };
        for s in samples {
            if !s.value.is_finite() {
                continue;
            }
            let has_link = !s.label("from").is_empty() && !s.label("to").is_empty();
            match s.name.as_str() {
                "relay_build_info" if s.value > 0.0 => {
                    let version = s.label("version");
                    let svc = s.label("service");
                    if (svc.is_empty() || svc == service)
                        && !version.is_empty()
                        && !m.versions.iter().any(|v| v == version)
                    {
                        m.versions.push(version.to_string());
                    }
                }
                "relay_link_packets_total" if has_link => m.packets.push(counter(s, "")),
                "relay_link_drops_total" if has_link => {
                    m.drops
                        .push(counter(s, &format!("reason={}", s.label("reason"))));
                }
                "relay_next_hop_info" if has_link && s.value > 0.0 => {
                    let link = (s.label("from").to_string(), s.label("to").to_string());
                    if !m.next_hops.contains(&link) {
                        m.next_hops.push(link);
                    }
                }
                "relay_generator_packets_total" if has_link => match s.label("outcome") {
                    "delivered" => m.generator_delivered.push(counter(s, "delivered")),
                    "lost" => m.generator_lost.push(counter(s, "lost")),
                    _ => {}
                },
                _ => {}
            }
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CORE: &str = include_str!("../testdata/router-core.prom");
    const GENERATOR: &str = include_str!("../testdata/generator.prom");

    #[test]
    fn parses_names_labels_escapes_values_and_timestamps() {
        let s =
            parse_line(r#"a_b:c{x="1",y="q\"uo\\te\nnl" , z="=,}"} 12.5 1700000000000"#).unwrap();
        assert_eq!(s.name, "a_b:c");
        assert_eq!(s.label("x"), "1");
        assert_eq!(s.label("y"), "q\"uo\\te\nnl");
        assert_eq!(s.label("z"), "=,}");
        assert!((s.value - 12.5).abs() < f64::EPSILON);
        let s = parse_line("up 1").unwrap();
        assert!(s.labels.is_empty());
        assert!(parse_line("x{} +Inf").unwrap().value.is_infinite());
        assert!(parse_line("x NaN").unwrap().value.is_nan());
        assert!(
            (parse_line("x{a=\"b\",} 1e3").unwrap().value - 1000.0).abs() < f64::EPSILON,
            "a trailing comma is allowed"
        );
        for bad in [
            "# HELP x y",
            "",
            "x",
            "x{a=\"b\"",
            "x{a=b} 1",
            "x{a=\"b\"}1",
            "x 1 2 3",
            "x one",
            "1x 1",
            "x 1 1.5",
        ] {
            assert_eq!(parse_line(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn router_fixture_gives_the_contract_series() {
        let m = RouterMetrics::from_samples("router-core", &parse(CORE));
        assert_eq!(m.versions, ["0.1.0"]);
        assert_eq!(
            m.next_hops,
            [
                ("router-core".to_string(), "router-east".to_string()),
                ("router-core".to_string(), "10.0.0.99:8080".to_string())
            ]
        );
        let packets: Vec<(&str, &str, f64)> = m
            .packets
            .iter()
            .map(|c| (c.from.as_str(), c.to.as_str(), c.value))
            .collect();
        assert_eq!(
            packets,
            [
                ("router-core", "10.0.0.99:8080", 0.0),
                ("router-core", "router-east", 1234.0),
            ]
        );
        let drops: Vec<(&str, &str, f64)> = m
            .drops
            .iter()
            .map(|c| (c.series.as_str(), c.to.as_str(), c.value))
            .collect();
        assert_eq!(
            drops,
            [
                ("reason=connect", "10.0.0.99:8080", 17.0),
                ("reason=timeout", "10.0.0.99:8080", 3.0),
                ("reason=connect", "router-east", 0.0),
                ("reason=timeout", "router-east", 0.0),
            ]
        );
        assert!(m.generator_delivered.is_empty() && m.generator_lost.is_empty());
    }

    #[test]
    fn generator_fixture_gives_outcomes() {
        let m = RouterMetrics::from_samples("generator", &parse(GENERATOR));
        assert_eq!(m.versions, ["0.1.0"]);
        assert_eq!(m.generator_delivered.len(), 1);
        assert!((m.generator_delivered[0].value - 990.0).abs() < f64::EPSILON);
        assert!((m.generator_lost[0].value - 10.0).abs() < f64::EPSILON);
        assert_eq!(m.packets[0].to, "router-west");
    }
}
