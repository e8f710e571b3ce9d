//! What presenced costs while holding many users rather than while serving
//! requests: resident memory per user, the scheduler's CPU while a million
//! sessions wait to fade, the time to process many fades due at once, and
//! (later) start-up time with users on disk.
//!
//! Memory and CPU are read from `/proc/PID/status` and `/proc/PID/stat` of
//! the presenced process; users are loaded through the same load generator
//! as the throughput scenarios, at full speed.

use std::time::{Duration, Instant};

use hyper::Uri;

use crate::Context;
use crate::load::{RequestSpec, send_once};
use crate::process::{
    CpuMeter, ServerProcess, clock_ticks_per_second, disk_bytes, fresh_data_dir, resident_bytes,
};
use crate::report::{FootprintRow, Report, Target, ThroughputRow, format_micros};
use crate::scenarios::{ServerVariant, ceiling_targets, preload_users, presence_uri};

/// The issue's targets.
const MAX_BYTES_PER_USER: f64 = 300.0;
const MAX_IDLE_CORE_FRACTION: f64 = 0.01;
const MAX_FADE_TIME: Duration = Duration::from_secs(1);

/// The first fade of a session comes one idle timeout (PT5M by default)
/// after it is set; the idle measurement must end before then, or it would
/// measure fades instead of waiting.
const FIRST_FADE_AFTER: Duration = Duration::from_secs(5 * 60);

