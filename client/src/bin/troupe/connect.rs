//! The connection the global flags ask for: `--server` (plain or TLS), `--timeout`, the
//! `--tls-*` files and the `--token` every call carries.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::anyhow;
use troupe_client::{Client, ClientTls};

use crate::Cli;
use crate::failure::Failure;

/// Connects to `--server`: over TLS when a CA or client certificate is given or the
/// address is `https://`, with `--timeout` and `--token` on each call.
pub(crate) async fn connect(cli: &Cli) -> Result<Client, Failure> {
    let timeout = Duration::from_secs_f64(cli.timeout.max(0.001));
    let tls = cli.tls_ca.is_some() || cli.tls_cert.is_some() || cli.server.starts_with("https://");
    let uri = match cli.server.split_once("://") {
        Some((_, rest)) if tls => format!("https://{rest}"),
        Some(_) => cli.server.clone(),
        None if tls => format!("https://{}", cli.server),
        None => format!("http://{}", cli.server),
    };
    let mut endpoint = tonic::transport::Endpoint::from_shared(uri)
        .map_err(|e| Failure::Usage(anyhow!("--server {:?}: {e}", cli.server)))?
        .connect_timeout(Duration::from_secs(5))
        .timeout(timeout);
    if tls {
        endpoint = endpoint
            .tls_config(client_tls(cli)?.client_config())
            .map_err(|e| Failure::Usage(anyhow!("TLS settings: {e}")))?;
    }
    let channel = endpoint.connect().await.map_err(|e| {
        let mut msg = format!("{}: {e}", cli.server);
        let mut cur = std::error::Error::source(&e);
        while let Some(s) = cur {
            msg.push_str(&format!(": {s}"));
            cur = s.source();
        }
        Failure::Unreachable(msg)
    })?;
    let client = Client::from_channel(channel);
    match cli.token.as_ref().filter(|t| !t.0.trim().is_empty()) {
        Some(token) => Ok(client.with_token(&token.0)?),
        None => Ok(client),
    }
}

/// The `--token` value; its `Debug` never shows it.
#[derive(Clone)]
pub(crate) struct Token(String);

impl std::str::FromStr for Token {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Token(s.to_string()))
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// The TLS settings of the `--tls-*` flags, their files read.
fn client_tls(cli: &Cli) -> Result<ClientTls, Failure> {
    let read = |p: &PathBuf, what: &str| {
        std::fs::read(p).map_err(|e| Failure::Usage(anyhow!("{what} {}: {e}", p.display())))
    };
    let mut t = ClientTls {
        ca_pem: cli
            .tls_ca
            .as_ref()
            .map(|p| read(p, "--tls-ca"))
            .transpose()?,
        domain: cli.tls_domain.clone(),
        identity: None,
    };
    if let (Some(c), Some(k)) = (&cli.tls_cert, &cli.tls_key) {
        t.identity = Some((read(c, "--tls-cert")?, read(k, "--tls-key")?));
    }
    Ok(t)
}
