//! presenced over Redis (`--store redis`): the same throughput scenarios
//! through one presenced node, what each request costs Redis, and Redis's
//! memory per user.
//!
//! Redis runs as real `redis-server` processes started by
//! `presenced-testkit` on loopback ports (killed when dropped), in two
//! set-ups ([`SETUPS`]): one standalone Redis with `--redis-durability
//! async`, and a Redis Cluster of 3 primaries and 3 replicas with the
//! default `replicated` durability. For each:
//!
//! 1. the throughput scenarios, run exactly like the in-memory ones (the
//!    Redis is emptied before every presenced starts);
//! 2. the cost per request ([`measure_costs`]): fixed numbers of requests of
//!    each kind through one presenced, with presenced's
//!    `presenced_redis_round_trips_total` and `presenced_redis_commands_total`
//!    and every Redis node's `INFO` (CPU, commands executed, commandstats)
//!    read before and after, less what the same processes do idle over the
//!    same span (presenced polls Redis while it waits).
//!
//! Then [`measure_memory`]: users loaded into a fresh standalone Redis,
//! `used_memory` before and after, and the change streams (`*chg`, bounded
//! by length) measured apart with `SCAN MATCH` and `MEMORY USAGE`.
//!
//! `presenced-testkit` reports failures by panicking; [`guarded`] turns
//! those into errors, so a Redis that cannot start fails its part of the
//! report, not the harness.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::Uri;
use presenced_testkit::{RedisCluster, RedisServer};

use crate::footprint::parse_metric;
use crate::load::{RequestSpec, SequenceGenerator, run_sequence, send_once};
use crate::process::ServerProcess;
use crate::report::{FootprintRow, Report, Target};
use crate::scenarios::{
    APP_SESSION_ID, Part, ServerVariant, batch_bodies, preload_users, presence_uri,
    set_presence_body, set_presence_uri, throughput_scenarios,
};
use crate::{Context, Settings};

/// The issue's target for facts and indexes, the change streams apart.
const MAX_BYTES_PER_USER: f64 = 300.0;

/// presenced's count of sessions, with its default key prefix `pd`.
const SESSIONS_KEY: &str = "{pd}sessions";

/// Runs a `presenced-testkit` call (which panics when Redis misbehaves) as a
/// `Result`. The panic's message is the error; the default hook has also
/// printed it, with its location.
fn guarded<T>(what: &str, call: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(call)).map_err(|panic| {
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|text| text.to_string()))
            .unwrap_or_else(|| "(a panic without a message)".into());
        format!("{what}: {message}")
    })
}

#[derive(Debug)]
enum Servers {
    Standalone(RedisServer),
    Cluster(RedisCluster),
}

/// The Redis processes of one set-up, stopped (SIGKILL) when dropped.
#[derive(Debug)]
pub struct RedisDeployment {
    servers: Servers,
    /// The ports of the primaries and the replicas, as they were at the
    /// start (nothing here fails a node over).
    primaries: Vec<u16>,
    replicas: Vec<u16>,
}

/// Which Redis a set-up starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Topology {
    Standalone,
    /// A Redis Cluster of this many primaries with one replica each.
    Cluster {
        primaries: usize,
    },
}

impl RedisDeployment {
    pub fn start(topology: Topology) -> Result<RedisDeployment, String> {
        let servers = match topology {
            Topology::Standalone => Servers::Standalone(guarded(
                "starting a standalone redis-server",
                RedisServer::start,
            )?),
            Topology::Cluster { primaries } => Servers::Cluster(guarded(
                &format!("starting a Redis Cluster of {primaries} primaries and 1 replica each"),
                || RedisCluster::start(primaries, 1),
            )?),
        };
        let (primaries, replicas) = match &servers {
            Servers::Standalone(server) => (vec![server.port()], Vec::new()),
            Servers::Cluster(cluster) => {
                let primaries = guarded("reading the cluster's primaries", || {
                    cluster.primary_ports()
                })?;
                let replicas = cluster
                    .ports()
                    .into_iter()
                    .filter(|port| !primaries.contains(port))
                    .collect();
                (primaries, replicas)
            }
        };
        Ok(RedisDeployment {
            servers,
            primaries,
            replicas,
        })
    }

    /// The seed URLs to give presenced: the standalone server, or every
    /// node of the cluster.
    pub fn urls(&self) -> Vec<String> {
        match &self.servers {
            Servers::Standalone(server) => vec![server.url()],
            Servers::Cluster(cluster) => cluster.urls(),
        }
    }

    /// `--store redis`, a `--redis-url` per seed, and the durability.
    pub fn store_args(&self, durability: &str) -> Vec<String> {
        let mut args = vec!["--store".to_string(), "redis".to_string()];
        for url in self.urls() {
            args.extend(["--redis-url".to_string(), url]);
        }
        args.extend(["--redis-durability".to_string(), durability.to_string()]);
        args
    }

