//! The dashboard as a process: against real `packet-relay` routers in a real browser (the demo
//! scenarios), against a real Prometheus (cluster mode), against static router fixtures (the
//! endpoints), and with bad settings (refused at start, one line, exit 1).

mod bad_input;
mod browser;
mod fixture;
mod hostile;
mod prometheus;
mod support;
