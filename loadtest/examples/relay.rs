//! The floors a router hop is measured against, beside the real router in one run
//! (`RELAY=1 scripts/bench_router.sh`):
//! - `relay tcp UPSTREAM`: accepts TCP connections and copies their bytes to and from the
//!   upstream (TCP_NODELAY both sides), nothing else: the floor of any process hop.
//! - `relay h2 UPSTREAM`: serves HTTP/2 (hyper, Troupe's largest frame) and sends each
//!   request on, body and trailers as they come, over hyper-util's pooled HTTP/2 client,
//!   and the answer back the same way. No routing, auth, limits, metrics or tracing: what
//!   HTTP/2 itself costs a hop.
//!
//! UPSTREAM is host:port. Listens on 127.0.0.1:0 and prints `relay listening on ADDR`.

use std::env;

use anyhow::{Context, Result, bail};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};

const USAGE: &str = "usage: relay tcp|h2 UPSTREAM (host:port)";

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = env::args().skip(1);
    let (mode, upstream) = (args.next().context(USAGE)?, args.next().context(USAGE)?);
    let h2 = match mode.as_str() {
        "tcp" => None,
        "h2" => {
            let mut connector = HttpConnector::new();
            connector.set_nodelay(true);
            let client: Client<HttpConnector, Incoming> = Client::builder(TokioExecutor::new())
                .http2_only(true)
                .build(connector);
            let authority: http::uri::Authority = upstream.parse().context(USAGE)?;
            Some((client, authority))
        }
        _ => bail!(USAGE),
    };
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    println!("relay listening on {}", listener.local_addr()?);
    loop {
        let (inbound, _) = listener.accept().await?;
        inbound.set_nodelay(true)?;
        let (upstream, h2) = (upstream.clone(), h2.clone());
        tokio::spawn(async move {
            let relayed = match h2 {
                None => copy_bytes(inbound, &upstream)
                    .await
                    .map_err(anyhow::Error::from),
                Some((client, authority)) => serve_h2(inbound, client, authority)
                    .await
                    .map_err(anyhow::Error::from),
            };
            if let Err(e) = relayed {
                eprintln!("relay connection ended: {e}");
            }
        });
    }
}

async fn copy_bytes(mut inbound: TcpStream, upstream: &str) -> std::io::Result<()> {
    let mut outbound = TcpStream::connect(upstream).await?;
    outbound.set_nodelay(true)?;
    copy_bidirectional(&mut inbound, &mut outbound).await?;
    Ok(())
}

async fn serve_h2(
    inbound: TcpStream,
    client: Client<HttpConnector, Incoming>,
    authority: http::uri::Authority,
) -> Result<(), hyper::Error> {
    let relay = service_fn(move |mut req: http::Request<Incoming>| {
        let (client, authority) = (client.clone(), authority.clone());
        async move {
            let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
            let uri = http::Uri::builder()
                .scheme("http")
                .authority(authority)
                .path_and_query(path)
                .build();
            match uri {
                Ok(uri) => *req.uri_mut() = uri,
                Err(e) => return Err(std::io::Error::other(e)),
            }
            client.request(req).await.map_err(std::io::Error::other)
        }
    });
    hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .max_frame_size(troupe_proto::http2::MAX_FRAME_SIZE)
        .serve_connection(TokioIo::new(inbound), relay)
        .await
}
