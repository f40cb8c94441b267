//! The floor of an HTTP/2 router hop: a process that serves HTTP/2 (hyper, 1 MiB frames as
//! Troupe's servers) and sends each request on, with its body and trailers as they come,
//! to one upstream over a pooled HTTP/2 connection (hyper-util's client), and the answer
//! back the same way. No routing, auth, limits, metrics or tracing: what HTTP/2 itself
//! costs a hop, next to `tcp_relay` (bytes only) and the real router, all three measured
//! in one run by `RELAY=1 scripts/bench_router.sh`.
//!
//! Usage: `h2_relay UPSTREAM` (host:port). Listens on 127.0.0.1:0 and prints
//! `relay listening on ADDR` once bound.

use std::env;

use anyhow::{Context, Result};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> Result<()> {
    let upstream: http::uri::Authority = env::args()
        .nth(1)
        .context("usage: h2_relay UPSTREAM (host:port)")?
        .parse()
        .context("UPSTREAM is host:port")?;
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Incoming> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build(connector);
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    println!("relay listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let (client, upstream) = (client.clone(), upstream.clone());
        tokio::spawn(async move {
            let relay = service_fn(move |mut req: http::Request<Incoming>| {
                let (client, upstream) = (client.clone(), upstream.clone());
                async move {
                    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
                    let uri = http::Uri::builder()
                        .scheme("http")
                        .authority(upstream)
                        .path_and_query(path)
                        .build();
                    match uri {
                        Ok(uri) => *req.uri_mut() = uri,
                        Err(e) => return Err(std::io::Error::other(e)),
                    }
                    client.request(req).await.map_err(std::io::Error::other)
                }
            });
            let served = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .max_frame_size(1 << 20)
                .serve_connection(TokioIo::new(stream), relay)
                .await;
            if let Err(e) = served {
                eprintln!("relay connection ended: {e}");
            }
        });
    }
}