fn mebibytes(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// The value of an unlabelled metric in Prometheus text
/// (`presenced_sessions 1000000`).
pub fn parse_metric(exposition: &str, name: &str) -> Option<f64> {
    exposition.lines().find_map(|line| {
        let value = line.strip_prefix(name)?.strip_prefix(' ')?;
        value.trim().parse().ok()
    })
}

pub async fn read_metric(server: &ServerProcess, name: &str) -> Result<f64, String> {
    let answer = send_once(
        server.address(),
        &RequestSpec::get(Uri::from_static("/metrics")),
    )
    .await?;
    let text = String::from_utf8_lossy(&answer.body);
    parse_metric(&text, name).ok_or_else(|| format!("GET /metrics has no `{name}` gauge"))
}

/// Checks through /metrics that presenced holds `expected` sessions, so that
/// a measurement is never taken over fewer users than it claims.
pub async fn expect_sessions(server: &ServerProcess, expected: usize) -> Result<(), String> {
    let sessions = read_metric(server, "presenced_sessions").await?;
    if sessions as usize == expected {
        Ok(())
    } else {
        Err(format!(
            "presenced reports {sessions} sessions after loading {expected} users with one each"
        ))
    }
}

/// Resident memory per user at `footprint_users` users with one session
/// each, then the CPU of the same process idling with all those sessions
/// waiting for their first fade.
pub async fn measure_memory_and_idle_cpu(
    context: &Context,
    report: &mut Report,
) -> Result<(), String> {
    let settings = &context.settings;
    let users = settings.footprint_users;
    let variant = ServerVariant::memory();
    let label = format!("presenced ({}) footprint", variant.label);
    let mut server =
        ServerProcess::start(&label, &context.presenced_binary, &variant.serve_args())?;
    let pid = server.pid();

    // Let start-up allocations settle before the baseline.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = resident_bytes(pid)?;
    let loading_started = Instant::now();
    let load = preload_users(&mut server, settings.connections, users).await?;
    println!(
        "[footprint] loaded {users} users in {:.1} s ({:.0} setPresence/s)",
        load.measured.as_secs_f64(),
        users as f64 / load.measured.as_secs_f64().max(1e-9)
    );
    // Connection buffers are released and allocator caches trimmed over the
    // next moments; read the settled figure, as a long-running server has.
    tokio::time::sleep(settings.settle).await;
    let after = resident_bytes(pid)?;
    expect_sessions(&server, users).await?;
    let per_user = after.saturating_sub(before) as f64 / users as f64;
    println!(
        "[footprint] resident memory {} -> {}: {per_user:.0} bytes per user",
        mebibytes(before),
        mebibytes(after)
    );
    report.footprint.push(FootprintRow {
        measurement: format!("resident memory per user, one session each, {users} users"),
        value: format!(
            "{per_user:.0} bytes ({} → {})",
            mebibytes(before),
            mebibytes(after)
        ),
        target: Some(Target::new(
            format!("≤ {MAX_BYTES_PER_USER:.0} bytes"),
            per_user <= MAX_BYTES_PER_USER,
        )),
    });

    // Idle: no traffic, every session waiting for its first fade.
    let (ticks_per_second, assumed) = clock_ticks_per_second();
    if assumed {
        report.notes.push(
            "`getconf CLK_TCK` did not answer; CPU times assume 100 clock ticks per second".into(),
        );
    }
    let meter = CpuMeter::start(pid, ticks_per_second)?;
    tokio::time::sleep(settings.idle_cpu_window).await;
    let (core_fraction, cpu_seconds) = meter.finish()?;
    if loading_started.elapsed() >= FIRST_FADE_AFTER {
        report.failures.push(format!(
            "the idle CPU measurement ended {:.0} s after the first user was set, after the \
             first fades fell due: it measured fading, not waiting",
            loading_started.elapsed().as_secs_f64()
        ));
    }
    println!(
        "[footprint] idle for {} s with {users} sessions waiting: {:.3}% of one core",
        settings.idle_cpu_window.as_secs_f64(),
        core_fraction * 100.0
    );
    report.footprint.push(FootprintRow {
        measurement: format!("idle CPU, {users} sessions waiting to fade (none due)"),
        value: format!(
            "{:.3}% of one core ({cpu_seconds:.2} CPU s over {:.0} s)",
            core_fraction * 100.0,
            settings.idle_cpu_window.as_secs_f64()
        ),
        target: Some(Target::new(
            format!("< {:.0}% of a core", MAX_IDLE_CORE_FRACTION * 100.0),
            core_fraction < MAX_IDLE_CORE_FRACTION,
        )),
    });
    Ok(())
}

/// `fade_users` sessions set at the same manual instant, then one
/// `POST /_presenced/clock/advance {"by":"PT5M"}`: it answers once every fade
/// due in that span has been applied, so its duration is the time to process
/// them all.
pub async fn measure_fades(context: &Context, report: &mut Report) -> Result<(), String> {
    let settings = &context.settings;
    let users = settings.fade_users;
    let variant = ServerVariant {
        label: "memory, manual clock".into(),
        server_args: ["--store", "memory", "--clock", "manual"]
            .map(String::from)
            .to_vec(),
        authorization: None,
        parts: Vec::new(),
        fresh_data_dir: false,
        redis: None,
    };
    let label = format!("presenced ({})", variant.label);
    let mut server =
        ServerProcess::start(&label, &context.presenced_binary, &variant.serve_args())?;
    preload_users(&mut server, settings.connections, users).await?;
    expect_sessions(&server, users).await?;

    let (ticks_per_second, _) = clock_ticks_per_second();
    let meter = CpuMeter::start(server.pid(), ticks_per_second)?;
    let started = Instant::now();
    let answer = send_once(
        server.address(),
        &RequestSpec::post_json(
            Uri::from_static("/_presenced/clock/advance"),
            bytes::Bytes::from_static(br#"{"by":"PT5M"}"#),
        ),
    )
    .await?;
    let elapsed = started.elapsed();
    let (core_fraction, cpu_seconds) = meter.finish()?;
    if !answer.status.is_success() {
        return Err(format!(
            "the clock advance answered {}: {}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        ));
    }

    // The fades really happened: the first and the last user now show
    // AvailableInactive.
    for index in [0, users as u64 - 1] {
        let presence = send_once(server.address(), &RequestSpec::get(presence_uri(index))).await?;
        let json: serde_json::Value = serde_json::from_slice(&presence.body)
            .map_err(|error| format!("GET presence after the fades: {error}"))?;
        if json["activity"] != "AvailableInactive" {
            return Err(format!(
                "after the clock advanced by PT5M, user {index} shows {} instead of \
                 AvailableInactive",
                json["activity"]
            ));
        }
    }
    println!(
        "[fades] {users} fades due at once processed in {:.1} ms ({cpu_seconds:.2} CPU s)",
        elapsed.as_secs_f64() * 1000.0
    );
    report.footprint.push(FootprintRow {
        measurement: format!("{users} fades due at the same instant (manual clock, one advance)"),
        value: format!(
            "{:.1} ms ({cpu_seconds:.2} CPU s, {:.0}% of one core meanwhile)",
            elapsed.as_secs_f64() * 1000.0,
            core_fraction * 100.0
        ),
        target: Some(Target::new(
            format!("< {} s", MAX_FADE_TIME.as_secs()),
            elapsed < MAX_FADE_TIME,
        )),
    });
    Ok(())
}

/// The embedded store's targets.
const MAX_DISK_BYTES_PER_USER: f64 = 200.0;
const MAX_RECOVERY_TIME: Duration = Duration::from_secs(5);
pub const MIN_DURABLE_SET_PRESENCE_RATIO: f64 = 0.6;

/// The embedded store (strict durability) on a fresh directory: start-up
/// when empty, `footprint_users` users loaded with one session each, the
/// bytes the directory then takes per user, and the time a presenced killed
/// with SIGKILL takes to come back with all of them (until `/readyz`
/// answers 200, which it does only once every record is loaded).
pub async fn measure_durable_store(context: &Context, report: &mut Report) -> Result<(), String> {
    let settings = &context.settings;
    let users = settings.footprint_users;
    let dir = fresh_data_dir("durable-footprint")?;
    let result = measure_durable_store_in(context, report, &dir, users).await;
    let _ = std::fs::remove_dir_all(&dir);
    result.map_err(|error| format!("{error} (settings: {} users)", settings.footprint_users))
}

async fn measure_durable_store_in(
    context: &Context,
    report: &mut Report,
    dir: &std::path::Path,
    users: usize,
) -> Result<(), String> {
    let settings = &context.settings;
    let args: Vec<String> = [
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--store",
        "embedded",
        "--durability",
        "strict",
        "--data-dir",
    ]
    .iter()
    .map(|arg| arg.to_string())
    .chain([dir.display().to_string()])
    .collect();
    let label = "presenced (embedded, strict) durable footprint";

    let started = Instant::now();
    let mut server = ServerProcess::start(label, &context.presenced_binary, &args)?;
    server.wait_until_ready().await?;
    let empty_startup = started.elapsed();
    report.footprint.push(FootprintRow {
        measurement: "start-up, empty data directory (process start to /readyz 200)".into(),
        value: format!("{:.0} ms", empty_startup.as_secs_f64() * 1000.0),
        target: None,
    });

    let load = preload_users(&mut server, settings.connections, users).await?;
    expect_sessions(&server, users).await?;
    println!(
        "[durable] loaded {users} users in {:.1} s ({:.0} durable setPresence/s, {} connections)",
        load.measured.as_secs_f64(),
        users as f64 / load.measured.as_secs_f64().max(1e-9),
        settings.connections
    );
    note_durable_load_throughput(report, &load, users, settings.connections);
    let bytes = disk_bytes(dir);
    let per_user = bytes as f64 / users as f64;
    println!(
        "[durable] data directory: {} for {users} users, {per_user:.0} bytes per user",
        mebibytes(bytes)
    );
    report.footprint.push(FootprintRow {
        measurement: format!(
            "bytes on disk per user, one session each, {users} users (embedded store, journal included)"
        ),
        value: format!("{per_user:.0} bytes ({})", mebibytes(bytes)),
        target: Some(Target::new(
            format!("< {MAX_DISK_BYTES_PER_USER:.0} bytes"),
            per_user < MAX_DISK_BYTES_PER_USER,
        )),
    });

    // SIGKILL: no clean shutdown, so the restart replays the journal too.
    drop(server);
    let started = Instant::now();
    let mut server = ServerProcess::start(label, &context.presenced_binary, &args)?;
    server.wait_until_ready().await?;
    let recovery = started.elapsed();
    expect_sessions(&server, users).await?;
    println!(
        "[durable] killed and restarted: ready with {users} users after {:.2} s",
        recovery.as_secs_f64()
    );
    report.footprint.push(FootprintRow {
        measurement: format!(
            "start-up (recovery) with {users} users on disk after SIGKILL (process start to /readyz 200)"
        ),
        value: format!("{:.2} s", recovery.as_secs_f64()),
        target: Some(Target::new(
            format!("< {} s at 1000000 users", MAX_RECOVERY_TIME.as_secs()),
            recovery < MAX_RECOVERY_TIME,
        )),
    });
    Ok(())
}

/// Without a durable throughput scenario (a quick run), the durable write
/// rate while loading users, against the setPresence ceiling of the same run.
fn note_durable_load_throughput(
    report: &mut Report,
    load: &crate::load::LoadOutcome,
    users: usize,
    connections: usize,
) {
    let measured_by_scenario = report
        .throughput
        .iter()
        .any(|row| row.scenario.starts_with("setPresence") && row.scenario.contains("embedded"));
    if measured_by_scenario {
        return;
    }
    let rate = users as f64 / load.measured.as_secs_f64().max(1e-9);
    let ceiling = report
        .throughput
        .iter()
        .find(|row| row.scenario.starts_with("setPresence") && row.server.starts_with("ceiling"))
        .map(|row| row.requests_per_second);
    let (value, target) = match ceiling {
        Some(ceiling) if ceiling > 0.0 => {
            let ratio = rate / ceiling;
            (
                format!("{rate:.0} req/s, {ratio:.2} × the setPresence ceiling"),
                Some(Target::new(
                    format!("≥ {MIN_DURABLE_SET_PRESENCE_RATIO:.2} × ceiling"),
                    ratio >= MIN_DURABLE_SET_PRESENCE_RATIO && load.errors() == 0,
                )),
            )
        }
        _ => (
            format!("{rate:.0} req/s (no ceiling measured in this run)"),
            None,
        ),
    };
    report.footprint.push(FootprintRow {
        measurement: format!(
            "durable setPresence throughput (embedded, strict) while loading {users} users, {connections} connections"
        ),
        value,
        target,
    });
}

/// The durable setPresence row of the throughput table, repeated among the
/// footprint with its own target: strict durability against the ceiling.
pub fn note_durable_throughput(report: &mut Report, connections: usize) {
    let row = report.throughput.iter().find(|row| {
        row.scenario.starts_with("setPresence")
            && row.scenario.contains("embedded")
            && row.is_maximum()
    });
    let Some(row) = row else { return };
    let ratio = row.ratio_to_ceiling.unwrap_or(0.0);
    let cpu = row
        .cpu_ratio_to_ceiling
        .map_or_else(String::new, |cpu| format!(", CPU {cpu:.2} × ceiling's"));
    let value = format!(
        "{:.0} req/s, {ratio:.2} × ceiling{cpu}, p99 {:.1} ms",
        row.requests_per_second,
        row.p99_micros as f64 / 1000.0
    );
    report.footprint.push(FootprintRow {
        measurement: format!(
            "durable setPresence throughput (embedded, strict: synced before answered), {connections} connections"
        ),
        value,
        target: Some(ceiling_targets(row, MIN_DURABLE_SET_PRESENCE_RATIO)),
    });
}

/// The most durable setPresence's p99 at half its maximum may be, as a
/// multiple of the in-memory store's p99 at half its own maximum in the
/// same run: a write waits for its sync, but group commit should keep that
/// wait within a small multiple of an in-memory answer.
pub const MAX_DURABLE_HALF_LOAD_P99_MULTIPLE: f64 = 3.0;

/// The durable setPresence's latency at half its maximum against the
/// in-memory store's at half its own, both from the throughput table of
/// this run; nothing when either was not measured (a quick run has no
/// durable scenario).
pub fn compare_durable_latency(report: &mut Report) {
    let (Some(memory), Some(durable)) = (
        report.half_load("setPresence", "presenced (memory)"),
        report.half_load("setPresence", "presenced (embedded, strict)"),
    ) else {
        return;
    };
    let row = durable_latency_row(memory, durable);
    report.footprint.push(row);
}

/// The footprint row of [`compare_durable_latency`] from the two open-loop
/// rows at half load.
fn durable_latency_row(memory: &ThroughputRow, durable: &ThroughputRow) -> FootprintRow {
    // A p99 is at least 1 µs: the histograms record no less.
    let multiple = durable.p99_micros as f64 / memory.p99_micros.max(1) as f64;
    let met = durable.p99_micros as f64
        <= MAX_DURABLE_HALF_LOAD_P99_MULTIPLE * memory.p99_micros as f64
        && durable.errors == 0
        && memory.errors == 0;
    FootprintRow {
        measurement: "durable setPresence p99 at 50% of its max (embedded, strict) vs in-memory \
                      setPresence p99 at 50% of its max (open loop each)"
            .into(),
        value: format!(
            "{} vs {} ({multiple:.2} ×; at {:.0} vs {:.0} requests/s)",
            format_micros(durable.p99_micros),
            format_micros(memory.p99_micros),
            durable.requests_per_second,
            memory.requests_per_second
        ),
        target: Some(Target::new(
            format!("≤ {MAX_DURABLE_HALF_LOAD_P99_MULTIPLE:.0} × memory's"),
            met,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{HALF_LOAD, MAXIMUM};

    fn row(scenario: &str, server: &str, p99_micros: u64, errors: u64) -> ThroughputRow {
        ThroughputRow {
            scenario: scenario.into(),
            server: server.into(),
            requests_per_second: 20_000.0,
            p50_micros: p99_micros / 2,
            p99_micros,
            p999_micros: p99_micros * 2,
            server_cpu_micros: None,
            ratio_to_ceiling: None,
            cpu_ratio_to_ceiling: None,
            errors,
            target: None,
            target_ratio: None,
        }
    }

    fn report(throughput: Vec<ThroughputRow>) -> Report {
        crate::report::test_report("presenced benchmark (full run)", throughput)
    }

    #[test]
    fn durable_p99_at_half_load_is_judged_against_three_times_memorys() {
        let memory = "setPresence, 100000 users (memory)";
        let durable = "setPresence, 100000 users (embedded, strict)";
        for (memory_p99, durable_p99, errors, value, met) in [
            (1_650, 4_210, 0, "4.210 ms vs 1.650 ms (2.55 ×", true),
            (1_500, 4_500, 0, "4.500 ms vs 1.500 ms (3.00 ×", true),
            (1_500, 4_501, 0, "4.501 ms vs 1.500 ms (3.00 ×", false),
            (1_000, 12_000, 0, "12.000 ms vs 1.000 ms (12.00 ×", false),
            (1_650, 4_210, 2, "4.210 ms vs 1.650 ms (2.55 ×", false),
        ] {
            // The closed-loop rows are there too, with other p99s: the
            // comparison takes the half-load ones.
            let mut report = report(vec![
                row(memory, &format!("presenced (memory){MAXIMUM}"), 99_000, 0),
                row(
                    memory,
                    &format!("presenced (memory){HALF_LOAD}"),
                    memory_p99,
                    0,
                ),
                row(
                    durable,
                    &format!("presenced (embedded, strict){MAXIMUM}"),
                    99_000,
                    0,
                ),
                row(
                    durable,
                    &format!("presenced (embedded, strict){HALF_LOAD}"),
                    durable_p99,
                    errors,
                ),
            ]);
            compare_durable_latency(&mut report);
            let [footprint] = report.footprint.as_slice() else {
                panic!("one row expected: {:?}", report.footprint);
            };
            assert!(footprint.value.starts_with(value), "{}", footprint.value);
            let target = footprint.target.as_ref().unwrap();
            assert_eq!(target.description, "≤ 3 × memory's");
            assert_eq!(target.met, met, "{}", footprint.value);
        }
    }

    #[test]
    fn no_durable_latency_row_without_both_half_load_rows() {
        let memory = "setPresence, 10000 users (memory)";
        let mut report = report(vec![
            row(memory, &format!("presenced (memory){MAXIMUM}"), 3_000, 0),
            row(memory, &format!("presenced (memory){HALF_LOAD}"), 1_500, 0),
        ]);
        compare_durable_latency(&mut report);
        assert!(report.footprint.is_empty());
    }

    #[test]
    fn gauges_are_read_by_exact_name() {
        let exposition = "# TYPE presenced_sessions gauge\n\
                          presenced_sessions_total_bogus 7\n\
                          presenced_users 1000000\n\
                          presenced_sessions 999999\n";
        assert_eq!(
            parse_metric(exposition, "presenced_sessions"),
            Some(999_999.0)
        );
        assert_eq!(
            parse_metric(exposition, "presenced_users"),
            Some(1_000_000.0)
        );
        assert_eq!(parse_metric(exposition, "presenced_missing"), None);
    }
}
