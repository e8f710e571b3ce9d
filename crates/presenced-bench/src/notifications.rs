//! Change-notification delivery lag: many subscribed users fading at the
//! same instant, and how long until a local receiver has every
//! notification.
//!
//! One run, for each [`NotificationRun`]:
//!
//! 1. start the webhook receiver (`receiver.rs`) and presenced with the
//!    manual clock and `--auth none` (which lets notification URLs be plain
//!    http on loopback);
//! 2. set every user Available (one app session each), then subscribe to
//!    all of them, 650 per subscription (Graph's most), each creation
//!    answering presenced's validation handshake. Presence first: a
//!    subscription starts from each user's current sequence number, so the
//!    set-up notifies nobody;
//! 3. note the instant `due`, then advance the manual clock by PT5M: at
//!    exactly five minutes every session fades to AvailableInactive (Graph's
//!    idle timeout), so every user changes at the same instant, the one the
//!    advance starts processing;
//! 4. wait until every user has been notified; each notification's lag is
//!    its receipt (the instant its POST's body was complete) minus `due`.
//!
//! The issue's target is on the p99 of those lags.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::Uri;

use crate::Context;
use crate::footprint::{expect_sessions, parse_metric, read_metric};
use crate::load::{RequestSpec, SequenceGenerator, run_sequence, send_once};
use crate::process::{CpuMeter, ServerProcess, clock_ticks_per_second};
use crate::receiver::{Receipt, Receiver};
use crate::redis::{RedisDeployment, Usage};
use crate::report::{FootprintRow, Report, Target};
use crate::scenarios::{ServerVariant, preload_users, user_guid};

/// The issue's target: p99 lag from the due instant to receipt.
const MAX_P99_LAG: Duration = Duration::from_secs(2);

/// The most users one subscription may name (Graph's limit, and
/// presenced's).
const USERS_PER_SUBSCRIPTION: usize = 650;

/// Subscriptions created at once. Each waits for its handshake and one
/// store write; more at once would only queue inside presenced.
const SUBSCRIBING_CONNECTIONS: usize = 8;

/// The subscriptions' lifetime on the manual clock: within presenced's
/// (and Graph's) one hour, and well past the five minutes advanced.
const SUBSCRIPTION_LIFETIME: jiff::SignedDuration = jiff::SignedDuration::from_mins(59);

/// Sent as every subscription's `clientState`, and checked on every
/// notification.
pub const CLIENT_STATE: &str = "bench";

/// How long the set-up is given to stay quiet before the fade: any
/// notification arriving then is counted apart.
const QUIET_BEFORE_FADE: Duration = Duration::from_millis(300);

/// How long every notification may take to arrive before the run fails.
const DELIVERY_DEADLINE: Duration = Duration::from_secs(120);

/// Where a run's subscriptions send their notifications.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Urls {
    /// One URL for all (`/notify`): presenced has one queue for it and one
    /// POST in flight at a time. What the issue asks.
    Shared,
    /// A URL per subscription (`/notify/{n}`): one queue each, so presenced
    /// delivers up to its in-flight limit in parallel.
    PerSubscription,
}

impl Urls {
    fn path(self, subscription: usize) -> String {
        match self {
            Urls::Shared => "/notify".into(),
            Urls::PerSubscription => format!("/notify/{subscription}"),
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Urls::Shared => "one receiver URL",
            Urls::PerSubscription => "one receiver, a URL per subscription",
        }
    }
}

/// One measured configuration.
#[derive(Clone, Debug)]
pub struct NotificationRun {
    pub variant: ServerVariant,
    pub urls: Urls,
}

impl NotificationRun {
    pub fn label(&self) -> String {
        let urls = match self.urls {
            Urls::Shared => "one URL",
            Urls::PerSubscription => "a URL per subscription",
        };
        format!("{}, {urls}", self.variant.label)
    }
}

fn manual_clock_variant(label: &str, store: &[&str], fresh_data_dir: bool) -> ServerVariant {
    let mut server_args: Vec<String> = store.iter().map(|arg| arg.to_string()).collect();
    server_args.extend(["--clock", "manual", "--auth", "none"].map(String::from));
    ServerVariant {
        label: label.into(),
        server_args,
        authorization: None,
        parts: Vec::new(),
        fresh_data_dir,
        redis: None,
    }
}

