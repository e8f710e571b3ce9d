//! The reconnect storm: every user changing presence as fast as presenced
//! takes it while every stream client is dropped and comes back with
//! `Last-Event-ID`, and webhook receivers follow the same users.
//!
//! 1. start presenced (memory store, `--auth none`, the system clock) and
//!    the webhook receivers (`receiver.rs`); set every user's presence
//!    (round 0, not measured);
//! 2. subscribe each receiver to its own slice of the users, 650 per
//!    subscription, then open the streams, each watching its own slice, and
//!    wait until every stream has sent every user's current presence;
//! 3. the storm: [`ROUNDS`] rounds of setPresence, every user each round
//!    and a different state each time, at full speed over the load
//!    generator's connections. Meanwhile streams are dropped at random
//!    instants, and once, when [`WAVE_AT`] of the requests are answered,
//!    every connected stream at the same instant. A dropped client waits
//!    the `retry:` its stream sent (as a browser's `EventSource` does) and
//!    reconnects with the last event id it saw; a 429 or 503 is waited out
//!    for its `Retry-After`;
//! 4. every user's final presence is read back (getPresencesByUserId), and
//!    every stream's last event for each of its users, and each receiver's
//!    newest notification per user (by `sequenceNumber`, since webhooks may
//!    arrive out of order), must come to match it.
//!
//! Any answer but a 2xx, or a 429 or 503 carrying `Retry-After`, fails the
//! storm, as does any mismatch left when [`CONVERGENCE_DEADLINE`] has
//! passed.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper::header::{ACCEPT, CONTENT_TYPE, HOST, HeaderMap, HeaderValue, RETRY_AFTER};
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::Context;
use crate::load::{Connection, RequestSpec, SequenceGenerator, Xorshift64, run_sequence};
use crate::notifications::{CLIENT_STATE, subscription_bodies};
use crate::process::{CpuMeter, ServerProcess, clock_ticks_per_second, resident_bytes};
use crate::receiver::Receiver;
use crate::report::{FootprintRow, Report, Target, ThroughputRow};
use crate::scenarios::{APP_SESSION_ID, set_presence_uri, user_guid};

/// Rounds of setPresence during the storm, after the unmeasured round 0.
pub const ROUNDS: usize = 3;

/// Webhook receivers, each a server of its own subscribed to its own slice
/// of the users.
pub const RECEIVERS: usize = 10;

/// setPresence's five states. Round `r` sets user `i` to
/// `STATES[(i + r) % 5]`: every round changes every user, and the final
/// presences differ from user to user.
const STATES: [(&str, &str); 5] = [
    ("Available", "Available"),
    ("Busy", "InACall"),
    ("Busy", "InAConferenceCall"),
    ("Away", "Away"),
    ("DoNotDisturb", "Presenting"),
];

/// The share of the storm's requests answered when every connected stream
/// is dropped at once.
const WAVE_AT: f64 = 0.4;

/// What a client waits before reconnecting when its stream sent no
/// `retry:`: what browsers' `EventSource` waits (3 s in Chromium).
const DEFAULT_RETRY: Duration = Duration::from_secs(3);

/// How long the streams may take to send every user's first presence.
const OPEN_DEADLINE: Duration = Duration::from_secs(120);

/// How long after the last setPresence every stream and receiver may take
/// to show every user's final presence.
const CONVERGENCE_DEADLINE: Duration = Duration::from_secs(120);

/// Concurrent subscription creations (each waits for its handshake).
const SUBSCRIBING_CONNECTIONS: usize = 8;

/// The subscriptions' lifetime: within presenced's (and Graph's) hour, and
/// far longer than the storm.
const SUBSCRIPTION_LIFETIME: jiff::SignedDuration = jiff::SignedDuration::from_mins(50);

/// The most ids one getPresencesByUserId takes.
const BATCH_IDS: usize = 650;

/// Errors quoted in full; more are only counted.
const QUOTED_ERRORS: usize = 5;

/// The sizes of one storm.
#[derive(Clone, Copy, Debug)]
pub struct StormPlan {
    pub users: usize,
    pub streams: usize,
    /// Keep-alive connections of the setPresence load.
    pub connections: usize,
    /// While the storm lasts, a stream stays connected for a random time
    /// of this mean (exponentially distributed) before it is dropped.
    pub mean_connected: Duration,
}

impl StormPlan {
    pub fn new(context: &Context) -> StormPlan {
        let settings = &context.settings;
        StormPlan {
            users: settings.storm_users,
            streams: settings.storm_streams.clamp(1, settings.storm_users.max(1)),
            connections: settings.connections,
            mean_connected: if settings.quick {
                Duration::from_secs(3)
            } else {
                Duration::from_secs(8)
            },
        }
    }

    /// The users of stream `index` (each stream its own slice).
    fn stream_users(&self, index: usize) -> Range<usize> {
        slice(self.users, self.streams, index)
    }

    fn receiver_users(&self, index: usize) -> Range<usize> {
        slice(self.users, RECEIVERS, index)
    }
}

/// Part `index` of `0..total` cut into `parts` nearly equal slices.
fn slice(total: usize, parts: usize, index: usize) -> Range<usize> {
    let size = total.div_ceil(parts.max(1));
    (index * size).min(total)..((index + 1) * size).min(total)
}

/// The setPresence of `user` in `round`.
fn set_request(user: usize, round: usize) -> RequestSpec {
    let (availability, activity) = STATES[(user + round) % STATES.len()];
    RequestSpec::post_json(
        set_presence_uri(user as u64),
        Bytes::from(format!(
            r#"{{"sessionId":"{APP_SESSION_ID}","availability":"{availability}","activity":"{activity}","expirationDuration":"PT4H"}}"#
        )),
    )
}

// ---------------------------------------------------------------------------
// Answers that were not 2xx.

/// A refusal the SPEC allows: 429 or 503 with `Retry-After`; the seconds it
/// asks for.
fn allowed_refusal(status: StatusCode, headers: &HeaderMap) -> Option<Duration> {
    if status != StatusCode::TOO_MANY_REQUESTS && status != StatusCode::SERVICE_UNAVAILABLE {
        return None;
    }
    let seconds: u64 = headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(seconds))
}

/// `N × kind` for each kind counted, in the map's order.
fn counted<K: std::fmt::Display>(counts: &BTreeMap<K, u64>) -> String {
    let kinds: Vec<String> = counts
        .iter()
        .map(|(kind, count)| format!("{count} × {kind}"))
        .collect();
    kinds.join(", ")
}

