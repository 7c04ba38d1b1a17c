//! The pure part: counters → increments (with resets), increments → rates over a sliding window
//! of polls, and the state of each link and node. No I/O, no clock: every input carries its time.
//!
//! Link state over the window (the last [`WINDOW_POLLS`] polls):
//! - `down`: the link had drops (connect or timeout failures);
//! - `up`: it carried packets and had no drops;
//! - `idle`: it is configured now and carried nothing;
//! - `gone`: it is no longer configured and carried nothing. A gone link stays listed (drawn
//!   faint) for [`GONE_RETENTION_SECS`], then it is removed, and an unknown hop with it.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use serde::Serialize;

/// Polls in the sliding window of link state and rates.
pub const WINDOW_POLLS: usize = 5;
/// How long a link that is gone (not configured, no traffic) stays listed.
pub const GONE_RETENTION_SECS: f64 = 60.0;
/// The generator's name (its node is drawn as the source of the traffic).
pub const GENERATOR: &str = "generator";
/// The arcade's routers in the order the page lays them out.
pub const KNOWN_ORDER: &[&str] = &[
    GENERATOR,
    "router-west",
    "router-core",
    "router-east",
    "router-north",
];

/// `(from, to)`.
pub type LinkKey = (String, String);

/// Counter values of one router's last successful scrape, per series, to turn counters into
/// increments. A lower value than last time is a reset (the process restarted): the increment is
/// then the new value, since counters start at 0.
#[derive(Debug, Default)]
pub struct Counters {
    /// Router → series → last value; absent until the router's first successful scrape.
    last: HashMap<String, HashMap<String, f64>>,
}

impl Counters {
    /// Turns one successful scrape of `router` (series id, value) into increments, in order.
    ///
    /// A series never seen before counts from 0 when the router was scraped before (a link added
    /// since, or a restarted process); on a router's first scrape every series is a baseline (its
    /// past is not this window's traffic).
    pub fn increments(&mut self, router: &str, series: &[(String, f64)]) -> Vec<f64> {
        let previous = self.last.get(router);
        let out = series
            .iter()
            .map(|(id, value)| match previous {
                None => 0.0,
                Some(prev) => match prev.get(id) {
                    Some(p) if value >= p => value - p,
                    // Reset (negative delta) or a series new since the last scrape: from 0.
                    Some(_) | None => *value,
                },
            })
            .collect();
        // Only the series present now are kept: one that vanishes (link removed, process
        // restarted) and comes back later counts from 0 again.
        self.last
            .insert(router.to_string(), series.iter().cloned().collect());
        out
    }
}

/// What moved on a link during one poll interval.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Flow {
    pub packets: f64,
    pub drops: f64,
}

impl Flow {
    fn add(&mut self, other: Flow) {
        self.packets += other.packets;
        self.drops += other.drops;
    }
}

/// A node as a source reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouterStatus {
    pub name: String,
    pub up: bool,
    pub versions: Vec<String>,
    /// Why it is down (scrape error), for the tooltip and the logs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One poll, as increments over `interval` seconds (a source that reads rates multiplies them
/// by the interval).
#[derive(Debug, Clone, Default)]
pub struct Poll {
    /// Unix time of the poll, seconds.
    pub at: f64,
    /// Seconds the increments cover (0 for a first, baseline poll).
    pub interval: f64,
    pub routers: Vec<RouterStatus>,
    /// Links configured now (`relay_next_hop_info`).
    pub active: BTreeSet<LinkKey>,
    pub flows: BTreeMap<LinkKey, Flow>,
    /// The generator's end-to-end outcomes.
    pub delivered: f64,
    pub lost: f64,
}

