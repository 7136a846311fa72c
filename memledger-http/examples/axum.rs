//! memledger's endpoints in an axum router, beside the program's own routes.
//!
//! `cargo run --release -p memledger-http --example axum`, then
//! `go tool pprof -top http://127.0.0.1:3000/debug/pprof/heap` or open
//! `http://127.0.0.1:3000/debug/memledger/`. `--once` serves one request to itself and exits.

use std::sync::Arc;

use axum::response::IntoResponse;

#[global_allocator]
static GLOBAL: memledger::Ledger<memledger::Jemalloc> = memledger::Ledger::new(memledger::Jemalloc);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let sampler = Arc::new(memledger_monitor::Sampler::builder().start()?);
    let endpoints = memledger_http::Endpoints::new(sampler);

    let app = axum::Router::new()
        .route(
            "/",
            axum::routing::get(|| async { "the program's own routes" }),
        )
        // Everything else goes to the endpoints, which answer 404 to what they do not know. A
        // `?seconds=` window and a profile's first resolution block: off the reactor with them.
        .fallback(move |request: axum::extract::Request| {
            let endpoints = endpoints.clone();
            async move {
                match tokio::task::spawn_blocking(move || endpoints.handle(&request)).await {
                    Ok(response) => response.map(axum::body::Body::from).into_response(),
                    Err(_) => http::StatusCode::INTERNAL_SERVER_ERROR.into_response(),
                }
            }
        });

    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!(
        "serving on http://{}/debug/memledger/",
        listener.local_addr()?
    );
    if std::env::args().any(|a| a == "--once") {
        let addr = listener.local_addr()?;
        tokio::spawn(async move { axum::serve(listener, app).await });
        let status = tokio::task::spawn_blocking(move || fetch_status(addr)).await??;
        println!("GET /debug/memledger/snapshot: {status}");
        return Ok(());
    }
    axum::serve(listener, app).await?;
    Ok(())
}

/// The status line of `GET /debug/memledger/snapshot`.
fn fetch_status(addr: std::net::SocketAddr) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr)?;
    stream.write_all(
        b"GET /debug/memledger/snapshot HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    Ok(answer.lines().next().unwrap_or_default().to_string())
}
