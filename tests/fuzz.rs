//! A property-based fuzz of ModelInfer's decoding and validation through the real
//! handler: one real node (ONNX, candle and torch models, and a text model), sent valid
//! requests, requests with one mutation and a known answer, piled-up mutations, random
//! and edited protobuf bytes, and hand-made gRPC frames.
//!
//! Properties, for every call: the answer is a gRPC status from the allowed set (the
//! exact one where the mutation has a known answer), with a message when it is an error;
//! an OK answer is well formed (and correct where the oracle can tell); it comes within
//! [`CALL_DEADLINE`]; the node neither exits nor logs a panic. After the run the node
//! still serves the reference inputs with the reference outputs.
//!
//! `TROUPE_FUZZ_CASES` (default 500) sets the number of cases, `TROUPE_FUZZ_SEED` the seed
//! (default fixed, so the suite is reproducible), `TROUPE_FUZZ_SECONDS` a time limit;
//! `scripts/fuzz.sh MINUTES` runs it long with fresh seeds.

#[path = "fuzz/cases.rs"]
mod cases;
#[path = "fuzz/oracle.rs"]
mod oracle;
#[path = "fuzz/wire.rs"]
mod wire;

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};
use prost::Message;
use tonic::{Code, Status};
use troupe_client::troupe_proto::codes::code_name;
use troupe_client::troupe_proto::inference as pb;
use troupe_client::{Client, InputTensor};
use troupe_tests::{Node, add_model, edit_config, max_abs_diff, reference, repository};

use cases::{Case, MODELS};
use oracle::{ALLOWED, Linear};

/// Every call must be answered within this.
const CALL_DEADLINE: Duration = Duration::from_secs(10);
/// Cases per proptest run (each with its own seed, derived from the run's).
const CHUNK: u32 = 100;

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a whole number")),
    )
}

fn linear() -> Linear {
    let text =
        std::fs::read_to_string(troupe_tests::root().join("models/reference/linear.json")).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    Linear {
        w: v["w"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect(),
        b: v["b"].as_f64().unwrap() as f32,
    }
}

/// What came back.
enum Answer {
    Ok(pb::ModelInferResponse),
    Err(Status),
}

/// What one case got: one answer, or a burst's.
enum Sent {
    One(Answer),
    Many(Vec<Answer>),
}

/// The `grpc-timeout` values a case's mutations set.
fn grpc_timeouts(case: &Case) -> Vec<String> {
    let ms: &[cases::Mutation] = match case {
        Case::One(_, m) => std::slice::from_ref(m),
        Case::Chaos(_, ms) => ms,
        _ => &[],
    };
    ms.iter()
        .filter_map(|m| match m {
            cases::Mutation::GrpcTimeout(v) => Some(v.clone()),
            _ => None,
        })
        .collect()
}

/// A structured request through the generated client.
async fn structured(mut c: Client, req: pb::ModelInferRequest, timeouts: Vec<String>) -> Answer {
    let mut req = tonic::Request::new(req);
    for v in timeouts {
        if let Ok(v) = v.parse() {
            req.metadata_mut().insert("grpc-timeout", v);
        }
    }
    match c.inference().model_infer(req).await {
        Ok(r) => Answer::Ok(r.into_inner()),
        Err(s) => Answer::Err(s),
    }
}

/// Tallies of the run.
#[derive(Default)]
struct Stats {
    /// Cases run (shrinking's included).
    sent: u64,
    /// Calls made (a burst is several).
    calls: u64,
    by_kind: BTreeMap<&'static str, u64>,
    by_code: BTreeMap<&'static str, u64>,
    /// Malformed protobuf answered INTERNAL by tonic's decoder (tolerated, recorded).
    malformed_internal: u64,
    /// CANCELLED "Timeout expired": tonic's own timer for `grpc-timeout`, which the
    /// node's DeadlineLayer answers before in almost every case (known; see the README).
    timer_cancelled: u64,
    malformed_example: Option<String>,
    /// Hand-made frames answered with a code outside the allowed set (by tonic).
    frame_codes: BTreeMap<&'static str, u64>,
    slowest: Duration,
}

struct Fuzz {
    rt: tokio::runtime::Runtime,
    node: RefCell<Node>,
    client: RefCell<Client>,
    channel: tonic::transport::Channel,
    linear: Linear,
    stats: RefCell<Stats>,
    log_seen: Cell<usize>,
    /// The node died: nothing more can be learnt (shrinking stops here).
    dead: Cell<bool>,
    until: Option<Instant>,
    /// TROUPE_FUZZ_VERBOSE=1: every case and its answer on stderr.
    verbose: bool,
}

fn kind(c: &Case) -> &'static str {
    match c {
        Case::Valid(_) => "valid",
        Case::One(..) => "one mutation",
        Case::Chaos(..) => "piled-up mutations",
        Case::RandomBytes(_) => "random bytes",
        Case::EditedBytes(..) => "edited bytes",
        Case::Frame(..) => "hand-made frames",
        Case::Burst(_) => "bursts",
    }
}

