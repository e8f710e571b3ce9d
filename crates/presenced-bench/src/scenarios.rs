//! The throughput scenarios, their data, and how each is run against
//! presenced and then against the ceiling.
//!
//! A scenario is data ([`ThroughputScenario`]): a name, the server variant it
//! runs on (a label and extra `presenced serve` arguments, so the durable
//! store and hs256 auth can be added as variants later), a request
//! generator, a sample request (whose answer sizes the ceiling's), and its
//! targets. [`run_throughput_scenario`] does the same thing for every one:
//!
//! 1. start presenced, preload the users (not measured);
//! 2. send the sample request once and note the answer's size;
//! 3. closed loop: maximum throughput and its latencies;
//! 4. open loop at 50% of that throughput: latency at a moderate load;
//! 5. stop presenced, start the ceiling answering the same number of bytes,
//!    and run step 3 again with the same connections, duration and requests.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hyper::Uri;
use hyper::header::HeaderValue;

use crate::Context;
use crate::load::{
    LoadOutcome, LoadPlan, Pacing, Protocol, RequestGenerator, RequestSpec, SequenceGenerator,
    Xorshift64, run_load, run_sequence, send_once_over,
};
use crate::process::ServerProcess;
use crate::redis::RedisDeployment;
use crate::report::{HALF_LOAD, MAXIMUM, Report, Target, ThroughputRow};

/// The one application that sets everybody's presence. With `--auth none`
/// the caller is an application without an app id, so any session id is
/// accepted; a GUID is what a real application's id looks like.
pub const APP_SESSION_ID: &str = "5e55107a-99b0-4c2e-8d4f-b3a1c0ffee01";

/// The user id of user number `index`: GUID-shaped (8-4-4-4-12 lowercase
/// hex), because that is what Graph's user ids are and what presenced packs
/// into 16 bytes. The low 64 bits are the index itself, so ids are unique;
/// the high 64 bits are scrambled so they do not all share a prefix.
pub fn user_guid(index: u64) -> String {
    let high = crate::load::splitmix64(index);
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        high >> 32,
        (high >> 16) & 0xffff,
        high & 0xffff,
        index >> 48,
        index & 0xffff_ffff_ffff
    )
}

fn uri(text: String) -> Uri {
    Uri::try_from(text).expect("user GUIDs make valid paths")
}

pub fn presence_uri(index: u64) -> Uri {
    uri(format!("/v1.0/users/{}/presence", user_guid(index)))
}

pub fn set_presence_uri(index: u64) -> Uri {
    uri(format!(
        "/v1.0/users/{}/presence/setPresence",
        user_guid(index)
    ))
}

/// The setPresence body of the benchmark's application: Available for
/// `expiration` (an ISO 8601 duration).
pub fn set_presence_body(expiration: &str) -> Bytes {
    Bytes::from(format!(
        r#"{{"sessionId":"{APP_SESSION_ID}","availability":"Available","activity":"Available","expirationDuration":"{expiration}"}}"#
    ))
}

/// Sets users `0..users` Available for four hours, one app session each,
/// through the load generator at full speed. Fails if any request fails:
/// a scenario on half-loaded data would measure the wrong thing.
pub async fn preload_users(
    server: &mut ServerProcess,
    connections: usize,
    users: usize,
) -> Result<LoadOutcome, String> {
    preload_users_as(server, connections, users, None).await
}

/// [`preload_users`] with an `Authorization` header on every request.
pub async fn preload_users_as(
    server: &mut ServerProcess,
    connections: usize,
    users: usize,
    authorization: Option<HeaderValue>,
) -> Result<LoadOutcome, String> {
    // presenced answers 503 until its store is loaded.
    server.wait_until_ready().await?;
    let body = set_presence_body("PT4H");
    let generator: SequenceGenerator = Arc::new(move |index| {
        RequestSpec::post_json(set_presence_uri(index as u64), body.clone())
            .with_authorization(authorization.as_ref())
    });
    let outcome = run_sequence(server.address(), connections, users, generator).await?;
    if outcome.errors() > 0 {
        return Err(format!(
            "preloading {users} users: {} requests failed; the first: {}",
            outcome.errors(),
            outcome.first_failure.as_deref().unwrap_or("?")
        ));
    }
    Ok(outcome)
}