/// What was not a success, by kind.
#[derive(Debug, Default)]
struct Refusals {
    /// 429 and 503 with `Retry-After`, by status: waited out, then sent again.
    allowed: BTreeMap<u16, u64>,
    /// Everything else, by kind: each fails the storm.
    errors: BTreeMap<String, u64>,
    quoted: Vec<String>,
}

impl Refusals {
    fn allow(&mut self, status: StatusCode) {
        *self.allowed.entry(status.as_u16()).or_default() += 1;
    }

    fn error(&mut self, kind: &str, detail: String) {
        *self.errors.entry(kind.to_string()).or_default() += 1;
        if self.quoted.len() < QUOTED_ERRORS {
            self.quoted.push(shortened(&detail));
        }
    }

    fn merge(&mut self, other: &Refusals) {
        for (status, count) in &other.allowed {
            *self.allowed.entry(*status).or_default() += count;
        }
        for (kind, count) in &other.errors {
            *self.errors.entry(kind.clone()).or_default() += count;
        }
        for quoted in &other.quoted {
            if self.quoted.len() < QUOTED_ERRORS {
                self.quoted.push(quoted.clone());
            }
        }
    }

    fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    fn describe_allowed(&self) -> String {
        if self.allowed.is_empty() {
            return "none".into();
        }
        counted(&self.allowed)
    }

    fn describe_errors(&self) -> String {
        if self.errors.is_empty() {
            return "none".into();
        }
        format!(
            "{}; the first: {}",
            counted(&self.errors),
            self.quoted.join(" | ")
        )
    }
}

/// `text` cut to its first 300 characters (a stream's URL names 100 users).
fn shortened(text: &str) -> String {
    const SHOWN: usize = 300;
    match text.char_indices().nth(SHOWN) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

// ---------------------------------------------------------------------------
// The setPresence load.

/// What the setPresence load saw.
#[derive(Debug)]
struct SetOutcome {
    latency_micros: Histogram<u64>,
    succeeded: u64,
    elapsed: Duration,
    refusals: Refusals,
}

/// Sets every user of `0..users` once per round of `rounds`, round after
/// round, over `connections` keep-alive connections, each taking the next
/// request when free; `answered` counts the requests done. A 429 or 503
/// with `Retry-After` is waited out and sent again.
async fn set_rounds(
    address: SocketAddr,
    connections: usize,
    users: usize,
    rounds: Range<usize>,
    answered: Arc<AtomicUsize>,
) -> Result<SetOutcome, String> {
    let first_round = rounds.start;
    let total = users * rounds.len();
    let next = Arc::new(AtomicUsize::new(0));
    let mut opened = Vec::with_capacity(connections);
    for _ in 0..connections.min(total.max(1)) {
        opened.push(Connection::open(address).await?);
    }
    let started = Instant::now();
    let tasks: Vec<_> = opened
        .into_iter()
        .map(|mut connection| {
            let next = next.clone();
            let answered = answered.clone();
            tokio::spawn(async move {
                let mut latency = crate::load::new_latency_histogram();
                let mut succeeded = 0;
                let mut refusals = Refusals::default();
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    if index >= total {
                        break;
                    }
                    let spec = set_request(index % users, first_round + index / users);
                    loop {
                        let sent = Instant::now();
                        match connection.send(&spec).await {
                            Ok(answer) if answer.status.is_success() => {
                                let micros =
                                    u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
                                latency.saturating_record(micros.max(1));
                                succeeded += 1;
                            }
                            Ok(answer) => {
                                if let Some(wait) = allowed_refusal(answer.status, &answer.headers)
                                {
                                    refusals.allow(answer.status);
                                    tokio::time::sleep(wait).await;
                                    continue;
                                }
                                refusals.error(
                                    &format!("setPresence answered {}", answer.status.as_u16()),
                                    format!(
                                        "POST {} answered {}: {}",
                                        spec.uri,
                                        answer.status,
                                        String::from_utf8_lossy(
                                            &answer.body[..answer.body.len().min(300)]
                                        )
                                    ),
                                );
                            }
                            Err(error) => {
                                refusals.error(
                                    "setPresence got no answer",
                                    format!("POST {}: {error}", spec.uri),
                                );
                                if !connection
                                    .reconnect(Instant::now() + Duration::from_secs(5))
                                    .await
                                {
                                    return (latency, succeeded, refusals);
                                }
                            }
                        }
                        break;
                    }
                    answered.fetch_add(1, Ordering::Relaxed);
                }
                (latency, succeeded, refusals)
            })
        })
        .collect();
    let mut outcome = SetOutcome {
        latency_micros: crate::load::new_latency_histogram(),
        succeeded: 0,
        elapsed: Duration::ZERO,
        refusals: Refusals::default(),
    };
    for task in tasks {
        let (latency, succeeded, refusals) = task
            .await
            .map_err(|error| format!("a setPresence connection task failed: {error}"))?;
        outcome
            .latency_micros
            .add(&latency)
            .map_err(|error| format!("merging latencies: {error}"))?;
        outcome.succeeded += succeeded;
        outcome.refusals.merge(&refusals);
    }
    outcome.elapsed = started.elapsed();
    Ok(outcome)
}

// ---------------------------------------------------------------------------
// Server-Sent Events.

/// What an event stream carries, as [`SseParser`] reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum SseItem {
    /// An event dispatched by a blank line: its type (`message` unless
    /// named), the last event id, and its data (lines joined by `\n`).
    Event {
        event: String,
        id: Option<String>,
        data: String,
    },
    /// A `retry:` field: how long to wait before reconnecting.
    Retry(Duration),
}

/// The event stream format of the HTML standard ("Server-sent events",
/// parsing an event stream), fed in chunks as they arrive.
#[derive(Debug, Default)]
struct SseParser {
    /// The start of a line not yet complete.
    pending: Vec<u8>,
    event: String,
    data: String,
    /// Whether the event being read has data or an id.
    dispatchable: bool,
    /// The last event id buffer: it carries over from event to event.
    id: Option<String>,
}