fn fail(msg: String) -> TestCaseError {
    TestCaseError::fail(msg)
}

impl Fuzz {
    /// The request a structured case sends.
    fn request(case: &Case) -> Option<pb::ModelInferRequest> {
        match case {
            Case::Valid(b) => Some(b.request()),
            Case::One(b, m) => {
                let mut r = b.request();
                oracle::apply(m, &mut r, b);
                Some(r)
            }
            Case::Chaos(b, ms) => {
                let mut r = b.request();
                for m in ms {
                    oracle::apply(m, &mut r, b);
                }
                Some(r)
            }
            _ => None,
        }
    }

    /// The bytes a raw case sends as its message.
    fn message(case: &Case) -> Option<Vec<u8>> {
        match case {
            Case::RandomBytes(b) => Some(b.clone()),
            Case::EditedBytes(base, edits) => {
                let mut b = cases::encode(&base.request());
                for e in edits {
                    e.apply(&mut b);
                }
                Some(b)
            }
            _ => None,
        }
    }

    async fn send(&self, case: &Case) -> Result<Answer, String> {
        if let Some(req) = Self::request(case) {
            let c = self.client.borrow().clone();
            return Ok(structured(c, req, grpc_timeouts(case)).await);
        }
        let decode = |b: Bytes| {
            pb::ModelInferResponse::decode(b)
                .map_err(|e| format!("an OK answer that is not a ModelInferResponse: {e}"))
        };
        if let Some(msg) = Self::message(case) {
            return match wire::unary_bytes(self.channel.clone(), Bytes::from(msg)).await {
                Ok(b) => decode(b).map(Answer::Ok),
                Err(s) => Ok(Answer::Err(s)),
            };
        }
        let Case::Frame(base, frame) = case else {
            unreachable!("every case is structured, raw or a frame")
        };
        let body = frame.body(&cases::encode(&base.request()));
        let (status, msg) = wire::post_frames(self.channel.clone(), Bytes::from(body)).await?;
        if status.code() == Code::Ok {
            decode(msg).map(Answer::Ok)
        } else {
            Ok(Answer::Err(status))
        }
    }

    /// A burst's calls, all at once; their answers in order.
    async fn burst(&self, cases: &[Case]) -> Vec<Answer> {
        let mut set = tokio::task::JoinSet::new();
        for (i, c) in cases.iter().enumerate() {
            let req = Self::request(c).expect("bursts hold structured cases");
            let client = self.client.borrow().clone();
            let timeouts = grpc_timeouts(c);
            set.spawn(async move { (i, structured(client, req, timeouts).await) });
        }
        let mut out: Vec<Option<Answer>> = cases.iter().map(|_| None).collect();
        while let Some(r) = set.join_next().await {
            let (i, a) = r.expect("a burst call's task");
            out[i] = Some(a);
        }
        out.into_iter().map(|a| a.expect("every answer")).collect()
    }

    /// One case: send it, then check the node and the answer.
    fn run(&self, case: Case) -> Result<(), TestCaseError> {
        if self.dead.get() || self.until.is_some_and(|u| Instant::now() > u) {
            return Ok(());
        }
        let started = Instant::now();
        let answer = self.rt.block_on(async {
            tokio::time::timeout(CALL_DEADLINE, async {
                match &case {
                    Case::Burst(cs) => Ok(Sent::Many(self.burst(cs).await)),
                    c => self.send(c).await.map(Sent::One),
                }
            })
            .await
        });
        let took = started.elapsed();
        {
            let mut s = self.stats.borrow_mut();
            s.sent += 1;
            s.calls += match &case {
                Case::Burst(cs) => cs.len() as u64,
                _ => 1,
            };
            *s.by_kind.entry(kind(&case)).or_default() += 1;
            s.slowest = s.slowest.max(took);
        }
        let log = self.node.borrow().log_text();
        let new = log.get(self.log_seen.get()..).unwrap_or("").to_string();
        self.log_seen.set(log.len());
        if let Some(line) = new.lines().find(|l| l.contains("shutting down signal")) {
            // Not the node's doing: something outside the test stopped it.
            self.dead.set(true);
            return Err(fail(format!(
                "the node was stopped by a signal from outside the test: {line}"
            )));
        }
        if let Some(at) = new.find("panicked") {
            let line_start = new[..at].rfind('\n').map_or(0, |i| i + 1);
            let excerpt: String = new[line_start..]
                .lines()
                .take(6)
                .collect::<Vec<_>>()
                .join("\n");
            return Err(fail(format!(
                "the node logged a panic on this call (or the one before):\n{excerpt}"
            )));
        }
        if let Some(state) = gone(self.node.borrow().pid()) {
            self.dead.set(true);
            return Err(fail(format!("the node exited ({state}) on this call")));
        }
        match answer {
            Err(_) => Err(fail(format!("no answer within {CALL_DEADLINE:?}: a hang"))),
            Ok(Err(e)) => Err(fail(e)),
            Ok(Ok(Sent::One(a))) => self.judge(&case, a),
            Ok(Ok(Sent::Many(answers))) => {
                let Case::Burst(cs) = &case else {
                    unreachable!()
                };
                for (i, (c, a)) in cs.iter().zip(answers).enumerate() {
                    self.judge(c, a)
                        .map_err(|e| fail(format!("burst call {i}: {e}")))?;
                }
                Ok(())
            }
        }
    }

