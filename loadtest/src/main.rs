//! `troupe-load`: load generator for any Open Inference Protocol (KServe v2 / Triton)
//! gRPC server. See `loadtest/README.md`.
//!
//! Exit codes: 0 after a finished run, 1 when the target cannot be reached or fails
//! before the run, 2 for bad arguments (including a model the target does not know),
//! 130 when interrupted (the partial report is still printed and written).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use troupe_load::{
    ConnectOptions, InputOptions, Load, LoadError, ModelSpec, Observer, Phase, Progress, Protocol,
    Report, RunConfig, StepReport, Stop, Target, Workload,
};

const EXAMPLES: &str = "\
Examples:
  troupe-load --target 127.0.0.1:8001 --model mlp_onnx --concurrency 4 --duration 10s
  troupe-load --model mlp_onnx --rate 200 --duration 30s --chart latency.svg
  troupe-load --model mlp_onnx --sweep-concurrency 1,2,4,8 --duration 5s --csv sweep.csv --chart sweep.svg
  troupe-load --scenario mix.toml --concurrency 8 --requests 10000 --json report.json";

#[derive(Parser, Debug)]
#[command(
    name = "troupe-load",
    version,
    about = "Load generator for Open Inference Protocol (KServe v2 / Triton) gRPC servers",
    after_help = EXAMPLES
)]
struct Args {
    /// Server to load, HOST:PORT.
    #[arg(long, env = "TROUPE_LOAD_TARGET", default_value = "127.0.0.1:8001")]
    target: String,
    /// Model to call.
    #[arg(
        long,
        required_unless_present = "scenario",
        conflicts_with = "scenario"
    )]
    model: Option<String>,
    /// Version of --model (default: the server's choice).
    #[arg(long, conflicts_with = "scenario")]
    model_version: Option<String>,
    /// TOML file mixing several models by weight: [[model]] name = "a" weight = 3 ...
    #[arg(long, value_name = "FILE")]
    scenario: Option<PathBuf>,

    /// Closed loop: this many calls in flight (default 1).
    #[arg(long, group = "load")]
    concurrency: Option<usize>,
    /// Open loop: this many calls per second, latency from the intended send times.
    #[arg(long, group = "load")]
    rate: Option<f64>,
    /// Closed-loop sweep, one step per concurrency: 1,8,32.
    #[arg(long, group = "load", value_delimiter = ',', value_name = "N,N,..")]
    sweep_concurrency: Vec<usize>,
    /// Open-loop sweep, one step per rate: 100,200,400.
    #[arg(long, group = "load", value_delimiter = ',', value_name = "R,R,..")]
    sweep_rate: Vec<f64>,

    /// Measured time of each step (default 10s).
    #[arg(long, group = "stop", value_parser = duration)]
    duration: Option<Duration>,
    /// Measured calls of each step, instead of --duration.
    #[arg(long, group = "stop")]
    requests: Option<u64>,
    /// Load applied before each step's measurement, not counted.
    #[arg(long, value_parser = duration, default_value = "1s")]
    warmup: Duration,
    /// Deadline of each call (the gRPC deadline; also enforced here).
    #[arg(long, value_parser = duration, default_value = "30s")]
    timeout: Duration,
    /// Open loop: calls in flight beyond which due calls are dropped (counted as errors).
    #[arg(long, default_value_t = 1000)]
    max_outstanding: usize,
    /// HTTP/2 connections to open (calls are spread round-robin; gRPC only: REST opens
    /// one connection per call in flight).
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// grpc, http (REST with Triton's binary tensors) or http-json (REST, JSON tensors).
    #[arg(long, value_enum, default_value_t = Protocol::Grpc, env = "TROUPE_LOAD_PROTOCOL")]
    protocol: Protocol,
    /// Limit on connecting to the target.
    #[arg(long, value_parser = duration, default_value = "5s")]
    connect_timeout: Duration,

    /// Replaces a -1 first dimension of each input (others become 1).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i64).range(1..))]
    batch: i64,
    /// Explicit shape of an input, e.g. --shape input=4,16 (repeatable).
    #[arg(
        long = "shape",
        value_name = "INPUT=D1,D2,..",
        conflicts_with = "scenario"
    )]
    shapes: Vec<String>,
    /// Send these tensors instead of random data: {"inputs":[{"name","datatype","shape","data"}]}.
    #[arg(long, value_name = "FILE", conflicts_with = "scenario")]
    input_file: Option<PathBuf>,
    /// Seed for inputs and model choice (default: random).
    #[arg(long)]
    seed: Option<u64>,

    /// Write the full report as JSON.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write one CSV row per step.
    #[arg(long, value_name = "FILE")]
    csv: Option<PathBuf>,
    /// Write an SVG chart: latency over time, or the sweep's latency–throughput curve.
    #[arg(long, value_name = "FILE.svg")]
    chart: Option<PathBuf>,
    /// No progress bar or step lines.
    #[arg(long, short)]
    quiet: bool,
}

