//! `presenced-bench`: the benchmark harness of presenced.
//!
//! `presenced-bench run` (the default) builds presenced, starts it as a
//! separate process for every scenario, drives it over loopback with one
//! in-process load generator, then does the same against the *ceiling* (a
//! do-nothing hyper server answering the same bytes, `presenced-bench
//! ceiling`), and prints a table of requests/s, latencies and the ratio of
//! the two; then the footprint: memory per user, idle scheduler CPU, fades
//! processed at once, the lag of change notifications to a local receiver,
//! and a reconnect storm (every user changing at once while streams are
//! dropped and resume, checked for each user's final presence), and the
//! board in headless Chromium (first paint, the latency of a change to a
//! card, the longest frame under a burst of events). `--quick` is the same
//! with short runs and small data sets, for CI.
//!
//! Layout: `load.rs` is the generator and its histograms, `scenarios.rs` the
//! throughput scenarios and their data, `footprint.rs` the memory and
//! scheduler measurements, `notifications.rs` the notification lag and
//! `receiver.rs` its webhook receiver, `redis.rs` presenced over Redis (the
//! throughput rows, Redis's cost per request and memory per user),
//! `nodes.rs` three nodes over one Redis (fades and takeover), `storm.rs`
//! the reconnect storm (its stream clients, their reconnections, and the
//! check of every user's final presence), `board.rs` the board in a browser
//! and `browser.rs` the Chromium it runs in (driven by `js/board_bench.mjs`
//! through the pinned playwright-core), `ceiling.rs` the ceiling server,
//! `process.rs` starting servers and reading `/proc`, `report.rs` the
//! tables, `charts.rs` the SVG charts written beside the Markdown.

mod board;
mod browser;
mod ceiling;
mod charts;
mod footprint;
mod load;
mod nodes;
mod notifications;
mod process;
mod receiver;
mod redis;
mod report;
mod scenarios;
mod storm;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};

use crate::browser::CHROMIUM;
use crate::report::Report;
use crate::scenarios::{Part, ServerVariant};

#[derive(Debug, Parser)]
#[command(
    name = "presenced-bench",
    about = "Benchmarks presenced against a do-nothing HTTP server (the ceiling) and measures its footprint.",
    long_about = "Benchmarks presenced: each scenario runs against presenced and then against the \
                  ceiling, a minimal hyper server answering the same bytes and doing no other \
                  work, with the same connections, duration and requests; then memory per user, \
                  idle scheduler CPU, simultaneous fades and the lag of their change \
                  notifications, and a reconnect storm of streams and webhooks. Without a \
                  subcommand, `run`.",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Measure everything and print the table (what runs without a subcommand).
    Run(RunArgs),
    /// Serve as the ceiling; `run` starts this itself.
    Ceiling(CeilingArgs),
}

#[derive(Clone, Debug, Args)]
struct RunArgs {
    /// Short runs and small data sets, done in under a minute. CI runs this so
    /// the harness keeps working; the targets are for the full run.
    #[arg(long)]
    quick: bool,

    /// Seconds measured per run [default: 15; quick: 2].
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,

    /// Seconds of warm-up before each measured run, sent but not counted
    /// [default: 5; quick: 1].
    #[arg(long, value_name = "SECS")]
    warmup: Option<f64>,

    /// Keep-alive connections of the load generator [default: 256; quick: 32].
    #[arg(long, value_name = "N")]
    connections: Option<usize>,

    /// Run the "50% of max" open loops at this many requests/s instead of
    /// at half of each scenario's closed-loop maximum, so that two builds
    /// are compared at the same load (a faster build's half is a higher
    /// rate, and a busier machine).
    #[arg(long, value_name = "N")]
    open_loop_rate: Option<f64>,

    /// Run only these parts (several may follow one --only).
    #[arg(long, value_enum, num_args = 1.., value_name = "NAME")]
    only: Vec<Part>,

