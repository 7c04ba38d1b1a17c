//! The one client library of cicd-buildout.
//!
//! Every phase binary reads its settings through [`config`], talks to servers only through
//! [`http`], [`vault`] and [`kube`], expresses what it will change as a [`plan::Plan`] and runs
//! through [`cli`] so that `plan`, `apply`, `check` and `--output json` behave the same everywhere.

#![warn(missing_docs)]

#[cfg(feature = "platform")]
pub mod argocd;
pub mod ci_library;
#[cfg(feature = "platform")]
pub mod cli;
pub mod codeowners;
pub mod config;
#[cfg(feature = "platform")]
pub mod contract;
pub mod dates;
pub mod dotenv;
pub mod env;
pub mod error;
pub mod gitlab;
#[cfg(feature = "platform")]
pub mod harbor;
#[cfg(feature = "platform")]
pub mod helm;
pub mod http;
#[cfg(feature = "platform")]
pub mod keycloak;
#[cfg(feature = "platform")]
pub mod kube;
#[cfg(feature = "platform")]
pub mod phase;
#[cfg(feature = "platform")]
pub mod plan;
pub mod redact;
#[cfg(feature = "server")]
pub mod serve;
#[cfg(feature = "platform")]
pub mod vault;

pub use error::{Error, Result};

/// Installs the one TLS provider of the workspace (ring) for rustls; call it first in every `main`
/// (kube and reqwest would otherwise disagree at the first TLS connection).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