    /// The ports of the primaries (the standalone server is one).
    pub fn primaries(&self) -> &[u16] {
        &self.primaries
    }

    /// The ports of the replicas (none for a standalone server).
    pub fn replicas(&self) -> &[u16] {
        &self.replicas
    }

    /// The sessions presenced has counted in Redis (`{pd}sessions`, the
    /// count every node's `presenced_sessions` gauge is refreshed from).
    pub fn sessions(&self) -> Result<u64, String> {
        let port = self.primaries[0];
        let answer = match &self.servers {
            Servers::Standalone(_) => self.cli(port, &["GET", SESSIONS_KEY])?,
            // -c follows the redirection to the key's primary.
            Servers::Cluster(_) => self.cli(port, &["-c", "GET", SESSIONS_KEY])?,
        };
        answer
            .trim()
            .parse()
            .map_err(|_| format!("GET {SESSIONS_KEY} answered {answer:?}"))
    }

    /// Fails unless presenced's count of sessions in Redis is `expected`,
    /// so that a measurement is never taken over fewer users than it
    /// claims. The node's own gauge is only compared: with `--store redis`
    /// it is refreshed from Redis every 5 s, and a refresh that read the
    /// count while writes were still adding to it shows too few until the
    /// next one; that is noted, not failed.
    pub async fn expect_sessions(
        &self,
        server: &ServerProcess,
        expected: usize,
        who: &str,
        report: &mut Report,
    ) -> Result<(), String> {
        let counted = self.sessions()?;
        if counted != expected as u64 {
            return Err(format!(
                "Redis counts {counted} sessions ({SESSIONS_KEY}) after loading {expected} users \
                 with one each"
            ));
        }
        let gauge = gauge(server, "presenced_sessions").await?;
        if gauge != counted {
            report.notes.push(format!(
                "{who}: right after {expected} users were loaded, Redis counted all their \
                 sessions but the node's presenced_sessions gauge showed {gauge} (it is \
                 refreshed from Redis every 5 s; a refresh that races the last writes' \
                 increments shows too few until the next)"
            ));
        }
        Ok(())
    }

    /// `redis-cli -p PORT args...` against one of the nodes: its output.
    pub fn cli(&self, port: u16, args: &[&str]) -> Result<String, String> {
        let what = format!("redis-cli -p {port} {}", args.join(" "));
        match &self.servers {
            Servers::Standalone(server) => guarded(&what, || server.cli(args)),
            Servers::Cluster(cluster) => guarded(&what, || cluster.cli(port, args)),
        }
    }

    /// Empties every primary (replicas follow), so that a presenced started
    /// next finds no keyspace, no leases and no users.
    pub fn flush(&self) -> Result<(), String> {
        for &port in &self.primaries {
            let answer = self.cli(port, &["FLUSHALL"])?;
            if answer != "OK" {
                return Err(format!("FLUSHALL on Redis {port} answered {answer:?}"));
            }
        }
        Ok(())
    }

    /// `INFO` of every primary and replica, summed.
    pub fn stats(&self) -> Result<RedisStats, String> {
        let mut stats = RedisStats::default();
        for &port in &self.primaries {
            let info = parse_info(&self.cli(port, &["INFO", "cpu", "stats", "commandstats"])?);
            stats.primary_cpu_seconds += info_cpu_seconds(&info)?;
            stats.commands += info_number(&info, "total_commands_processed")? as u64;
            for (command, calls) in command_calls(&info) {
                *stats.calls.entry(command).or_default() += calls;
            }
        }
        for &port in &self.replicas {
            let info = parse_info(&self.cli(port, &["INFO", "cpu"])?);
            stats.replica_cpu_seconds += info_cpu_seconds(&info)?;
        }
        Ok(stats)
    }

    /// `used_memory` of every primary, summed.
    pub fn used_memory(&self) -> Result<u64, String> {
        let mut bytes = 0;
        for &port in &self.primaries {
            let info = parse_info(&self.cli(port, &["INFO", "memory"])?);
            bytes += info_number(&info, "used_memory")? as u64;
        }
        Ok(bytes)
    }

    /// `redis_version` of the first primary.
    pub fn version(&self) -> Result<String, String> {
        let port = self.primaries[0];
        let info = parse_info(&self.cli(port, &["INFO", "server"])?);
        info.get("redis_version")
            .cloned()
            .ok_or_else(|| "INFO server has no redis_version".into())
    }
}

/// The `field:value` lines of an `INFO` answer (section headers and blank
/// lines left out).
pub fn parse_info(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(|line| line.trim_end_matches('\r'))
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split_once(':'))
        .map(|(field, value)| (field.to_string(), value.to_string()))
        .collect()
}