    /// Also write the results as Markdown to FILE (for the README), with
    /// SVG charts beside it that it links: FILE's stem with `-ratios.svg`
    /// (closed loop vs the ceiling) and `-latency.svg` (latency at half
    /// load), each when the run has rows for it.
    #[arg(long, value_name = "FILE")]
    markdown: Option<PathBuf>,

    /// Measure this presenced binary instead of building the workspace's
    /// with `cargo build --release -p presenced`.
    #[arg(long, value_name = "PATH")]
    presenced: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct CeilingArgs {
    /// Where to listen; port 0 picks one, printed as `ceiling listening on http://ADDR`.
    #[arg(long, value_name = "ADDR")]
    listen: SocketAddr,

    /// The size of every answer's body (0: empty).
    #[arg(long, value_name = "N")]
    body_bytes: usize,

    /// Pad the headers to this many bytes (`name: value\r\n` each, as
    /// presenced's are counted), so that answers match presenced's in size.
    #[arg(long, value_name = "N", default_value_t = 0)]
    header_bytes: usize,

    /// Speak HTTP/2 in plain text with prior knowledge (h2c) instead of
    /// HTTP/1.1.
    #[arg(long)]
    http2: bool,
}

/// The sizes and spans of one harness run.
#[derive(Clone, Debug)]
pub struct Settings {
    pub quick: bool,
    pub connections: usize,
    /// The open loops' requests/s when fixed (`--open-loop-rate`); half of
    /// each maximum otherwise.
    pub open_loop_rate: Option<f64>,
    pub warmup: Duration,
    pub measure: Duration,
    /// Users preloaded for the throughput scenarios (the 100k).
    pub scenario_users: usize,
    /// Ids per getPresencesByUserId (Graph's maximum).
    pub batch_ids: usize,
    /// Users with one session each for the memory and idle CPU measurement.
    pub footprint_users: usize,
    /// How long idle CPU is measured.
    pub idle_cpu_window: Duration,
    /// Sessions fading at the same instant.
    pub fade_users: usize,
    /// Subscribed users fading at the same instant, for the notification
    /// lag.
    pub notify_users: usize,
    /// Pause between loading users and reading resident memory.
    pub settle: Duration,
    /// How long presenced and Redis are watched idle, to take their
    /// background work out of the cost per request.
    pub redis_idle_window: Duration,
    /// Users preloaded for the Redis throughput scenarios and costs.
    pub redis_users: usize,
    /// Warm-up and measured span of the Redis throughput runs.
    pub redis_warmup: Duration,
    pub redis_measure: Duration,
    /// Requests of each kind whose Redis cost is measured.
    pub redis_cost_requests: usize,
    /// Users loaded into Redis for its memory per user.
    pub redis_memory_users: usize,
    /// Subscribed users fading at once across three nodes.
    pub nodes_notify_users: usize,
    /// Nodes killed per lease length for the takeover time.
    pub takeover_trials: usize,
    /// Users changing presence in the reconnect storm.
    pub storm_users: usize,
    /// Stream clients of the reconnect storm, each watching its own slice
    /// of those users.
    pub storm_streams: usize,
    /// Users of the board's tenant.
    pub board_users: usize,
    /// Times the board is loaded, each with a cold cache, for its first
    /// paint.
    pub board_loads: usize,
    /// Status-message probes sent one at a time with no other traffic.
    pub board_idle_probes: usize,
    /// How long setPresence arrives at `board_events_per_second` while the
    /// board is probed and its frames watched.
    pub board_burst: Duration,
    pub board_events_per_second: f64,
}

impl Settings {
    fn from_args(args: &RunArgs) -> Settings {
        let defaults = if args.quick {
            Settings {
                quick: true,
                connections: 32,
                open_loop_rate: None,
                warmup: Duration::from_secs(1),
                measure: Duration::from_secs(2),
                scenario_users: 10_000,
                batch_ids: 650,
                footprint_users: 50_000,
                idle_cpu_window: Duration::from_secs(3),
                fade_users: 10_000,
                notify_users: 5_000,
                settle: Duration::from_secs(1),
                redis_users: 2_000,
                redis_warmup: Duration::from_millis(500),
                redis_measure: Duration::from_secs(1),
                redis_idle_window: Duration::from_secs(1),
                redis_cost_requests: 2_000,
                redis_memory_users: 10_000,
                nodes_notify_users: 5_000,
                takeover_trials: 1,
                storm_users: 10_000,
                storm_streams: 100,
                board_users: 10_000,
                board_loads: 2,
                board_idle_probes: 20,
                board_burst: Duration::from_secs(4),
                board_events_per_second: 1_000.0,
            }
        } else {
            Settings {
                quick: false,
                connections: 256,
                open_loop_rate: None,
                warmup: Duration::from_secs(5),
                measure: Duration::from_secs(15),
                scenario_users: 100_000,
                batch_ids: 650,
                footprint_users: 1_000_000,
                idle_cpu_window: Duration::from_secs(10),
                fade_users: 100_000,
                notify_users: 100_000,
                settle: Duration::from_secs(2),
                redis_users: 100_000,
                redis_warmup: Duration::from_secs(5),
                redis_measure: Duration::from_secs(15),
                redis_idle_window: Duration::from_secs(3),
                redis_cost_requests: 50_000,
                redis_memory_users: 1_000_000,
                nodes_notify_users: 100_000,
                takeover_trials: 3,
                storm_users: 100_000,
                storm_streams: 1_000,
                board_users: 10_000,
                board_loads: 5,
                board_idle_probes: 100,
                board_burst: Duration::from_secs(10),
                board_events_per_second: 1_000.0,
            }
        };
        let warmup = args.warmup.map_or(defaults.warmup, |seconds| {
            Duration::from_secs_f64(seconds.max(0.0))
        });
        let measure = args.duration.map_or(defaults.measure, |seconds| {
            Duration::from_secs_f64(seconds.max(0.1))
        });
        Settings {
            connections: args.connections.unwrap_or(defaults.connections).max(1),
            open_loop_rate: args.open_loop_rate.filter(|rate| *rate > 0.0),
            warmup,
            measure,
            // A quick run keeps its Redis rows shorter still, to stay near
            // its minute with Redis's parts in it; a full one runs them like
            // the others.
            redis_warmup: if args.quick {
                warmup.min(defaults.redis_warmup)
            } else {
                warmup
            },
            redis_measure: if args.quick {
                measure.min(defaults.redis_measure)
            } else {
                measure
            },
            ..defaults
        }
    }