impl Poll {
    pub fn add_flow(&mut self, from: &str, to: &str, flow: Flow) {
        self.flows
            .entry((from.to_string(), to.to_string()))
            .or_default()
            .add(flow);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkState {
    Up,
    Down,
    Idle,
    Gone,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    /// The traffic generator.
    Generator,
    /// A router (listed, or named in a link).
    Router,
    /// A next hop that is no router: an `ip:port` target.
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeView {
    pub name: String,
    pub kind: NodeKind,
    pub up: bool,
    pub versions: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LinkView {
    pub from: String,
    pub to: String,
    /// Configured now.
    pub active: bool,
    pub packets_per_sec: f64,
    pub drops_per_sec: f64,
    pub state: LinkState,
}

/// The computed topology (without the dashboard's own version and colour).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Computed {
    pub routers: Vec<NodeView>,
    pub links: Vec<LinkView>,
    /// delivered / (delivered + lost) of the generator over the window; `None` without traffic.
    pub delivery_ratio: Option<f64>,
    pub delivered_per_sec: f64,
    pub lost_per_sec: f64,
    /// Unix time of the last poll.
    pub at: Option<f64>,
}

#[derive(Debug)]
struct LinkHistory {
    flows: VecDeque<Flow>,
    active: bool,
    /// Last poll time it was configured or carried anything.
    last_busy: f64,
}

impl LinkHistory {
    fn total(&self) -> Flow {
        let mut total = Flow::default();
        for f in &self.flows {
            total.add(*f);
        }
        total
    }
}

/// The sliding window over polls.
#[derive(Debug)]
pub struct Tracker {
    window: usize,
    retention: f64,
    intervals: VecDeque<f64>,
    links: BTreeMap<LinkKey, LinkHistory>,
    delivery: VecDeque<(f64, f64)>,
    routers: Vec<RouterStatus>,
    at: Option<f64>,
}

impl Default for Tracker {
    fn default() -> Self {
        Self::new(WINDOW_POLLS, GONE_RETENTION_SECS)
    }
}

fn push_bounded<T>(queue: &mut VecDeque<T>, value: T, max: usize) {
    queue.push_back(value);
    while queue.len() > max {
        queue.pop_front();
    }
}

impl Tracker {
    pub fn new(window: usize, retention: f64) -> Self {
        Self {
            window: window.max(1),
            retention,
            intervals: VecDeque::new(),
            links: BTreeMap::new(),
            delivery: VecDeque::new(),
            routers: Vec::new(),
            at: None,
        }
    }

    pub fn push(&mut self, poll: Poll) {
        let window = self.window;
        push_bounded(&mut self.intervals, poll.interval.max(0.0), window);
        push_bounded(&mut self.delivery, (poll.delivered, poll.lost), window);
        let keys: BTreeSet<LinkKey> = self
            .links
            .keys()
            .chain(poll.flows.keys())
            .chain(poll.active.iter())
            .cloned()
            .collect();
        for key in keys {
            let flow = poll.flows.get(&key).copied().unwrap_or_default();
            let active = poll.active.contains(&key);
            let history = self.links.entry(key).or_insert_with(|| LinkHistory {
                flows: VecDeque::new(),
                active,
                last_busy: poll.at,
            });
            push_bounded(&mut history.flows, flow, window);
            history.active = active;
            if active || flow.packets > 0.0 || flow.drops > 0.0 {
                history.last_busy = poll.at;
            }
        }
        let retention = self.retention;
        self.links.retain(|_, h| {
            let total = h.total();
            h.active
                || total.packets > 0.0
                || total.drops > 0.0
                || poll.at - h.last_busy <= retention
        });
        self.routers = poll.routers;
        self.at = Some(poll.at);
    }

    /// Rates and states over the window.
    pub fn compute(&self) -> Computed {
        let span: f64 = self.intervals.iter().sum();
        let rate = |amount: f64| {
            if span > 0.0 {
                round2(amount / span)
            } else {
                0.0
            }
        };
        let links: Vec<LinkView> = self
            .links
            .iter()
            .map(|((from, to), h)| {
                let total = h.total();
                let state = if total.drops > 0.0 {
                    LinkState::Down
                } else if total.packets > 0.0 {
                    LinkState::Up
                } else if h.active {
                    LinkState::Idle
                } else {
                    LinkState::Gone
                };
                LinkView {
                    from: from.clone(),
                    to: to.clone(),
                    active: h.active,
                    packets_per_sec: rate(total.packets),
                    drops_per_sec: rate(total.drops),
                    state,
                }
            })
            .collect();
        let (delivered, lost) = self
            .delivery
            .iter()
            .fold((0.0, 0.0), |(d, l), (dd, ll)| (d + dd, l + ll));
        let delivery_ratio = (delivered + lost > 0.0)
            .then(|| (delivered / (delivered + lost) * 10_000.0).round() / 10_000.0);
        Computed {
            routers: nodes(&self.routers, &links),
            links,
            delivery_ratio,
            delivered_per_sec: rate(delivered),
            lost_per_sec: rate(lost),
            at: self.at,
        }
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Whether a hop name is an `ip:port` (or `host:port`) target rather than a router name.
pub fn is_unknown_hop(name: &str) -> bool {
    name.contains(':')
}

fn kind_of(name: &str) -> NodeKind {
    if name == GENERATOR {
        NodeKind::Generator
    } else if is_unknown_hop(name) {
        NodeKind::Unknown
    } else {
        NodeKind::Router
    }
}

/// The nodes: the reported routers, then every other link end (an unknown hop is "up" while
/// the link to it carries packets without drops; a router nobody reported is down).
fn nodes(routers: &[RouterStatus], links: &[LinkView]) -> Vec<NodeView> {
    let mut out: Vec<NodeView> = routers
        .iter()
        .map(|r| NodeView {
            name: r.name.clone(),
            kind: kind_of(&r.name),
            up: r.up,
            versions: r.versions.clone(),
            error: r.error.clone(),
        })
        .collect();
    for link in links {
        for name in [&link.from, &link.to] {
            if out.iter().any(|n| &n.name == name) {
                continue;
            }
            let kind = kind_of(name);
            let up = kind == NodeKind::Unknown
                && links
                    .iter()
                    .any(|l| &l.to == name && l.state == LinkState::Up);
            out.push(NodeView {
                name: name.clone(),
                kind,
                up,
                versions: Vec::new(),
                error: None,
            });
        }
    }
    let rank = |name: &str| {
        KNOWN_ORDER
            .iter()
            .position(|k| *k == name)
            .unwrap_or(KNOWN_ORDER.len())
    };
    out.sort_by_key(|n| rank(&n.name)); // stable: others keep their order
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(from: &str, to: &str) -> LinkKey {
        (from.to_string(), to.to_string())
    }

    fn router(name: &str, up: bool) -> RouterStatus {
        RouterStatus {
            name: name.into(),
            up,
            versions: if up { vec!["0.1.0".into()] } else { vec![] },
            error: None,
        }
    }

    /// A poll 1 s after the previous one, with `core → to` configured and carrying `flow`.
    fn poll(at: f64, to: &str, flow: Flow, active: bool) -> Poll {
        let mut p = Poll {
            at,
            interval: 1.0,
            routers: vec![router("router-core", true)],
            ..Poll::default()
        };
        if active {
            p.active.insert(key("router-core", to));
        }
        if flow != Flow::default() {
            p.add_flow("router-core", to, flow);
        }
        p
    }

    fn link<'a>(c: &'a Computed, from: &str, to: &str) -> Option<&'a LinkView> {
        c.links.iter().find(|l| l.from == from && l.to == to)
    }

    const TEN: Flow = Flow {
        packets: 10.0,
        drops: 0.0,
    };
    const DROPS: Flow = Flow {
        packets: 0.0,
        drops: 4.0,
    };

    #[test]
    fn counters_baseline_then_deltas_then_reset() {
        let mut c = Counters::default();
        let s = |v: f64| vec![("a".to_string(), v), ("b".to_string(), 2.0 * v)];
        // First scrape of a router: a baseline (its past is not this window's traffic).
        assert_eq!(c.increments("core", &s(100.0)), [0.0, 0.0]);
        assert_eq!(c.increments("core", &s(110.0)), [10.0, 20.0]);
        // Negative delta: the process restarted; counters started again from 0.
        assert_eq!(c.increments("core", &s(3.0)), [3.0, 6.0]);
        // A series new since the last scrape (link added, process restarted) counts from 0.
        let with_new = vec![("a".to_string(), 5.0), ("c".to_string(), 7.0)];
        assert_eq!(c.increments("core", &with_new), [2.0, 7.0]);
        // "b" vanished and comes back: from 0 again, not from its old value.
        assert_eq!(
            c.increments("core", &[("b".to_string(), 1.0)]),
            [1.0],
            "a vanished series is forgotten"
        );
        // Routers are independent.
        assert_eq!(c.increments("east", &[("a".to_string(), 9.0)]), [0.0]);
    }

    #[test]
    fn rates_are_window_sums_over_window_time() {
        let mut t = Tracker::new(3, 60.0);
        for i in 0..5 {
            t.push(poll(f64::from(i), "router-east", TEN, true));
        }
        let c = t.compute();
        let l = link(&c, "router-core", "router-east").unwrap();
        assert!((l.packets_per_sec - 10.0).abs() < 1e-9);
        assert!(l.drops_per_sec.abs() < 1e-9);
        assert_eq!(l.state, LinkState::Up);
        assert!(l.active);
        // Uneven intervals: 30 packets over 1.5 s of window.
        let mut t = Tracker::new(3, 60.0);
        for interval in [0.5, 0.5, 0.5] {
            let mut p = poll(0.0, "router-east", TEN, true);
            p.interval = interval;
            t.push(p);
        }
        assert!(
            (link(&t.compute(), "router-core", "router-east")
                .unwrap()
                .packets_per_sec
                - 20.0)
                .abs()
                < 1e-9
        );
    }

    #[test]
    fn baseline_poll_has_no_rate() {
        let mut t = Tracker::default();
        let mut p = poll(0.0, "router-east", Flow::default(), true);
        p.interval = 0.0;
        t.push(p);
        let c = t.compute();
        let l = link(&c, "router-core", "router-east").unwrap();
        assert_eq!(l.state, LinkState::Idle);
        assert!(l.packets_per_sec.abs() < f64::EPSILON);
        assert_eq!(c.delivery_ratio, None);
    }

    #[test]
    fn drops_turn_a_link_down_until_the_window_passes_without_them() {
        let mut t = Tracker::new(3, 60.0);
        t.push(poll(0.0, "router-east", TEN, true));
        assert_eq!(
            link(&t.compute(), "router-core", "router-east")
                .unwrap()
                .state,
            LinkState::Up
        );
        // One poll with drops among packets: down (red) at once.
        t.push(poll(
            1.0,
            "router-east",
            Flow {
                packets: 10.0,
                drops: 1.0,
            },
            true,
        ));
        let c = t.compute();
        let l = link(&c, "router-core", "router-east").unwrap();
        assert_eq!(l.state, LinkState::Down);
        assert!((l.drops_per_sec - 0.5).abs() < 1e-9);
        // Still down while the drop is inside the window (3 polls)...
        t.push(poll(2.0, "router-east", TEN, true));
        t.push(poll(3.0, "router-east", TEN, true));
        assert_eq!(
            link(&t.compute(), "router-core", "router-east")
                .unwrap()
                .state,
            LinkState::Down
        );
        // ...and up (green) again once it left.
        t.push(poll(4.0, "router-east", TEN, true));
        assert_eq!(
            link(&t.compute(), "router-core", "router-east")
                .unwrap()
                .state,
            LinkState::Up
        );
    }

    #[test]
    fn configured_without_traffic_is_idle() {
        let mut t = Tracker::new(3, 60.0);
        for i in 0..4 {
            t.push(poll(f64::from(i), "router-north", Flow::default(), true));
        }
        let c = t.compute();
        assert_eq!(
            link(&c, "router-core", "router-north").unwrap().state,
            LinkState::Idle
        );
    }

    #[test]
    fn reroute_fades_the_old_link_then_removes_it() {
        // Scenario 2: core → east, then core → north.
        let mut t = Tracker::new(3, 10.0);
        t.push(poll(0.0, "router-east", TEN, true));
        t.push(poll(1.0, "router-east", TEN, true));
        let mut at = 2.0;
        let step = |t: &mut Tracker, at: f64| {
            t.push(poll(at, "router-north", TEN, true));
            t.compute()
        };
        let c = step(&mut t, at);
        let east = link(&c, "router-core", "router-east").unwrap();
        assert!(!east.active, "no longer configured");
        assert_eq!(
            east.state,
            LinkState::Up,
            "its packets are still in the window"
        );
        assert_eq!(
            link(&c, "router-core", "router-north").unwrap().state,
            LinkState::Up
        );
        for _ in 0..2 {
            at += 1.0;
            step(&mut t, at);
        }
        let c = t.compute();
        let east = link(&c, "router-core", "router-east").unwrap();
        assert_eq!(
            east.state,
            LinkState::Gone,
            "faded: no traffic in the window"
        );
        assert!(east.packets_per_sec.abs() < f64::EPSILON);
        // Listed for the retention time after its last traffic (t=1), then removed.
        at = 11.0;
        assert!(link(&step(&mut t, at), "router-core", "router-east").is_some());
        at = 11.5;
        assert!(link(&step(&mut t, at), "router-core", "router-east").is_none());
    }

    #[test]
    fn unknown_hop_is_a_node_and_leaves_with_its_link() {
        // Scenario 1: core → 10.0.0.99:8080, nothing answers.
        let mut t = Tracker::new(2, 5.0);
        t.push(poll(0.0, "10.0.0.99:8080", DROPS, true));
        let c = t.compute();
        assert_eq!(
            link(&c, "router-core", "10.0.0.99:8080").unwrap().state,
            LinkState::Down
        );
        let node = c
            .routers
            .iter()
            .find(|n| n.name == "10.0.0.99:8080")
            .unwrap();
        assert_eq!(node.kind, NodeKind::Unknown);
        assert!(!node.up, "nothing answers there");
        // Rollback: core → east again.
        for at in 1..=3 {
            t.push(poll(f64::from(at), "router-east", TEN, true));
        }
        let c = t.compute();
        assert_eq!(
            link(&c, "router-core", "10.0.0.99:8080").unwrap().state,
            LinkState::Gone
        );
        assert_eq!(
            link(&c, "router-core", "router-east").unwrap().state,
            LinkState::Up
        );
        t.push(poll(6.0, "router-east", TEN, true));
        let c = t.compute();
        assert!(link(&c, "router-core", "10.0.0.99:8080").is_none());
        assert!(!c.routers.iter().any(|n| n.name == "10.0.0.99:8080"));
    }

    #[test]
    fn unknown_hop_that_answers_is_up() {
        let mut t = Tracker::default();
        t.push(poll(0.0, "127.0.0.1:8084", TEN, true));
        let c = t.compute();
        let node = c
            .routers
            .iter()
            .find(|n| n.name == "127.0.0.1:8084")
            .unwrap();
        assert!(node.up);
    }

    #[test]
    fn nodes_are_ordered_and_unreported_routers_are_down() {
        let mut t = Tracker::default();
        let mut p = poll(0.0, "router-north", TEN, true);
        p.routers = vec![
            router("router-east", true),
            router("router-core", false),
            router("generator", true),
            router("router-west", true),
            router("router-south", true),
        ];
        p.add_flow("router-west", "router-core", TEN);
        t.push(p);
        let c = t.compute();
        let names: Vec<(&str, NodeKind, bool)> = c
            .routers
            .iter()
            .map(|n| (n.name.as_str(), n.kind, n.up))
            .collect();
        assert_eq!(
            names,
            [
                ("generator", NodeKind::Generator, true),
                ("router-west", NodeKind::Router, true),
                ("router-core", NodeKind::Router, false),
                ("router-east", NodeKind::Router, true),
                ("router-north", NodeKind::Router, false),
                ("router-south", NodeKind::Router, true),
            ]
        );
    }

    #[test]
    fn delivery_ratio_over_the_window() {
        let mut t = Tracker::new(2, 60.0);
        let with = |delivered: f64, lost: f64| Poll {
            at: 0.0,
            interval: 1.0,
            delivered,
            lost,
            ..Poll::default()
        };
        t.push(with(40.0, 0.0));
        assert_eq!(t.compute().delivery_ratio, Some(1.0));
        t.push(with(30.0, 10.0));
        let c = t.compute();
        assert_eq!(c.delivery_ratio, Some(0.875));
        assert!((c.delivered_per_sec - 35.0).abs() < 1e-9);
        assert!((c.lost_per_sec - 5.0).abs() < 1e-9);
        t.push(with(0.0, 0.0));
        t.push(with(0.0, 0.0));
        assert_eq!(t.compute().delivery_ratio, None, "no traffic: no ratio");
    }
}