impl SseParser {
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<SseItem>) {
        self.pending.extend_from_slice(bytes);
        let pending = std::mem::take(&mut self.pending);
        let mut start = 0;
        while let Some(offset) = pending[start..].iter().position(|byte| *byte == b'\n') {
            let mut line = &pending[start..start + offset];
            if let Some(without) = line.strip_suffix(b"\r") {
                line = without;
            }
            self.line(&String::from_utf8_lossy(line), out);
            start += offset + 1;
        }
        self.pending = pending[start..].to_vec();
    }

    fn line(&mut self, line: &str, out: &mut Vec<SseItem>) {
        if line.is_empty() {
            if self.dispatchable {
                let mut data = std::mem::take(&mut self.data);
                if data.ends_with('\n') {
                    data.pop();
                }
                let event = std::mem::take(&mut self.event);
                out.push(SseItem::Event {
                    event: if event.is_empty() {
                        "message".into()
                    } else {
                        event
                    },
                    id: self.id.clone(),
                    data,
                });
            }
            self.event.clear();
            self.data.clear();
            self.dispatchable = false;
            return;
        }
        if line.starts_with(':') {
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line, ""),
        };
        match field {
            "event" => value.clone_into(&mut self.event),
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
                self.dispatchable = true;
            }
            "id" if !value.contains('\0') => {
                self.id = Some(value.to_string());
                self.dispatchable = true;
            }
            "retry" if !value.is_empty() && value.bytes().all(|byte| byte.is_ascii_digit()) => {
                if let Ok(millis) = value.parse() {
                    out.push(SseItem::Retry(Duration::from_millis(millis)));
                }
            }
            _ => {}
        }
    }
}

/// The fields of a presence the storm compares, as GET, the batch and the
/// stream render it.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
struct PresenceFields {
    id: String,
    availability: String,
    activity: String,
    sequence_number: String,
}

/// Whether sequence number `a` is older than `b` (they are fixed-width
/// decimal text after a letter).
fn older(a: &str, b: &str) -> bool {
    (a.len(), a) < (b.len(), b)
}

// ---------------------------------------------------------------------------
// The stream clients.

/// What the harness tells every stream client.
#[derive(Clone, Copy, Debug, Default)]
struct Control {
    /// Raised by one to drop every connected stream at the same instant.
    wave: u64,
    /// While true, each stream is dropped at a random instant.
    random_drops: bool,
    /// Every client stops.
    stop: bool,
}

/// Why a client's connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum End {
    /// The harness dropped it at a random instant.
    DroppedAtRandom,
    /// The harness dropped it with every other stream.
    DroppedInWave,
    /// presenced ended the stream (it had fallen behind, or presenced is
    /// stopping).
    EndedByServer,
    /// A 429 or 503 with `Retry-After`: wait that long.
    Refused(Duration),
    /// An error, counted: wait the stream's retry.
    Failed,
    Stop,
}

/// What one stream client has seen, shared with the harness.
#[derive(Debug, Default)]
struct ClientView {
    /// The last event of each of its users, by place in its slice.
    latest: Vec<Option<PresenceFields>>,
    last_event_id: Option<String>,
    /// The last `retry:` received.
    retry: Option<Duration>,
    /// The smallest and largest `retry:` received.
    retry_range: Option<(Duration, Duration)>,
    events: u64,
    /// Requests sent, the first included.
    attempts: u64,
    /// Streams opened (200), the first included.
    opened: u64,
    dropped_at_random: u64,
    /// When the wave dropped this client, and when it next asked again.
    wave_dropped: Option<Instant>,
    came_back: Option<Instant>,
    ended_by_server: u64,
    /// Events older than one already sent for the same user.
    out_of_order: u64,
    refusals: Refusals,
}

impl ClientView {
    fn filled(&self) -> bool {
        self.latest.iter().all(Option::is_some)
    }
}

/// One stream client: what it watches and where it records what it sees.
#[derive(Clone, Debug)]
struct Client {
    address: SocketAddr,
    /// `/_presenced/stream?ids=...`.
    path: Uri,
    users: Range<usize>,
    view: Arc<Mutex<ClientView>>,
    /// Every user's number by id.
    numbers: Arc<HashMap<String, usize>>,
}

impl Client {
    fn view(&self) -> MutexGuard<'_, ClientView> {
        self.view
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    /// Connects, waits the stream's retry after every drop, and connects
    /// again with `Last-Event-ID`, until told to stop.
    async fn run(
        self,
        mut control: watch::Receiver<Control>,
        mut random: Xorshift64,
        mean: Duration,
    ) {
        loop {
            let wave = {
                let now = control.borrow_and_update();
                if now.stop {
                    return;
                }
                now.wave
            };
            {
                let mut view = self.view();
                view.attempts += 1;
                if view.wave_dropped.is_some() && view.came_back.is_none() {
                    view.came_back = Some(Instant::now());
                }
            }
            let (opened, open) = watch::channel(false);
            let end = tokio::select! {
                end = self.serve(opened) => end,
                end = dropped(&mut control, wave, open, &mut random, mean) => end,
            };
            let retry = {
                let mut view = self.view();
                match end {
                    End::DroppedAtRandom => view.dropped_at_random += 1,
                    End::DroppedInWave => view.wave_dropped = Some(Instant::now()),
                    End::EndedByServer => view.ended_by_server += 1,
                    End::Refused(_) | End::Failed => {}
                    End::Stop => return,
                }
                view.retry.unwrap_or(DEFAULT_RETRY)
            };
            let wait = match end {
                End::Refused(wait) => wait,
                _ => retry,
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = stopped(&mut control) => return,
            }
        }
    }

