use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    common::cli::exit_with(argo_delivery::run(argo_delivery::Cli::parse()).await)
}