fn duration(s: &str) -> Result<Duration, String> {
    troupe_load::parse_duration(s).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("troupe-load: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("troupe-load: {e:#}");
            let usage = e
                .downcast_ref::<LoadError>()
                .is_some_and(LoadError::is_usage);
            ExitCode::from(if usage { 2 } else { 1 })
        }
    }
}

fn specs(args: &Args) -> Result<Vec<ModelSpec>, LoadError> {
    let mut defaults = InputOptions {
        batch: args.batch,
        ..InputOptions::default()
    };
    if let Some(path) = &args.scenario {
        return troupe_load::load_scenario(path, &defaults);
    }
    for s in &args.shapes {
        let (name, dims) = troupe_load::parse_shape_arg(s)?;
        defaults.shapes.insert(name, dims);
    }
    defaults.input_file = args.input_file.clone();
    let name = args
        .model
        .as_deref()
        .ok_or_else(|| LoadError::Invalid("give --model NAME or --scenario FILE".into()))?;
    let mut spec = ModelSpec::new(name);
    spec.version = args.model_version.clone().unwrap_or_default();
    spec.inputs = defaults;
    Ok(vec![spec])
}

fn config(args: &Args) -> Result<RunConfig, LoadError> {
    let steps = if let Some(c) = args.concurrency {
        vec![Load::Closed { concurrency: c }]
    } else if let Some(r) = args.rate {
        vec![Load::Open { rate: r }]
    } else if !args.sweep_concurrency.is_empty() {
        args.sweep_concurrency
            .iter()
            .map(|&c| Load::Closed { concurrency: c })
            .collect()
    } else if !args.sweep_rate.is_empty() {
        args.sweep_rate
            .iter()
            .map(|&r| Load::Open { rate: r })
            .collect()
    } else {
        vec![Load::Closed { concurrency: 1 }]
    };
    let stop = match (args.requests, args.duration) {
        (Some(n), _) => Stop::Requests(n),
        (None, Some(d)) => Stop::Duration(d),
        (None, None) => Stop::Duration(Duration::from_secs(10)),
    };
    let cfg = RunConfig {
        steps,
        warmup: args.warmup,
        stop,
        timeout: args.timeout,
        max_outstanding: args.max_outstanding,
        seed: args.seed.unwrap_or_else(rand::random),
        window: Duration::from_secs(1),
    };
    cfg.validate()?;
    if args.connections == 0 {
        return Err(LoadError::Invalid(
            "--connections must be at least 1".into(),
        ));
    }
    Ok(cfg)
}

/// A file a run may write: its flag, its path if given, and the report's rendering.
type Output<'a> = (&'static str, &'a Option<PathBuf>, fn(&Report) -> String);

/// The files a run may write, in the order they are written.
fn outputs(args: &Args) -> [Output<'_>; 3] {
    [
        ("--json", &args.json, Report::to_json),
        ("--csv", &args.csv, Report::to_csv),
        ("--chart", &args.chart, Report::chart_svg),
    ]
}

/// Refuses output paths whose directory does not exist, before a long run.
fn check_output(path: &Option<PathBuf>, flag: &str) -> Result<(), LoadError> {
    if let Some(p) = path {
        let dir = p
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if !dir.is_dir() {
            return Err(LoadError::Invalid(format!(
                "{flag} {}: directory {} does not exist",
                p.display(),
                dir.display()
            )));
        }
    }
    Ok(())
}

