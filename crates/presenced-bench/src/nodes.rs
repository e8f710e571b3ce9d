//! Three presenced nodes over one standalone Redis: many fades due at the
//! same instant with the lag of their notifications, and how long the
//! survivors take to own every partition after one node is killed.
//!
//! On this machine's two cores the three nodes, Redis and the harness
//! contend for the CPU: these rows say what the multi-node mechanisms cost
//! and how long they take, not how the nodes scale.
//!
//! Fades: [`measure_fades`] starts the nodes with `--clock manual` (the
//! clock lives in Redis, shared by all), waits until they have shared the
//! partitions out, then runs the notification measurement of
//! `notifications.rs` with all three: users set and subscribed through the
//! first node, which is also sent the one advance; each node sends the
//! webhooks of the partitions it owns, and their delivered counts are
//! summed.
//!
//! Takeover: [`measure_takeover`] kills one node with SIGKILL and polls the
//! survivors' `presenced_partitions_owned` gauges until they add up to every
//! partition again, for each lease length.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::Context;
use crate::notifications::{Urls, measure_lag};
use crate::process::ServerProcess;
use crate::receiver::Receiver;
use crate::redis::{RedisDeployment, Topology, gauge};
use crate::report::{FootprintRow, Report, Target};
use crate::scenarios::ServerVariant;

/// The nodes of every run here.
const NODES: usize = 3;

/// The partitions presenced splits the keyspace into: its default, passed
/// explicitly so that the sums below stay right if the default moves.
const PARTITIONS: u64 = 64;

/// The target for the advance that makes every fade due.
const MAX_ADVANCE: Duration = Duration::from_secs(1);

/// How long the nodes may take to share the partitions out, or take over.
const OWNERSHIP_DEADLINE: Duration = Duration::from_secs(60);

/// How often the gauges are read while waiting for a takeover.
const POLL: Duration = Duration::from_millis(20);

/// What the nodes of a run are started with, after `--store redis ...`.
fn node_variant(redis: &Arc<RedisDeployment>, label: &str, extra: &[&str]) -> ServerVariant {
    let mut server_args = redis.store_args("async");
    server_args.extend(
        [
            "--redis-partitions",
            &PARTITIONS.to_string(),
            "--auth",
            "none",
        ]
        .iter()
        .chain(extra)
        .map(|arg| arg.to_string()),
    );
    ServerVariant {
        label: label.into(),
        server_args,
        authorization: None,
        parts: Vec::new(),
        fresh_data_dir: false,
        redis: None,
    }
}

fn start_node(
    context: &Context,
    variant: &ServerVariant,
    number: usize,
) -> Result<ServerProcess, String> {
    variant.start(
        &format!("presenced node {number} ({})", variant.label),
        &context.presenced_binary,
    )
}

/// Each node's `presenced_partitions_owned`.
async fn owned(servers: &[ServerProcess]) -> Result<Vec<u64>, String> {
    let mut owned = Vec::with_capacity(servers.len());
    for server in servers {
        owned.push(gauge(server, "presenced_partitions_owned").await?);
    }
    Ok(owned)
}