/// What `presenced serve` runs with for a set of scenarios, and the label
/// that names it in the table.
#[derive(Clone, Debug)]
pub struct ServerVariant {
    pub label: String,
    pub server_args: Vec<String>,
    /// Sent with every request, when the variant checks tokens.
    pub authorization: Option<HeaderValue>,
    /// Which scenarios run on this variant.
    pub parts: Vec<Part>,
    /// Give every server started for this variant a new, empty
    /// `--data-dir`, removed when it stops (the embedded store).
    pub fresh_data_dir: bool,
    /// The Redis the variant stores in (`--store redis`): emptied before
    /// every server of the variant starts, so that each scenario starts
    /// from nothing as on the other stores.
    pub redis: Option<Arc<RedisDeployment>>,
}

impl ServerVariant {
    /// The in-memory store with the system clock and no authentication.
    pub fn memory() -> ServerVariant {
        ServerVariant {
            label: "memory".into(),
            server_args: ["--store", "memory"].map(String::from).to_vec(),
            authorization: None,
            parts: vec![
                Part::SetPresence,
                Part::GetPresence,
                Part::GetPresenceH2c,
                Part::Batch,
                Part::Mixed,
            ],
            fresh_data_dir: false,
            redis: None,
        }
    }

    /// The durable embedded store, strict durability (every write synced
    /// before it is answered), on a fresh data directory per run.
    pub fn embedded() -> ServerVariant {
        ServerVariant {
            label: "embedded, strict".into(),
            server_args: ["--store", "embedded", "--durability", "strict"]
                .map(String::from)
                .to_vec(),
            authorization: None,
            parts: vec![
                Part::SetPresence,
                Part::GetPresence,
                Part::Batch,
                Part::Mixed,
            ],
            fresh_data_dir: true,
            redis: None,
        }
    }

    /// Starts presenced as this variant (with its own data directory when
    /// the variant wants a fresh one).
    pub fn start(&self, label: &str, program: &std::path::Path) -> Result<ServerProcess, String> {
        if let Some(redis) = &self.redis {
            redis.flush()?;
        }
        let mut args = self.serve_args();
        if !self.fresh_data_dir {
            return ServerProcess::start(label, program, &args);
        }
        let dir = crate::process::fresh_data_dir(label)?;
        args.extend(["--data-dir".to_string(), dir.display().to_string()]);
        match ServerProcess::start(label, program, &args) {
            Ok(server) => Ok(server.owning_data_dir(dir)),
            Err(error) => {
                let _ = std::fs::remove_dir_all(&dir);
                Err(error)
            }
        }
    }

