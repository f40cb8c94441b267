//! TLS for Troupe's gRPC servers (node, router) and their clients, from PEM files.

use std::path::Path;

use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

/// A server's certificate and key, and optionally the CA its clients must present
/// certificates from (mutual TLS).
#[derive(Clone)]
pub struct ServerTls {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    pub client_ca_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("mutual", &self.client_ca_pem.is_some())
            .finish_non_exhaustive()
    }
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    let bytes = std::fs::read(path)
        .map_err(|e| format!("cannot read the {what} {}: {e}", path.display()))?;
    if !bytes.starts_with(b"-----BEGIN") && !String::from_utf8_lossy(&bytes).contains("-----BEGIN")
    {
        return Err(format!("the {what} {} is not PEM", path.display()));
    }
    Ok(bytes)
}

/// `--tls-cert`, `--tls-key` and `--tls-client-ca`, flattened into the node's and the
/// router's flags.
#[cfg(feature = "cli")]
#[derive(clap::Args, Debug, Clone)]
pub struct ServerTlsArgs {
    /// Serve over TLS with this certificate (PEM; needs --tls-key).
    #[arg(long, env = "TROUPE_TLS_CERT")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, env = "TROUPE_TLS_KEY")]
    pub tls_key: Option<std::path::PathBuf>,
    /// Mutual TLS: accept only clients with a certificate from this CA (PEM).
    #[arg(long, env = "TROUPE_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<std::path::PathBuf>,
}

#[cfg(feature = "cli")]
impl ServerTlsArgs {
    /// The server's TLS, read from the files (see [`ServerTls::from_files`]).
    pub fn load(&self) -> Result<Option<ServerTls>, String> {
        ServerTls::from_files(
            self.tls_cert.as_deref(),
            self.tls_key.as_deref(),
            self.tls_client_ca.as_deref(),
        )
    }
}

impl ServerTls {
    /// Reads `--tls-cert`, `--tls-key` and `--tls-client-ca`. None when neither cert nor
    /// key is given; an error naming the file when one is missing or unreadable.
    pub fn from_files(
        cert: Option<&Path>,
        key: Option<&Path>,
        client_ca: Option<&Path>,
    ) -> Result<Option<Self>, String> {
        match (cert, key) {
            (None, None) if client_ca.is_some() => {
                Err("--tls-client-ca needs --tls-cert and --tls-key".into())
            }
            (None, None) => Ok(None),
            (Some(_), None) => Err("--tls-cert needs --tls-key".into()),
            (None, Some(_)) => Err("--tls-key needs --tls-cert".into()),
            (Some(c), Some(k)) => Ok(Some(Self {
                cert_pem: read(c, "certificate")?,
                key_pem: read(k, "private key")?,
                client_ca_pem: client_ca.map(|p| read(p, "client CA")).transpose()?,
            })),
        }
    }

    /// tonic's server configuration.
    pub fn server_config(&self) -> ServerTlsConfig {
        let mut c =
            ServerTlsConfig::new().identity(Identity::from_pem(&self.cert_pem, &self.key_pem));
        if let Some(ca) = &self.client_ca_pem {
            c = c.client_ca_root(Certificate::from_pem(ca));
        }
        c
    }
}

/// How a client checks a server (and proves itself, for mutual TLS).
#[derive(Clone, Default)]
pub struct ClientTls {
    /// PEM of the CA that signed the server's certificate; None: the public web roots.
    pub ca_pem: Option<Vec<u8>>,
    /// The name the server's certificate must carry (default: the host dialled).
    pub domain: Option<String>,
    /// Client certificate and key (PEM) for servers that ask for one.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("custom_ca", &self.ca_pem.is_some())
            .field("domain", &self.domain)
            .field("identity", &self.identity.is_some())
            .finish()
    }
}

impl ClientTls {
    /// Trusts the CA in this PEM file.
    pub fn with_ca_file(path: &Path) -> Result<Self, String> {
        Ok(Self {
            ca_pem: Some(read(path, "CA certificate")?),
            ..Default::default()
        })
    }

    /// tonic's client configuration.
    pub fn client_config(&self) -> ClientTlsConfig {
        let mut c = ClientTlsConfig::new();
        c = match &self.ca_pem {
            Some(ca) => c.ca_certificate(Certificate::from_pem(ca)),
            None => c.with_webpki_roots(),
        };
        if let Some(d) = &self.domain {
            c = c.domain_name(d.clone());
        }
        if let Some((cert, key)) = &self.identity {
            c = c.identity(Identity::from_pem(cert, key));
        }
        c
    }
}
