//! The board (`GET /_presenced/board`) in a real browser with a tenant of
//! 10,000 users: how soon the first cards show, how soon a change shows on a
//! card, and whether frames stay short while events pour in.
//!
//! 1. start presenced (`--store memory --auth none`, the system clock) and
//!    seed the users through the load generator: a mix of the five
//!    setPresence states, one user in ten with no session (Offline) and a
//!    status message, one in four of the others with a status message;
//! 2. run `js/board_bench.mjs` (`browser.rs`), which loads the board in
//!    headless Chromium several times, each in a fresh context, for its
//!    first paint (navigation start to the page's `board:first-cards` and
//!    `board:listed` marks), then sends status-message probes one at a time
//!    to users whose cards are on screen;
//! 3. send setPresence to random users at a fixed rate (each a change of
//!    availability) while the page keeps probing and watches its frames;
//! 4. the driver checks that the cards on screen show what presenced holds
//!    and reads the page's JS heap.
//!
//! Nothing here has a target (the issue asks for the numbers): the part
//! fails only when the page does not load, a probe is never seen, a request
//! fails, or the page ends out of step with presenced.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use bytes::Bytes;
use hyper::Uri;
use serde::Deserialize;

use crate::Context;
use crate::browser::{self, Driver};
use crate::load::{
    LoadPlan, Pacing, Protocol, RequestGenerator, RequestSpec, SequenceGenerator, Xorshift64,
    run_load, run_sequence,
};
use crate::notifications::summarize_lags;
use crate::process::ServerProcess;
use crate::report::{FootprintRow, Report};
use crate::scenarios::{APP_SESSION_ID, ServerVariant, set_presence_uri, user_guid};

/// The five pairs setPresence accepts, as (availability, activity).
const STATES: [(&str, &str); 5] = [
    ("Available", "Available"),
    ("Busy", "InACall"),
    ("Away", "Away"),
    ("DoNotDisturb", "Presenting"),
    ("Busy", "InAConferenceCall"),
];

/// A user without a session in [`seeded_state`].
const NO_SESSION: u8 = u8::MAX;

/// Status messages, in turn.
const MESSAGES: [&str; 6] = [
    "Focusing until noon, ping me if it is urgent",
    "In the Berlin office this week",
    "On call for the payments team",
    "Back from leave on Monday",
    "Presenting the quarterly review",
    "Working late shifts this sprint",
];

/// A probe every this many milliseconds (give or take half) during the
/// burst.
const PROBE_EVERY: Duration = Duration::from_millis(100);

/// The load's open loop starts this long before the page measures.
const BURST_WARMUP: Duration = Duration::from_millis(500);

/// How long a probe may take to show before the part fails: a guard, not a
/// target.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long one step of the driver (a launch, a page load) may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(60);

/// Connections of the seeding and of the burst's open loop.
const CONNECTIONS: usize = 8;

/// The state user `index` is seeded with: an index into [`STATES`], or
/// [`NO_SESSION`] for one user in ten.
fn seeded_state(index: usize) -> u8 {
    if index % 10 == 9 {
        NO_SESSION
    } else {
        (index % STATES.len()) as u8
    }
}

/// Whether user `index` is seeded with a status message: every user
/// without a session (so that it shows more than its id), and one in four
/// of the others.
fn seeded_message(index: usize) -> Option<&'static str> {
    (seeded_state(index) == NO_SESSION || index.is_multiple_of(4))
        .then(|| MESSAGES[index % MESSAGES.len()])
}

fn set_presence_body(state: u8) -> Bytes {
    let (availability, activity) = STATES[usize::from(state)];
    Bytes::from(
        serde_json::json!({
            "sessionId": APP_SESSION_ID,
            "availability": availability,
            "activity": activity,
            "expirationDuration": "PT1H",
        })
        .to_string(),
    )
}

fn set_status_message_body(text: &str) -> Bytes {
    Bytes::from(
        serde_json::json!({
            "statusMessage": {"message": {"content": text, "contentType": "text"}}
        })
        .to_string(),
    )
}