async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let specs = specs(&args)?;
    let cfg = config(&args)?;
    for (flag, path, _) in outputs(&args) {
        check_output(path, flag)?;
    }

    let opts = ConnectOptions {
        connect_timeout: args.connect_timeout,
        connections: args.connections,
        protocol: args.protocol,
    };
    let target = Target::connect(&args.target, &opts).await?;
    let workload = Workload::prepare(
        &target,
        &specs,
        cfg.seed,
        args.connect_timeout.max(Duration::from_secs(10)),
    )
    .await?;

    let visible = !args.quiet && std::io::stdout().is_terminal() && std::io::stderr().is_terminal();
    let ui = Ui {
        visible,
        quiet: args.quiet,
        bar: Mutex::new(None),
        stop_flag: Arc::new(AtomicBool::new(false)),
        warmup: cfg.warmup,
        stop: cfg.stop,
        steps: cfg.steps.len(),
    };
    let flag = ui.stop_flag.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            flag.store(true, Ordering::Relaxed);
            eprintln!(
                "\ntroupe-load: stopping, waiting for calls in flight (Ctrl-C again quits now)"
            );
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        }
    });

    let report = troupe_load::run(&target, &workload, &cfg, &ui).await?;
    print!("{}", report.table());

    for (_, path, render) in outputs(&args) {
        if let Some(p) = path {
            std::fs::write(p, render(&report))
                .with_context(|| format!("cannot write {}", p.display()))?;
        }
    }
    Ok(if report.interrupted {
        ExitCode::from(130)
    } else {
        ExitCode::SUCCESS
    })
}

/// Progress bar (on a terminal) and Ctrl-C.
struct Ui {
    visible: bool,
    quiet: bool,
    bar: Mutex<Option<ProgressBar>>,
    stop_flag: Arc<AtomicBool>,
    warmup: Duration,
    stop: Stop,
    steps: usize,
}

impl Ui {
    fn length(&self) -> u64 {
        match self.stop {
            Stop::Duration(d) => u64::try_from((self.warmup + d).as_millis()).unwrap_or(u64::MAX),
            Stop::Requests(n) => n,
        }
    }
}

impl Observer for Ui {
    fn step_started(&self, step: usize, steps: usize, load: Load) {
        let bar = if self.visible {
            ProgressBar::with_draw_target(Some(self.length()), ProgressDrawTarget::stderr())
        } else {
            ProgressBar::hidden()
        };
        let style = ProgressStyle::with_template("{prefix} [{bar:32}] {percent:>3}% {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(if steps > 1 {
            format!("[{}/{steps}] {load}", step + 1)
        } else {
            load.to_string()
        });
        if let Ok(mut b) = self.bar.lock() {
            *b = Some(bar);
        }
    }

    fn tick(&self, p: &Progress) {
        let Ok(b) = self.bar.lock() else { return };
        let Some(bar) = b.as_ref() else { return };
        let pos = match self.stop {
            Stop::Duration(_) => u64::try_from(p.elapsed.as_millis()).unwrap_or(u64::MAX),
            Stop::Requests(_) => p.sent,
        };
        bar.set_position(pos.min(self.length()));
        let phase = match p.phase {
            Phase::WarmUp => "warm-up",
            Phase::Measure => "measuring",
            Phase::Drain => "finishing calls in flight",
        };
        bar.set_message(format!(
            "{phase} · {} sent, {} answers, {} errors",
            p.sent, p.answers, p.errors
        ));
    }

    fn step_finished(&self, step: usize, r: &StepReport) {
        if let Ok(mut b) = self.bar.lock()
            && let Some(bar) = b.take()
        {
            bar.finish_and_clear();
        }
        if !self.quiet && self.steps > 1 {
            eprintln!(
                "step {}: {} · {:.1} answers/s · p50 {:.2} ms · p99 {:.2} ms · {} errors",
                step + 1,
                r.label(),
                r.throughput,
                r.latency.p50_us as f64 / 1000.0,
                r.latency.p99_us as f64 / 1000.0,
                r.errors
            );
        }
    }

    fn should_stop(&self) -> bool {
        self.stop_flag.load(Ordering::Relaxed)
    }
}
