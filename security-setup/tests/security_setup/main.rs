//! Integration tests of phase 16 (one binary): the phase against the sandbox (`phase`: real
//! `OpenBao` and kube-apiserver, GitLab and Harbor stand-ins), its refusals and the optional CRD
//! paths (`refusals`), an installation that had only the security runner (`upgrade`), the bash
//! phase's Helm release removed without helm (`helm_release`), and the objects checked against
//! schemas (`objects`).

mod helm_release;
mod objects;
mod phase;
mod refusals;
// The bash phase's security runners, deleted by identity.
mod runner_leftovers;
mod support;
mod upgrade;
