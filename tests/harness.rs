//! Test harness: real `troupe-node` processes on free loopback ports, serving copies of
//! the example model repository. Build the binaries first (`cargo build --workspace --bins`;
//! `scripts/test.sh` does).
//!
//! Every node and router started here reads one tokens file ([`tokens_file`]): anonymous
//! inference (so stock clients need no headers), [`ADMIN_TOKEN`] for admin calls, and
//! [`ROUTER_TOKEN`], which routers send to nodes. [`Node::client`] and
//! [`RouterProc::client`] carry the admin token, and so does [`troupe_cli`].

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tempfile::TempDir;
use troupe_client::Client;

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// `target/<profile>/` of the running test binary.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf()
}

/// The token of the test admin (scopes `infer` and `admin`) in [`tokens_file`].
pub const ADMIN_TOKEN: &str = "troupe-test-admin-3f9c2a";

/// The token routers started here send to nodes (`--node-token`; scopes `infer` and
/// `relay`).
pub const ROUTER_TOKEN: &str = "troupe-test-router-7d41e8";

/// The tokens file of every node and router this test process starts (written once, in
/// a temporary directory that lives as long as the process): `anonymous = ["infer"]`,
/// the admin ([`ADMIN_TOKEN`]) and the router ([`ROUTER_TOKEN`]).
pub fn tokens_file() -> &'static Path {
    static FILE: OnceLock<(TempDir, PathBuf)> = OnceLock::new();
    &FILE
        .get_or_init(|| {
            let dir = tempfile::tempdir().expect("tempdir for the tokens file");
            let path = dir.path().join("tokens.toml");
            let text = format!(
                "anonymous = [\"infer\"]\n\n\
                 [[token]]\nname = \"admin\"\nsha256 = \"{}\"\nscopes = [\"infer\", \"admin\"]\n\n\
                 [[token]]\nname = \"router\"\nsha256 = \"{}\"\nscopes = [\"infer\", \"relay\"]\n",
                sha256_hex(ADMIN_TOKEN),
                sha256_hex(ROUTER_TOKEN)
            );
            std::fs::write(&path, text).expect("write the tokens file");
            (dir, path)
        })
        .1
}

/// Hex sha256 of `text`, as the tokens file wants it (`printf %s TOKEN | sha256sum`).
pub fn sha256_hex(text: &str) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run sha256sum");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to sha256sum");
    let out = child.wait_with_output().expect("sha256sum");
    let hex = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string();
    assert!(
        out.status.success() && hex.len() == 64,
        "sha256sum: {hex:?}"
    );
    hex
}

/// Where the example models live (`models/`): the `--model-root` of every node and
/// router started here, so models created by RPC may point at them.
pub fn model_root() -> PathBuf {
    root().join("models")
}

/// The auth flags a server started here gets: `--auth-tokens` [`tokens_file`] unless
/// the test's flags (`extra`) or variables (`env`) name a tokens file, and `--model-root`
/// [`model_root`] unless `env` sets `TROUPE_MODEL_ROOTS` (roots in `extra` add to it).
fn auth_args(extra: &[&str], env: &[(&str, String)]) -> Vec<std::ffi::OsString> {
    let in_env = |var: &str| env.iter().any(|(k, _)| *k == var);
    let own_tokens = extra
        .iter()
        .any(|a| *a == "--auth-tokens" || a.starts_with("--auth-tokens="));
    let mut args = Vec::new();
    if !own_tokens && !in_env("TROUPE_AUTH_TOKENS") {
        args.extend(["--auth-tokens".into(), tokens_file().into()]);
    }
    if !in_env("TROUPE_MODEL_ROOTS") {
        args.extend(["--model-root".into(), model_root().into()]);
    }
    args
}

/// `troupe` (the CLI) with the admin token in `TROUPE_TOKEN`.
pub fn troupe_cli() -> Command {
    let mut cmd = Command::new(binary("troupe"));
    cmd.env("TROUPE_TOKEN", ADMIN_TOKEN);
    cmd
}

/// Path of a workspace binary, failing clearly when it was not built.
pub fn binary(name: &str) -> PathBuf {
    let p = target_dir().join(name);
    assert!(
        p.is_file(),
        "{} is missing: run `cargo build --workspace --bins` first (scripts/test.sh does)",
        p.display()
    );
    p
}