fn set_status_message_uri(index: usize) -> Uri {
    Uri::try_from(format!(
        "/v1.0/users/{}/presence/setStatusMessage",
        user_guid(index as u64)
    ))
    .expect("user GUIDs make valid paths")
}

/// What the driver reports (`js/board_bench.mjs`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
enum Message {
    Ready { visible: usize },
    Result(Box<Outcome>),
    Error(String),
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Outcome {
    loads: Vec<LoadMarks>,
    visible: usize,
    checked: usize,
    idle: Probes,
    burst: Probes,
    listed_heap: Heap,
    burst_heap: Heap,
}

/// One load of the page: milliseconds from navigation start.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LoadMarks {
    first_cards_ms: Option<f64>,
    listed_ms: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probes {
    /// Milliseconds from sending each probe to the frame that drew it.
    latencies: Vec<f64>,
    frames: Frames,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Frames {
    /// Gaps between animation frames measured.
    frames: u64,
    longest_gap_ms: f64,
    over50: u64,
    long: LongFrames,
}

/// The page's long-animation-frame entries (frames over 50 ms).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LongFrames {
    supported: bool,
    count: u64,
    longest_ms: f64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Heap {
    used_bytes: Option<f64>,
    dom_nodes: Option<f64>,
}

/// Runs the part and adds its rows to the report's board table.
pub async fn measure(context: &Context, report: &mut Report) -> Result<(), String> {
    let settings = &context.settings;
    let users = settings.board_users;
    let directory = browser::prepare(browser::BOARD_DRIVER)?;
    let variant = ServerVariant {
        label: "memory, board".into(),
        server_args: ["--store", "memory", "--auth", "none"]
            .map(String::from)
            .to_vec(),
        authorization: None,
        parts: Vec::new(),
        fresh_data_dir: false,
        redis: None,
    };
    let label = format!("presenced ({})", variant.label);
    let mut server = variant.start(&label, &context.presenced_binary)?;
    seed(&mut server, users).await?;

    let plan = serde_json::json!({
        "chromium": browser::CHROMIUM,
        "origin": format!("http://{}", server.address()),
        "users": users,
        "loads": settings.board_loads,
        "idleProbes": settings.board_idle_probes,
        "probeEveryMs": PROBE_EVERY.as_millis() as u64,
        "burstWarmupMs": BURST_WARMUP.as_millis() as u64,
        "burstMs": settings.board_burst.as_millis() as u64,
        "probeTimeoutMs": PROBE_TIMEOUT.as_millis() as u64,
        "stepTimeoutMs": STEP_TIMEOUT.as_millis() as u64,
    });
    let mut driver = Driver::start(&directory, browser::BOARD_DRIVER.0, &plan)?;
    // Guards against a hung driver, which times its own steps.
    let loading = STEP_TIMEOUT * (settings.board_loads as u32 + 2)
        + PROBE_TIMEOUT * settings.board_idle_probes.min(10) as u32;
    let visible = match receive(&mut driver, loading).await? {
        Message::Ready { visible } => visible,
        other => {
            return Err(format!(
                "the browser driver said {other:?} instead of ready"
            ));
        }
    };
    println!(
        "[board] loaded {} time(s); {} idle probes sent to the {visible} cards on screen",
        settings.board_loads, settings.board_idle_probes
    );

    driver.say("go")?;
    let burst = run_load(
        server.address(),
        LoadPlan {
            connections: CONNECTIONS,
            warmup: BURST_WARMUP,
            measure: settings.board_burst,
            pacing: Pacing::OpenLoop {
                requests_per_second: settings.board_events_per_second,
            },
            protocol: Protocol::Http1,
        },
        changes(users),
        None,
    )
    .await?;
    // A driver that failed during the burst has said why and exited; its
    // reason comes before the broken pipe.
    let told = driver.say("done");
    let answer = receive(&mut driver, PROBE_TIMEOUT * 3 + STEP_TIMEOUT).await;
    server.ensure_running()?;
    if burst.errors() > 0 {
        return Err(format!(
            "{} of the burst's setPresence requests failed; the first: {}",
            burst.errors(),
            burst.first_failure.as_deref().unwrap_or("?")
        ));
    }
    let outcome = match answer? {
        Message::Result(outcome) => outcome,
        other => {
            return Err(format!(
                "the browser driver said {other:?} instead of a result"
            ));
        }
    };
    told?;
    drop(driver);
    let rate = burst.requests_per_second();
    println!(
        "[board] burst: {rate:.0} setPresence/s for {:.1} s; {} probes seen; the {} cards drawn \
         then match presenced",
        burst.measured.as_secs_f64(),
        outcome.burst.latencies.len(),
        outcome.checked
    );
    add_rows(report, users, settings.board_burst, rate, &outcome)
}

/// The driver's next message; its `error` as this part's.
async fn receive(driver: &mut Driver, within: Duration) -> Result<Message, String> {
    let message = driver.next_message(within).await?;
    match serde_json::from_value::<Message>(message.clone()) {
        Ok(Message::Error(error)) => Err(format!("the board in Chromium: {error}")),
        Ok(message) => Ok(message),
        Err(error) => Err(format!("the browser driver printed {message} ({error})")),
    }
}

/// Seeds `users`: each one's presence (or, with no session, its status
/// message), then the status messages of the others that have one.
async fn seed(server: &mut ServerProcess, users: usize) -> Result<(), String> {
    server.wait_until_ready().await?;
    let first: SequenceGenerator = Arc::new(move |index| match seeded_state(index) {
        NO_SESSION => RequestSpec::post_json(
            set_status_message_uri(index),
            set_status_message_body(seeded_message(index).unwrap_or_default()),
        ),
        state => RequestSpec::post_json(set_presence_uri(index as u64), set_presence_body(state)),
    });
    let with_messages: Arc<Vec<usize>> = Arc::new(
        (0..users)
            .filter(|index| seeded_state(*index) != NO_SESSION && seeded_message(*index).is_some())
            .collect(),
    );
    let messages = with_messages.len();
    let second: SequenceGenerator = Arc::new(move |n| {
        let index = with_messages[n];
        RequestSpec::post_json(
            set_status_message_uri(index),
            set_status_message_body(seeded_message(index).unwrap_or_default()),
        )
    });
    for (what, total, generator) in [
        ("presences", users, first),
        ("status messages", messages, second),
    ] {
        let outcome = run_sequence(server.address(), CONNECTIONS, total, generator).await?;
        if outcome.errors() > 0 {
            return Err(format!(
                "seeding the board's {what}: {} of {total} requests failed; the first: {}",
                outcome.errors(),
                outcome.first_failure.as_deref().unwrap_or("?")
            ));
        }
    }
    println!("[board] seeded {users} users ({messages} more status messages)");
    Ok(())
}

/// setPresence to random users, each to a state other than the one the
/// user has, so that every request is an event on the stream.
fn changes(users: usize) -> RequestGenerator {
    let uris: Arc<Vec<Uri>> = Arc::new((0..users as u64).map(set_presence_uri).collect());
    let bodies: Arc<Vec<Bytes>> =
        Arc::new((0..STATES.len() as u8).map(set_presence_body).collect());
    let states: Arc<Vec<AtomicU8>> = Arc::new(
        (0..users)
            .map(|index| AtomicU8::new(seeded_state(index)))
            .collect(),
    );
    Arc::new(move |random: &mut Xorshift64| {
        let user = random.below(uris.len());
        let now = states[user].load(Ordering::Relaxed);
        let next = match now {
            NO_SESSION => random.below(STATES.len()),
            state => (usize::from(state) + 1 + random.below(STATES.len() - 1)) % STATES.len(),
        };
        states[user].store(next as u8, Ordering::Relaxed);
        RequestSpec::post_json(uris[user].clone(), bodies[next].clone())
    })
}

fn milliseconds(value: f64) -> String {
    format!("{value:.1} ms")
}

fn mebibytes(bytes: Option<f64>) -> String {
    bytes.map_or_else(
        || "?".into(),
        |bytes| format!("{:.1} MiB", bytes / (1024.0 * 1024.0)),
    )
}

/// The median and the largest of some values; `None` for none.
fn median_and_max(values: impl IntoIterator<Item = f64>) -> Option<(f64, f64)> {
    let mut values: Vec<f64> = values.into_iter().collect();
    values.sort_by(f64::total_cmp);
    let median = *values.get((values.len().checked_sub(1)?) / 2)?;
    Some((median, *values.last()?))
}

/// p50, p99 and max of probe latencies in milliseconds, nearest rank.
fn latencies(values: &[f64]) -> Option<String> {
    let summary = summarize_lags(
        values
            .iter()
            .map(|ms| Duration::from_secs_f64(ms.max(0.0) / 1000.0))
            .collect(),
    )?;
    let ms = |duration: Duration| milliseconds(duration.as_secs_f64() * 1000.0);
    Some(format!(
        "p50 {}, p99 {}, max {}",
        ms(summary.p50),
        ms(summary.p99),
        ms(summary.max)
    ))
}

fn describe_frames(frames: &Frames) -> String {
    let long = if frames.long.supported {
        if frames.long.count == 0 {
            "no long animation frame".to_string()
        } else {
            format!(
                "{} long animation frame(s), the longest {}",
                frames.long.count,
                milliseconds(frames.long.longest_ms)
            )
        }
    } else {
        "long animation frames not reported by this Chromium".to_string()
    };
    format!(
        "{} over {} frames ({} gap(s) over 50 ms; {long})",
        milliseconds(frames.longest_gap_ms),
        frames.frames,
        frames.over50
    )
}

fn add_rows(
    report: &mut Report,
    users: usize,
    burst: Duration,
    rate: f64,
    outcome: &Outcome,
) -> Result<(), String> {
    let loads = outcome.loads.len();
    let marks = |mark: fn(&LoadMarks) -> Option<f64>| {
        let values: Option<Vec<f64>> = outcome.loads.iter().map(mark).collect();
        values.and_then(median_and_max)
    };
    let (Some(first_cards), Some(listed)) = (
        marks(|load| load.first_cards_ms),
        marks(|load| load.listed_ms),
    ) else {
        return Err("a load of the board set no board:first-cards or board:listed mark".into());
    };
    let over_loads = if loads > 1 {
        format!("median of {loads} loads, each with a cold cache")
    } else {
        "one load, with a cold cache".into()
    };
    let slowest = |(median, max): (f64, f64)| {
        if loads > 1 {
            format!("{} (slowest {})", milliseconds(median), milliseconds(max))
        } else {
            milliseconds(median)
        }
    };
    report.board.push(FootprintRow {
        measurement: format!(
            "first paint, {users} users ({over_loads}): navigation start to the first cards (board:first-cards)"
        ),
        value: slowest(first_cards),
        target: None,
    });
    report.board.push(FootprintRow {
        measurement: format!(
            "first paint, {users} users ({over_loads}): navigation start to every page of the list read (board:listed)"
        ),
        value: slowest(listed),
        target: None,
    });
    let idle = &outcome.idle.latencies;
    report.board.push(FootprintRow {
        measurement: format!(
            "update latency, no other traffic: setStatusMessage to a card on screen until the frame that draws it ({} probes, one at a time)",
            idle.len()
        ),
        value: latencies(idle).ok_or("no idle probe was measured")?,
        target: None,
    });
    let during = &outcome.burst.latencies;
    report.board.push(FootprintRow {
        measurement: format!(
            "update latency during {rate:.0} setPresence/s to random users ({} probes, one every {} ms or so)",
            during.len(),
            PROBE_EVERY.as_millis()
        ),
        value: latencies(during).ok_or("no probe was measured during the burst")?,
        target: None,
    });
    report.board.push(FootprintRow {
        measurement: format!(
            "longest frame (gap between animation frames) during {rate:.0} setPresence/s for {} s",
            burst.as_secs_f64()
        ),
        value: format!(
            "{}; with no other traffic {}",
            describe_frames(&outcome.burst.frames),
            milliseconds(outcome.idle.frames.longest_gap_ms)
        ),
        target: None,
    });
    report.board.push(FootprintRow {
        measurement: format!("the page's JS heap after a garbage collection, {users} users"),
        value: format!(
            "{} once listed, {} after the burst; {} DOM nodes ({} cards wholly on screen)",
            mebibytes(outcome.listed_heap.used_bytes),
            mebibytes(outcome.burst_heap.used_bytes),
            outcome
                .burst_heap
                .dom_nodes
                .map_or_else(|| "?".into(), |nodes| format!("{nodes:.0}")),
            outcome.visible
        ),
        target: None,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seeded_tenant_mixes_states_and_messages() {
        let states: Vec<u8> = (0..100).map(seeded_state).collect();
        assert_eq!(
            states.iter().filter(|state| **state == NO_SESSION).count(),
            10
        );
        for state in 0..STATES.len() as u8 {
            assert!(states.contains(&state), "no user in state {state}");
        }
        for index in 0..100 {
            if seeded_state(index) == NO_SESSION {
                assert!(seeded_message(index).is_some(), "{index}");
            }
        }
        let with_message = (0..100)
            .filter(|index| seeded_message(*index).is_some())
            .count();
        assert!((25..=40).contains(&with_message), "{with_message}");
    }

    #[test]
    fn every_change_moves_its_user_to_another_state() {
        let generator = changes(3);
        let mut random = Xorshift64::seeded(7);
        let mut last: Vec<Option<Bytes>> = vec![None; 3];
        for _ in 0..200 {
            let spec = generator(&mut random);
            let user = (0..3u64)
                .find(|index| spec.uri == set_presence_uri(*index))
                .expect("one of the three users") as usize;
            if let Some(previous) = &last[user] {
                assert_ne!(previous, &spec.body, "user {user} set twice to one state");
            }
            last[user] = Some(spec.body);
        }
    }

    #[test]
    fn the_drivers_messages_are_read() {
        let ready: Message = serde_json::from_str(r#"{"ready":{"visible":25}}"#).unwrap();
        assert!(matches!(ready, Message::Ready { visible: 25 }));
        let error: Message = serde_json::from_str(r#"{"error":"no cards"}"#).unwrap();
        assert!(matches!(error, Message::Error(text) if text == "no cards"));
        let frames = r#"{"frames":60,"longestGapMs":16.7,"over50":0,"long":{"supported":true,"count":0,"longestMs":0,"longestBlockingMs":0}}"#;
        let result = format!(
            r#"{{"result":{{"loads":[{{"firstCardsMs":300.5,"listedMs":700,"domContentLoadedMs":200,"cards":45}}],
            "visible":25,"checked":45,"idle":{{"latencies":[10.5],"frames":{frames}}},
            "burst":{{"latencies":[12],"failures":[],"frames":{frames},"measuredMs":3000}},
            "listedHeap":{{"usedBytes":3700144,"totalBytes":4497408,"domNodes":838}},
            "burstHeap":{{"usedBytes":3821284,"totalBytes":4497408,"domNodes":853}}}}}}"#
        );
        let Message::Result(outcome) = serde_json::from_str(&result).unwrap() else {
            panic!("a result");
        };
        assert_eq!(outcome.loads[0].first_cards_ms, Some(300.5));
        assert_eq!(outcome.burst_heap.dom_nodes, Some(853.0));
    }

    #[test]
    fn medians_take_the_lower_middle() {
        assert_eq!(median_and_max([3.0, 1.0, 2.0]), Some((2.0, 3.0)));
        assert_eq!(median_and_max([4.0, 1.0, 3.0, 2.0]), Some((2.0, 4.0)));
        assert_eq!(median_and_max([]), None);
    }
}