/// Waits until the nodes together own every partition once, unchanged for
/// `stable` (longer than one of their rounds, a third of a lease, so that a
/// node still giving partitions up to a newcomer is seen doing it). Returns
/// how long that took and each node's share. A node may own none: the
/// nodes share by rendezvous hashing, not evenly.
async fn wait_until_shared(
    servers: &mut [ServerProcess],
    stable: Duration,
) -> Result<(Duration, Vec<u64>), String> {
    let started = Instant::now();
    for server in servers.iter_mut() {
        server.wait_until_ready().await?;
    }
    let mut previous = Vec::new();
    let mut since = Instant::now();
    loop {
        let now = owned(servers).await?;
        if now != previous {
            since = Instant::now();
        }
        if now.iter().sum::<u64>() == PARTITIONS && since.elapsed() >= stable {
            return Ok((started.elapsed(), now));
        }
        if started.elapsed() > OWNERSHIP_DEADLINE {
            return Err(format!(
                "after {} s the {} nodes own {now:?} of {PARTITIONS} partitions",
                OWNERSHIP_DEADLINE.as_secs(),
                servers.len()
            ));
        }
        previous = now;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A third of `lease` (an ISO 8601 duration of whole seconds, `PT6S`),
/// plus a margin: a round of the nodes' ownership, with time to see it.
fn round_of(lease: &str) -> Duration {
    let seconds = lease
        .strip_prefix("PT")
        .and_then(|rest| rest.strip_suffix('S'))
        .and_then(|seconds| seconds.parse::<f64>().ok())
        .unwrap_or(6.0);
    Duration::from_secs_f64(seconds / 3.0) + Duration::from_millis(300)
}

/// Many fades due at once across three nodes, and their notification lag.
pub async fn measure_fades(context: &Context, report: &mut Report) -> Result<(), String> {
    let users = context.settings.nodes_notify_users;
    let started = Instant::now();
    let redis = Arc::new(RedisDeployment::start(Topology::Standalone)?);
    let variant = node_variant(
        &redis,
        "3 nodes, redis standalone, async, manual clock",
        &["--clock", "manual"],
    );
    let receiver = Receiver::start().await?;
    let mut servers = (1..=NODES)
        .map(|number| start_node(context, &variant, number))
        .collect::<Result<Vec<_>, String>>()?;
    let (took, shares) = wait_until_shared(&mut servers, round_of("PT6S")).await?;
    println!(
        "[redis nodes] {NODES} nodes share the {PARTITIONS} partitions as {shares:?} after {:.1} s",
        took.as_secs_f64()
    );
    let outcome = measure_lag(
        context,
        &variant.label,
        &mut servers,
        Some(&redis),
        &receiver,
        Urls::Shared,
        users,
        report,
    )
    .await?;
    // What the nodes and Redis did per user from the advance to the last
    // notification (fades, fan-out, marks), and whether leases moved
    // meanwhile (a node that takes a partition over re-sends what was not
    // yet acknowledged: duplicates).
    let per_user = match &outcome.redis {
        Some((usage, lease_changes)) => format!(
            "; per user from the advance to the last receipt: {:.1} round trips from the nodes, \
             Redis CPU {:.0} µs, {:.1} commands executed ({}); {lease_changes:.0} lease changes \
             meanwhile",
            usage.round_trips,
            usage.primary_cpu_micros,
            usage.commands_executed,
            usage.breakdown()
        ),
        None => String::new(),
    };
    let cores = std::thread::available_parallelism().map_or(1, |cores| cores.get());
    let contention = format!("CONTENTION: {NODES} nodes, Redis and the receiver on {cores} cores");
    report.footprint.push(FootprintRow {
        measurement: format!(
            "{users} fades due at once across {NODES} presenced nodes over one Redis (manual \
             clock shared through Redis; partitions {shares:?}): one advance, answered once \
             every fade is committed ({contention})"
        ),
        value: format!(
            "{:.3} s ({:.0} fades/s)",
            outcome.advance.as_secs_f64(),
            users as f64 / outcome.advance.as_secs_f64().max(1e-9)
        ),
        target: Some(Target::new(
            format!("< {} s", MAX_ADVANCE.as_secs()),
            outcome.advance < MAX_ADVANCE,
        )),
    });
    report.footprint.push(FootprintRow {
        measurement: format!(
            "{users} subscribed users fading at once across {NODES} nodes, notified to one \
             receiver URL by the owner of each user's partition ({} subscriptions): lag from \
             the due instant to receipt ({contention})",
            outcome.subscriptions
        ),
        value: format!("{}{per_user}", outcome.describe()),
        target: Some(outcome.lag_target()),
    });
    println!(
        "[redis nodes] fades done in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The lease lengths measured: the default and a short one.
pub fn leases(quick: bool) -> Vec<&'static str> {
    if quick {
        vec!["PT2S"]
    } else {
        vec!["PT6S", "PT2S"]
    }
}

/// Kills one of three nodes, `trials` times (a new node replaces each one
/// killed), and measures until the survivors own every partition.
pub async fn measure_takeover(
    context: &Context,
    lease: &str,
    report: &mut Report,
) -> Result<(), String> {
    let trials = context.settings.takeover_trials;
    let begun = Instant::now();
    let redis = Arc::new(RedisDeployment::start(Topology::Standalone)?);
    let default = if lease == "PT6S" {
        " (the default)"
    } else {
        ""
    };
    let label = format!("3 nodes, redis standalone, --redis-lease {lease}");
    let variant = node_variant(&redis, &label, &["--redis-lease", lease]);
    let mut servers = (1..=NODES)
        .map(|number| start_node(context, &variant, number))
        .collect::<Result<Vec<_>, String>>()?;
    let mut started = NODES;
    let mut times = Vec::with_capacity(trials);
    let mut held = Vec::with_capacity(trials);
    for trial in 0..trials {
        let (_, shares) = wait_until_shared(&mut servers, round_of(lease)).await?;
        // The node with the most partitions: there is most to take over.
        let victim = (0..servers.len())
            .max_by_key(|index| shares[*index])
            .unwrap_or(0);
        let victim_share = shares[victim];
        let victim = servers.remove(victim);
        held.push(victim_share);
        let killed = Instant::now();
        drop(victim);
        let took = loop {
            let now = owned(&servers).await?;
            if now.iter().sum::<u64>() >= PARTITIONS {
                break killed.elapsed();
            }
            if killed.elapsed() > OWNERSHIP_DEADLINE {
                return Err(format!(
                    "{} s after a node owning {} partitions was killed, the survivors own \
                     {now:?} of {PARTITIONS} (--redis-lease {lease})",
                    OWNERSHIP_DEADLINE.as_secs(),
                    victim_share
                ));
            }
            tokio::time::sleep(POLL).await;
        };
        for server in &mut servers {
            server.ensure_running()?;
        }
        println!(
            "[redis nodes] --redis-lease {lease}, trial {}: the survivors own all {PARTITIONS} \
             partitions {:.2} s after kill -9 of a node that owned {}",
            trial + 1,
            took.as_secs_f64(),
            victim_share
        );
        times.push(took);
        if trial + 1 < trials {
            started += 1;
            servers.push(start_node(context, &variant, started)?);
        }
    }
    let seconds: Vec<String> = times
        .iter()
        .map(|time| format!("{:.2} s", time.as_secs_f64()))
        .collect();
    let mean = times.iter().map(Duration::as_secs_f64).sum::<f64>() / times.len().max(1) as f64;
    report.footprint.push(FootprintRow {
        measurement: format!(
            "takeover after kill -9 of 1 of {NODES} nodes (the one owning the most partitions), \
             --redis-lease {lease}{default}: until the survivors' presenced_partitions_owned add \
             up to {PARTITIONS} (CONTENTION: {NODES} nodes and Redis on one machine)"
        ),
        value: format!(
            "{}{} (the killed node owned {held:?} partitions)",
            seconds.join(", "),
            if trials > 1 {
                format!("; mean {mean:.2} s of {trials} trials")
            } else {
                String::new()
            }
        ),
        target: None,
    });
    println!(
        "[redis nodes] takeover with --redis-lease {lease} done in {:.1} s",
        begun.elapsed().as_secs_f64()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_is_a_third_of_the_lease_and_a_margin() {
        assert_eq!(round_of("PT6S"), Duration::from_millis(2_300));
        assert_eq!(round_of("PT2S").as_millis(), 966);
        // Anything else: the default lease's.
        assert_eq!(round_of("P1D"), Duration::from_millis(2_300));
    }

    #[test]
    fn a_quick_run_measures_the_short_lease_only() {
        assert_eq!(leases(true), ["PT2S"]);
        assert_eq!(leases(false), ["PT6S", "PT2S"]);
    }
}