    /// The in-memory store behind `--auth hs256`: every request carries an
    /// application token of the benchmark's app, minted by `presenced
    /// token`. Only the single-user scenarios: what it measures is the cost
    /// of verifying a token per request.
    pub fn memory_hs256(presenced: &std::path::Path) -> Result<ServerVariant, String> {
        let secret = "the presenced-bench hs256 secret, 32+ bytes";
        let output = std::process::Command::new(presenced)
            .args(["token", "--tenant", "bench", "--app", APP_SESSION_ID])
            .args([
                "--roles",
                "Presence.ReadWrite.All",
                "--ttl",
                "P1D",
                "--secret",
                secret,
            ])
            .output()
            .map_err(|error| format!("cannot run presenced token: {error}"))?;
        if !output.status.success() {
            return Err(format!(
                "presenced token failed: {}",
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        let token = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        let authorization = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|error| format!("presenced token printed an unusable token: {error}"))?;
        Ok(ServerVariant {
            label: "memory, hs256".into(),
            server_args: [
                "--store",
                "memory",
                "--auth",
                "hs256",
                "--jwt-secret",
                secret,
                // Graph's limit would refuse most of a closed loop; what
                // a limit costs is measured by the variant below.
                "--throttle-app",
                "off",
            ]
            .map(String::from)
            .to_vec(),
            authorization: Some(authorization),
            parts: vec![Part::SetPresence, Part::GetPresence],
            fresh_data_dir: false,
            redis: None,
        })
    }

    /// [`ServerVariant::memory_hs256`] with both throttling limits on, per
    /// application and per tenant, so high that nothing is refused: what
    /// counting every request costs. GET presence only.
    pub fn memory_hs256_throttled(presenced: &std::path::Path) -> Result<ServerVariant, String> {
        let mut variant = ServerVariant::memory_hs256(presenced)?;
        variant.label = "memory, hs256, throttled".into();
        variant.server_args.truncate(variant.server_args.len() - 2);
        variant.server_args.extend(
            [
                "--throttle-app",
                UNREACHED_LIMIT,
                "--throttle-tenant",
                UNREACHED_LIMIT,
            ]
            .map(String::from),
        );
        variant.parts = vec![Part::GetPresence];
        Ok(variant)
    }

    /// The full `presenced ...` argument list.
    pub fn serve_args(&self) -> Vec<String> {
        let mut args = ["serve", "--listen", "127.0.0.1:0"]
            .map(String::from)
            .to_vec();
        args.extend(self.server_args.iter().cloned());
        args
    }
}

/// A throttling limit no closed loop here reaches: a billion a second.
const UNREACHED_LIMIT: &str = "1000000000/PT1S";

/// Which scenario, as named on the command line (`--only`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    /// setPresence of random users.
    SetPresence,
    /// GET presence of random users.
    GetPresence,
    /// GET presence of random users over HTTP/2 in plain text (h2c), each
    /// load connection with one stream at a time, against a ceiling that
    /// speaks h2c too.
    GetPresenceH2c,
    /// getPresencesByUserId with 650 random ids.
    Batch,
    /// 90% GET presence, 10% setPresence.
    Mixed,
    /// Resident memory per user, idle scheduler CPU, and the embedded store's
    /// bytes on disk per user, recovery time and durable write throughput.
    Footprint,
    /// 100k fades due at the same instant.
    Fades,
    /// Start-up: on an empty data directory, and recovering 1M users after SIGKILL.
    Startup,
    /// 100k subscribed users fading at once: the lag of their change
    /// notifications to a local receiver.
    Notifications,
    /// One presenced over Redis (a standalone Redis, async; a 3+3 cluster,
    /// replicated): setPresence, GET and getPresencesByUserId(650) against
    /// the ceiling, Redis's own cost per request, and Redis memory per user.
    Redis,
    /// Three presenced nodes over one Redis: 100k fades due at once with
    /// their notification lag, and the takeover after kill -9 of a node.
    RedisNodes,
    /// The reconnect storm: 100k users set their presence three times at
    /// full speed while 1,000 streams of 100 users each are dropped and
    /// reconnect with Last-Event-ID, and webhook receivers follow them all:
    /// p99, errors, peak memory, and that every stream and receiver ends
    /// with each user's final presence.
    Storm,
    /// The board (`/_presenced/board`) in headless Chromium with 10,000
    /// users: first paint, the latency of a change to a card on screen, the
    /// longest frame while 1,000 setPresence a second arrive, and the
    /// page's JS heap.
    Board,
}

/// One throughput scenario on one server variant.
pub struct ThroughputScenario {
    pub part: Part,
    pub name: String,
    pub variant: ServerVariant,
    /// What the load generator, the sample and the ceiling speak.
    pub protocol: Protocol,
    pub generator: RequestGenerator,
    /// Sent once before measuring; its answer's size is what the ceiling
    /// answers every request with.
    pub sample: RequestSpec,
    /// Why the sample stands for the whole scenario, when it is not obvious.
    pub ceiling_note: Option<String>,
    /// Minimum fraction of the ceiling's requests/s; it sets the most
    /// server CPU per request too ([`max_cpu_ratio`]).
    pub ratio_target: Option<f64>,
    /// Whether to run the open loop at 50% of the maximum.
    pub half_load: bool,
    /// Maximum p99 latency in that run.
    pub half_load_p99_target: Option<Duration>,
}

impl std::fmt::Debug for ThroughputScenario {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("ThroughputScenario")
            .field("name", &self.name)
            .field("variant", &self.variant)
            .finish_non_exhaustive()
    }
}