    /// The requests/s of the open loop after a closed loop that reached
    /// `maximum`: `--open-loop-rate` when given, half of `maximum` otherwise.
    pub fn open_loop_rate_for(&self, maximum: f64) -> f64 {
        self.open_loop_rate.unwrap_or(maximum / 2.0)
    }

    /// The settings as lines for the report.
    fn describe(&self) -> Vec<String> {
        let mode = if self.quick {
            "mode: quick (short runs, small data sets: a smoke test; the targets are for the full run)"
        } else {
            "mode: full"
        };
        vec![
            mode.to_string(),
            format!(
                "load: {} keep-alive HTTP/1.1 connections (h2c connections with one stream \
                 at a time for the h2c rows) over loopback from one in-process generator on one \
                 core; {} s warm-up (not counted), then {} s measured, per run",
                self.connections,
                self.warmup.as_secs_f64(),
                self.measure.as_secs_f64()
            ),
            format!(
                "data: {} users preloaded with one app session each (not measured); \
                 getPresencesByUserId with {} random ids; footprint at {} users; {} \
                 simultaneous fades; {} subscribed users fading at once for the \
                 notification lag",
                self.scenario_users,
                self.batch_ids,
                self.footprint_users,
                self.fade_users,
                self.notify_users
            ),
            format!(
                "redis: redis-server processes started by presenced-testkit on loopback (AOF on, \
                 fsync every second); each Redis throughput scenario starts on an emptied Redis \
                 with {} users preloaded, {} s warm-up and {} s measured; Redis cost from up to {} \
                 requests of each kind; Redis memory at {} users; {} subscribed users fading at \
                 once across 3 nodes; {} takeover(s) per lease",
                self.redis_users,
                self.redis_warmup.as_secs_f64(),
                self.redis_measure.as_secs_f64(),
                self.redis_cost_requests,
                self.redis_memory_users,
                self.nodes_notify_users,
                self.takeover_trials
            ),
            format!(
                "storm: {} users set {} times as fast as presenced answers while {} streams of \
                 {} users each are dropped (at random, and all at once) and reconnect with \
                 Last-Event-ID, and {} webhook receivers follow {} users each",
                self.storm_users,
                storm::ROUNDS,
                self.storm_streams,
                self.storm_users.div_ceil(self.storm_streams.max(1)),
                storm::RECEIVERS,
                self.storm_users.div_ceil(storm::RECEIVERS)
            ),
            format!(
                "board: {} users on presenced (--store memory --auth none; one in ten with no \
                 session, a status message on one in four) in headless Chromium \
                 ({CHROMIUM}, through the pinned playwright-core), 1280×800, loaded {} time(s) \
                 afresh; {} status-message probes one at a time, then {:.0} setPresence/s to \
                 random users for {} s with a probe every 100 ms or so; each probe is sent by \
                 the page itself (fetch), so that sending and drawing are read on one clock, \
                 and ends at the animation frame whose DOM update shows it (before that \
                 frame's paint)",
                self.board_users,
                self.board_loads,
                self.board_idle_probes,
                self.board_events_per_second,
                self.board_burst.as_secs_f64()
            ),
            "servers: presenced and the ceiling each run as a separate process, one at a \
             time; the ceiling is hyper 1 (HTTP/1.1, keep-alive, or h2c for the h2c rows; \
             tokio multi-thread with the default workers) that reads each request body and \
             answers with presenced's answer size (body and headers), doing nothing else"
                .to_string(),
            format!(
                "50% of max: {}; latency counts from the instant a request was due whenever \
                 the connection was still busy then (coordinated omission corrected)",
                match self.open_loop_rate {
                    None => "open loop at half the closed-loop requests/s".to_string(),
                    Some(rate) => format!(
                        "here open loop at {rate:.0} requests/s in every scenario \
                         (--open-loop-rate), not at half of each maximum"
                    ),
                }
            ),
            format!(
                "CPU × ceiling: presenced's server CPU per request divided by the ceiling's in \
                 the same scenario and run; a closed-loop row whose requests/s must reach r × \
                 the ceiling's must also take at most 1/r × its CPU per request, rounded to \
                 two decimals (≥ 0.85 × ceiling: CPU ≤ {:.2} ×; ≥ {:.2}: CPU ≤ {:.2} ×; \
                 ≥ 0.50: CPU ≤ {:.2} ×), each with its own verdict",
                scenarios::max_cpu_ratio(0.85),
                footprint::MIN_DURABLE_SET_PRESENCE_RATIO,
                scenarios::max_cpu_ratio(footprint::MIN_DURABLE_SET_PRESENCE_RATIO),
                scenarios::max_cpu_ratio(0.5)
            ),
        ]
    }
}

/// What every measurement needs.
#[derive(Debug)]
pub struct Context {
    pub presenced_binary: PathBuf,
    /// This program, re-executed as `ceiling`.
    pub bench_binary: PathBuf,
    pub settings: Settings,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Ceiling(args)) => {
            let protocol = if args.http2 {
                load::Protocol::Http2
            } else {
                load::Protocol::Http1
            };
            ceiling::serve(args.listen, args.body_bytes, args.header_bytes, protocol)
        }
        Some(Command::Run(args)) => run(args),
        None => run(cli.run),
    }
}