/// The memory store with one shared URL (the issue's measurement) and with
/// a URL per subscription; in a full run also the embedded store (strict)
/// with one shared URL, where every acknowledged batch writes its marks.
pub fn runs(quick: bool) -> Vec<NotificationRun> {
    let memory = manual_clock_variant("memory, manual clock", &["--store", "memory"], false);
    let mut runs = vec![
        NotificationRun {
            variant: memory.clone(),
            urls: Urls::Shared,
        },
        NotificationRun {
            variant: memory,
            urls: Urls::PerSubscription,
        },
    ];
    if !quick {
        runs.push(NotificationRun {
            variant: manual_clock_variant(
                "embedded, strict, manual clock",
                &["--store", "embedded", "--durability", "strict"],
                true,
            ),
            urls: Urls::Shared,
        });
    }
    runs
}

/// Measures one run and adds its row to the report.
pub async fn measure_delivery_lag(
    context: &Context,
    run: &NotificationRun,
    report: &mut Report,
) -> Result<(), String> {
    let users = context.settings.notify_users;
    let receiver = Receiver::start().await?;
    let label = format!("presenced ({}) notifications", run.variant.label);
    let server = run.variant.start(&label, &context.presenced_binary)?;
    let outcome = measure_lag(
        context,
        &run.label(),
        &mut [server],
        None,
        &receiver,
        run.urls,
        users,
        report,
    )
    .await?;
    report.footprint.push(FootprintRow {
        measurement: format!(
            "{users} subscribed users fading at once, notified to {} ({} \
             subscriptions; {}): lag from the due instant to receipt",
            run.urls.describe(),
            outcome.subscriptions,
            run.variant.label
        ),
        value: outcome.describe(),
        target: Some(outcome.lag_target()),
    });
    Ok(())
}

/// What one lag measurement found.
#[derive(Clone, Debug)]
pub struct LagOutcome {
    pub subscriptions: usize,
    pub lag: LagSummary,
    /// How long the clock advance took to answer.
    pub advance: Duration,
    /// Notifications received per second, from the due instant to the last.
    pub rate: f64,
    pub posts: usize,
    pub duplicates: usize,
    /// presenced's own delivered, retried and missed counts, worded.
    pub presenced_counts: String,
    /// CPU seconds of every presenced from the advance to the last receipt.
    pub cpu_seconds: f64,
    /// With Redis: what the nodes and Redis did from the advance to the
    /// last receipt, per user, and the leases that changed hands meanwhile.
    pub redis: Option<(Usage, f64)>,
}

impl LagOutcome {
    pub fn describe(&self) -> String {
        format!(
            "p50 {}, p99 {}, max {} (first {}); advance {}; {:.0} notifications/s in {} \
             POSTs; {} duplicates; {}; {:.2} CPU s",
            seconds(self.lag.p50),
            seconds(self.lag.p99),
            seconds(self.lag.max),
            seconds(self.lag.first),
            seconds(self.advance),
            self.rate,
            self.posts,
            self.duplicates,
            self.presenced_counts,
            self.cpu_seconds
        )
    }

    pub fn lag_target(&self) -> Target {
        Target::new(
            format!("p99 < {} s", MAX_P99_LAG.as_secs()),
            self.lag.p99 < MAX_P99_LAG,
        )
    }
}

