//! Who may call what: bearer tokens in the standard `authorization` metadata, checked
//! against a file of hashed tokens with scopes, before any handler runs
//! ([`AuthLayer`], on node and router alike). Tokens themselves are never stored, logged
//! or traced: only their sha256 is compared, and a call carries on as its token's name.
//!
//! The file (`--auth-tokens FILE`, TOML):
//!
//! ```toml
//! # Scopes calls without a token get (default: none). ["infer"] keeps inference open.
//! anonymous = ["infer"]
//!
//! [[token]]
//! name = "ops"                       # the caller's name in the audit trail
//! sha256 = "9f86d081884c7d659a2f..." # hex sha256 of the token (printf %s TOKEN | sha256sum)
//! scopes = ["infer", "admin"]
//! ```
//!
//! Scopes: `infer` (inference, metadata, statistics, explanations, ground truth and
//! quality), `admin`
//! (`Models.Create`/`Delete`, repository load and unload), `relay` (a router: it may
//! name the caller it forwards for in `troupe-caller`). Without a file, inference is open
//! and admin calls are refused. Health, reflection, `ServerLive` and `ServerReady` are
//! always open (probes).

use std::collections::HashMap;
use std::future::Future;
use std::path::{Component, Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use serde::Deserialize;
use sha2::{Digest, Sha256};
use tonic::codegen::http;

/// Metadata a router sets to the caller it forwards for (trusted only from `relay`).
pub const CALLER_HEADER: &str = "troupe-caller";

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Infer,
    Admin,
    Relay,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Infer => "infer",
            Scope::Admin => "admin",
            Scope::Relay => "relay",
        }
    }
}

/// The scope a gRPC method or REST path needs; None for the open ones (probes,
/// reflection, the metrics and the dashboard).
pub fn scope_of(path: &str) -> Option<Scope> {
    if let Some(rest) = path.strip_prefix("/v2") {
        return rest_scope(rest);
    }
    let (service, method) = path.trim_start_matches('/').split_once('/')?;
    match (service, method) {
        ("grpc.health.v1.Health", _)
        | ("grpc.reflection.v1.ServerReflection", _)
        | ("grpc.reflection.v1alpha.ServerReflection", _)
        | ("inference.GRPCInferenceService", "ServerLive" | "ServerReady") => None,
        ("troupe.v1.Models", "Create" | "Delete")
        | ("inference.GRPCInferenceService", "RepositoryModelLoad" | "RepositoryModelUnload") => {
            Some(Scope::Admin)
        }
        _ => Some(Scope::Infer),
    }
}

/// The scope of an Open Inference Protocol REST path (`rest`: what follows `/v2`).
fn rest_scope(rest: &str) -> Option<Scope> {
    let parts: Vec<&str> = rest.trim_matches('/').split('/').collect();
    match parts.as_slice() {
        ["health", "live" | "ready"] => None,
        ["repository", "models", _, "load" | "unload"] => Some(Scope::Admin),
        _ => Some(Scope::Infer),
    }
}

/// A REST call the tokens refused, passed on to the REST routes so that they answer
/// it in HTTP (`rest::routes` does, before any handler runs).
#[derive(Debug, Clone)]
pub struct Refused(pub tonic::Status);

/// Who is calling, as the handlers and the audit trail see it (a request extension).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller(pub String);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    anonymous: Vec<Scope>,
    #[serde(default)]
    token: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    name: String,
    sha256: String,
    scopes: Vec<Scope>,
}

/// The tokens a server accepts.
#[derive(Debug, Clone)]
pub struct Tokens {
    by_hash: HashMap<[u8; 32], (String, Vec<Scope>)>,
    anonymous: Vec<Scope>,
    /// False without a tokens file: admin calls are then refused outright.
    configured: bool,
}

impl Default for Tokens {
    /// No tokens file: inference open, admin refused.
    fn default() -> Self {
        Self {
            by_hash: HashMap::new(),
            anonymous: vec![Scope::Infer],
            configured: false,
        }
    }
}