    /// One connection: the request, then every event until the stream
    /// ends; `opened` is told once the stream is open.
    async fn serve(&self, opened: watch::Sender<bool>) -> End {
        let last_event_id = self.view().last_event_id.clone();
        let response = match self.request(last_event_id.as_deref()).await {
            Ok(response) => response,
            Err(error) => {
                self.view().refusals.error("stream: no answer", error);
                return End::Failed;
            }
        };
        let (_connection, response) = response;
        let status = response.status();
        if status != StatusCode::OK {
            if let Some(wait) = allowed_refusal(status, response.headers()) {
                self.view().refusals.allow(status);
                return End::Refused(wait);
            }
            let body = response.into_body().collect().await;
            let text = body
                .map(|body| String::from_utf8_lossy(&body.to_bytes()).into_owned())
                .unwrap_or_default();
            self.view().refusals.error(
                &format!("stream answered {}", status.as_u16()),
                format!(
                    "GET {} answered {status}: {}",
                    self.path,
                    &text[..text.len().min(300)]
                ),
            );
            return End::Failed;
        }
        let event_stream = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.starts_with("text/event-stream"));
        if !event_stream {
            self.view().refusals.error(
                "stream not text/event-stream",
                format!("GET {} answered {:?}", self.path, response.headers()),
            );
            return End::Failed;
        }
        self.view().opened += 1;
        let _ = opened.send(true);
        let mut body = response.into_body();
        let mut parser = SseParser::default();
        let mut items = Vec::new();
        loop {
            match body.frame().await {
                Some(Ok(frame)) => {
                    let Some(data) = frame.data_ref() else {
                        continue;
                    };
                    parser.feed(data, &mut items);
                    self.record(&mut items);
                }
                Some(Err(error)) => {
                    self.view().refusals.error(
                        "stream broke off",
                        format!("reading GET {}: {error}", self.path),
                    );
                    return End::Failed;
                }
                None => return End::EndedByServer,
            }
        }
    }

    /// Sends the stream's request on a new connection; the answer's head,
    /// and the task that drives the connection (aborted when dropped, which
    /// closes the socket).
    async fn request(
        &self,
        last_event_id: Option<&str>,
    ) -> Result<(AbortOnDrop, Response<Incoming>), String> {
        let stream = TcpStream::connect(self.address)
            .await
            .map_err(|error| format!("cannot connect to {}: {error}", self.address))?;
        let _ = stream.set_nodelay(true);
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|error| format!("HTTP handshake failed: {error}"))?;
        let connection = AbortOnDrop(tokio::spawn(async move {
            let _ = connection.await;
        }));
        let mut request = Request::new(Empty::<Bytes>::new());
        *request.uri_mut() = self.path.clone();
        let headers = request.headers_mut();
        headers.insert(
            HOST,
            HeaderValue::from_str(&self.address.to_string())
                .map_err(|error| format!("{}: {error}", self.address))?,
        );
        headers.insert(ACCEPT, HeaderValue::from_static("text/event-stream"));
        if let Some(id) = last_event_id {
            headers.insert(
                "last-event-id",
                HeaderValue::from_str(id)
                    .map_err(|error| format!("event id {id:?} is not a header: {error}"))?,
            );
        }
        let response = sender
            .send_request(request)
            .await
            .map_err(|error| format!("GET {}: {error}", self.path))?;
        Ok((connection, response))
    }

    /// Records what the parser read.
    fn record(&self, items: &mut Vec<SseItem>) {
        if items.is_empty() {
            return;
        }
        let mut view = self.view();
        for item in items.drain(..) {
            match item {
                SseItem::Retry(wait) => {
                    view.retry = Some(wait);
                    view.retry_range = Some(match view.retry_range {
                        Some((low, high)) => (low.min(wait), high.max(wait)),
                        None => (wait, wait),
                    });
                }
                SseItem::Event { event, id, data } => {
                    if id.is_some() {
                        view.last_event_id = id;
                    }
                    // An event with no data only moves the id to resume
                    // from (a stream's opening and closing events), as a
                    // browser's EventSource takes it.
                    if data.is_empty() {
                        continue;
                    }
                    if event != "presence" {
                        view.refusals.error(
                            "stream event not a presence",
                            format!("event {event:?} with data {data:?}"),
                        );
                        continue;
                    }
                    let presence: PresenceFields = match serde_json::from_str(&data) {
                        Ok(presence) => presence,
                        Err(error) => {
                            view.refusals.error(
                                "stream event not a presence",
                                format!("{error}: {}", &data[..data.len().min(300)]),
                            );
                            continue;
                        }
                    };
                    let place = self
                        .numbers
                        .get(&presence.id)
                        .filter(|number| self.users.contains(number))
                        .map(|number| number - self.users.start);
                    let Some(place) = place else {
                        view.refusals.error(
                            "stream event for a user not watched",
                            format!("{} on {}", presence.id, self.path),
                        );
                        continue;
                    };
                    view.events += 1;
                    let slot = &mut view.latest[place];
                    let went_back = slot.as_ref().is_some_and(|seen| {
                        older(&presence.sequence_number, &seen.sequence_number)
                    });
                    *slot = Some(presence);
                    if went_back {
                        view.out_of_order += 1;
                    }
                }
            }
        }
    }
}