/// The ONNX Runtime library (ORT_DYLIB_PATH, set by .cargo/config.toml or the caller).
pub fn onnxruntime_lib() -> PathBuf {
    let p = std::env::var_os("ORT_DYLIB_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            root().join(
                ".venv/lib/python3.11/site-packages/onnxruntime/capi/libonnxruntime.so.1.31.1",
            )
        });
    let p = if p.is_relative() { root().join(p) } else { p };
    assert!(
        p.is_file(),
        "ONNX Runtime library {} is missing: run scripts/setup.sh",
        p.display()
    );
    p
}

/// A temporary model repository holding copies of the named models (from
/// `models/repository`, else `models/testing`).
pub fn repository(models: &[&str]) -> TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for m in models {
        add_model(dir.path(), m, m);
    }
    dir
}

fn model_source(from: &str) -> PathBuf {
    ["models/repository", "models/testing"]
        .iter()
        .map(|d| root().join(d).join(from))
        .find(|p| p.is_dir())
        .unwrap_or_else(|| panic!("no model {from} under models/"))
}

/// Copies model `from` into `repo` under the name `to`.
pub fn add_model(repo: &Path, from: &str, to: &str) {
    copy_dir(&model_source(from), &repo.join(to)).expect("copy model");
}

/// Model `from` in `repo` as `to`, its model files hard-linked (see [`link_dir`]).
pub fn link_model(repo: &Path, from: &str, to: &str) {
    link_dir(&model_source(from), &repo.join(to)).expect("link model");
}

/// A temporary repository of the named models, their model files hard-linked.
pub fn linked_repository(models: &[&str]) -> TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for m in models {
        link_model(dir.path(), m, m);
    }
    dir
}

/// Edits a model's config.toml: `top` replaces the `instances = 1` line (top-level keys),
/// `tables` goes at the end.
pub fn edit_config(repo: &Path, model: &str, top: &str, tables: &str) {
    let p = repo.join(model).join("config.toml");
    let text = std::fs::read_to_string(&p).expect("config");
    assert!(text.contains("\ninstances = 1\n"), "config layout changed");
    let text = text.replace("\ninstances = 1\n", &format!("\n{top}\n"));
    std::fs::write(&p, format!("{text}\n{tables}\n")).expect("write config");
}

/// Copies a directory tree.
pub fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    mirror_dir(from, to, false)
}

/// Copies a directory tree, hard-linking its model files where the file system allows
/// (the MiniLM weights are 90 MB each) and copying configs (`*.toml`, `*.json`), which
/// tests edit. Only for tests that never write into model files: a write through a link
/// would change the original.
pub fn link_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    mirror_dir(from, to, true)
}

fn mirror_dir(from: &Path, to: &Path, link: bool) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for e in std::fs::read_dir(from)? {
        let e = e?;
        let dst = to.join(e.file_name());
        let name = e.file_name().to_string_lossy().into_owned();
        if e.file_type()?.is_dir() {
            mirror_dir(&e.path(), &dst, link)?;
        } else if !link
            || name.ends_with(".toml")
            || name.ends_with(".json")
            || std::fs::hard_link(e.path(), &dst).is_err()
        {
            std::fs::copy(e.path(), dst)?;
        }
    }
    Ok(())
}

/// Starts a Troupe binary with stderr to `log` and reads the address it prints first
/// (`<name> listening on ADDR`).
async fn spawn_listening(cmd: &mut Command, name: &str, log: &Path) -> Result<(Child, String)> {
    let mut child = cmd
        .env("TROUPE_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log)?)
        .spawn()
        .with_context(|| format!("spawn {name}"))?;
    let stdout = child.stdout.take().context("stdout")?;
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    })
    .await??;
    let addr = line
        .trim()
        .strip_prefix(&format!("{name} listening on "))
        .with_context(|| format!("{name}: unexpected first line {line:?}"))?
        .to_string();
    Ok((child, addr))
}

/// A running node. Killed when dropped; its log is printed if the test panicked.
pub struct Node {
    child: Option<Child>,
    pub addr: String,
    log: PathBuf,
    _logdir: TempDir,
    /// How to reach the node when it serves TLS.
    tls: Option<troupe_client::ClientTls>,
}

impl Node {
    /// Starts a node on `repository` with extra flags and waits until it is ready. It
    /// reads [`tokens_file`] unless `extra` sets `--auth-tokens`, and takes models under
    /// [`model_root`] and its repository (and any `--model-root` in `extra`).
    pub async fn start(repository: &Path, extra: &[&str]) -> Result<Node> {
        Self::start_env(repository, extra, &[]).await
    }

    /// A node serving TLS (`extra` has `--tls-cert`/`--tls-key`), reached with `tls`.
    pub async fn start_tls(
        repository: &Path,
        extra: &[&str],
        tls: troupe_client::ClientTls,
    ) -> Result<Node> {
        Self::spawn(repository, extra, &[], Some(tls)).await
    }