/// The command line as typed, for the report: through cargo when cargo
/// started this program.
fn command_line() -> String {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .map(|arg| {
            if arg.contains(char::is_whitespace) || arg.is_empty() {
                format!("'{arg}'")
            } else {
                arg
            }
        })
        .collect();
    let program = if std::env::var_os("CARGO").is_some() {
        "cargo run --release -p presenced-bench --".to_string()
    } else {
        std::env::args()
            .next()
            .unwrap_or_else(|| "presenced-bench".into())
    };
    if args.is_empty() {
        program.trim_end_matches(" --").to_string()
    } else {
        format!("{program} {}", args.join(" "))
    }
}

fn run(args: RunArgs) -> ExitCode {
    // One thread for the whole harness: the load generator must not take
    // more than one core from the server it measures.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("presenced-bench: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(measure(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(message) => {
            eprintln!("presenced-bench: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Runs every wanted part and prints the report; `Ok(false)` when a request
/// or a measurement failed.
async fn measure(args: RunArgs) -> Result<bool, String> {
    let started = Instant::now();
    let settings = Settings::from_args(&args);
    if cfg!(debug_assertions) {
        println!(
            "warning: presenced-bench is a debug build; its load generator may be the \
             bottleneck. Use `cargo run --release -p presenced-bench`."
        );
    }
    let presenced_binary = match &args.presenced {
        Some(path) => path.clone(),
        None => process::build_presenced()?,
    };
    // The build is not the harness's run time: a cold one takes minutes.
    let built = started.elapsed();
    let measuring = Instant::now();
    println!("measuring {}", presenced_binary.display());
    let bench_binary = std::env::current_exe()
        .map_err(|error| format!("cannot find this program to start the ceiling: {error}"))?;
    let context = Context {
        presenced_binary,
        bench_binary,
        settings: settings.clone(),
    };
    let mut report = Report {
        title: format!(
            "presenced benchmark ({} run)",
            if settings.quick { "quick" } else { "full" }
        ),
        command_line: command_line(),
        machine: process::describe_machine(),
        settings: settings.describe(),
        throughput: Vec::new(),
        footprint: Vec::new(),
        board: Vec::new(),
        notes: Vec::new(),
        failures: Vec::new(),
    };
    for setting in &report.settings {
        println!("- {setting}");
    }
    let wanted = |part: Part| args.only.is_empty() || args.only.contains(&part);

    let throughput_parts = [
        Part::SetPresence,
        Part::GetPresence,
        Part::GetPresenceH2c,
        Part::Batch,
        Part::Mixed,
    ];
    if throughput_parts.into_iter().any(wanted) {
        // The durable store and hs256 auth are the other variants. A quick
        // run leaves the durable one out (it takes its durable write rate
        // from the footprint's load) and runs hs256 on GET only, to stay
        // near a minute.
        let mut hs256 = ServerVariant::memory_hs256(&context.presenced_binary)?;
        let throttled = ServerVariant::memory_hs256_throttled(&context.presenced_binary)?;
        let variants = if settings.quick {
            hs256.parts = vec![Part::GetPresence];
            vec![ServerVariant::memory(), hs256, throttled]
        } else {
            vec![
                ServerVariant::memory(),
                ServerVariant::embedded(),
                hs256,
                throttled,
            ]
        };
        for variant in variants {
            let mut scenarios = scenarios::throughput_scenarios(
                &variant,
                settings.scenario_users,
                settings.batch_ids,
            );
            if variant.fresh_data_dir {
                for scenario in &mut scenarios {
                    if scenario.part == Part::SetPresence {
                        // Every write waits for a sync: the target.
                        scenario.ratio_target = Some(footprint::MIN_DURABLE_SET_PRESENCE_RATIO);
                    }
                }
            }
            for scenario in scenarios.iter().filter(|scenario| wanted(scenario.part)) {
                let result =
                    scenarios::run_throughput_scenario(&context, scenario, &mut report).await;
                record_failure(&mut report, &scenario.name, result);
            }
        }
        footprint::note_durable_throughput(&mut report, settings.connections);
        footprint::compare_durable_latency(&mut report);
    }
    compare_auth(&mut report);
    compare_protocols(&mut report);
    if wanted(Part::Footprint) {
        let result = footprint::measure_memory_and_idle_cpu(&context, &mut report).await;
        record_failure(&mut report, "footprint", result);
    }
    if wanted(Part::Fades) {
        let result = footprint::measure_fades(&context, &mut report).await;
        record_failure(&mut report, "fades", result);
    }
    if wanted(Part::Notifications) {
        for run in notifications::runs(settings.quick) {
            let result = notifications::measure_delivery_lag(&context, &run, &mut report).await;
            record_failure(
                &mut report,
                &format!("notifications ({})", run.label()),
                result,
            );
        }
    }
    if wanted(Part::Storm) {
        let result = storm::measure(&context, &mut report).await;
        record_failure(&mut report, "reconnect storm", result);
    }
    if wanted(Part::Board) {
        let result = board::measure(&context, &mut report).await;
        record_failure(&mut report, "board", result);
    }
    if wanted(Part::Footprint) || wanted(Part::Startup) {
        let result = footprint::measure_durable_store(&context, &mut report).await;
        record_failure(&mut report, "durable store", result);
    }
    if wanted(Part::Redis) {
        for setup in &redis::SETUPS {
            let result = redis::measure_setup(&context, setup, &mut report).await;
            record_failure(&mut report, &format!("redis ({})", setup.label), result);
        }
        let result = redis::measure_memory(&context, &mut report).await;
        record_failure(&mut report, "redis memory", result);
    }
    if wanted(Part::RedisNodes) {
        let result = nodes::measure_fades(&context, &mut report).await;
        record_failure(&mut report, "redis nodes: fades", result);
        for lease in nodes::leases(settings.quick) {
            let result = nodes::measure_takeover(&context, lease, &mut report).await;
            record_failure(
                &mut report,
                &format!("redis nodes: takeover ({lease})"),
                result,
            );
        }
    }

    report.notes.push(format!(
        "the harness measured for {:.0} s (and spent {:.0} s building presenced first)",
        measuring.elapsed().as_secs_f64(),
        built.as_secs_f64()
    ));
    println!("\n{}", report.to_text());
    if let Some(path) = &args.markdown {
        let charts = charts::write_beside(&report, path)?;
        std::fs::write(path, report.to_markdown(&charts))
            .map_err(|error| format!("cannot write {}: {error}", path.display()))?;
        let names: Vec<&str> = charts
            .iter()
            .map(|chart| chart.file_name.as_str())
            .collect();
        println!(
            "Markdown written to {} (charts beside it: {})",
            path.display(),
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        );
    }
    Ok(report.failures.is_empty())
}

/// GET presence over h2c against the same over HTTP/1.1, on the same
/// presenced in the same run: what HTTP/2's framing costs presenced (the
/// two ceiling rows say what it costs hyper alone). No target: a client
/// chooses its protocol; the number is there to be watched.
fn compare_protocols(report: &mut Report) {
    let server = "presenced (memory)";
    let (Some(http1), Some(http2)) = (
        report.maximum(GET_OVER_HTTP1, server),
        report.maximum("GET presence over h2c, ", server),
    ) else {
        return;
    };
    if http1.requests_per_second <= 0.0 {
        return;
    }
    let cpu = match (http1.server_cpu_micros, http2.server_cpu_micros) {
        (Some(http1), Some(http2)) => format!("; CPU per request {http1:.1} µs → {http2:.1} µs"),
        _ => String::new(),
    };
    report.footprint.push(report::FootprintRow {
        measurement: "GET presence over h2c vs over HTTP/1.1 (memory, closed loop, one stream per connection at a time)".into(),
        value: format!(
            "{:.2} ({:.0} vs {:.0} requests/s{cpu})",
            http2.requests_per_second / http1.requests_per_second,
            http2.requests_per_second,
            http1.requests_per_second
        ),
        target: None,
    });
}

/// The name of the GET presence scenario over HTTP/1.1 begins so (the
/// one over h2c begins `GET presence over h2c`).
const GET_OVER_HTTP1: &str = "GET presence, ";

/// What verifying a token costs: GET presence behind `--auth hs256` against
/// the same scenario with `--auth none`, by requests/s (the target) and by
/// server CPU per request (which the machine's noise moves less).
fn compare_auth(report: &mut Report) {
    compare_variants(
        report,
        "presenced (memory)",
        "presenced (memory, hs256)",
        "GET presence with --auth hs256 vs --auth none (closed loop)",
        0.90,
    );
    compare_variants(
        report,
        "presenced (memory, hs256)",
        "presenced (memory, hs256, throttled)",
        "GET presence with --throttle-app and --throttle-tenant on vs off (hs256, closed loop)",
        0.95,
    );
}

/// One variant's best GET presence rate against another's, measured in
/// the same run, with its target.
fn compare_variants(report: &mut Report, base: &str, other: &str, measurement: &str, target: f64) {
    let (Some(open), Some(checked)) = (
        report.maximum(GET_OVER_HTTP1, base),
        report.maximum(GET_OVER_HTTP1, other),
    ) else {
        return;
    };
    if open.requests_per_second <= 0.0 {
        return;
    }
    let ratio = checked.requests_per_second / open.requests_per_second;
    let cpu = match (open.server_cpu_micros, checked.server_cpu_micros) {
        (Some(open), Some(checked)) if checked > 0.0 => {
            format!(
                "; CPU per request {open:.1} µs → {checked:.1} µs ({:.2})",
                open / checked
            )
        }
        _ => String::new(),
    };
    report.footprint.push(report::FootprintRow {
        measurement: measurement.into(),
        value: format!(
            "{ratio:.2} ({:.0} vs {:.0} requests/s{cpu})",
            checked.requests_per_second, open.requests_per_second
        ),
        target: Some(report::Target::new(
            format!("≥ {target:.2}"),
            ratio >= target,
        )),
    });
}

/// A part that could not be measured is reported and the others still run:
/// one broken scenario should not hide the rest of the table.
pub fn record_failure(report: &mut Report, part: &str, result: Result<(), String>) {
    if let Err(message) = result {
        println!("[{part}] FAILED: {message}");
        report.failures.push(format!("{part}: {message}"));
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn settings(args: &[&str]) -> Settings {
        let cli =
            Cli::try_parse_from(std::iter::once("presenced-bench").chain(args.iter().copied()))
                .expect("parses");
        Settings::from_args(&cli.run)
    }

    fn description(settings: &Settings) -> String {
        settings.describe().join("\n")
    }

    #[test]
    fn the_open_loops_run_at_half_the_maximum_unless_a_rate_is_given() {
        let halved = settings(&[]);
        assert_eq!(halved.open_loop_rate_for(90_000.0), 45_000.0);
        assert!(description(&halved).contains("open loop at half the closed-loop requests/s"));

        let fixed = settings(&["--open-loop-rate", "40000"]);
        assert_eq!(fixed.open_loop_rate_for(90_000.0), 40_000.0);
        assert_eq!(fixed.open_loop_rate_for(10_000.0), 40_000.0);
        assert!(description(&fixed).contains("open loop at 40000 requests/s in every scenario"));

        // No rate is no rate: the halves again.
        assert_eq!(
            settings(&["--open-loop-rate", "0"]).open_loop_rate_for(90_000.0),
            45_000.0
        );
    }
}