/// A task aborted when this is dropped.
#[derive(Debug)]
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Resolves when the harness drops the connection made in `wave`: a new
/// wave, the stop, or while random drops are on, a random time after the
/// stream is `open` (a client that waits long for its stream to open is
/// not dropped for it).
async fn dropped(
    control: &mut watch::Receiver<Control>,
    wave: u64,
    mut open: watch::Receiver<bool>,
    random: &mut Xorshift64,
    mean: Duration,
) -> End {
    let mut drop_at: Option<Instant> = None;
    // The connection's end drops the sender; nothing more will come.
    let mut opening = true;
    loop {
        if !control.borrow().random_drops {
            drop_at = None;
        } else if drop_at.is_none() && *open.borrow() {
            // Exponential: memoryless, so drops come at a steady rate.
            let uniform = (random.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
            drop_at = Some(Instant::now() + mean.mul_f64(-(1.0 - uniform).ln()));
        }
        let at_random = async {
            match drop_at {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = at_random => return End::DroppedAtRandom,
            changed = control.changed() => {
                if changed.is_err() {
                    return End::Stop;
                }
                let now = *control.borrow_and_update();
                if now.stop {
                    return End::Stop;
                }
                if now.wave != wave {
                    return End::DroppedInWave;
                }
            }
            changed = open.changed(), if opening => opening = changed.is_ok() && !*open.borrow(),
        }
    }
}

/// Resolves when the harness stops the clients.
async fn stopped(control: &mut watch::Receiver<Control>) {
    loop {
        if control.borrow_and_update().stop {
            return;
        }
        if control.changed().await.is_err() {
            return;
        }
    }
}

// ---------------------------------------------------------------------------
// The measurement.

/// Runs the storm and adds its rows to the report.
pub async fn measure(context: &Context, report: &mut Report) -> Result<(), String> {
    let plan = StormPlan::new(context);
    let users = plan.users;
    let mut receivers = Vec::with_capacity(RECEIVERS);
    for _ in 0..RECEIVERS {
        receivers.push(Receiver::start().await?);
    }
    let args = [
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--store",
        "memory",
        "--auth",
        "none",
    ]
    .map(String::from);
    let mut server =
        ServerProcess::start("presenced (memory) storm", &context.presenced_binary, &args)?;
    server.wait_until_ready().await?;
    let address = server.address();
    let pid = server.pid();

    // Round 0: every user's first presence.
    let loaded = set_rounds(
        address,
        plan.connections,
        users,
        0..1,
        Arc::new(AtomicUsize::new(0)),
    )
    .await?;
    if loaded.refusals.error_count() > 0 {
        return Err(format!(
            "setting {users} users' first presence: {}",
            loaded.refusals.describe_errors()
        ));
    }
    let resident_loaded = resident_bytes(pid)?;

    // The webhook receivers.
    let subscriptions = subscribe(address, &receivers, &plan).await?;
    for (index, receiver) in receivers.iter().enumerate() {
        if receiver.handshakes() != subscriptions[index] {
            return Err(format!(
                "receiver {index} has {} subscriptions but answered {} handshakes",
                subscriptions[index],
                receiver.handshakes()
            ));
        }
    }

    // The streams.
    let numbers: Arc<HashMap<String, usize>> = Arc::new(
        (0..users)
            .map(|user| (user_guid(user as u64), user))
            .collect(),
    );
    let (control, control_receiver) = watch::channel(Control::default());
    let clients: Vec<Client> = (0..plan.streams)
        .map(|index| {
            let range = plan.stream_users(index);
            let ids: Vec<String> = range.clone().map(|user| user_guid(user as u64)).collect();
            Client {
                address,
                path: Uri::try_from(format!("/_presenced/stream?ids={}", ids.join(",")))
                    .expect("GUIDs and commas make a valid path"),
                view: Arc::new(Mutex::new(ClientView {
                    latest: vec![None; range.len()],
                    ..ClientView::default()
                })),
                users: range,
                numbers: numbers.clone(),
            }
        })
        .collect();
    let peak = Arc::new(AtomicU64::new(resident_loaded));
    let sampler = AbortOnDrop(tokio::spawn(sample_peak(pid, peak.clone())));
    let opening = Instant::now();
    let tasks: Vec<AbortOnDrop> = clients
        .iter()
        .enumerate()
        .map(|(index, client)| {
            AbortOnDrop(tokio::spawn(client.clone().run(
                control_receiver.clone(),
                Xorshift64::seeded(0x5707 + index as u64),
                plan.mean_connected,
            )))
        })
        .collect();
    loop {
        if clients.iter().all(|client| client.view().filled()) {
            break;
        }
        server.ensure_running()?;
        if opening.elapsed() > OPEN_DEADLINE {
            let waiting = clients
                .iter()
                .filter(|client| !client.view().filled())
                .count();
            return Err(format!(
                "{waiting} of {} streams had not sent every user's presence after {} s; {}",
                plan.streams,
                OPEN_DEADLINE.as_secs(),
                stream_errors(&clients).describe_errors()
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let opened_in = opening.elapsed();
    let resident_streaming = resident_bytes(pid)?;
    // Whatever arrived so far is round 0's (nothing, since the
    // subscriptions started after it).
    let mut webhooks: Vec<HashMap<String, String>> = vec![HashMap::new(); RECEIVERS];
    let mut webhook_problems = Refusals::default();
    let mut notifications = 0usize;
    let mut posts = 0usize;
    collect_webhooks(
        &receivers,
        &plan,
        &numbers,
        &mut webhooks,
        &mut webhook_problems,
        &mut notifications,
        &mut posts,
    );
    let setup_notifications = notifications;

    // The storm.
    println!(
        "[storm] {users} users set in {:.1} s; {} subscriptions; {} streams of {} users open in \
         {:.1} s; storm of {ROUNDS} rounds begins",
        loaded.elapsed.as_secs_f64(),
        subscriptions.iter().sum::<usize>(),
        plan.streams,
        plan.stream_users(0).len(),
        opened_in.as_secs_f64()
    );
    let (ticks_per_second, _) = clock_ticks_per_second();
    let cpu = CpuMeter::start(pid, ticks_per_second)?;
    control.send_modify(|control| control.random_drops = true);
    let answered = Arc::new(AtomicUsize::new(0));
    let total = users * ROUNDS;
    let setter = tokio::spawn(set_rounds(
        address,
        plan.connections,
        users,
        1..ROUNDS + 1,
        answered.clone(),
    ));
    let wave_threshold = (total as f64 * WAVE_AT) as usize;
    while answered.load(Ordering::Relaxed) < wave_threshold && !setter.is_finished() {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let wave_at = Instant::now();
    control.send_modify(|control| control.wave += 1);
    let storm = setter
        .await
        .map_err(|error| format!("the setPresence load failed: {error}"))??;
    let (_, cpu_seconds) = cpu.finish()?;
    let storm_done = Instant::now();
    control.send_modify(|control| control.random_drops = false);

    // Every client and receiver must come to every user's final presence.
    let mut reader = Connection::open(address).await?;
    let convergence = loop {
        let finals = read_presences(&mut reader, users).await?;
        collect_webhooks(
            &receivers,
            &plan,
            &numbers,
            &mut webhooks,
            &mut webhook_problems,
            &mut notifications,
            &mut posts,
        );
        let mismatches = compare(&finals, &clients, &webhooks, &plan);
        if mismatches.is_empty() {
            break Ok(storm_done.elapsed());
        }
        server.ensure_running()?;
        if storm_done.elapsed() > CONVERGENCE_DEADLINE {
            break Err(mismatches);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let resident_peak = peak.load(Ordering::Relaxed).max(resident_bytes(pid)?);
    control.send_modify(|control| control.stop = true);
    drop(tasks);
    drop(sampler);

    // The report.
    let streams = summarize_streams(&clients, wave_at);
    let mut stream_refusals = stream_errors(&clients);
    stream_refusals.merge(&webhook_problems);
    let mut refusals = Refusals::default();
    refusals.merge(&storm.refusals);
    refusals.merge(&stream_refusals);
    let label = "reconnect storm (memory)";
    let scenario = format!(
        "reconnect storm: setPresence, {ROUNDS} rounds × {users} users, while {} streams of {} \
         users are dropped and reconnect (memory)",
        plan.streams,
        plan.stream_users(0).len()
    );
    let seconds = storm.elapsed.as_secs_f64();
    let no_errors = Target::new(
        "no error but 429/503 with Retry-After",
        refusals.error_count() == 0,
    );
    report.throughput.push(ThroughputRow {
        scenario,
        server: "presenced (memory), closed loop".into(),
        requests_per_second: storm.succeeded as f64 / seconds.max(1e-9),
        p50_micros: storm.latency_micros.value_at_quantile(0.50),
        p99_micros: storm.latency_micros.value_at_quantile(0.99),
        p999_micros: storm.latency_micros.value_at_quantile(0.999),
        server_cpu_micros: (storm.succeeded > 0)
            .then(|| cpu_seconds * 1e6 / storm.succeeded as f64),
        ratio_to_ceiling: None,
        cpu_ratio_to_ceiling: None,
        errors: storm.refusals.error_count(),
        target: Some(Target::new(
            "no error but 429/503 with Retry-After",
            storm.refusals.error_count() == 0,
        )),
        target_ratio: None,
    });
    report.footprint.push(FootprintRow {
        measurement: format!(
            "{label}: answers refused with Retry-After (429, 503), and every other error"
        ),
        value: format!(
            "setPresence: {} refused, errors {}; streams and webhooks: {} refused, errors {}",
            storm.refusals.describe_allowed(),
            storm.refusals.describe_errors(),
            stream_refusals.describe_allowed(),
            stream_refusals.describe_errors()
        ),
        target: Some(no_errors),
    });
    report.footprint.push(FootprintRow {
        measurement: format!(
            "{label}: {} streams of {} users reconnecting with Last-Event-ID, dropped at random \
             (mean {} s connected) and all at once when {:.0}% of the requests were answered",
            plan.streams,
            plan.stream_users(0).len(),
            plan.mean_connected.as_secs_f64(),
            WAVE_AT * 100.0
        ),
        value: streams.describe(),
        target: None,
    });
    report.footprint.push(FootprintRow {
        measurement: format!("{label}: presenced's peak resident memory"),
        value: format!(
            "{:.1} MiB ({:.1} MiB with {users} users set, {:.1} MiB once the streams were open)",
            mebibytes(resident_peak),
            mebibytes(resident_loaded),
            mebibytes(resident_streaming)
        ),
        target: None,
    });
    let checked = format!(
        "{} streams × {} users and {RECEIVERS} webhook receivers × {} users (by sequenceNumber; \
         {notifications} notifications in {posts} POSTs, {setup_notifications} before the storm)",
        plan.streams,
        plan.stream_users(0).len(),
        plan.receiver_users(0).len()
    );
    let (value, met) = match &convergence {
        Ok(after) => (
            format!(
                "{checked}: all match, {:.2} s after the last setPresence was answered",
                after.as_secs_f64()
            ),
            true,
        ),
        Err(mismatches) => (
            format!(
                "{checked}: {} mismatches {} s after the last setPresence",
                mismatches.len(),
                CONVERGENCE_DEADLINE.as_secs()
            ),
            false,
        ),
    };
    report.footprint.push(FootprintRow {
        measurement: format!(
            "{label}: every stream and webhook receiver ends with each user's final presence"
        ),
        value,
        target: Some(Target::new("all", met)),
    });
    println!(
        "[storm] {} setPresence in {seconds:.1} s, p50 {:.3} ms, p99 {:.3} ms; {}; peak {:.1} MiB",
        storm.succeeded,
        storm.latency_micros.value_at_quantile(0.50) as f64 / 1000.0,
        storm.latency_micros.value_at_quantile(0.99) as f64 / 1000.0,
        streams.describe(),
        mebibytes(resident_peak)
    );
    if let Err(mismatches) = convergence {
        server.keep_log();
        let quoted: Vec<&str> = mismatches
            .iter()
            .take(QUOTED_ERRORS)
            .map(String::as_str)
            .collect();
        return Err(format!(
            "{} mismatches with the final presences after {} s; the first: {}",
            mismatches.len(),
            CONVERGENCE_DEADLINE.as_secs(),
            quoted.join(" | ")
        ));
    }
    if refusals.error_count() > 0 {
        server.keep_log();
        return Err(format!(
            "errors other than 429/503 with Retry-After: {}",
            refusals.describe_errors()
        ));
    }
    Ok(())
}

fn mebibytes(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Keeps the largest resident memory of `pid` in `peak`, sampled every
/// 20 ms, until aborted.
async fn sample_peak(pid: u32, peak: Arc<AtomicU64>) {
    loop {
        if let Ok(bytes) = resident_bytes(pid) {
            peak.fetch_max(bytes, Ordering::Relaxed);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every stream client's errors and allowed refusals together.
fn stream_errors(clients: &[Client]) -> Refusals {
    let mut all = Refusals::default();
    for client in clients {
        all.merge(&client.view().refusals);
    }
    all
}

/// Subscribes each receiver to its slice of the users; how many
/// subscriptions each has.
async fn subscribe(
    address: SocketAddr,
    receivers: &[Receiver],
    plan: &StormPlan,
) -> Result<Vec<usize>, String> {
    let expiration = jiff::Timestamp::now()
        .checked_add(SUBSCRIPTION_LIFETIME)
        .map_err(|error| format!("now plus {SUBSCRIPTION_LIFETIME:?}: {error}"))?
        .to_string();
    let mut bodies = Vec::new();
    let mut counts = Vec::with_capacity(receivers.len());
    for (index, receiver) in receivers.iter().enumerate() {
        let ids: Vec<String> = plan
            .receiver_users(index)
            .map(|user| user_guid(user as u64))
            .collect();
        let url = receiver.url("/notify");
        let made = subscription_bodies(&ids, |_| url.clone(), &expiration);
        counts.push(made.len());
        bodies.extend(made);
    }
    let count = bodies.len();
    let generator: SequenceGenerator = Arc::new(move |index| {
        RequestSpec::post_json(
            Uri::from_static("/v1.0/subscriptions"),
            bodies[index].clone(),
        )
    });
    let outcome = run_sequence(address, SUBSCRIBING_CONNECTIONS, count, generator).await?;
    if outcome.errors() > 0 {
        return Err(format!(
            "creating {count} subscriptions: {} failed; the first: {}",
            outcome.errors(),
            outcome.first_failure.as_deref().unwrap_or("?")
        ));
    }
    Ok(counts)
}

/// Moves what the receivers got into `newest` (each receiver's newest
/// sequence number per user), counting notifications and POSTs; a
/// notification for a user outside the receiver's slice, with the wrong
/// clientState, or a POST that was not a batch, is an error.
fn collect_webhooks(
    receivers: &[Receiver],
    plan: &StormPlan,
    numbers: &HashMap<String, usize>,
    newest: &mut [HashMap<String, String>],
    problems: &mut Refusals,
    notifications: &mut usize,
    posts: &mut usize,
) {
    for (index, receiver) in receivers.iter().enumerate() {
        let log = receiver.take();
        *posts += log.posts;
        *notifications += log.receipts.len();
        for problem in log.problems {
            problems.error("webhook POST not a batch of notifications", problem);
        }
        let slice = plan.receiver_users(index);
        for receipt in log.receipts {
            if receipt.client_state.as_deref() != Some(CLIENT_STATE) {
                problems.error(
                    "webhook without the clientState",
                    format!("{receipt:?} at receiver {index}"),
                );
            }
            if !numbers
                .get(&receipt.user)
                .is_some_and(|number| slice.contains(number))
            {
                problems.error(
                    "webhook for a user not subscribed",
                    format!("{} at receiver {index}", receipt.user),
                );
                continue;
            }
            match newest[index].get_mut(&receipt.user) {
                Some(seen) if !older(seen, &receipt.sequence) => {}
                Some(seen) => *seen = receipt.sequence,
                None => {
                    newest[index].insert(receipt.user, receipt.sequence);
                }
            }
        }
    }
}

/// Every user's presence now, through getPresencesByUserId, by user number.
async fn read_presences(
    connection: &mut Connection,
    users: usize,
) -> Result<Vec<PresenceFields>, String> {
    #[derive(Deserialize)]
    struct Batch {
        value: Vec<PresenceFields>,
    }
    let mut presences = Vec::with_capacity(users);
    for chunk in (0..users).collect::<Vec<_>>().chunks(BATCH_IDS) {
        let ids: Vec<String> = chunk.iter().map(|user| user_guid(*user as u64)).collect();
        let body = serde_json::json!({ "ids": ids }).to_string();
        let spec = RequestSpec::post_json(
            Uri::from_static("/v1.0/communications/getPresencesByUserId"),
            Bytes::from(body),
        );
        let answer = connection.send(&spec).await?;
        if !answer.status.is_success() {
            return Err(format!(
                "getPresencesByUserId answered {}: {}",
                answer.status,
                String::from_utf8_lossy(&answer.body[..answer.body.len().min(300)])
            ));
        }
        let batch: Batch = serde_json::from_slice(&answer.body)
            .map_err(|error| format!("getPresencesByUserId's answer: {error}"))?;
        let mut by_id: HashMap<String, PresenceFields> = batch
            .value
            .into_iter()
            .map(|presence| (presence.id.clone(), presence))
            .collect();
        for id in ids {
            let presence = by_id
                .remove(&id)
                .ok_or_else(|| format!("getPresencesByUserId left out {id}"))?;
            presences.push(presence);
        }
    }
    Ok(presences)
}

/// Every difference between the final presences and what the streams and
/// receivers last have, worded.
fn compare(
    finals: &[PresenceFields],
    clients: &[Client],
    webhooks: &[HashMap<String, String>],
    plan: &StormPlan,
) -> Vec<String> {
    let mut mismatches = Vec::new();
    for (index, client) in clients.iter().enumerate() {
        let view = client.view();
        for (place, seen) in view.latest.iter().enumerate() {
            let wanted = &finals[client.users.start + place];
            if seen.as_ref() != Some(wanted) {
                mismatches.push(format!(
                    "stream {index} last sent {} as {seen:?}, but it is {wanted:?}",
                    wanted.id
                ));
            }
        }
    }
    for (index, newest) in webhooks.iter().enumerate() {
        for user in plan.receiver_users(index) {
            let wanted = &finals[user];
            let seen = newest.get(&wanted.id);
            if seen != Some(&wanted.sequence_number) {
                mismatches.push(format!(
                    "receiver {index}'s newest notification of {} is {seen:?}, but it is {}",
                    wanted.id, wanted.sequence_number
                ));
            }
        }
    }
    mismatches
}

/// The stream clients' counts, summed.
#[derive(Debug, Default)]
struct StreamSummary {
    attempts: u64,
    opened: u64,
    events: u64,
    dropped_at_random: u64,
    ended_by_server: u64,
    out_of_order: u64,
    retry_range: Option<(Duration, Duration)>,
    clients: u64,
    /// Clients connected (or connecting) when all were dropped at once.
    dropped_in_wave: usize,
    /// When each of them asked again, after the wave.
    came_back: Vec<Duration>,
    without_retry: usize,
}

fn summarize_streams(clients: &[Client], wave_at: Instant) -> StreamSummary {
    let mut summary = StreamSummary::default();
    for client in clients {
        let view = client.view();
        summary.clients += 1;
        summary.attempts += view.attempts;
        summary.opened += view.opened;
        summary.events += view.events;
        summary.dropped_at_random += view.dropped_at_random;
        summary.ended_by_server += view.ended_by_server;
        summary.out_of_order += view.out_of_order;
        if view.retry.is_none() {
            summary.without_retry += 1;
        }
        if let Some((low, high)) = view.retry_range {
            summary.retry_range = Some(match summary.retry_range {
                Some((lowest, highest)) => (lowest.min(low), highest.max(high)),
                None => (low, high),
            });
        }
        if view.wave_dropped.is_some() {
            summary.dropped_in_wave += 1;
        }
        if let (Some(_), Some(back)) = (view.wave_dropped, view.came_back) {
            summary
                .came_back
                .push(back.saturating_duration_since(wave_at));
        }
    }
    summary.came_back.sort_unstable();
    summary
}

impl StreamSummary {
    /// The most clients that asked again within any 100 ms after the wave.
    fn densest_100ms(&self) -> usize {
        let window = Duration::from_millis(100);
        let mut densest = 0;
        let mut start = 0;
        for end in 0..self.came_back.len() {
            while self.came_back[end] - self.came_back[start] >= window {
                start += 1;
            }
            densest = densest.max(end + 1 - start);
        }
        densest
    }

    fn describe(&self) -> String {
        let retry = match self.retry_range {
            Some((low, high)) if self.without_retry == 0 => format!(
                "retry: sent from {:.3} s to {:.3} s",
                low.as_secs_f64(),
                high.as_secs_f64()
            ),
            Some((low, high)) => format!(
                "retry: sent from {:.3} s to {:.3} s, none to {} clients (which waited {} s)",
                low.as_secs_f64(),
                high.as_secs_f64(),
                self.without_retry,
                DEFAULT_RETRY.as_secs()
            ),
            None => format!(
                "no retry: sent, so every client waited {} s",
                DEFAULT_RETRY.as_secs()
            ),
        };
        let wave = match (self.came_back.first(), self.came_back.last()) {
            (Some(first), Some(last)) => format!(
                "of the {} dropped at once, {} asked again from {:.2} s to {:.2} s after, at \
                 most {} within 100 ms",
                self.dropped_in_wave,
                self.came_back.len(),
                first.as_secs_f64(),
                last.as_secs_f64(),
                self.densest_100ms()
            ),
            _ => "no stream was connected when all were dropped".into(),
        };
        format!(
            "{} reconnections ({} of {} requests opened a stream): {} dropped at random, {} \
             ended by presenced; {wave}; {retry}; {} events received, {} older than one already \
             sent for the user",
            self.attempts.saturating_sub(self.clients),
            self.opened,
            self.attempts,
            self.dropped_at_random,
            self.ended_by_server,
            self.events,
            self.out_of_order
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(chunks: &[&str]) -> Vec<SseItem> {
        let mut parser = SseParser::default();
        let mut items = Vec::new();
        for chunk in chunks {
            parser.feed(chunk.as_bytes(), &mut items);
        }
        items
    }

    fn event(id: Option<&str>, data: &str) -> SseItem {
        SseItem::Event {
            event: "presence".into(),
            id: id.map(str::to_string),
            data: data.into(),
        }
    }

    #[test]
    fn events_are_read_across_chunks_with_their_ids_and_retry() {
        let stream = "retry: 1500\n\nevent: presence\nid: c-1\ndata: {\"a\":1}\n\n: keep-alive\n\nevent: presence\r\nid:c-2\r\ndata: x\r\ndata: y\r\n\r\n";
        let whole = parse(&[stream]);
        assert_eq!(
            whole,
            vec![
                SseItem::Retry(Duration::from_millis(1500)),
                event(Some("c-1"), "{\"a\":1}"),
                event(Some("c-2"), "x\ny"),
            ]
        );
        // Any split gives the same items.
        for at in 1..stream.len() {
            let (head, tail) = stream.split_at(at);
            assert_eq!(parse(&[head, tail]), whole, "split at {at}");
        }
    }

    #[test]
    fn the_last_event_id_carries_over_and_bad_fields_are_ignored() {
        let items = parse(&[
            "id: 7\nevent: presence\ndata: a\n\n",
            "event: presence\ndata: b\n\n",
            "retry: soon\nretry:\nunknown: 1\ndata: c\n\n",
        ]);
        assert_eq!(
            items,
            vec![
                event(Some("7"), "a"),
                event(Some("7"), "b"),
                SseItem::Event {
                    event: "message".into(),
                    id: Some("7".into()),
                    data: "c".into(),
                },
            ]
        );
        // A blank line with nothing before it dispatches nothing.
        assert_eq!(parse(&["\n\n: comment\n\n"]), Vec::new());
    }

    #[test]
    fn slices_cover_every_user_once() {
        for (total, parts) in [(100_000, 1_000), (10_000, 100), (10, 3), (7, 10)] {
            let mut covered = Vec::new();
            for index in 0..parts {
                covered.extend(slice(total, parts, index));
            }
            assert_eq!(
                covered,
                (0..total).collect::<Vec<_>>(),
                "{total} in {parts}"
            );
        }
        assert_eq!(slice(100_000, 1_000, 999), 99_900..100_000);
    }

    #[test]
    fn every_round_changes_every_user() {
        for user in 0..10 {
            for round in 1..=ROUNDS {
                assert_ne!(
                    set_request(user, round).body,
                    set_request(user, round - 1).body,
                    "user {user}, round {round}"
                );
            }
        }
        let body: serde_json::Value =
            serde_json::from_slice(&set_request(3, 1).body).expect("JSON");
        assert_eq!(body["availability"], "DoNotDisturb");
        assert_eq!(body["activity"], "Presenting");
        assert_eq!(body["sessionId"], APP_SESSION_ID);
    }

    #[test]
    fn only_429_and_503_with_whole_seconds_of_retry_after_are_allowed() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(RETRY_AFTER, HeaderValue::from_str(value).expect("a value"));
            headers
        };
        assert_eq!(
            allowed_refusal(StatusCode::TOO_MANY_REQUESTS, &with("2")),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            allowed_refusal(StatusCode::SERVICE_UNAVAILABLE, &with("1")),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            allowed_refusal(StatusCode::SERVICE_UNAVAILABLE, &HeaderMap::new()),
            None
        );
        assert_eq!(
            allowed_refusal(StatusCode::INTERNAL_SERVER_ERROR, &with("1")),
            None
        );
        assert_eq!(
            allowed_refusal(StatusCode::TOO_MANY_REQUESTS, &with("soon")),
            None
        );
    }

    #[test]
    fn a_stale_or_missing_last_presence_is_a_mismatch() {
        let presence = |user: usize, sequence: u64| PresenceFields {
            id: user_guid(user as u64),
            availability: "Busy".into(),
            activity: "InACall".into(),
            sequence_number: format!("A{sequence:020}"),
        };
        let plan = StormPlan {
            users: 4,
            streams: 2,
            connections: 1,
            mean_connected: Duration::from_secs(1),
        };
        let finals: Vec<PresenceFields> = (0..4).map(|user| presence(user, 9)).collect();
        let clients: Vec<Client> = (0..2)
            .map(|index| Client {
                address: SocketAddr::from(([127, 0, 0, 1], 9)),
                path: Uri::from_static("/_presenced/stream"),
                users: plan.stream_users(index),
                view: Arc::new(Mutex::new(ClientView {
                    latest: plan
                        .stream_users(index)
                        .map(|user| Some(presence(user, 9)))
                        .collect(),
                    ..ClientView::default()
                })),
                numbers: Arc::default(),
            })
            .collect();
        let mut webhooks: Vec<HashMap<String, String>> = (0..RECEIVERS)
            .map(|index| {
                plan.receiver_users(index)
                    .map(|user| (user_guid(user as u64), format!("A{:020}", 9)))
                    .collect()
            })
            .collect();
        assert_eq!(
            compare(&finals, &clients, &webhooks, &plan),
            Vec::<String>::new()
        );

        // A stream one change behind, and a receiver that never heard of a
        // user: two mismatches, each naming its user.
        clients[1].view().latest[0] = Some(presence(2, 8));
        webhooks[3].clear();
        let mismatches = compare(&finals, &clients, &webhooks, &plan);
        assert_eq!(mismatches.len(), 2, "{mismatches:#?}");
        assert!(mismatches[0].starts_with("stream 1") && mismatches[0].contains(&user_guid(2)));
        assert!(mismatches[1].starts_with("receiver 3") && mismatches[1].contains(&user_guid(3)));
    }

    #[test]
    fn sequence_numbers_order_by_value() {
        assert!(older("A00000000000000000009", "A00000000000000000010"));
        assert!(!older("A00000000000000000010", "A00000000000000000010"));
        assert!(older("9", "10"));
    }

    #[test]
    fn the_densest_100ms_after_the_wave_is_counted() {
        let summary = StreamSummary {
            came_back: [1_000, 1_050, 1_099, 1_100, 2_500]
                .map(Duration::from_millis)
                .to_vec(),
            ..StreamSummary::default()
        };
        assert_eq!(summary.densest_100ms(), 3);
        assert_eq!(StreamSummary::default().densest_100ms(), 0);
    }
}
