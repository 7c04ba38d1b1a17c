//! Integration tests of phase 16 (one binary): the phase against the sandbox (`phase`: real
//! `OpenBao` and kube-apiserver, GitLab and Harbor stand-ins), its refusals and the optional CRD
//! paths (`refusals`), an installation that had only the security runner (`upgrade`), and the
//! objects checked against schemas (`objects`).

mod objects;
mod phase;
mod refusals;
// The bash phase's security runners, deleted by identity.
mod runner_leftovers;
mod support;
mod upgrade;