/// The scenarios of the issue, on `variant`, over `users` preloaded users.
pub fn throughput_scenarios(
    variant: &ServerVariant,
    users: usize,
    batch_ids: usize,
) -> Vec<ThroughputScenario> {
    // Paths precomputed: the load generator has one core, and formatting a
    // GUID per request would be work the ceiling run repeats but that
    // competes with sending.
    let presence_uris: Arc<Vec<Uri>> = Arc::new((0..users as u64).map(presence_uri).collect());
    let set_presence_uris: Arc<Vec<Uri>> =
        Arc::new((0..users as u64).map(set_presence_uri).collect());
    let set_body = set_presence_body("PT1H");

    let random_set: RequestGenerator = {
        let uris = set_presence_uris.clone();
        let body = set_body.clone();
        Arc::new(move |random: &mut Xorshift64| {
            RequestSpec::post_json(uris[random.below(uris.len())].clone(), body.clone())
        })
    };
    let random_get: RequestGenerator = {
        let uris = presence_uris.clone();
        Arc::new(move |random: &mut Xorshift64| {
            RequestSpec::get(uris[random.below(uris.len())].clone())
        })
    };
    let batch_pool = Arc::new(batch_bodies(users, batch_ids, 256));
    let batch_uri = Uri::from_static("/v1.0/communications/getPresencesByUserId");
    let random_batch: RequestGenerator = {
        let pool = batch_pool.clone();
        let uri = batch_uri.clone();
        Arc::new(move |random: &mut Xorshift64| {
            RequestSpec::post_json(uri.clone(), pool[random.below(pool.len())].clone())
        })
    };
    let mixed: RequestGenerator = {
        let (random_get, random_set) = (random_get.clone(), random_set.clone());
        Arc::new(move |random: &mut Xorshift64| {
            if random.below(10) == 0 {
                random_set(random)
            } else {
                random_get(random)
            }
        })
    };
    let authorize = |generator: RequestGenerator| -> RequestGenerator {
        match variant.authorization.clone() {
            None => generator,
            Some(authorization) => Arc::new(move |random: &mut Xorshift64| {
                generator(random).with_authorization(Some(&authorization))
            }),
        }
    };
    let (random_set, random_get, random_batch, mixed) = (
        authorize(random_set),
        authorize(random_get),
        authorize(random_batch),
        authorize(mixed),
    );
    let authorization = variant.authorization.as_ref();
    let label = &variant.label;
    let all = vec![
        ThroughputScenario {
            part: Part::SetPresence,
            name: format!("setPresence, {users} users ({label})"),
            variant: variant.clone(),
            protocol: Protocol::Http1,
            generator: random_set,
            sample: RequestSpec::post_json(set_presence_uris[0].clone(), set_body)
                .with_authorization(authorization),
            ceiling_note: None,
            ratio_target: Some(0.85),
            half_load: true,
            half_load_p99_target: Some(Duration::from_millis(2)),
        },
        ThroughputScenario {
            part: Part::GetPresence,
            name: format!("GET presence, {users} users ({label})"),
            variant: variant.clone(),
            protocol: Protocol::Http1,
            generator: random_get.clone(),
            sample: RequestSpec::get(presence_uris[0].clone()).with_authorization(authorization),
            ceiling_note: None,
            ratio_target: Some(0.85),
            half_load: true,
            half_load_p99_target: Some(Duration::from_millis(2)),
        },
        ThroughputScenario {
            part: Part::GetPresenceH2c,
            name: format!("GET presence over h2c, {users} users ({label})"),
            variant: variant.clone(),
            protocol: Protocol::Http2,
            generator: random_get,
            sample: RequestSpec::get(presence_uris[0].clone()).with_authorization(authorization),
            ceiling_note: None,
            ratio_target: None,
            half_load: false,
            half_load_p99_target: None,
        },
        ThroughputScenario {
            part: Part::Batch,
            name: format!("getPresencesByUserId({batch_ids}) ({label})"),
            variant: variant.clone(),
            protocol: Protocol::Http1,
            generator: random_batch,
            sample: RequestSpec::post_json(batch_uri, batch_pool[0].clone())
                .with_authorization(authorization),
            ceiling_note: None,
            ratio_target: Some(0.5),
            half_load: true,
            half_load_p99_target: Some(Duration::from_millis(2)),
        },
        ThroughputScenario {
            part: Part::Mixed,
            name: format!("mixed 90% GET / 10% set ({label})"),
            variant: variant.clone(),
            protocol: Protocol::Http1,
            generator: mixed,
            sample: RequestSpec::get(presence_uris[0].clone()).with_authorization(authorization),
            ceiling_note: Some(
                "the ceiling answers every mixed request with the size of a GET presence answer \
                 (90% of the requests are GETs; setPresence answers are empty)"
                    .into(),
            ),
            ratio_target: Some(0.85),
            half_load: true,
            half_load_p99_target: Some(Duration::from_millis(2)),
        },
    ];
    all.into_iter()
        .filter(|scenario| variant.parts.contains(&scenario.part))
        .collect()
}