    fn judge(&self, case: &Case, answer: Answer) -> Result<(), TestCaseError> {
        // The codes allowed, and the model whose output an OK answer must match (when the
        // oracle knows the request is valid).
        let (allowed, strict): (Vec<Code>, Option<&cases::Model>) = match case {
            Case::Valid(b) => (vec![Code::Ok], Some(b.model())),
            Case::One(b, m) => {
                let e = oracle::expect(m, b);
                (e.to_vec(), (e == [Code::Ok]).then(|| b.model()))
            }
            Case::Chaos(..) | Case::Burst(_) => (ALLOWED.to_vec(), None),
            Case::RandomBytes(_) | Case::EditedBytes(..) => (ALLOWED.to_vec(), None),
            Case::Frame(b, f) => {
                if f.is_plain() {
                    (vec![Code::Ok], Some(b.model()))
                } else {
                    (ALLOWED.to_vec(), None)
                }
            }
        };
        let code = match &answer {
            Answer::Ok(_) => Code::Ok,
            Answer::Err(s) => s.code(),
        };
        if self.verbose {
            let msg = match &answer {
                Answer::Err(s) => s.message().chars().take(160).collect(),
                Answer::Ok(_) => String::new(),
            };
            let shown = format!("{case:?}");
            eprintln!("fuzz: {} {msg} <- {shown}", code_name(code));
        }
        *self
            .stats
            .borrow_mut()
            .by_code
            .entry(code_name(code))
            .or_default() += 1;
        if let Answer::Err(s) = &answer {
            if s.message().trim().is_empty() {
                return Err(fail(format!("{} with an empty message", code_name(code))));
            }
            if code == Code::Cancelled && s.message() == "Timeout expired" {
                self.stats.borrow_mut().timer_cancelled += 1;
                return Ok(());
            }
            // Bytes that are not a ModelInferRequest: tonic's decoder answers INTERNAL.
            let malformed = Self::message(case)
                .is_some_and(|m| pb::ModelInferRequest::decode(m.as_slice()).is_err());
            if malformed && code == Code::Internal {
                let mut st = self.stats.borrow_mut();
                st.malformed_internal += 1;
                st.malformed_example
                    .get_or_insert_with(|| s.message().to_string());
                return Ok(());
            }
            if matches!(case, Case::Frame(_, f) if !f.is_plain()) && !allowed.contains(&code) {
                // Framing is tonic's, not the node's: recorded, judged in the report.
                *self
                    .stats
                    .borrow_mut()
                    .frame_codes
                    .entry(code_name(code))
                    .or_default() += 1;
                if matches!(
                    code,
                    Code::Internal | Code::Unimplemented | Code::OutOfRange
                ) {
                    return Ok(());
                }
            }
        }
        if !allowed.contains(&code) {
            let names: Vec<&str> = allowed.iter().map(|c| code_name(*c)).collect();
            let msg = match &answer {
                Answer::Err(s) => s.message().to_string(),
                Answer::Ok(_) => "(an answer)".into(),
            };
            return Err(fail(format!(
                "answered {}: {msg:?}; expected one of {names:?}",
                code_name(code)
            )));
        }
        if let Answer::Ok(resp) = &answer {
            let checked = match (strict, Self::request(case)) {
                (Some(m), Some(req)) => oracle::check_answer(m, &req, resp, &self.linear),
                (Some(m), None) => {
                    // A plain frame: the base's request.
                    let Case::Frame(b, _) = case else {
                        unreachable!()
                    };
                    oracle::check_answer(m, &b.request(), resp, &self.linear)
                }
                _ => oracle::well_formed(resp),
            };
            checked.map_err(|e| fail(format!("a wrong OK answer: {e}")))?;
        }
        Ok(())
    }
}