    /// As [`Node::start`], with extra environment variables (e.g. `OTEL_*`).
    pub async fn start_env(
        repository: &Path,
        extra: &[&str],
        env: &[(&str, String)],
    ) -> Result<Node> {
        Self::spawn(repository, extra, env, None).await
    }

    /// Starts a node as a user runs it after setup: no --onnxruntime-lib and none of
    /// the library variables, so it must find its native libraries by itself.
    pub async fn start_bare(repository: &Path) -> Result<Node> {
        Self::spawn(repository, &["--bare"], &[], None).await
    }

    async fn spawn(
        repository: &Path,
        extra: &[&str],
        env: &[(&str, String)],
        tls: Option<troupe_client::ClientTls>,
    ) -> Result<Node> {
        Self::spawn_at(None, "127.0.0.1:0", repository, extra, env, tls).await
    }

    /// A node inside network namespace `ns`, listening on `listen` (an address of the
    /// namespace): a host of its own, whose links a test can cut.
    pub async fn start_in(ns: &NetNs, repository: &Path, extra: &[&str]) -> Result<Node> {
        let listen = format!("{}:{}", ns.inside, free_port());
        Self::spawn_at(Some(ns), &listen, repository, extra, &[], None).await
    }

    async fn spawn_at(
        ns: Option<&NetNs>,
        listen: &str,
        repository: &Path,
        extra: &[&str],
        env: &[(&str, String)],
        tls: Option<troupe_client::ClientTls>,
    ) -> Result<Node> {
        let logdir = tempfile::tempdir()?;
        let log = logdir.path().join("node.log");
        let mut cmd = match ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &ns.name])
                    .arg(binary("troupe-node"));
                c
            }
            None => Command::new(binary("troupe-node")),
        };
        cmd.arg("--model-repository")
            .arg(repository)
            .args(["--listen", listen])
            .args(auth_args(extra, env));
        // Each node's prediction store is a SQLite file of its own, unless the test
        // names one (the default would be a file in the working directory).
        if !extra.iter().any(|a| a.starts_with("--store"))
            && !env.iter().any(|(k, _)| *k == "TROUPE_STORE")
        {
            cmd.arg("--store").arg(format!(
                "sqlite://{}",
                logdir.path().join("store.db").display()
            ));
        }
        if extra == ["--bare"] {
            for v in [
                "ORT_DYLIB_PATH",
                "TROUPE_ONNXRUNTIME_LIB",
                "LIBTORCH",
                "LD_LIBRARY_PATH",
            ] {
                cmd.env_remove(v);
            }
        } else {
            cmd.arg("--onnxruntime-lib")
                .arg(onnxruntime_lib())
                .args(extra);
        }
        cmd.envs(env.iter().map(|(k, v)| (k, v)));
        let (child, addr) = spawn_listening(&mut cmd, "troupe-node", &log).await?;
        let node = Node {
            child: Some(child),
            addr,
            log,
            _logdir: logdir,
            tls,
        };
        node.wait_ready(Duration::from_secs(60)).await?;
        Ok(node)
    }

    /// Waits until ServerReady is true.
    pub async fn wait_ready(&self, within: Duration) -> Result<()> {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(mut c) = self.try_client().await
                && c.server_ready().await.unwrap_or(false)
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "node {} not ready within {within:?}; log:\n{}",
                    self.addr,
                    self.log_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A client of the node, carrying [`ADMIN_TOKEN`].
    pub async fn client(&self) -> Client {
        self.try_client().await.expect("connect to node")
    }

    async fn try_client(&self) -> Result<Client, troupe_client::ClientError> {
        let c = match &self.tls {
            None => Client::connect(&self.addr).await,
            Some(tls) => Client::connect_tls(&self.addr, tls).await,
        }?;
        c.with_token(ADMIN_TOKEN)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> Result<ExitStatus> {
        let mut child = self.child.take().context("already stopped")?;
        let ok = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()?
            .success();
        if !ok {
            bail!("kill -TERM failed");
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = child.try_wait()? {
                return Ok(s);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("node did not exit within 30 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            eprintln!("---- node {} log ----\n{}", self.addr, self.log_text());
        }
    }
}

/// One reference case: input, shape and expected output.
pub struct Case {
    pub shape: Vec<i64>,
    pub input: Vec<f32>,
    pub output: Vec<f32>,
}

/// Cases of `models/reference/<file>`.
pub fn reference(file: &str) -> Vec<Case> {
    let text = std::fs::read_to_string(root().join("models/reference").join(file))
        .expect("reference file");
    let v: serde_json::Value = serde_json::from_str(&text).expect("reference json");
    let floats = |x: &serde_json::Value| -> Vec<f32> {
        x.as_array()
            .expect("array")
            .iter()
            .map(|f| f.as_f64().expect("number") as f32)
            .collect()
    };
    v["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .map(|c| Case {
            shape: c["input"]["shape"]
                .as_array()
                .expect("shape")
                .iter()
                .map(|d| d.as_i64().expect("dim"))
                .collect(),
            input: floats(&c["input"]["data"]),
            output: floats(&c["output"]["data"]),
        })
        .collect()
}

/// Largest absolute difference.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Runs a Python script of the repository with the project's venv (or `TROUPE_PYTHON`);
/// returns whether it succeeded and its output.
pub fn run_python(script: &str, args: &[&str]) -> (bool, String) {
    let python = std::env::var("TROUPE_PYTHON")
        .unwrap_or_else(|_| root().join(".venv/bin/python").display().to_string());
    run_command(Command::new(&python).arg(root().join(script)).args(args))
}

/// Runs a command to its end with no stdin: whether it succeeded, and its stdout then
/// stderr as text.
pub fn run_command(cmd: &mut Command) -> (bool, String) {
    let out = cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| {
        panic!("cannot run {cmd:?} (scripts/setup.sh installs the tools): {e}")
    });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The digits classifier's held-out rows and labels (scripts/make_digits.py writes them).
pub struct Holdout {
    pub x: Vec<Vec<f32>>,
    pub y: Vec<i64>,
}

pub fn digits_holdout() -> Holdout {
    let text = std::fs::read_to_string(root().join("models/testing/digits/holdout.json"))
        .expect("models/testing/digits/holdout.json (scripts/setup.sh makes it)");
    let v: serde_json::Value = serde_json::from_str(&text).expect("holdout.json is JSON");
    Holdout {
        x: serde_json::from_value(v["x"].clone()).expect("x: rows of 64 pixels"),
        y: serde_json::from_value(v["y"].clone()).expect("y: labels"),
    }
}

/// `Monitor.Quality` of a model's served version (the call must succeed).
pub async fn quality(c: &mut Client, model: &str) -> troupe_proto::troupe::QualityResponse {
    c.monitor()
        .quality(troupe_proto::troupe::QualityRequest {
            model: model.into(),
            version: String::new(),
        })
        .await
        .expect("Monitor.Quality")
        .into_inner()
}

/// An answer's `troupe.outlier_score` parameter.
pub fn outlier_score(r: &troupe_client::InferResult) -> Option<f64> {
    match r
        .parameters
        .get("troupe.outlier_score")
        .and_then(|p| p.parameter_choice.clone())
    {
        Some(troupe_proto::inference::infer_parameter::ParameterChoice::DoubleParam(v)) => Some(v),
        _ => None,
    }
}

/// A free loopback port (bound and released; good enough for tests).
pub fn free_port() -> u16 {
    // Below the kernel's ephemeral range (32768 and up), which outgoing connections and
    // `:0` listeners draw from: a port handed out here cannot be taken by one of those
    // between this check and the server's bind (seen under load: "Address already in
    // use"). Each test process walks its own sequence (seeded by its pid, a step coprime
    // to the range), so two callers do not get the same port.
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    const RANGE: u64 = 22_000;
    let seed = u64::from(std::process::id()) * 7_919;
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = 10_000 + ((seed + n * 16_729) % RANGE) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Waits until `f` holds, at most `within` (checking every 100 ms).
pub async fn eventually(what: &str, within: Duration, mut f: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f().await {
        assert!(Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A real etcd server on loopback (the `etcd` binary from Debian's etcd-server), with its
/// data in a temporary directory. Killed when dropped.
pub struct Etcd {
    child: Option<Child>,
    pub client_port: u16,
    peer_port: u16,
    data: TempDir,
    /// More addresses it listens on for clients.
    extra: Vec<String>,
    /// Its member name, and the `--initial-cluster` it starts in.
    name: String,
    initial_cluster: String,
}

impl Etcd {
    pub async fn start() -> Result<Etcd> {
        Self::start_on(&[]).await
    }

    /// As `start`, also listening for clients on the host addresses `extra` (an etcd that
    /// namespaced nodes reach at `http://EXTRA:client_port`).
    pub async fn start_on(extra: &[&str]) -> Result<Etcd> {
        let mut e = Etcd::member("t", extra)?;
        e.initial_cluster = format!("t=http://127.0.0.1:{}", e.peer_port);
        e.spawn()?;
        e.wait_healthy().await?;
        Ok(e)
    }

    fn member(name: &str, extra: &[&str]) -> Result<Etcd> {
        Ok(Etcd {
            child: None,
            client_port: free_port(),
            peer_port: free_port(),
            data: tempfile::tempdir()?,
            extra: extra.iter().map(|a| a.to_string()).collect(),
            name: name.to_string(),
            initial_cluster: String::new(),
        })
    }

    /// A cluster of `n` etcd members on loopback (m0, m1, ...), once all are healthy.
    /// Clients take [`etcd_urls`] of them all.
    pub async fn cluster(n: usize) -> Result<Vec<Etcd>> {
        let mut members = (0..n)
            .map(|i| Etcd::member(&format!("m{i}"), &[]))
            .collect::<Result<Vec<_>>>()?;
        let initial = members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",");
        for m in &mut members {
            m.initial_cluster = initial.clone();
            m.spawn()?;
        }
        for m in &members {
            m.wait_healthy().await?;
        }
        Ok(members)
    }

    fn spawn(&mut self) -> Result<()> {
        let (c, p) = (self.client_port, self.peer_port);
        let child = Command::new("etcd")
            .args(["--name", &self.name, "--data-dir"])
            .arg(self.data.path().join("etcd"))
            .args([
                "--listen-client-urls",
                &std::iter::once("127.0.0.1".to_string())
                    .chain(self.extra.iter().cloned())
                    .map(|a| format!("http://{a}:{c}"))
                    .collect::<Vec<_>>()
                    .join(","),
            ])
            .args(["--advertise-client-urls", &format!("http://127.0.0.1:{c}")])
            .args(["--listen-peer-urls", &format!("http://127.0.0.1:{p}")])
            .args([
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{p}"),
            ])
            .args([
                "--initial-cluster",
                &self.initial_cluster,
                "--initial-cluster-state",
                "new",
            ])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.data.path().join("etcd.log"))?)
            .spawn()
            .context("start etcd (apt-get install etcd-server; scripts/setup.sh does)")?;
        self.child = Some(child);
        Ok(())
    }

    /// The client URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    pub async fn client(&self) -> Result<etcd_client::Client> {
        Ok(etcd_client::Client::connect([self.url()], None).await?)
    }

    async fn wait_healthy(&self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(mut c) = self.client().await
                && c.get("/health-probe", None).await.is_ok()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "etcd did not start: {}",
                    std::fs::read_to_string(self.data.path().join("etcd.log")).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops etcd (SIGKILL) keeping its data.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same ports and data.
    pub async fn restart(&mut self) -> Result<()> {
        self.kill();
        self.spawn()?;
        self.wait_healthy().await
    }
}

/// The client URLs of etcd `members`, comma-separated (for `--etcd`).
pub fn etcd_urls(members: &[Etcd]) -> String {
    members.iter().map(Etcd::url).collect::<Vec<_>>().join(",")
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Node {
    /// Kills the node at once (SIGKILL), as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A running `troupe-router`. Killed when dropped; its log is printed if the test panicked.
pub struct RouterProc {
    child: Option<Child>,
    pub addr: String,
    log: PathBuf,
    _logdir: TempDir,
}

impl RouterProc {
    pub async fn start(etcd_url: &str, id: &str) -> Result<RouterProc> {
        Self::start_env(etcd_url, id, &[]).await
    }

    /// As [`RouterProc::start`], with extra environment variables (e.g. `OTEL_*`). The
    /// router reads [`tokens_file`], takes models under [`model_root`] and sends
    /// [`ROUTER_TOKEN`] to nodes, unless `env` sets `TROUPE_AUTH_TOKENS`,
    /// `TROUPE_MODEL_ROOTS` or `TROUPE_NODE_TOKEN` itself.
    pub async fn start_env(etcd_url: &str, id: &str, env: &[(&str, String)]) -> Result<RouterProc> {
        let logdir = tempfile::tempdir()?;
        let log = logdir.path().join("router.log");
        let mut cmd = Command::new(binary("troupe-router"));
        cmd.args([
            "--etcd",
            etcd_url,
            "--listen",
            "127.0.0.1:0",
            "--router-id",
            id,
        ]);
        cmd.args(auth_args(&[], env));
        if !env.iter().any(|(k, _)| *k == "TROUPE_NODE_TOKEN") {
            cmd.args(["--node-token", ROUTER_TOKEN]);
        }
        let (child, addr) = spawn_listening(
            cmd.envs(env.iter().map(|(k, v)| (k, v))),
            "troupe-router",
            &log,
        )
        .await?;
        let r = RouterProc {
            child: Some(child),
            addr,
            log,
            _logdir: logdir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(mut c) = Client::connect(&r.addr).await
                && c.server_ready().await.unwrap_or(false)
            {
                return Ok(r);
            }
            if Instant::now() > deadline {
                bail!("router not ready; log:\n{}", r.log_text());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A client of the router, carrying [`ADMIN_TOKEN`].
    pub async fn client(&self) -> Client {
        Client::connect(&self.addr)
            .await
            .and_then(|c| c.with_token(ADMIN_TOKEN))
            .expect("connect to router")
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for RouterProc {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!("---- router {} log ----\n{}", self.addr, self.log_text());
        }
    }
}

/// The example MLP (ONNX) as a `ModelSpec` for the cluster, with `replicas` and a memory need.
pub fn mlp_spec(name: &str, replicas: u32, memory_bytes: u64) -> troupe_proto::troupe::ModelSpec {
    use troupe_proto::troupe as t;
    t::ModelSpec {
        name: name.into(),
        backend: t::BackendKind::Onnx as i32,
        artifact_uri: root()
            .join("models/repository/mlp_onnx/1")
            .display()
            .to_string(),
        inputs: vec![t::TensorSpec {
            name: "input".into(),
            data_type: "FP32".into(),
            dims: vec![16],
        }],
        outputs: vec![t::TensorSpec {
            name: "output".into(),
            data_type: "FP32".into(),
            dims: vec![4],
        }],
        max_batch_size: 64,
        replicas,
        resources: Some(t::Resources {
            cpu: 0.5,
            memory_bytes,
            gpu_memory_bytes: 0,
        }),
        ..Default::default()
    }
}

/// GET /metrics from a Prometheus endpoint on loopback.
pub fn scrape(port: u16) -> String {
    match http_get(port, "/metrics") {
        Some((200, body)) => body,
        other => panic!("GET /metrics on port {port}: {other:?}"),
    }
}

/// The value of one series (`name{labels}`) in a scrape.
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.trim().parse::<f64>().ok())
        })
        .unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
}

/// Arize Phoenix (scripts/phoenix.sh) as a real OTLP tracing backend on free loopback
/// ports. Killed when dropped.
pub struct Phoenix {
    child: Child,
    pub http_port: u16,
    pub grpc_port: u16,
    _dir: TempDir,
}

impl Phoenix {
    pub async fn start() -> Result<Phoenix> {
        let dir = tempfile::tempdir()?;
        let (http_port, grpc_port) = (free_port(), free_port());
        let log = std::fs::File::create(dir.path().join("phoenix.log"))?;
        let child = Command::new("bash")
            .arg(root().join("scripts/phoenix.sh"))
            .args(["serve", &http_port.to_string(), &grpc_port.to_string()])
            .arg(dir.path().join("work"))
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("spawn phoenix (run scripts/phoenix.sh install)")?;
        let mut p = Phoenix {
            child,
            http_port,
            grpc_port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if http_get(http_port, "/healthz").is_some_and(|(code, _)| code == 200) {
                return Ok(p);
            }
            if let Ok(Some(status)) = p.child.try_wait() {
                bail!("phoenix exited ({status}); log:\n{}", p.log_text());
            }
            if Instant::now() > deadline {
                bail!("phoenix not ready in 120 s; log:\n{}", p.log_text());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// `OTEL_EXPORTER_OTLP_ENDPOINT` for processes that export to it.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.grpc_port)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("phoenix.log")).unwrap_or_default()
    }

    /// The spans of a trace (scripts/phoenix_spans.py), once at least `at_least` arrived.
    pub fn spans(
        &self,
        trace_id: &str,
        at_least: usize,
        timeout_s: u64,
    ) -> Result<Vec<serde_json::Value>> {
        let out = Command::new("python3")
            .arg(root().join("scripts/phoenix_spans.py"))
            .args([
                &self.http_port.to_string(),
                trace_id,
                "--wait-for",
                &at_least.to_string(),
                "--timeout",
                &timeout_s.to_string(),
            ])
            .output()?;
        if !out.status.success() {
            bail!("phoenix_spans.py: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(serde_json::from_slice(&out.stdout)?)
    }
}

impl Drop for Phoenix {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP/1.1 GET on loopback: (status code, body).
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    http_get_at(&format!("127.0.0.1:{port}"), path)
}

/// A plain HTTP/1.1 GET of `addr` (`IP:PORT`), giving up after 2 s to connect and 5 s
/// to read: (status code, body).
pub fn http_get_at(addr: &str, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let addr: std::net::SocketAddr = addr.parse().ok()?;
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let code = out.split_whitespace().nth(1)?.parse().ok()?;
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((code, body))
}

/// A test CA, a server certificate for localhost/127.0.0.1, and a client certificate.
pub struct Pki {
    dir: tempfile::TempDir,
}

impl Default for Pki {
    fn default() -> Self {
        Self::new()
    }
}

impl Pki {
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "troupe test CA");
        let ca =
            rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap())
                .unwrap();
        let write = |name: &str, text: String| std::fs::write(dir.path().join(name), text).unwrap();
        write("ca.pem", ca.pem());
        for (name, sans) in [
            (
                "server",
                vec!["localhost".to_string(), "127.0.0.1".to_string()],
            ),
            ("client", vec!["troupe-client".to_string()]),
        ] {
            let key = rcgen::KeyPair::generate().unwrap();
            let cert = rcgen::CertificateParams::new(sans)
                .unwrap()
                .signed_by(&key, &ca)
                .unwrap();
            write(&format!("{name}.pem"), cert.pem());
            write(&format!("{name}.key"), key.serialize_pem());
        }
        // A second CA that signed nothing here.
        let mut other = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        other.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let other = rcgen::CertifiedIssuer::self_signed(other, rcgen::KeyPair::generate().unwrap())
            .unwrap();
        write("other-ca.pem", other.pem());
        Pki { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn read(&self, name: &str) -> Vec<u8> {
        std::fs::read(self.path(name)).unwrap()
    }

    pub fn s(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }
}

/// A TCP proxy on a free loopback port that passes everything on to `upstream`, each
/// chunk towards it `delay` late: a slow node, as the router sees it. Runs until the
/// test's runtime ends; the address to advertise is returned at once, `upstream` may be
/// set later through the returned sender.
pub async fn delaying_proxy(delay: Duration) -> (String, tokio::sync::oneshot::Sender<String>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind proxy");
    let addr = listener.local_addr().expect("proxy addr").to_string();
    let (tx, rx) = tokio::sync::oneshot::channel::<String>();
    tokio::spawn(async move {
        let Ok(upstream) = rx.await else { return };
        loop {
            let Ok((client, _)) = listener.accept().await else {
                return;
            };
            let upstream = upstream.clone();
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else {
                    return;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let up = async move {
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    let mut buf = vec![0u8; 64 << 10];
                    loop {
                        let n = match cr.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        tokio::time::sleep(delay).await;
                        if sw.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                };
                let down = async move {
                    let _ = tokio::io::copy(&mut sr, &mut cw).await;
                };
                tokio::join!(up, down);
            });
        }
    });
    (addr, tx)
}

/// A network namespace joined to the host by a veth pair: a host of its own for fault
/// tests. The host side has two addresses, `host` (for the router's traffic) and
/// `service` (where an etcd listens), so a test can cut the namespace off one without
/// the other (`cut`: a blackhole route inside). Removed when dropped.
pub struct NetNs {
    pub name: String,
    /// The namespace's own address.
    pub inside: String,
    pub host: String,
    pub service: String,
    veth: String,
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip").args(args).output().context("run ip")?;
    anyhow::ensure!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

impl NetNs {
    /// The subnet of namespace `k` of this test process (`10.X.k`).
    fn net(k: u8) -> String {
        format!("10.{}.{k}", 200 + (std::process::id() % 50) as u8)
    }

    /// The address namespace `k` will have inside, before it is made.
    pub fn inside_address(k: u8) -> String {
        format!("{}.2", Self::net(k))
    }

    /// Namespace number `k` (1..=250) of this test process.
    pub fn new(k: u8) -> Result<NetNs> {
        let tag = format!("{}{k}", std::process::id() % 10_000);
        let name = format!("troupe{tag}");
        let veth = format!("tv{tag}");
        let net = Self::net(k);
        let ns = NetNs {
            name: name.clone(),
            inside: Self::inside_address(k),
            host: format!("{net}.1"),
            service: format!("{net}.3"),
            veth: veth.clone(),
        };
        let peer = format!("{veth}p");
        ip(&["netns", "add", &name])?;
        ip(&["link", "add", &veth, "type", "veth", "peer", "name", &peer])?;
        ip(&["link", "set", &peer, "netns", &name])?;
        ip(&["addr", "add", &format!("{}/24", ns.host), "dev", &veth])?;
        ip(&["addr", "add", &format!("{}/24", ns.service), "dev", &veth])?;
        ip(&["link", "set", &veth, "up"])?;
        let inside = |args: &[&str]| {
            let mut all = vec!["netns", "exec", &name, "ip"];
            all.extend_from_slice(args);
            ip(&all)
        };
        inside(&["addr", "add", &format!("{}/24", ns.inside), "dev", &peer])?;
        inside(&["link", "set", &peer, "up"])?;
        inside(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Cuts the namespace off the host address `addr` both ways (packets from the
    /// namespace to it, and from it to the namespace, are dropped), or mends it.
    pub fn cut(&self, addr: &str, cut: bool) -> Result<()> {
        let verb = if cut { "add" } else { "del" };
        ip(&[
            "netns",
            "exec",
            &self.name,
            "ip",
            "route",
            verb,
            "blackhole",
            &format!("{addr}/32"),
        ])?;
        ip(&["rule", verb, "from", addr, "to", &self.inside, "blackhole"])
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        for addr in [&self.service, &self.host] {
            let _ = ip(&["rule", "del", "from", addr, "to", &self.inside, "blackhole"]);
        }
        let _ = ip(&["link", "del", &self.veth]);
        let _ = ip(&["netns", "del", &self.name]);
    }
}

/// A real PostgreSQL server (Debian's `postgresql`; scripts/setup.sh installs it), run as
/// the `postgres` user on a temporary data directory and a free loopback port, trust
/// authentication on loopback only. Stopped when dropped.
pub struct Postgres {
    dir: TempDir,
    pub port: u16,
    bin: PathBuf,
}

impl Postgres {
    pub fn start() -> Result<Postgres> {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .context("PostgreSQL is not installed (scripts/setup.sh installs it)")?
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .filter(|b| b.join("initdb").is_file())
            .max()
            .context("no /usr/lib/postgresql/*/bin/initdb")?;
        let dir = tempfile::tempdir()?;
        let id = |flag: &str| -> Result<u32> {
            let out = Command::new("id").args([flag, "postgres"]).output()?;
            Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
        };
        std::os::unix::fs::chown(dir.path(), Some(id("-u")?), Some(id("-g")?))?;
        let pg = Postgres {
            dir,
            port: free_port(),
            bin,
        };
        pg.run(
            "initdb",
            &["-D", &pg.data(), "-A", "trust", "-U", "troupe", "--no-sync"],
        )?;
        pg.resume()?;
        Ok(pg)
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn run(&self, tool: &str, args: &[&str]) -> Result<()> {
        let out = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join(tool))
            .args(args)
            .output()
            .with_context(|| format!("run {tool}"))?;
        anyhow::ensure!(
            out.status.success(),
            "{tool} {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(())
    }

    /// Starts the server (again), waiting until it accepts connections.
    pub fn resume(&self) -> Result<()> {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("log").display().to_string();
        self.run(
            "pg_ctl",
            &["-D", &self.data(), "-l", &log, "-o", &opts, "-w", "start"],
        )
    }

    /// Stops the server at once (`-m fast`: connections are cut).
    pub fn stop(&self) -> Result<()> {
        self.run("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "stop"])
    }

    /// The URL nodes and routers take (`--store`).
    pub fn url(&self) -> String {
        format!("postgres://troupe@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.run(
            "pg_ctl",
            &["-D", &self.data(), "-m", "immediate", "-w", "stop"],
        );
    }
}

/// A cluster of one: etcd, a node (`n1`, empty repository) following placements, and a
/// router, with the example MLP declared through the router as `model` and ready.
pub struct OneNodeCluster {
    pub router: RouterProc,
    pub node: Node,
    _repo: TempDir,
    _etcd: Etcd,
}

impl OneNodeCluster {
    pub async fn start(model: &str) -> OneNodeCluster {
        let etcd = Etcd::start().await.expect("etcd starts");
        let repo = linked_repository(&[]);
        let url = etcd.url();
        let node = Node::start(
            repo.path(),
            &["--etcd", &url, "--node-id", "n1", "--lease-ttl", "2"],
        )
        .await
        .expect("node starts");
        let router = RouterProc::start(&url, "r1").await.expect("router starts");
        let mut c = router.client().await;
        c.models()
            .create(troupe_proto::troupe::CreateModelRequest {
                spec: Some(mlp_spec(model, 1, 1 << 28)),
                ..Default::default()
            })
            .await
            .expect("declared");
        let ready = format!("/v2/models/{model}/ready");
        eventually("the model is ready", Duration::from_secs(60), async || {
            http_get_at(&router.addr, &ready).is_some_and(|(code, _)| code == 200)
        })
        .await;
        OneNodeCluster {
            router,
            node,
            _repo: repo,
            _etcd: etcd,
        }
    }
}
