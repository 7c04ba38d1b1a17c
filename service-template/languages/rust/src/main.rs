//! Entry point: PORT (default 8080) and FLAGS_URL, the feature-flag sidecar.

fn main() -> std::io::Result<()> {
    let port = std::env::var("PORT").unwrap_or_else(|_| "8080".into());
    let flags_url = std::env::var("FLAGS_URL").unwrap_or_default();
    let listener = std::net::TcpListener::bind(format!("0.0.0.0:{port}"))?;
    example_service::serve(&listener, &flags_url);
    Ok(())
}