/// A property that failed, with the smallest input proptest found for it.
struct Finding {
    reason: String,
    input: String,
    /// Where it was first met: the seed and chunk, or the fixed case.
    at: String,
    count: u64,
}

/// Counts a finding under its kind: the reason up to the codes expected, digits aside.
fn note(findings: &mut BTreeMap<String, Finding>, reason: String, input: String, at: String) {
    let what = reason.split("; expected").next().unwrap_or("");
    let what = what.rsplit("Case failed: ").next().unwrap_or(what);
    let key: String = what
        .chars()
        .filter(|c| !c.is_ascii_digit())
        .take(100)
        .collect();
    findings
        .entry(key)
        .or_insert_with(|| Finding {
            reason,
            input,
            at,
            count: 0,
        })
        .count += 1;
}

/// 32 seed bytes for chunk `i` of the run with `seed` (splitmix64).
fn chunk_seed(seed: u64, i: u64) -> [u8; 32] {
    let mut x = seed ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let mut out = [0u8; 32];
    for c in out.chunks_mut(8) {
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        c.copy_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out
}

/// The node still serves each model its reference inputs with the reference outputs.
async fn still_serves(c: &mut Client) {
    let sets: [(&str, &[&str]); 2] = [
        ("mlp.json", &["mlp_onnx", "mlp_candle", "mlp_batched"]),
        (
            "linear.json",
            &[
                "linear_onnx",
                "linear_candle",
                "linear_torch",
                "linear_batched",
            ],
        ),
    ];
    for (file, models) in sets {
        for case in reference(file) {
            for m in models {
                let input = InputTensor::f32("input", case.shape.clone(), &case.input);
                let out = c
                    .infer(m, vec![input])
                    .await
                    .unwrap_or_else(|e| panic!("{m} no longer serves the reference input: {e}"));
                let d = max_abs_diff(&out.f32("output").unwrap(), &case.output);
                assert!(d <= 1e-5, "{m}: max diff {d} from the reference output");
            }
        }
    }
    let out = c
        .infer(
            "bag_of_words",
            vec![InputTensor::text("text", &["hello big red dog", "cat"])],
        )
        .await
        .expect("bag_of_words still serves");
    // [mean of the token ids, 1] per text (scripts/make_text_fixture.py).
    let e = out.f32("embedding").unwrap();
    let want = [5.0, 1.0, 14.0 / 3.0, 1.0];
    let d = max_abs_diff(&e, &want);
    assert!(d <= 1e-5, "bag_of_words: {e:?}, want {want:?}");
}

#[test]
fn model_infer_answers_every_request_with_a_clear_status_and_never_panics_or_hangs() {
    // proptest's strategies and shrinking of these nested cases need more stack than a
    // test thread's 2 MiB in debug builds.
    let run = std::thread::Builder::new()
        .name("fuzz".into())
        .stack_size(256 << 20)
        .spawn(fuzz_node)
        .expect("fuzz thread");
    if let Err(panic) = run.join() {
        std::panic::resume_unwind(panic);
    }
}

fn fuzz_node() {
    let cases = env_u64("TROUPE_FUZZ_CASES").unwrap_or(500);
    let seed = env_u64("TROUPE_FUZZ_SEED").unwrap_or(0x7f0e_2bad_5eed);
    let until = env_u64("TROUPE_FUZZ_SECONDS").map(|s| Instant::now() + Duration::from_secs(s));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let names: Vec<&str> = MODELS
        .iter()
        .map(|m| m.name)
        .filter(|n| !cases::BATCHED.iter().any(|(b, _)| b == n))
        .collect();
    let repo = repository(&names);
    for (to, from) in cases::BATCHED {
        add_model(repo.path(), from, to);
        edit_config(
            repo.path(),
            to,
            "instances = 2",
            "[dynamic_batching]\nmax_queue_delay_us = 500",
        );
    }
    let (node, client, channel) = rt.block_on(async {
        let node = Node::start(repo.path(), &[]).await.expect("node starts");
        let client = node.client().await;
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", node.addr))
            .unwrap()
            .connect()
            .await
            .unwrap();
        (node, client, channel)
    });
    let fuzz = Fuzz {
        rt,
        log_seen: Cell::new(node.log_text().len()),
        node: RefCell::new(node),
        client: RefCell::new(client),
        channel,
        linear: linear(),
        stats: RefCell::default(),
        dead: Cell::new(false),
        until,
        verbose: env_u64("TROUPE_FUZZ_VERBOSE").is_some_and(|v| v > 0),
    };
    let started = Instant::now();
    let strategy = cases::case();
    let mut done = 0u64;
    let mut chunk = 0u64;
    let mut findings: BTreeMap<String, Finding> = BTreeMap::new();
    for (i, case) in cases::fixed().into_iter().enumerate() {
        if let Err(e) = fuzz.run(case.clone()) {
            note(
                &mut findings,
                e.to_string(),
                format!("{case:#?}"),
                format!("fixed case {i}"),
            );
        }
    }
    while done < cases && until.is_none_or(|u| Instant::now() <= u) {
        let n = (cases - done).min(u64::from(CHUNK)) as u32;
        let config = Config {
            cases: n,
            failure_persistence: None,
            max_shrink_iters: 200,
            max_shrink_time: 60_000,
            max_local_rejects: 1 << 20,
            max_global_rejects: 1 << 20,
            ..Config::default()
        };
        let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &chunk_seed(seed, chunk));
        let mut runner = TestRunner::new_with_rng(config, rng);
        // A finding ends its chunk (after shrinking); the run goes on with the next, so
        // one run reports every kind of finding it meets.
        if let Err(e) = runner.run(&strategy, |c| fuzz.run(c)) {
            let (reason, input) = match e {
                TestError::Fail(r, v) => (r.to_string(), format!("{v:#?}")),
                TestError::Abort(r) => (r.to_string(), String::new()),
            };
            note(
                &mut findings,
                reason,
                input,
                format!("TROUPE_FUZZ_SEED={seed}, chunk {chunk}"),
            );
            if fuzz.dead.get() {
                break;
            }
        }
        done += u64::from(n);
        chunk += 1;
    }
    let s = fuzz.stats.borrow();
    let list = |m: &BTreeMap<&str, u64>| {
        m.iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    println!(
        "fuzz: seed {seed}: {} cases ({} calls) in {:.1} s, slowest case {:.0} ms ({})",
        s.sent,
        s.calls,
        started.elapsed().as_secs_f64(),
        s.slowest.as_secs_f64() * 1e3,
        list(&s.by_kind)
    );
    println!("fuzz: answers: {}", list(&s.by_code));
    if s.malformed_internal > 0 {
        println!(
            "fuzz: known: {} malformed-protobuf calls answered INTERNAL by tonic's decoder, e.g. {:?}",
            s.malformed_internal,
            s.malformed_example.as_deref().unwrap_or("")
        );
    }
    if s.timer_cancelled > 0 {
        println!(
            "fuzz: known: {} calls answered CANCELLED \"Timeout expired\" by tonic's grpc-timeout timer instead of DEADLINE_EXCEEDED",
            s.timer_cancelled
        );
    }
    if !s.frame_codes.is_empty() {
        println!(
            "fuzz: known: hand-made frames answered by tonic with {}",
            list(&s.frame_codes)
        );
    }
    println!("fuzz: findings: {}", findings.len());
    drop(s);
    if !findings.is_empty() {
        let mut text = String::new();
        for f in findings.values() {
            text += &format!(
                "\n==== finding (seen {} times; first at {}): {}\nminimal input: {}\n",
                f.count, f.at, f.reason, f.input
            );
        }
        panic!(
            "{} kinds of finding:{text}\nnode log tail:\n{}",
            findings.len(),
            tail(&fuzz.node.borrow().log_text(), 30)
        );
    }
    let node = fuzz.node.into_inner();
    if let Some(state) = gone(node.pid()) {
        panic!("the node exited during the fuzz ({state})");
    }
    let mut client = fuzz.client.into_inner();
    fuzz.rt.block_on(still_serves(&mut client));
    let log = node.log_text();
    assert!(
        !log.contains("panicked"),
        "the node logged a panic:\n{}",
        tail(&log, 40)
    );
    if let Some(state) = gone(node.pid()) {
        panic!("the node exited ({state})");
    }
}

/// Why process `pid` is no longer running (gone, or a zombie), or None while it runs.
fn gone(pid: u32) -> Option<String> {
    let stat = match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s,
        Err(e) => return Some(format!("/proc/{pid}: {e}")),
    };
    // "pid (comm) STATE ...": the state follows the last ')'.
    let state = stat
        .rsplit(')')
        .next()?
        .split_whitespace()
        .next()?
        .to_string();
    matches!(state.as_str(), "Z" | "X" | "x").then(|| format!("process state {state}"))
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