fn hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Tokens {
    /// Reads a tokens file (see the module doc); the error names the file and the entry.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the tokens file {}: {e}", path.display()))?;
        let file: File =
            toml::from_str(&text).map_err(|e| format!("tokens file {}: {e}", path.display()))?;
        let mut by_hash = HashMap::new();
        for t in file.token {
            let bytes = hex::decode(t.sha256.trim())
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or_else(|| {
                    format!(
                        "tokens file {}: token '{}': sha256 must be 64 hex digits",
                        path.display(),
                        t.name
                    )
                })?;
            by_hash.insert(bytes, (t.name, t.scopes));
        }
        Ok(Self {
            by_hash,
            anonymous: file.anonymous,
            configured: true,
        })
    }

    /// The file at `path`, else the default (no file: inference open, admin refused).
    pub fn from_option(path: Option<&Path>) -> Result<Self, String> {
        path.map_or_else(|| Ok(Self::default()), Self::load)
    }

    /// Checks a call to `path` with `headers`; the caller it runs as, or the status that
    /// refuses it (UNAUTHENTICATED or PERMISSION_DENIED, naming what is missing).
    pub fn check(&self, path: &str, headers: &http::HeaderMap) -> Result<Caller, tonic::Status> {
        let Some(need) = scope_of(path) else {
            return Ok(Caller("anonymous".into()));
        };
        let bearer = headers
            .get(http::header::AUTHORIZATION)
            .map(|v| v.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")));
        let token = match bearer {
            None => None,
            Some(Some(t)) if !t.trim().is_empty() => Some(t.trim()),
            Some(_) => {
                return Err(tonic::Status::unauthenticated(
                    "the authorization metadata must be 'Bearer <token>'",
                ));
            }
        };
        let Some(token) = token else {
            if self.anonymous.contains(&need) {
                return Ok(Caller("anonymous".into()));
            }
            if need == Scope::Admin && !self.configured {
                return Err(tonic::Status::permission_denied(format!(
                    "{path} is an admin call, and admin calls are refused on a server \
                     without a tokens file (--auth-tokens)"
                )));
            }
            return Err(tonic::Status::unauthenticated(format!(
                "{path} needs a bearer token with scope '{}' (authorization: Bearer <token>)",
                need.as_str()
            )));
        };
        let Some((name, scopes)) = self.by_hash.get(&hash(token)) else {
            return Err(tonic::Status::unauthenticated(
                "the bearer token is not one this server knows",
            ));
        };
        if !scopes.contains(&need) {
            return Err(tonic::Status::permission_denied(format!(
                "token '{name}' lacks the scope '{}' that {path} needs",
                need.as_str()
            )));
        }
        // A router names the caller it forwards for.
        let relayed = scopes
            .contains(&Scope::Relay)
            .then(|| headers.get(CALLER_HEADER).and_then(|v| v.to_str().ok()))
            .flatten()
            .filter(|c| !c.is_empty());
        Ok(Caller(relayed.unwrap_or(name).to_string()))
    }
}

/// Checks every call against [`Tokens`] before it reaches a service.
#[derive(Debug, Clone)]
pub struct AuthLayer(pub Arc<Tokens>);

impl<S> tower::Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Auth {
            inner,
            tokens: self.0.clone(),
        }
    }
}

/// The service [`AuthLayer`] wraps.
#[derive(Debug, Clone)]
pub struct Auth<S> {
    inner: S,
    tokens: Arc<Tokens>,
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for Auth<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<ReqBody>) -> Self::Future {
        match self.tokens.check(req.uri().path(), req.headers()) {
            Ok(caller) => {
                // The token goes no further than this check.
                req.headers_mut().remove(http::header::AUTHORIZATION);
                req.extensions_mut().insert(caller);
                Box::pin(self.inner.call(req))
            }
            // A REST call goes on marked, to be refused in HTTP by the REST routes;
            // anything else (gRPC, or a call to a gRPC path in any framing) is refused
            // here.
            Err(status) if is_rest(&req) => {
                req.headers_mut().remove(http::header::AUTHORIZATION);
                req.extensions_mut().insert(Refused(status));
                Box::pin(self.inner.call(req))
            }
            Err(status) => Box::pin(async move { Ok(status.into_http()) }),
        }
    }
}

/// A call to the REST routes (under `/v2`, not in gRPC's framing).
fn is_rest<B>(req: &http::Request<B>) -> bool {
    let path = req.uri().path();
    let grpc = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    !grpc && (path == "/v2" || path.starts_with("/v2/"))
}

/// `path` (a `file://` URL or a path) made absolute and normal: symlinks resolved where
/// the path exists, `.` and `..` folded where it does not.
pub fn normal_path(path: &str) -> PathBuf {
    let p = Path::new(path.strip_prefix("file://").unwrap_or(path));
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(p)
    };
    if let Ok(c) = abs.canonicalize() {
        return c;
    }
    let mut out = PathBuf::new();
    for c in abs.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Refuses an artifact outside `roots` (PERMISSION_DENIED naming both), after