fn info_number(info: &BTreeMap<String, String>, field: &str) -> Result<f64, String> {
    info.get(field)
        .and_then(|value| value.parse().ok())
        .ok_or_else(|| format!("INFO has no number `{field}`"))
}

/// `used_cpu_sys + used_cpu_user`: every thread of the server.
fn info_cpu_seconds(info: &BTreeMap<String, String>) -> Result<f64, String> {
    Ok(info_number(info, "used_cpu_sys")? + info_number(info, "used_cpu_user")?)
}

/// The calls of every command in `INFO commandstats`
/// (`cmdstat_get:calls=3,usec=...`), commands run by scripts included.
pub fn command_calls(info: &BTreeMap<String, String>) -> BTreeMap<String, u64> {
    info.iter()
        .filter_map(|(field, value)| {
            let command = field.strip_prefix("cmdstat_")?;
            let calls = value
                .split(',')
                .find_map(|pair| pair.strip_prefix("calls="))?
                .parse()
                .ok()?;
            Some((command.to_string(), calls))
        })
        .collect()
}

/// What the Redis nodes of a set-up have done so far.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RedisStats {
    pub primary_cpu_seconds: f64,
    pub replica_cpu_seconds: f64,
    /// `total_commands_processed` of the primaries: commands from clients
    /// and commands scripts ran.
    pub commands: u64,
    /// Calls per command on the primaries.
    pub calls: BTreeMap<String, u64>,
}

/// What presenced (one node or several, summed) and Redis have done so
/// far, at one instant.
#[derive(Clone, Debug)]
pub struct Reading {
    at: Instant,
    round_trips: f64,
    commands_sent: f64,
    /// Leases gained, lost and released by the nodes
    /// (`presenced_lease_changes_total`, every label).
    lease_changes: f64,
    redis: RedisStats,
}

impl Reading {
    pub fn lease_changes(&self) -> f64 {
        self.lease_changes
    }
}

/// The sum of every series of the counter `name` in Prometheus text, with
/// or without labels (`name{change="gained"} 3`, `name 4`).
pub fn sum_metric(exposition: &str, name: &str) -> f64 {
    exposition
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let value = if rest.starts_with('{') {
                rest.rsplit_once('}')?.1
            } else {
                rest.strip_prefix(' ')?
            };
            value.trim().parse::<f64>().ok()
        })
        .sum()
}

/// Reads presenced's counters on every one of `servers` and Redis's INFO.
pub async fn reading(
    servers: &[ServerProcess],
    redis: &RedisDeployment,
) -> Result<Reading, String> {
    let mut reading = Reading {
        at: Instant::now(),
        round_trips: 0.0,
        commands_sent: 0.0,
        lease_changes: 0.0,
        redis: RedisStats::default(),
    };
    for server in servers {
        let answer = send_once(
            server.address(),
            &RequestSpec::get(Uri::from_static("/metrics")),
        )
        .await?;
        let text = String::from_utf8_lossy(&answer.body);
        let counter = |name: &str| {
            parse_metric(&text, name).ok_or_else(|| format!("GET /metrics has no `{name}`"))
        };
        reading.round_trips += counter("presenced_redis_round_trips_total")?;
        reading.commands_sent += counter("presenced_redis_commands_total")?;
        reading.lease_changes += sum_metric(&text, "presenced_lease_changes_total");
    }
    reading.redis = redis.stats()?;
    reading.at = Instant::now();
    Ok(reading)
}

/// Differences between two readings, per request (or per second).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Usage {
    pub round_trips: f64,
    pub commands_sent: f64,
    pub commands_executed: f64,
    pub primary_cpu_micros: f64,
    pub replica_cpu_micros: f64,
    pub calls: BTreeMap<String, f64>,
}

impl Usage {
    /// `after - before`, divided by `count`.
    pub fn between(before: &Reading, after: &Reading, count: f64) -> Usage {
        let count = count.max(1e-9);
        let calls = after
            .redis
            .calls
            .iter()
            .map(|(command, calls)| {
                let earlier = before.redis.calls.get(command).copied().unwrap_or(0);
                (
                    command.clone(),
                    calls.saturating_sub(earlier) as f64 / count,
                )
            })
            .filter(|(_, calls)| *calls > 0.0)
            .collect();
        Usage {
            round_trips: (after.round_trips - before.round_trips) / count,
            commands_sent: (after.commands_sent - before.commands_sent) / count,
            commands_executed: after.redis.commands.saturating_sub(before.redis.commands) as f64
                / count,
            primary_cpu_micros: (after.redis.primary_cpu_seconds
                - before.redis.primary_cpu_seconds)
                * 1e6
                / count,
            replica_cpu_micros: (after.redis.replica_cpu_seconds
                - before.redis.replica_cpu_seconds)
                * 1e6
                / count,
            calls,
        }
    }

