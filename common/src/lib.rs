//! The one client library of cicd-buildout.
//!
//! Every phase binary reads its settings through [`config`], talks to servers only through
//! [`http`], [`vault`] and [`kube`], expresses what it will change as a [`plan::Plan`] and runs
//! through [`cli`] so that `plan`, `apply`, `check` and `--output json` behave the same everywhere.

pub mod cli;
pub mod config;
pub mod env;
pub mod error;
pub mod gitlab;
pub mod harbor;
pub mod http;
pub mod keycloak;
pub mod kube;
pub mod plan;
pub mod redact;
pub mod vault;

pub use error::{Error, Result};