/// `pool` getPresencesByUserId bodies of `ids` distinct random users each
/// (from a fixed seed, so every run sends the same ones). A pool rather than
/// a fresh body per request, because formatting 650 GUIDs would cost the
/// one-core load generator more than sending them.
pub fn batch_bodies(users: usize, ids: usize, pool: usize) -> Vec<Bytes> {
    let ids = ids.min(users);
    let mut random = Xorshift64::seeded(650);
    (0..pool)
        .map(|_| {
            let mut chosen = std::collections::HashSet::with_capacity(ids);
            while chosen.len() < ids {
                chosen.insert(random.below(users) as u64);
            }
            let quoted: Vec<String> = chosen
                .into_iter()
                .map(|index| format!("\"{}\"", user_guid(index)))
                .collect();
            Bytes::from(format!("{{\"ids\":[{}]}}", quoted.join(",")))
        })
        .collect()
}

fn load_row(
    scenario: &ThroughputScenario,
    server: String,
    outcome: &LoadOutcome,
    ratio_to_ceiling: Option<f64>,
    target: Option<Target>,
) -> ThroughputRow {
    ThroughputRow {
        scenario: scenario.name.clone(),
        server,
        requests_per_second: outcome.requests_per_second(),
        p50_micros: outcome.latency_at(0.5),
        p99_micros: outcome.latency_at(0.99),
        p999_micros: outcome.latency_at(0.999),
        server_cpu_micros: outcome.server_cpu_micros_per_request(),
        ratio_to_ceiling,
        cpu_ratio_to_ceiling: None,
        errors: outcome.errors(),
        target,
        target_ratio: None,
    }
}

/// The most server CPU per request a closed-loop row may take, as a
/// multiple of its ceiling's, when its requests/s must reach
/// `minimum_ratio` of the ceiling's: 1 / `minimum_ratio`. A server bound by
/// its CPU answers in inverse proportion to its CPU per request, so this
/// is the same margin counted in CPU, which the machine's noise and the
/// one-core load generator move less than requests/s. Rounded to two
/// decimals, as the table prints it, so that the bound a reader sees is
/// the one checked: ≥ 0.85 × ceiling gives CPU ≤ 1.18 ×.
pub fn max_cpu_ratio(minimum_ratio: f64) -> f64 {
    (100.0 / minimum_ratio).round() / 100.0
}

/// The targets of a closed-loop row whose requests/s must reach
/// `minimum_ratio` of its ceiling's: that, and its server CPU per request
/// at most [`max_cpu_ratio`] of the ceiling's, each with its own verdict.
/// Both are missed when a request failed or the ratio was not measured.
pub fn ceiling_targets(row: &ThroughputRow, minimum_ratio: f64) -> Target {
    let clean = row.errors == 0;
    let maximum_cpu = max_cpu_ratio(minimum_ratio);
    Target::new(
        format!("≥ {minimum_ratio:.2} × ceiling"),
        clean
            && row
                .ratio_to_ceiling
                .is_some_and(|ratio| ratio >= minimum_ratio),
    )
    .and(Target::new(
        format!("CPU ≤ {maximum_cpu:.2} × ceiling's"),
        clean
            && row
                .cpu_ratio_to_ceiling
                .is_some_and(|ratio| ratio <= maximum_cpu),
    ))
}

fn note_failures(report: &mut Report, who: &str, outcome: &LoadOutcome) {
    if outcome.errors() > 0 {
        report.failures.push(format!(
            "{who}: {} requests failed ({} non-2xx, {} without an answer); the first: {}",
            outcome.errors(),
            outcome.failed_status,
            outcome.failed_transport,
            outcome.first_failure.as_deref().unwrap_or("?")
        ));
    }
}

fn progress(scenario: &ThroughputScenario, message: &str) {
    println!("[{}] {message}", scenario.name);
}