/// The measurement itself, over one presenced or several sharing a store:
/// the first of `servers` is sent the users, the subscriptions and the
/// clock advance; the others must see the subscriptions before the fade,
/// and every one's delivered count and CPU is summed. With `redis`, the
/// sessions loaded are counted in Redis.
#[allow(clippy::too_many_arguments)]
pub async fn measure_lag(
    context: &Context,
    label: &str,
    servers: &mut [ServerProcess],
    redis: Option<&RedisDeployment>,
    receiver: &Receiver,
    urls: Urls,
    users: usize,
    report: &mut Report,
) -> Result<LagOutcome, String> {
    let Some(server) = servers.first_mut() else {
        return Err("no server to measure".into());
    };
    // Presence first, then the subscriptions: the set-up notifies nobody.
    let load = preload_users(server, context.settings.connections, users).await?;
    match redis {
        Some(redis) => redis.expect_sessions(server, users, label, report).await?,
        None => expect_sessions(server, users).await?,
    }
    let subscribing = Instant::now();
    let subscriptions = subscribe(server, receiver, urls, users).await?;
    if servers.len() > 1 {
        wait_for_subscriptions(servers, subscriptions).await?;
    }
    println!(
        "[notifications] {label}: {users} users set in {:.1} s, {subscriptions} subscriptions \
         created in {:.1} s",
        load.measured.as_secs_f64(),
        subscribing.elapsed().as_secs_f64()
    );
    if receiver.handshakes() != subscriptions {
        return Err(format!(
            "{subscriptions} subscriptions were created but the receiver answered {} \
             validation handshakes",
            receiver.handshakes()
        ));
    }
    tokio::time::sleep(QUIET_BEFORE_FADE).await;
    let setup = receiver.take();
    if !setup.receipts.is_empty() {
        report.notes.push(format!(
            "notifications ({label}): {} notifications arrived during the set-up, before the \
             fade; they are not counted",
            setup.receipts.len()
        ));
    }

    // The fade.
    let (ticks_per_second, _) = clock_ticks_per_second();
    let meters = servers
        .iter()
        .map(|server| CpuMeter::start(server.pid(), ticks_per_second))
        .collect::<Result<Vec<_>, String>>()?;
    let redis_before = match redis {
        Some(redis) => Some(crate::redis::reading(servers, redis).await?),
        None => None,
    };
    let due = Instant::now();
    let answer = send_once(
        servers[0].address(),
        &RequestSpec::post_json(
            Uri::from_static("/_presenced/clock/advance"),
            Bytes::from_static(br#"{"by":"PT5M"}"#),
        ),
    )
    .await?;
    let advance = due.elapsed();
    if !answer.status.is_success() {
        return Err(format!(
            "the clock advance answered {}: {}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        ));
    }
    let all_arrived = receiver.wait_for_users(users, DELIVERY_DEADLINE).await;
    let mut cpu_seconds = 0.0;
    for meter in &meters {
        cpu_seconds += meter.finish()?.1;
    }
    let log = receiver.take();
    // presenced counts a batch once the receiver's answer is back, a moment
    // after the receiver has recorded it: read until the count is in.
    let counted_by = std::time::Instant::now() + Duration::from_secs(5);
    let (delivered, retries, missed) = loop {
        let mut sums = (0.0, 0.0, 0.0);
        for server in servers.iter() {
            let metrics = read_metrics(server).await?;
            let metric = |name: &str| parse_metric(&metrics, name).unwrap_or(0.0);
            sums.0 += metric("presenced_notifications_delivered_total");
            sums.1 += metric("presenced_notification_retries_total");
            sums.2 += metric("presenced_notifications_missed_total");
        }
        if !all_arrived || sums.0 >= users as f64 || std::time::Instant::now() >= counted_by {
            break sums;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let redis_usage = match (redis, redis_before) {
        (Some(redis), Some(before)) => {
            let after = crate::redis::reading(servers, redis).await?;
            Some((
                Usage::between(&before, &after, users as f64),
                after.lease_changes() - before.lease_changes(),
            ))
        }
        _ => None,
    };
    let nodes = if servers.len() > 1 {
        format!("{} nodes", servers.len())
    } else {
        "presenced".to_string()
    };
    let presenced_counts =
        format!("{nodes}: {delivered:.0} delivered, {retries:.0} retries, {missed:.0} missed");
    if let Some(problem) = log.problems.first() {
        return Err(format!(
            "the receiver got {} POSTs that were not notifications; the first: {problem}",
            log.problems.len() + log.unquoted_problems
        ));
    }
    if !all_arrived {
        for server in servers.iter_mut() {
            server.ensure_running()?;
        }
        return Err(format!(
            "after {} s the receiver had notifications for {} of {users} users ({} items in {} \
             POSTs); {presenced_counts}",
            DELIVERY_DEADLINE.as_secs(),
            log.users.len(),
            log.receipts.len(),
            log.posts
        ));
    }

    let expected: HashSet<String> = (0..users as u64).map(user_guid).collect();
    let tally = tally(&expected, &log.receipts, CLIENT_STATE);
    if tally.unexpected > 0 || tally.wrong_client_state > 0 {
        return Err(format!(
            "of {} notifications, {} were for users nobody subscribed to and {} did not carry \
             clientState {CLIENT_STATE:?}",
            log.receipts.len(),
            tally.unexpected,
            tally.wrong_client_state
        ));
    }
    if delivered < users as f64 {
        return Err(format!(
            "the receiver has all {users} users' notifications but {presenced_counts}"
        ));
    }
    let lags: Vec<Duration> = log
        .receipts
        .iter()
        .map(|receipt| receipt.at.saturating_duration_since(due))
        .collect();
    let Some(lag) = summarize_lags(lags) else {
        return Err("no notification arrived".into());
    };
    let rate = log.receipts.len() as f64 / lag.max.as_secs_f64().max(1e-9);
    println!(
        "[notifications] {label}: {} notifications in {} POSTs (up to {} each): lag p50 {}, p99 \
         {}, max {} (first {}); the advance took {}; {rate:.0} notifications/s; {} duplicates; \
         {presenced_counts}; {cpu_seconds:.2} CPU s",
        log.receipts.len(),
        log.posts,
        log.largest_batch,
        seconds(lag.p50),
        seconds(lag.p99),
        seconds(lag.max),
        seconds(lag.first),
        seconds(advance),
        tally.duplicates
    );
    Ok(LagOutcome {
        subscriptions,
        lag,
        advance,
        rate,
        posts: log.posts,
        duplicates: tally.duplicates,
        presenced_counts,
        cpu_seconds,
        redis: redis_usage,
    })
}

/// How long the other nodes may take to follow subscriptions created
/// through the first.
const SUBSCRIPTIONS_SEEN_WITHIN: Duration = Duration::from_secs(30);

/// Waits until every server's `presenced_subscriptions` gauge shows all
/// `subscriptions`: a node that has not yet read them could not notify its
/// partitions' users.
async fn wait_for_subscriptions(
    servers: &[ServerProcess],
    subscriptions: usize,
) -> Result<(), String> {
    let deadline = Instant::now() + SUBSCRIPTIONS_SEEN_WITHIN;
    loop {
        let mut seen = Vec::with_capacity(servers.len());
        for server in servers {
            seen.push(read_metric(server, "presenced_subscriptions").await? as usize);
        }
        if seen.iter().all(|count| *count == subscriptions) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "{subscriptions} subscriptions were created through the first node, but after {} \
                 s the nodes' presenced_subscriptions gauges show {seen:?}",
                SUBSCRIPTIONS_SEEN_WITHIN.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn seconds(duration: Duration) -> String {
    format!("{:.3} s", duration.as_secs_f64())
}

/// Subscribes the receiver to users `0..users`, [`USERS_PER_SUBSCRIPTION`]
/// per subscription; how many subscriptions that took.
async fn subscribe(
    server: &ServerProcess,
    receiver: &Receiver,
    urls: Urls,
    users: usize,
) -> Result<usize, String> {
    let clock = send_once(
        server.address(),
        &RequestSpec::get(Uri::from_static("/_presenced/clock")),
    )
    .await?;
    let clock: serde_json::Value = serde_json::from_slice(&clock.body)
        .map_err(|error| format!("GET /_presenced/clock: {error}"))?;
    let now = clock["now"]
        .as_str()
        .ok_or_else(|| format!("GET /_presenced/clock answered {clock} without `now`"))?;
    let expiration = instant_after(now, SUBSCRIPTION_LIFETIME)?;
    let ids: Vec<String> = (0..users as u64).map(user_guid).collect();
    let bodies = subscription_bodies(
        &ids,
        |subscription| receiver.url(&urls.path(subscription)),
        &expiration,
    );
    let count = bodies.len();
    let generator: SequenceGenerator = Arc::new(move |index| {
        RequestSpec::post_json(
            Uri::from_static("/v1.0/subscriptions"),
            bodies[index].clone(),
        )
    });
    let outcome = run_sequence(server.address(), SUBSCRIBING_CONNECTIONS, count, generator).await?;
    if outcome.errors() > 0 {
        return Err(format!(
            "creating {count} subscriptions: {} failed; the first: {}",
            outcome.errors(),
            outcome.first_failure.as_deref().unwrap_or("?")
        ));
    }
    Ok(count)
}

async fn read_metrics(server: &ServerProcess) -> Result<String, String> {
    let answer = send_once(
        server.address(),
        &RequestSpec::get(Uri::from_static("/metrics")),
    )
    .await?;
    Ok(String::from_utf8_lossy(&answer.body).into_owned())
}

/// `now` (RFC 3339, as presenced writes it) plus `by`, in RFC 3339 UTC.
pub fn instant_after(now: &str, by: jiff::SignedDuration) -> Result<String, String> {
    let now: jiff::Timestamp = now
        .parse()
        .map_err(|error| format!("the clock's now {now:?} is not RFC 3339: {error}"))?;
    now.checked_add(by)
        .map(|later| later.to_string())
        .map_err(|error| format!("{now} plus {by:?}: {error}"))
}

/// The `POST /subscriptions` bodies that subscribe to `users`, at most
/// [`USERS_PER_SUBSCRIPTION`] each, subscription `n` sending to
/// `notification_url(n)`.
pub fn subscription_bodies(
    users: &[String],
    notification_url: impl Fn(usize) -> String,
    expiration: &str,
) -> Vec<Bytes> {
    users
        .chunks(USERS_PER_SUBSCRIPTION)
        .enumerate()
        .map(|(index, chunk)| {
            let ids: Vec<String> = chunk.iter().map(|user| format!("'{user}'")).collect();
            let body = serde_json::json!({
                "changeType": "updated",
                "notificationUrl": notification_url(index),
                "resource": format!("/communications/presences?$filter=id in ({})", ids.join(",")),
                "expirationDateTime": expiration,
                "clientState": CLIENT_STATE,
            });
            Bytes::from(body.to_string())
        })
        .collect()
}

/// The lags of every notification, summarized.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LagSummary {
    pub first: Duration,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

/// `None` for no lags at all.
pub fn summarize_lags(mut lags: Vec<Duration>) -> Option<LagSummary> {
    lags.sort_unstable();
    Some(LagSummary {
        first: *lags.first()?,
        p50: nearest_rank(&lags, 0.50),
        p99: nearest_rank(&lags, 0.99),
        max: *lags.last()?,
    })
}

/// The nearest-rank percentile of sorted, non-empty values: the smallest
/// value with at least `quantile` of them at or below it.
fn nearest_rank(sorted: &[Duration], quantile: f64) -> Duration {
    let rank = (quantile * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// What the receipts say about who was notified.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Expected users notified at least once.
    pub notified: usize,
    /// Notifications beyond the first for the same user.
    pub duplicates: usize,
    /// Notifications for users outside `expected`.
    pub unexpected: usize,
    /// Notifications without the subscriptions' clientState.
    pub wrong_client_state: usize,
}

pub fn tally(expected: &HashSet<String>, receipts: &[Receipt], client_state: &str) -> Tally {
    let mut counts: HashMap<&str, usize> = HashMap::with_capacity(expected.len());
    let mut tally = Tally::default();
    for receipt in receipts {
        if receipt.client_state.as_deref() != Some(client_state) {
            tally.wrong_client_state += 1;
        }
        if !expected.contains(&receipt.user) {
            tally.unexpected += 1;
            continue;
        }
        let count = counts.entry(&receipt.user).or_default();
        *count += 1;
        if *count > 1 {
            tally.duplicates += 1;
        }
    }
    tally.notified = counts.len();
    tally
}

#[cfg(test)]
mod tests {
    use super::*;

    fn millis(values: &[u64]) -> Vec<Duration> {
        values.iter().map(|ms| Duration::from_millis(*ms)).collect()
    }

    #[test]
    fn percentiles_are_nearest_rank_over_every_lag() {
        // 1..=100 ms in any order: p50 is the 50th, p99 the 99th.
        let mut lags: Vec<u64> = (1..=100).rev().collect();
        lags.swap(3, 70);
        let summary = summarize_lags(millis(&lags)).expect("lags");
        assert_eq!(
            summary,
            LagSummary {
                first: Duration::from_millis(1),
                p50: Duration::from_millis(50),
                p99: Duration::from_millis(99),
                max: Duration::from_millis(100),
            }
        );
        // Fewer than 100: the p99 is the slowest one.
        let summary = summarize_lags(millis(&[30, 10, 20])).expect("lags");
        assert_eq!(summary.p50, Duration::from_millis(20));
        assert_eq!(summary.p99, Duration::from_millis(30));
        let one = summarize_lags(millis(&[7])).expect("one lag");
        assert_eq!((one.first, one.p50, one.max), (one.p99, one.p99, one.p99));
        assert_eq!(summarize_lags(Vec::new()), None);
    }

    #[test]
    fn duplicates_strangers_and_client_states_are_counted_apart() {
        let at = Instant::now();
        let receipt = |user: &str, client_state: Option<&str>| Receipt {
            at,
            user: user.into(),
            sequence: String::new(),
            client_state: client_state.map(str::to_string),
        };
        let expected: HashSet<String> = ["a", "b", "c"].map(String::from).into();
        let receipts = [
            receipt("a", Some("bench")),
            receipt("b", Some("bench")),
            receipt("a", Some("bench")),
            receipt("a", Some("bench")),
            receipt("z", Some("bench")),
            receipt("b", None),
        ];
        assert_eq!(
            tally(&expected, &receipts, "bench"),
            Tally {
                notified: 2,
                duplicates: 3,
                unexpected: 1,
                wrong_client_state: 1,
            }
        );
    }

    #[test]
    fn subscriptions_name_at_most_650_users_each_and_all_of_them() {
        let users: Vec<String> = (0..1_301).map(|n| format!("u{n}")).collect();
        let bodies = subscription_bodies(
            &users,
            |n| format!("http://127.0.0.1:9/notify/{n}"),
            "2026-01-01T10:59:00Z",
        );
        assert_eq!(bodies.len(), 3);
        let mut named = Vec::new();
        for (index, body) in bodies.iter().enumerate() {
            let json: serde_json::Value = serde_json::from_slice(body).expect("JSON");
            assert_eq!(json["changeType"], "updated");
            assert_eq!(json["clientState"], CLIENT_STATE);
            assert_eq!(json["expirationDateTime"], "2026-01-01T10:59:00Z");
            assert_eq!(
                json["notificationUrl"],
                format!("http://127.0.0.1:9/notify/{index}")
            );
            let list = json["resource"]
                .as_str()
                .and_then(|resource| {
                    resource.strip_prefix("/communications/presences?$filter=id in (")
                })
                .and_then(|rest| rest.strip_suffix(')'))
                .expect("a filter of ids");
            let ids: Vec<String> = list
                .split(',')
                .map(|id| id.trim_matches('\'').to_string())
                .collect();
            assert!(ids.len() <= USERS_PER_SUBSCRIPTION);
            named.extend(ids);
        }
        assert_eq!(named, users);
    }

    #[test]
    fn the_expiration_is_the_clocks_now_plus_the_lifetime() {
        assert_eq!(
            instant_after("2026-03-01T23:30:00.0000000Z", SUBSCRIPTION_LIFETIME).as_deref(),
            Ok("2026-03-02T00:29:00Z")
        );
        assert_eq!(
            instant_after(
                "2026-03-01T10:00:00.1234567Z",
                jiff::SignedDuration::from_mins(5)
            )
            .as_deref(),
            Ok("2026-03-01T10:05:00.1234567Z")
        );
        assert!(instant_after("yesterday", SUBSCRIPTION_LIFETIME).is_err());
    }

    #[test]
    fn the_shared_run_comes_first_and_a_quick_run_leaves_the_disk_out() {
        let quick = runs(true);
        assert_eq!(quick[0].urls, Urls::Shared);
        assert!(quick.iter().all(|run| !run.variant.fresh_data_dir));
        let full = runs(false);
        assert!(full.iter().any(|run| run.variant.fresh_data_dir));
        for run in &full {
            let args = run.variant.serve_args();
            let window = |pair: [&str; 2]| args.windows(2).any(|w| w == pair);
            assert!(window(["--clock", "manual"]), "{args:?}");
            assert!(window(["--auth", "none"]), "{args:?}");
        }
        assert_eq!(Urls::PerSubscription.path(7), "/notify/7");
        assert_eq!(Urls::Shared.path(7), "/notify");
    }
}
