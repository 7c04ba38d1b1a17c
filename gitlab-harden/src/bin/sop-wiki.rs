//! Phase 12b `sop-wiki`: see `gitlab_harden::wiki`.

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    common::cli::exit_with(gitlab_harden::wiki::run(gitlab_harden::wiki::Cli::parse()).await)
}