fn summary(outcome: &LoadOutcome) -> String {
    let cpu = outcome
        .server_cpu_micros_per_request()
        .map_or_else(String::new, |micros| {
            format!(", {micros:.1} µs server CPU per request")
        });
    format!(
        "{:.0} req/s, p50 {:.3} ms, p99 {:.3} ms, {} errors{cpu}",
        outcome.requests_per_second(),
        outcome.latency_at(0.5) as f64 / 1000.0,
        outcome.latency_at(0.99) as f64 / 1000.0,
        outcome.errors()
    )
}

/// Runs one scenario as described at the top of this file and adds its rows
/// (presenced, presenced at half load, ceiling) to `report`.
pub async fn run_throughput_scenario(
    context: &Context,
    scenario: &ThroughputScenario,
    report: &mut Report,
) -> Result<(), String> {
    let settings = &context.settings;
    let closed_loop = LoadPlan {
        connections: settings.connections,
        warmup: settings.warmup,
        measure: settings.measure,
        pacing: Pacing::ClosedLoop,
        protocol: scenario.protocol,
    };
    let presenced_label = format!("presenced ({})", scenario.variant.label);

    // 1. presenced with its users.
    let mut presenced = scenario
        .variant
        .start(&presenced_label, &context.presenced_binary)?;
    let preload = preload_users_as(
        &mut presenced,
        settings.connections,
        settings.scenario_users,
        scenario.variant.authorization.clone(),
    )
    .await?;
    progress(
        scenario,
        &format!(
            "{presenced_label}: preloaded {} users in {:.1} s",
            settings.scenario_users,
            preload.measured.as_secs_f64()
        ),
    );

    // 2. The answer size the ceiling must match.
    let sample = send_once_over(presenced.address(), scenario.protocol, &scenario.sample).await?;
    if !sample.status.is_success() {
        return Err(format!(
            "{}: the sample request {} {} answered {}: {}",
            scenario.name,
            scenario.sample.method,
            scenario.sample.uri,
            sample.status,
            String::from_utf8_lossy(&sample.body)
        ));
    }
    let body_bytes = sample.body.len();
    let header_bytes = sample.header_bytes();
    let entries = serde_json::from_slice::<serde_json::Value>(&sample.body)
        .ok()
        .and_then(|json| json["value"].as_array().map(Vec::len))
        .map_or_else(String::new, |count| format!(", {count} entries"));
    progress(
        scenario,
        &format!(
            "sample answer: {}, {body_bytes}-byte body{entries}, {header_bytes} bytes of headers",
            sample.status
        ),
    );

    // 3. Maximum throughput.
    let maximum = run_load(
        presenced.address(),
        closed_loop,
        scenario.generator.clone(),
        Some(presenced.pid()),
    )
    .await?;
    presenced.ensure_running()?;
    progress(
        scenario,
        &format!("{presenced_label}, closed loop: {}", summary(&maximum)),
    );
    note_failures(
        report,
        &format!("{} on {presenced_label}", scenario.name),
        &maximum,
    );

    // 4. Latency at half of it.
    let half_load = if scenario.half_load && maximum.requests_per_second() > 0.0 {
        let rate = settings.open_loop_rate_for(maximum.requests_per_second());
        let plan = LoadPlan {
            pacing: Pacing::OpenLoop {
                requests_per_second: rate,
            },
            ..closed_loop
        };
        let outcome = run_load(presenced.address(), plan, scenario.generator.clone(), None).await?;
        presenced.ensure_running()?;
        progress(
            scenario,
            &format!(
                "{presenced_label}, open loop at {rate:.0} req/s: {}",
                summary(&outcome)
            ),
        );
        note_failures(
            report,
            &format!("{} on {presenced_label} at 50% load", scenario.name),
            &outcome,
        );
        Some((outcome, scenario.half_load_p99_target))
    } else {
        None
    };
    let failed = maximum.errors()
        + half_load
            .as_ref()
            .map_or(0, |(outcome, _)| outcome.errors());
    if failed > 0 {
        report.notes.push(format!(
            "{}: presenced's log (its warnings say why requests failed) is kept at {}",
            scenario.name,
            presenced.keep_log().display()
        ));
    }
    // The ceiling must not share the CPU with an idle presenced.
    drop(presenced);

    // 5. The ceiling, same connections, same requests.
    let mut ceiling_args: Vec<String> = vec![
        "ceiling".into(),
        "--listen".into(),
        "127.0.0.1:0".into(),
        "--body-bytes".into(),
        body_bytes.to_string(),
        "--header-bytes".into(),
        header_bytes.to_string(),
    ];
    if scenario.protocol == Protocol::Http2 {
        ceiling_args.push("--http2".into());
    }
    let ceiling = ServerProcess::start("ceiling", &context.bench_binary, &ceiling_args)?;
    let ceiling_sample =
        send_once_over(ceiling.address(), scenario.protocol, &scenario.sample).await?;
    if ceiling_sample.body.len() != body_bytes || ceiling_sample.header_bytes() != header_bytes {
        report.notes.push(format!(
            "{}: the ceiling answered {} body bytes and {} header bytes for presenced's {} and {}",
            scenario.name,
            ceiling_sample.body.len(),
            ceiling_sample.header_bytes(),
            body_bytes,
            header_bytes
        ));
    }
    let ceiling_outcome = run_load(
        ceiling.address(),
        closed_loop,
        scenario.generator.clone(),
        Some(ceiling.pid()),
    )
    .await?;
    drop(ceiling);
    progress(scenario, &format!("ceiling: {}", summary(&ceiling_outcome)));
    note_failures(
        report,
        &format!("{} on the ceiling", scenario.name),
        &ceiling_outcome,
    );

    let ratio = (ceiling_outcome.requests_per_second() > 0.0)
        .then(|| maximum.requests_per_second() / ceiling_outcome.requests_per_second());
    let mut ceiling_row = load_row(
        scenario,
        format!("ceiling ({body_bytes} B body, {header_bytes} B headers)"),
        &ceiling_outcome,
        Some(1.0),
        None,
    );
    ceiling_row.cpu_ratio_to_ceiling = ceiling_row.cpu_ratio_to(&ceiling_row);
    let mut maximum_row = load_row(
        scenario,
        format!("{presenced_label}{MAXIMUM}"),
        &maximum,
        ratio,
        None,
    );
    maximum_row.cpu_ratio_to_ceiling = maximum_row.cpu_ratio_to(&ceiling_row);
    if let Some(minimum) = scenario.ratio_target {
        maximum_row.target = Some(ceiling_targets(&maximum_row, minimum));
        maximum_row.target_ratio = Some(minimum);
    }
    report.throughput.push(maximum_row);
    if let Some((outcome, target)) = half_load {
        let target = target.map(|target| {
            let met = Duration::from_micros(outcome.latency_at(0.99)) < target
                && outcome.errors() == 0
                && outcome.succeeded > 0;
            Target::new(format!("p99 < {} ms", target.as_millis()), met)
        });
        report.throughput.push(load_row(
            scenario,
            format!("{presenced_label}{HALF_LOAD}"),
            &outcome,
            None,
            target,
        ));
    }
    report.throughput.push(ceiling_row);
    if let Some(note) = &scenario.ceiling_note {
        report.notes.push(format!("{}: {note}", scenario.name));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_are_unique_lowercase_guids() {
        let mut seen = std::collections::HashSet::new();
        for index in (0..10_000).chain([u64::MAX, 1 << 48, (1 << 48) - 1]) {
            let id = user_guid(index);
            let groups: Vec<&str> = id.split('-').collect();
            let lengths: Vec<usize> = groups.iter().map(|group| group.len()).collect();
            assert_eq!(lengths, [8, 4, 4, 4, 12], "{id}");
            assert!(
                id.chars()
                    .all(|c| c == '-' || c.is_ascii_digit() || ('a'..='f').contains(&c)),
                "{id}"
            );
            assert!(seen.insert(id));
        }
        assert_eq!(&user_guid(0xabc)[24..], "000000000abc");
    }

    #[test]
    fn batch_bodies_hold_distinct_ids_of_preloaded_users() {
        let bodies = batch_bodies(1_000, 650, 3);
        assert_eq!(bodies.len(), 3);
        let known: std::collections::HashSet<String> = (0..1_000).map(user_guid).collect();
        for body in bodies {
            let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let ids: std::collections::HashSet<&str> = json["ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|id| id.as_str().unwrap())
                .collect();
            assert_eq!(ids.len(), 650);
            assert!(ids.iter().all(|id| known.contains(*id)));
        }
    }

    #[test]
    fn each_scenario_carries_its_targets() {
        let scenarios = throughput_scenarios(&ServerVariant::memory(), 1_000, 650);
        let targets: Vec<(Part, Option<f64>, Option<u128>)> = scenarios
            .iter()
            .map(|scenario| {
                (
                    scenario.part,
                    scenario.ratio_target,
                    scenario
                        .half_load_p99_target
                        .map(|target| target.as_millis()),
                )
            })
            .collect();
        assert_eq!(
            targets,
            [
                (Part::SetPresence, Some(0.85), Some(2)),
                (Part::GetPresence, Some(0.85), Some(2)),
                (Part::GetPresenceH2c, None, None),
                (Part::Batch, Some(0.5), Some(2)),
                (Part::Mixed, Some(0.85), Some(2)),
            ]
        );
    }

    #[test]
    fn the_cpu_bound_is_the_inverse_of_the_ratio_as_printed() {
        for (minimum_ratio, maximum_cpu) in [(0.85, 1.18), (0.6, 1.67), (0.5, 2.0), (0.9, 1.11)] {
            assert_eq!(max_cpu_ratio(minimum_ratio), maximum_cpu, "{minimum_ratio}");
        }
    }

    /// A closed-loop row's targets at `minimum_ratio`: each one's
    /// description and verdict, the requests/s one first.
    fn verdicts(
        ratio: Option<f64>,
        cpu_ratio: Option<f64>,
        errors: u64,
        minimum_ratio: f64,
    ) -> Vec<(String, bool)> {
        let row = ThroughputRow {
            scenario: "GET presence, 1000 users (memory)".into(),
            server: format!("presenced (memory){MAXIMUM}"),
            requests_per_second: 40_000.0,
            p50_micros: 500,
            p99_micros: 1_500,
            p999_micros: 3_000,
            server_cpu_micros: Some(20.0),
            ratio_to_ceiling: ratio,
            cpu_ratio_to_ceiling: cpu_ratio,
            errors,
            target: None,
            target_ratio: None,
        };
        let target = ceiling_targets(&row, minimum_ratio);
        std::iter::once(&target)
            .chain(&target.also)
            .map(|target| (target.description.clone(), target.met))
            .collect()
    }

    #[test]
    fn requests_per_second_and_cpu_are_judged_apart() {
        let both = |ratio: bool, cpu: bool| {
            vec![
                ("≥ 0.85 × ceiling".to_string(), ratio),
                ("CPU ≤ 1.18 × ceiling's".to_string(), cpu),
            ]
        };
        for (ratio, cpu_ratio, errors, expected) in [
            (Some(0.90), Some(1.10), 0, both(true, true)),
            (Some(0.85), Some(1.18), 0, both(true, true)),
            (Some(0.80), Some(1.10), 0, both(false, true)),
            (Some(0.90), Some(1.38), 0, both(true, false)),
            (Some(0.70), Some(1.40), 0, both(false, false)),
            // A failed request fails both; so does a side not measured.
            (Some(0.90), Some(1.10), 1, both(false, false)),
            (None, Some(1.10), 0, both(false, true)),
            (Some(0.90), None, 0, both(true, false)),
        ] {
            assert_eq!(
                verdicts(ratio, cpu_ratio, errors, 0.85),
                expected,
                "{ratio:?} {cpu_ratio:?} {errors}"
            );
        }
        assert_eq!(
            verdicts(Some(0.62), Some(1.70), 0, 0.6),
            vec![
                ("≥ 0.60 × ceiling".to_string(), true),
                ("CPU ≤ 1.67 × ceiling's".to_string(), false),
            ]
        );
    }

    #[test]
    fn the_set_presence_body_is_the_documented_shape() {
        let json: serde_json::Value = serde_json::from_slice(&set_presence_body("PT4H")).unwrap();
        assert_eq!(json["sessionId"], APP_SESSION_ID);
        assert_eq!(json["availability"], "Available");
        assert_eq!(json["activity"], "Available");
        assert_eq!(json["expirationDuration"], "PT4H");
    }
}