/// [`normal_path`] on each.
pub fn check_artifact(artifact: &str, roots: &[PathBuf]) -> Result<(), tonic::Status> {
    let p = normal_path(artifact);
    if roots
        .iter()
        .any(|r| p.starts_with(normal_path(&r.to_string_lossy())))
    {
        return Ok(());
    }
    let shown: Vec<String> = roots.iter().map(|r| r.display().to_string()).collect();
    Err(tonic::Status::permission_denied(format!(
        "artifact {} is outside the model roots ({}): start the server with --model-root DIR",
        p.display(),
        if shown.is_empty() {
            "none configured".to_string()
        } else {
            shown.join(", ")
        }
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(text: &str) -> Tokens {
        let dir = tempfile_dir();
        let p = dir.join("tokens.toml");
        std::fs::write(&p, text).unwrap();
        Tokens::load(&p).unwrap()
    }

    fn tempfile_dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("troupe-auth-{}", rand_suffix()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn rand_suffix() -> String {
        format!(
            "{}-{:?}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        )
    }

    fn with(token: Option<&str>) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        if let Some(t) = token {
            h.insert(
                http::header::AUTHORIZATION,
                format!("Bearer {t}").parse().unwrap(),
            );
        }
        h
    }

    const CREATE: &str = "/troupe.v1.Models/Create";
    const INFER: &str = "/inference.GRPCInferenceService/ModelInfer";

    #[test]
    fn scopes_by_method() {
        assert_eq!(scope_of(CREATE), Some(Scope::Admin));
        assert_eq!(
            scope_of("/inference.GRPCInferenceService/RepositoryModelLoad"),
            Some(Scope::Admin)
        );
        assert_eq!(scope_of(INFER), Some(Scope::Infer));
        assert_eq!(scope_of("/troupe.v1.Explainer/Explain"), Some(Scope::Infer));
        assert_eq!(scope_of("/inference.GRPCInferenceService/ServerLive"), None);
        assert_eq!(scope_of("/grpc.health.v1.Health/Check"), None);
        assert_eq!(scope_of("/v2/health/ready"), None);
        assert_eq!(scope_of("/metrics"), None);
        assert_eq!(scope_of("/v2/models/m/infer"), Some(Scope::Infer));
        assert_eq!(scope_of("/v2"), Some(Scope::Infer));
        assert_eq!(scope_of("/v2/repository/models/m/load"), Some(Scope::Admin));
    }

    #[test]
    fn without_a_file_inference_is_open_and_admin_refused() {
        let t = Tokens::default();
        assert!(t.check(INFER, &with(None)).is_ok());
        let e = t.check(CREATE, &with(None)).unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        assert!(e.message().contains("--auth-tokens"), "{}", e.message());
    }

    #[test]
    fn tokens_are_checked_by_hash_and_scope() {
        let admin = hex::encode(hash("s3cret-admin"));
        let infer = hex::encode(hash("s3cret-infer"));
        let t = tokens(&format!(
            "[[token]]\nname = \"ops\"\nsha256 = \"{admin}\"\nscopes = [\"infer\", \"admin\"]\n\
             [[token]]\nname = \"app\"\nsha256 = \"{infer}\"\nscopes = [\"infer\"]\n"
        ));
        assert_eq!(
            t.check(CREATE, &with(Some("s3cret-admin"))).unwrap(),
            Caller("ops".into())
        );
        let no = t.check(INFER, &with(None)).unwrap_err();
        assert_eq!(no.code(), tonic::Code::Unauthenticated);
        let wrong = t.check(INFER, &with(Some("guess"))).unwrap_err();
        assert_eq!(wrong.code(), tonic::Code::Unauthenticated);
        assert!(!wrong.message().contains("guess"));
        let low = t.check(CREATE, &with(Some("s3cret-infer"))).unwrap_err();
        assert_eq!(low.code(), tonic::Code::PermissionDenied);
        assert!(low.message().contains("'admin'") && low.message().contains("app"));
        assert!(!low.message().contains("s3cret"));
    }

    #[test]
    fn only_a_relay_may_name_the_caller() {
        let router = hex::encode(hash("router-token"));
        let app = hex::encode(hash("app-token"));
        let t = tokens(&format!(
            "anonymous = [\"infer\"]\n[[token]]\nname = \"router\"\nsha256 = \"{router}\"\nscopes = [\"infer\", \"relay\"]\n\
             [[token]]\nname = \"app\"\nsha256 = \"{app}\"\nscopes = [\"infer\"]\n"
        ));
        let mut h = with(Some("router-token"));
        h.insert(CALLER_HEADER, "ops".parse().unwrap());
        assert_eq!(t.check(INFER, &h).unwrap(), Caller("ops".into()));
        let mut h = with(Some("app-token"));
        h.insert(CALLER_HEADER, "ops".parse().unwrap());
        assert_eq!(t.check(INFER, &h).unwrap(), Caller("app".into()));
        assert!(t.check(INFER, &with(None)).is_ok(), "anonymous inference");
    }

    #[test]
    fn artifacts_must_lie_under_a_root_after_normalising() {
        let root = tempfile_dir();
        std::fs::create_dir_all(root.join("m/1")).unwrap();
        let roots = vec![root.clone()];
        let inside = root.join("m/1").display().to_string();
        assert!(check_artifact(&inside, &roots).is_ok());
        assert!(check_artifact(&format!("file://{inside}"), &roots).is_ok());
        let escape = format!("{}/m/../../etc/passwd", root.display());
        let e = check_artifact(&escape, &roots).unwrap_err();
        assert_eq!(e.code(), tonic::Code::PermissionDenied);
        assert!(e.message().contains("/etc/passwd"), "{}", e.message());
        // A symlink out of the root is resolved before the check.
        std::os::unix::fs::symlink("/etc", root.join("link")).unwrap();
        let via_link = root.join("link/passwd").display().to_string();
        assert!(check_artifact(&via_link, &roots).is_err());
        assert!(check_artifact(&inside, &[]).is_err());
    }
}