    /// `self - background × seconds / requests`: what the requests cost
    /// beyond what the same processes do idle over the same span. Never
    /// below zero.
    pub fn less_background(&self, background: &Usage, seconds: f64, requests: f64) -> Usage {
        let share = seconds / requests.max(1e-9);
        let less = |value: f64, idle: f64| (value - idle * share).max(0.0);
        let calls = self
            .calls
            .iter()
            .map(|(command, calls)| {
                let idle = background.calls.get(command).copied().unwrap_or(0.0);
                (command.clone(), less(*calls, idle))
            })
            .collect::<BTreeMap<String, f64>>();
        // The total is the sum of the commands' own, each net of its idle
        // rate, so that it agrees with the breakdown.
        let commands_executed = calls.values().sum();
        Usage {
            round_trips: less(self.round_trips, background.round_trips),
            commands_sent: less(self.commands_sent, background.commands_sent),
            commands_executed,
            primary_cpu_micros: less(self.primary_cpu_micros, background.primary_cpu_micros),
            replica_cpu_micros: less(self.replica_cpu_micros, background.replica_cpu_micros),
            calls,
        }
    }

    /// The commands Redis ran, most frequent first, those run at least
    /// once per 20 requests.
    pub fn breakdown(&self) -> String {
        let mut calls: Vec<(&String, &f64)> = self
            .calls
            .iter()
            .filter(|(_, calls)| **calls >= 0.05)
            .collect();
        calls.sort_by(|a, b| b.1.total_cmp(a.1).then(a.0.cmp(b.0)));
        calls
            .iter()
            .map(|(command, calls)| format!("{command} {calls:.2}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// One Redis set-up of the throughput rows and the cost rows.
#[derive(Clone, Copy, Debug)]
pub struct Setup {
    /// Names the variant in the table.
    pub label: &'static str,
    /// What the label stands for, for the notes.
    pub description: &'static str,
    pub topology: Topology,
    pub durability: &'static str,
    /// The scenarios of a full run, and of a quick one.
    pub parts: &'static [Part],
    pub quick_parts: &'static [Part],
}

/// The issue's two set-ups. The cluster's row is seven processes (six Redis
/// and presenced) plus the load generator on this machine's two cores: it
/// measures how they contend, not how a cluster scales.
pub const SETUPS: [Setup; 2] = [
    Setup {
        label: "redis standalone, async",
        description: "one standalone redis-server, presenced with --redis-durability async; \
                      Redis, presenced and the load generator share the machine's cores",
        topology: Topology::Standalone,
        durability: "async",
        parts: &[Part::SetPresence, Part::GetPresence, Part::Batch],
        quick_parts: &[Part::SetPresence, Part::GetPresence],
    },
    Setup {
        label: "redis cluster 3+3, replicated; CONTENTION: 6 redis-servers on 2 cores",
        description: "a Redis Cluster of 3 primaries with one replica each (six redis-server \
                      processes), presenced with the default --redis-durability replicated \
                      (every write waits for its shard's replica); on this machine the six, \
                      presenced and the load generator contend for its cores: the row \
                      measures that contention, not how a cluster scales",
        topology: Topology::Cluster { primaries: 3 },
        durability: "replicated",
        parts: &[Part::SetPresence, Part::GetPresence, Part::Batch],
        quick_parts: &[Part::SetPresence],
    },
];

impl Setup {
    fn variant(&self, redis: &Arc<RedisDeployment>, quick: bool) -> ServerVariant {
        ServerVariant {
            label: self.label.into(),
            server_args: redis.store_args(self.durability),
            authorization: None,
            parts: if quick { self.quick_parts } else { self.parts }.to_vec(),
            fresh_data_dir: false,
            redis: Some(redis.clone()),
        }
    }
}

/// The throughput scenarios and the costs of one set-up; a failed scenario
/// is reported and the others still run.
pub async fn measure_setup(
    context: &Context,
    setup: &Setup,
    report: &mut Report,
) -> Result<(), String> {
    let context = &Context {
        presenced_binary: context.presenced_binary.clone(),
        bench_binary: context.bench_binary.clone(),
        settings: Settings {
            scenario_users: context.settings.redis_users,
            warmup: context.settings.redis_warmup,
            measure: context.settings.redis_measure,
            ..context.settings.clone()
        },
    };
    let settings = &context.settings;
    let started = Instant::now();
    let redis = Arc::new(RedisDeployment::start(setup.topology)?);
    println!(
        "[redis] {}: Redis {} started in {:.1} s ({} seeds)",
        setup.label,
        redis.version()?,
        started.elapsed().as_secs_f64(),
        redis.urls().len()
    );
    report
        .notes
        .push(format!("{}: {}", setup.label, setup.description));
    let variant = setup.variant(&redis, settings.quick);
    let mut scenarios = throughput_scenarios(&variant, settings.scenario_users, settings.batch_ids);
    for scenario in &mut scenarios {
        // No targets are set for Redis; the open loop at half the maximum
        // still shows the latency, in a full run (a quick one keeps to its
        // minute).
        scenario.ratio_target = None;
        scenario.half_load_p99_target = None;
        scenario.half_load = !settings.quick;
    }
    for scenario in &scenarios {
        let result = crate::scenarios::run_throughput_scenario(context, scenario, report).await;
        crate::record_failure(report, &scenario.name, result);
    }
    drop(scenarios);
    let result = measure_costs(context, setup, &variant, &redis, report).await;
    crate::record_failure(report, &format!("Redis cost ({})", setup.label), result);
    println!(
        "[redis] {}: done in {:.1} s",
        setup.label,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// One kind of request whose cost is measured.
struct CostProbe {
    name: String,
    requests: usize,
    connections: usize,
    generator: SequenceGenerator,
}

/// The connections of the batch cost probe: a 650-id read holds presenced
/// and Redis for milliseconds, and with hundreds at once (a full run's
/// connections) the reads queue past presenced's Redis timeout and answer
/// 503 (the throughput rows show that overload); the cost is measured below
/// it.
const BATCH_PROBE_CONNECTIONS: usize = 32;

/// Redis's cost per request: see the top of this file.
async fn measure_costs(
    context: &Context,
    setup: &Setup,
    variant: &ServerVariant,
    redis: &RedisDeployment,
    report: &mut Report,
) -> Result<(), String> {
    let settings = &context.settings;
    let users = settings.scenario_users;
    let label = format!("presenced ({}) costs", setup.label);
    let mut server = variant.start(&label, &context.presenced_binary)?;
    server.wait_until_ready().await?;
    // Start-up work (leases taken, the keyspace's meta) is not idling.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let idle_started = reading(std::slice::from_ref(&server), redis).await?;
    tokio::time::sleep(settings.redis_idle_window).await;
    let idle_ended = reading(std::slice::from_ref(&server), redis).await?;
    let idle_seconds = idle_ended.at.duration_since(idle_started.at).as_secs_f64();
    let background = Usage::between(&idle_started, &idle_ended, idle_seconds);
    println!(
        "[redis] {}: idle, presenced makes {:.0} round trips/s; Redis primaries use {:.0} µs CPU/s",
        setup.label, background.round_trips, background.primary_cpu_micros
    );

    let requests = settings.redis_cost_requests.min(users);
    let change_body = Bytes::from(format!(
        r#"{{"sessionId":"{APP_SESSION_ID}","availability":"Busy","activity":"InACall","expirationDuration":"PT1H"}}"#
    ));
    let refresh_body = set_presence_body("PT1H");
    let new_body = set_presence_body("PT4H");
    let batches = batch_bodies(users, settings.batch_ids, 64);
    let batch_requests = (requests / 50).max(20);
    let probes = vec![
        CostProbe {
            name: "setPresence of a new user (the preload)".into(),
            requests: users,
            connections: settings.connections,
            generator: Arc::new(move |index| {
                RequestSpec::post_json(set_presence_uri(index as u64), new_body.clone())
            }),
        },
        CostProbe {
            name: "setPresence, the same state again (a refresh)".into(),
            requests,
            connections: settings.connections,
            generator: Arc::new(move |index| {
                RequestSpec::post_json(set_presence_uri(index as u64), refresh_body.clone())
            }),
        },
        CostProbe {
            name: "setPresence, a visible change (Available → Busy)".into(),
            requests,
            connections: settings.connections,
            generator: Arc::new(move |index| {
                RequestSpec::post_json(set_presence_uri(index as u64), change_body.clone())
            }),
        },
        CostProbe {
            name: "GET presence".into(),
            requests,
            connections: settings.connections,
            generator: Arc::new(move |index| RequestSpec::get(presence_uri(index as u64))),
        },
        CostProbe {
            name: format!("getPresencesByUserId({})", settings.batch_ids),
            requests: batch_requests,
            connections: settings.connections.min(BATCH_PROBE_CONNECTIONS),
            generator: Arc::new(move |index| {
                RequestSpec::post_json(
                    Uri::from_static("/v1.0/communications/getPresencesByUserId"),
                    batches[index % batches.len()].clone(),
                )
            }),
        },
    ];
    for probe in probes {
        let before = reading(std::slice::from_ref(&server), redis).await?;
        let outcome = match run_sequence(
            server.address(),
            probe.connections,
            probe.requests,
            probe.generator,
        )
        .await
        {
            Ok(outcome) => outcome,
            Err(error) => {
                // A presenced that went away says why in its log.
                server.ensure_running()?;
                return Err(format!("{} ({}): {error}", probe.name, setup.label));
            }
        };
        let after = reading(std::slice::from_ref(&server), redis).await?;
        server.ensure_running()?;
        if outcome.errors() > 0 {
            return Err(format!(
                "{} ({}): {} of {} requests failed; the first: {} (presenced's log is kept at \
                 {})",
                probe.name,
                setup.label,
                outcome.errors(),
                probe.requests,
                outcome.first_failure.as_deref().unwrap_or("?"),
                server.keep_log().display()
            ));
        }
        let seconds = after.at.duration_since(before.at).as_secs_f64();
        let count = probe.requests as f64;
        let cost =
            Usage::between(&before, &after, count).less_background(&background, seconds, count);
        let rate = count / outcome.measured.as_secs_f64().max(1e-9);
        let replicas = if redis.replicas().is_empty() {
            String::new()
        } else {
            format!(" + {:.1} µs on the replicas", cost.replica_cpu_micros)
        };
        let value = format!(
            "{:.2} round trips, {:.2} commands sent; Redis CPU {:.1} µs (primaries){replicas}; \
             {:.2} commands executed: {}; {} requests at {rate:.0}/s, {} connections",
            cost.round_trips,
            cost.commands_sent,
            cost.primary_cpu_micros,
            cost.commands_executed,
            cost.breakdown(),
            probe.requests,
            probe.connections
        );
        println!("[redis] {}: {}: {value}", setup.label, probe.name);
        report.footprint.push(FootprintRow {
            measurement: format!("Redis cost per {} ({})", probe.name, setup.label),
            value,
            target: None,
        });
        if probe.name.starts_with("setPresence of a new user") {
            redis
                .expect_sessions(&server, users, &label, report)
                .await?;
        }
    }
    if !redis.replicas().is_empty() {
        report.notes.push(format!(
            "Redis cost ({}): presenced_redis_round_trips_total and \
             presenced_redis_commands_total count one per call to the cluster client, which \
             splits a multi-slot command by node itself: a getPresencesByUserId's MGET spans \
             the 64 partitions' slots, and the primaries run it as 64 MGETs (commands \
             executed), while presenced counts one",
            setup.label
        ));
    }
    report.notes.push(format!(
        "Redis cost ({}): per request, from presenced's presenced_redis_round_trips_total and \
         presenced_redis_commands_total and the primaries' INFO (used_cpu_sys + used_cpu_user; \
         total_commands_processed and commandstats, which count the commands a script runs), \
         less what the same processes did idle over the same span (measured for {:.0} s before: \
         {:.0} round trips/s, {:.0} µs of Redis CPU per second)",
        setup.label,
        idle_seconds,
        background.round_trips,
        background.primary_cpu_micros + background.replica_cpu_micros
    ));
    Ok(())
}

fn mebibytes(bytes: f64) -> String {
    format!("{:.1} MiB", bytes / (1024.0 * 1024.0))
}

/// The keys matching `pattern`: `SCAN` with `MATCH` (and a large `COUNT`,
/// so that a million keys take a hundred calls), until the cursor is back
/// at 0.
fn scan(redis: &RedisDeployment, port: u16, pattern: &str) -> Result<Vec<String>, String> {
    let mut keys = Vec::new();
    let mut cursor = "0".to_string();
    loop {
        let answer = redis.cli(port, &["SCAN", &cursor, "MATCH", pattern, "COUNT", "10000"])?;
        let mut lines = answer
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty());
        cursor = lines
            .next()
            .filter(|next| next.parse::<u64>().is_ok())
            .ok_or_else(|| format!("SCAN answered {answer:?}"))?
            .to_string();
        keys.extend(lines.map(str::to_string));
        if cursor == "0" {
            return Ok(keys);
        }
    }
}

/// The sum of `MEMORY USAGE key SAMPLES 0` (every element counted, not
/// estimated from samples) of `keys`.
fn memory_of(redis: &RedisDeployment, port: u16, keys: &[String]) -> Result<u64, String> {
    let mut bytes = 0;
    for key in keys {
        let answer = redis.cli(port, &["MEMORY", "USAGE", key, "SAMPLES", "0"])?;
        bytes += answer
            .trim()
            .parse::<u64>()
            .map_err(|_| format!("MEMORY USAGE {key} answered {answer:?}"))?;
    }
    Ok(bytes)
}

/// Redis memory per user: see the top of this file.
pub async fn measure_memory(context: &Context, report: &mut Report) -> Result<(), String> {
    let settings = &context.settings;
    let users = settings.redis_memory_users;
    let started = Instant::now();
    let redis = Arc::new(RedisDeployment::start(Topology::Standalone)?);
    let port = redis.primaries()[0];
    // The manual clock: however long the load takes, no session fades (and
    // writes again) before the memory is read.
    let mut server_args = redis.store_args("async");
    server_args.extend(["--clock", "manual"].map(String::from));
    let variant = ServerVariant {
        label: "redis standalone, async, manual clock".into(),
        server_args,
        authorization: None,
        parts: Vec::new(),
        fresh_data_dir: false,
        redis: Some(redis.clone()),
    };
    let mut server = variant.start("presenced (redis) memory", &context.presenced_binary)?;
    server.wait_until_ready().await?;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = redis.used_memory()?;
    let load = preload_users(&mut server, settings.connections, users).await?;
    redis
        .expect_sessions(&server, users, "presenced (redis) memory", report)
        .await?;
    tokio::time::sleep(settings.settle).await;
    let after = redis.used_memory()?;
    let grown = after.saturating_sub(before) as f64;
    println!(
        "[redis memory] loaded {users} users in {:.1} s ({:.0} setPresence/s); used_memory {} → {}",
        load.measured.as_secs_f64(),
        users as f64 / load.measured.as_secs_f64().max(1e-9),
        mebibytes(before as f64),
        mebibytes(after as f64)
    );

    let stream_keys = scan(&redis, port, "*chg")?;
    let streams = stream_keys.len();
    let stream_bytes = memory_of(&redis, port, &stream_keys)?;
    let mut entries = 0u64;
    for key in &stream_keys {
        let answer = redis.cli(port, &["XLEN", key])?;
        entries += answer
            .trim()
            .parse::<u64>()
            .map_err(|_| format!("XLEN {key} answered {answer:?}"))?;
    }
    let due = scan(&redis, port, "*due")?;
    let due_keys = due.len();
    let due_bytes = memory_of(&redis, port, &due)?;
    let tenant_bytes = memory_of(&redis, port, &scan(&redis, port, "*:t:*")?)?;
    let keys = redis.cli(port, &["DBSIZE"])?;
    let facts_and_indexes = (grown - stream_bytes as f64).max(0.0);
    let per_user = facts_and_indexes / users as f64;
    let per = |bytes: u64| bytes as f64 / users as f64;
    let rest = per_user - per(due_bytes) - per(tenant_bytes);
    println!(
        "[redis memory] {per_user:.0} B per user for facts and indexes; change streams {} in \
         {entries} entries",
        mebibytes(stream_bytes as f64)
    );
    report.footprint.push(FootprintRow {
        measurement: format!(
            "Redis used_memory growth per user, {users} users with one session each (standalone; \
             everything, change streams included)"
        ),
        value: format!(
            "{:.0} B ({} → {}; {} keys)",
            grown / users as f64,
            mebibytes(before as f64),
            mebibytes(after as f64),
            keys.trim()
        ),
        target: None,
    });
    report.footprint.push(FootprintRow {
        measurement: format!(
            "Redis memory per user for facts and indexes, {users} users (the growth less the \
             change streams)"
        ),
        value: format!(
            "{per_user:.0} B: due index {:.0} B ({due_keys} zsets), tenant index {:.0} B (a set), \
             facts and keyspace {rest:.0} B",
            per(due_bytes),
            per(tenant_bytes)
        ),
        target: Some(Target::new(
            format!("≤ {MAX_BYTES_PER_USER:.0} B"),
            per_user <= MAX_BYTES_PER_USER,
        )),
    });
    report.footprint.push(FootprintRow {
        measurement: format!(
            "Redis memory of the change streams after {users} users ({streams} `*chg` streams, \
             trimmed by length: bounded, not per user)"
        ),
        value: format!(
            "{} in {entries} entries ({:.0} B per entry, {:.0} entries per stream)",
            mebibytes(stream_bytes as f64),
            stream_bytes as f64 / entries.max(1) as f64,
            entries as f64 / streams.max(1) as f64
        ),
        target: None,
    });
    println!(
        "[redis memory] done in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// A gauge of presenced's `/metrics` as a whole number.
pub async fn gauge(server: &ServerProcess, name: &str) -> Result<u64, String> {
    let answer = send_once(
        server.address(),
        &RequestSpec::get(Uri::from_static("/metrics")),
    )
    .await?;
    let text = String::from_utf8_lossy(&answer.body);
    parse_metric(&text, name)
        .map(|value| value.max(0.0) as u64)
        .ok_or_else(|| format!("GET /metrics has no `{name}`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "# CPU\r\nused_cpu_sys:0.052132\r\nused_cpu_user:0.042491\r\n\
                        used_cpu_sys_children:0.000000\r\n\r\n# Stats\r\n\
                        total_commands_processed:7151\r\n\r\n# Commandstats\r\n\
                        cmdstat_get:calls=329,usec=290,usec_per_call=0.88,rejected_calls=0,failed_calls=0\r\n\
                        cmdstat_script|load:calls=3,usec=199,usec_per_call=66.33,rejected_calls=0,failed_calls=0\r\n";

    #[test]
    fn info_fields_cpu_and_commandstats_are_read() {
        let info = parse_info(INFO);
        assert_eq!(info_number(&info, "total_commands_processed"), Ok(7151.0));
        let cpu = info_cpu_seconds(&info).unwrap();
        assert!((cpu - 0.094623).abs() < 1e-9, "{cpu}");
        let calls = command_calls(&info);
        assert_eq!(calls.get("get"), Some(&329));
        assert_eq!(calls.get("script|load"), Some(&3));
        assert_eq!(calls.len(), 2);
        assert!(info_number(&info, "missing").is_err());
    }

    fn at(round_trips: f64, cpu: f64, commands: u64, gets: u64) -> Reading {
        Reading {
            at: Instant::now(),
            round_trips,
            commands_sent: round_trips,
            lease_changes: 0.0,
            redis: RedisStats {
                primary_cpu_seconds: cpu,
                replica_cpu_seconds: 0.0,
                commands,
                calls: [("get".to_string(), gets)].into(),
            },
        }
    }

    #[test]
    fn costs_are_per_request_less_the_idle_background() {
        // 1000 requests over 2 s: 2,400 round trips, 0.03 CPU s, 5,000
        // commands; idle, 100 round trips/s and 1,000 µs of CPU per second.
        let cost = Usage::between(
            &at(100.0, 1.0, 10, 5),
            &at(2_500.0, 1.03, 5_010, 1_005),
            1_000.0,
        );
        assert_eq!(cost.round_trips, 2.4);
        assert!((cost.primary_cpu_micros - 30.0).abs() < 1e-6);
        assert_eq!(cost.commands_executed, 5.0);
        assert_eq!(cost.calls.get("get"), Some(&1.0));
        let idle = Usage {
            round_trips: 100.0,
            commands_sent: 100.0,
            commands_executed: 150.0,
            primary_cpu_micros: 1_000.0,
            replica_cpu_micros: 0.0,
            calls: [("get".to_string(), 100.0)].into(),
        };
        let net = cost.less_background(&idle, 2.0, 1_000.0);
        assert!((net.round_trips - 2.2).abs() < 1e-9);
        assert!((net.primary_cpu_micros - 28.0).abs() < 1e-6);
        // The executed total is the commands' own, each net of its idle
        // rate: here only GET was seen.
        assert!((net.commands_executed - 0.8).abs() < 1e-9);
        assert!((net.calls["get"] - 0.8).abs() < 1e-9);
        assert_eq!(net.breakdown(), "get 0.80");
        // Never negative, when the idle span was busier than the run.
        let quiet = cost.less_background(&idle, 100.0, 1.0);
        assert_eq!(quiet.round_trips, 0.0);
    }

    #[test]
    fn counters_are_summed_over_their_labels() {
        let exposition = "# TYPE presenced_lease_changes_total counter\n\
                          presenced_lease_changes_total{change=\"gained\"} 64\n\
                          presenced_lease_changes_total{change=\"released\"} 21\n\
                          presenced_lease_changes_total_other 7\n\
                          presenced_redis_round_trips_total 1002\n";
        assert_eq!(
            sum_metric(exposition, "presenced_lease_changes_total"),
            85.0
        );
        assert_eq!(
            sum_metric(exposition, "presenced_redis_round_trips_total"),
            1002.0
        );
        assert_eq!(sum_metric(exposition, "presenced_missing"), 0.0);
    }

    #[test]
    fn the_breakdown_lists_frequent_commands_first() {
        let usage = Usage {
            calls: [
                ("get".to_string(), 1.0),
                ("evalsha".to_string(), 1.0),
                ("xadd".to_string(), 0.5),
                ("ping".to_string(), 0.01),
            ]
            .into(),
            ..Usage::default()
        };
        assert_eq!(usage.breakdown(), "evalsha 1.00, get 1.00, xadd 0.50");
    }

    #[test]
    fn a_panic_in_the_testkit_becomes_an_error() {
        let result: Result<(), String> = guarded("starting Redis", || panic!("no redis-server"));
        assert_eq!(result, Err("starting Redis: no redis-server".to_string()));
        assert_eq!(guarded("adding", || 1 + 1), Ok(2));
    }
}
