//! The floor of any router hop: a process that accepts TCP connections and copies their
//! bytes to and from an upstream, with TCP_NODELAY on both sides, and does nothing else
//! (no HTTP/2, no parsing). `scripts/bench_router.sh` runs it with `RELAY=1` beside the
//! router, so what one more loopback process hop costs on the machine is measured in the
//! same run as the router's hop.
//!
//! Usage: `tcp_relay UPSTREAM` (host:port). Listens on 127.0.0.1:0 and prints
//! `relay listening on ADDR` once bound.

use std::env;

use anyhow::{Context, Result};
use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};

#[tokio::main]
async fn main() -> Result<()> {
    let upstream = env::args()
        .nth(1)
        .context("usage: tcp_relay UPSTREAM (host:port)")?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    println!("relay listening on {}", listener.local_addr()?);
    loop {
        let (mut inbound, _) = listener.accept().await?;
        let upstream = upstream.clone();
        tokio::spawn(async move {
            let relay = async {
                inbound.set_nodelay(true)?;
                let mut outbound = TcpStream::connect(&upstream).await?;
                outbound.set_nodelay(true)?;
                copy_bidirectional(&mut inbound, &mut outbound).await?;
                Ok::<_, std::io::Error>(())
            };
            if let Err(e) = relay.await {
                eprintln!("relay connection ended: {e}");
            }
        });
    }
}
