//! The load generator: N keep-alive HTTP/1.1 connections over loopback, one
//! task per connection sending its requests one after the other, and the
//! latency of every measured request in an HDR histogram (microseconds).
//! The same over HTTP/2 in plain text (h2c with prior knowledge,
//! [`Protocol::Http2`]): N connections, each with one stream at a time, so
//! that the two protocols carry the same requests with the same
//! concurrency and differ only in their framing.
//!
//! It runs on the harness's current-thread tokio runtime, so the whole
//! generator uses at most one core and leaves the others to the server being
//! measured. Two pacings exist:
//!
//! - closed loop ([`Pacing::ClosedLoop`]): each connection sends its next
//!   request as soon as the previous answer is in; this finds the maximum
//!   throughput;
//! - open loop ([`Pacing::OpenLoop`]): each connection sends on a fixed
//!   schedule, whatever the server does; this measures latency at a given
//!   load without coordinated omission (see [`drive_open_loop`]).
//!
//! Requests come from a [`RequestGenerator`], a closure given a
//! per-connection [`Xorshift64`], so that two runs with the same connection
//! count send exactly the same requests in the same order per connection:
//! that is what lets presenced and the ceiling be driven with the same
//! payloads.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderMap, HeaderValue};
use hyper::http::uri::{Authority, Scheme};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// The largest latency the histograms hold, in microseconds (one minute);
/// anything slower is recorded as one minute, which is already a failure.
const HISTOGRAM_MAX_MICROS: u64 = 60_000_000;

/// A xorshift64* generator: tiny, fast and deterministic, which is all a load
/// generator needs (pulling in `rand` for this would be a dependency for
/// nothing).
#[derive(Clone, Debug)]
pub struct Xorshift64 {
    state: u64,
}

impl Xorshift64 {
    /// A generator whose sequence depends only on `seed`; neighbouring seeds
    /// (connection 0, 1, 2...) are spread by splitmix64 so that their
    /// sequences do not start alike, and a zero state (which xorshift never
    /// leaves) is impossible.
    pub fn seeded(seed: u64) -> Xorshift64 {
        Xorshift64 {
            state: splitmix64(seed) | 1,
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..bound` (multiply-shift: no division, and a bias far
    /// below anything a benchmark could notice).
    pub fn below(&mut self, bound: usize) -> usize {
        ((u128::from(self.next_u64()) * bound as u128) >> 64) as usize
    }
}

/// The splitmix64 finalizer: a bijection on `u64` that scrambles its input
/// well. Used to seed [`Xorshift64`] and to make GUIDs look random.
pub fn splitmix64(value: u64) -> u64 {
    let mut z = value.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// One request to send: method, origin-form path, and body (empty for GET).
/// `Uri` and `Bytes` clone by reference count, so generators precompute them
/// and a request costs no formatting in the measured loop.
#[derive(Clone, Debug)]
pub struct RequestSpec {
    pub method: Method,
    pub uri: Uri,
    pub body: Bytes,
    /// The `Authorization` header, for servers that check tokens.
    pub authorization: Option<HeaderValue>,
}

impl RequestSpec {
    pub fn get(uri: Uri) -> RequestSpec {
        RequestSpec {
            method: Method::GET,
            uri,
            body: Bytes::new(),
            authorization: None,
        }
    }

    pub fn post_json(uri: Uri, body: Bytes) -> RequestSpec {
        RequestSpec {
            method: Method::POST,
            uri,
            body,
            authorization: None,
        }
    }

    pub fn with_authorization(mut self, authorization: Option<&HeaderValue>) -> RequestSpec {
        self.authorization = authorization.cloned();
        self
    }
}

/// Makes the next request of a connection from that connection's generator.
pub type RequestGenerator = Arc<dyn Fn(&mut Xorshift64) -> RequestSpec + Send + Sync>;

/// Makes request number `index` of a fixed sequence (preloads).
pub type SequenceGenerator = Arc<dyn Fn(usize) -> RequestSpec + Send + Sync>;

/// How requests are paced on each connection.
#[derive(Clone, Copy, Debug)]
pub enum Pacing {
    /// The next request as soon as the previous answer is in.
    ClosedLoop,
    /// This many requests per second in total, spread evenly over the
    /// connections and over time.
    OpenLoop { requests_per_second: f64 },
}

/// The HTTP the generator speaks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Protocol {
    #[default]
    Http1,
    /// HTTP/2 in plain text with prior knowledge (h2c).
    Http2,
}

/// One load run: connections, warm-up (sent but not counted), measured span.
#[derive(Clone, Copy, Debug)]
pub struct LoadPlan {
    pub connections: usize,
    pub warmup: Duration,
    pub measure: Duration,
    pub pacing: Pacing,
    pub protocol: Protocol,
}

/// What a run (or one connection of it) measured.
#[derive(Clone, Debug)]
pub struct LoadOutcome {
    /// Latency of each measured successful request, in microseconds.
    pub latency_micros: Histogram<u64>,
    /// Requests answered 2xx inside the measured window.
    pub succeeded: u64,
    /// Answers that were not 2xx, warm-up included: any is a harness or
    /// server bug, so none may go unreported.
    pub failed_status: u64,
    /// Requests that got no answer (connection refused, reset, closed),
    /// warm-up included.
    pub failed_transport: u64,
    /// The first failure, to say what went wrong.
    pub first_failure: Option<String>,
    /// The span the counts were taken over.
    pub measured: Duration,
    /// CPU seconds the server process used in the measured window, when its
    /// process id was given. Unlike requests/s, CPU per request hardly
    /// depends on what else the machine is doing, so it is the number to
    /// compare when profiling.
    pub server_cpu_seconds: Option<f64>,
}

impl LoadOutcome {
    pub fn empty(measured: Duration) -> LoadOutcome {
        LoadOutcome {
            latency_micros: new_latency_histogram(),
            succeeded: 0,
            failed_status: 0,
            failed_transport: 0,
            first_failure: None,
            measured,
            server_cpu_seconds: None,
        }
    }

    /// Adds another connection's counts and latencies to these. The measured
    /// span is the run's, not a sum: connections run side by side.
    pub fn merge(&mut self, other: &LoadOutcome) {
        self.latency_micros
            .add(&other.latency_micros)
            .expect("every latency histogram has the same bounds");
        self.succeeded += other.succeeded;
        self.failed_status += other.failed_status;
        self.failed_transport += other.failed_transport;
        if self.first_failure.is_none() {
            self.first_failure.clone_from(&other.first_failure);
        }
        self.measured = self.measured.max(other.measured);
    }

    pub fn errors(&self) -> u64 {
        self.failed_status + self.failed_transport
    }

    pub fn requests_per_second(&self) -> f64 {
        let seconds = self.measured.as_secs_f64();
        if seconds > 0.0 {
            self.succeeded as f64 / seconds
        } else {
            0.0
        }
    }

    /// Server CPU time per successful request, in microseconds.
    pub fn server_cpu_micros_per_request(&self) -> Option<f64> {
        let seconds = self.server_cpu_seconds?;
        (self.succeeded > 0).then(|| seconds * 1e6 / self.succeeded as f64)
    }

    /// The latency at `quantile` (0.99 for p99), in microseconds.
    pub fn latency_at(&self, quantile: f64) -> u64 {
        self.latency_micros.value_at_quantile(quantile)
    }

    fn record_success(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.latency_micros.saturating_record(micros.max(1));
        self.succeeded += 1;
    }

    fn record_failure(&mut self, failure: Failure) {
        match failure {
            Failure::Status(_) => self.failed_status += 1,
            Failure::Transport(_) => self.failed_transport += 1,
        }
        if self.first_failure.is_none() {
            self.first_failure = Some(failure.describe());
        }
    }
}

pub fn new_latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HISTOGRAM_MAX_MICROS, 3)
        .expect("1..=60s at 3 significant digits is a valid histogram")
}

/// Why one request did not succeed.
#[derive(Debug)]
enum Failure {
    Status(String),
    Transport(String),
}

impl Failure {
    fn describe(&self) -> String {
        match self {
            Failure::Status(text) => text.clone(),
            Failure::Transport(text) => format!("no answer: {text}"),
        }
    }
}

/// A whole answer: status, headers and the complete body.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    /// The size of the header block as sent (`name: value\r\n` per header),
    /// without the status line, which has the same size for every 200.
    pub fn header_bytes(&self) -> usize {
        header_block_bytes(&self.headers)
    }
}

/// The bytes `name: value\r\n` takes for every header of `headers`.
pub fn header_block_bytes(headers: &HeaderMap) -> usize {
    headers
        .iter()
        .map(|(name, value)| name.as_str().len() + 2 + value.len() + 2)
        .sum()
}

/// One keep-alive client connection.
pub struct Connection {
    address: SocketAddr,
    host: HeaderValue,
    sender: Sender,
}

/// hyper's client side of one connection, of either protocol.
enum Sender {
    Http1(http1::SendRequest<Full<Bytes>>),
    /// With the authority that HTTP/2 sends in each request's URI instead
    /// of a `Host` header.
    Http2(http2::SendRequest<Full<Bytes>>, Authority),
}

impl Connection {
    /// Opens an HTTP/1.1 connection.
    pub async fn open(address: SocketAddr) -> Result<Connection, String> {
        Connection::open_over(address, Protocol::Http1).await
    }

    pub async fn open_over(address: SocketAddr, protocol: Protocol) -> Result<Connection, String> {
        let stream = TcpStream::connect(address)
            .await
            .map_err(|error| format!("cannot connect to {address}: {error}"))?;
        // Requests are small and sent one at a time: Nagle would only add
        // delay.
        stream
            .set_nodelay(true)
            .map_err(|error| format!("cannot set TCP_NODELAY: {error}"))?;
        let handshake_failed =
            |error: hyper::Error| format!("HTTP handshake with {address} failed: {error}");
        // The connection future does the socket IO; it ends when the sender
        // is dropped or the server closes.
        let sender = match protocol {
            Protocol::Http1 => {
                let (sender, connection) = http1::handshake(TokioIo::new(stream))
                    .await
                    .map_err(handshake_failed)?;
                tokio::spawn(async move {
                    let _ = connection.await;
                });
                Sender::Http1(sender)
            }
            Protocol::Http2 => {
                let (sender, connection) =
                    http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
                        .await
                        .map_err(handshake_failed)?;
                tokio::spawn(async move {
                    let _ = connection.await;
                });
                let authority = Authority::try_from(address.to_string())
                    .map_err(|error| format!("{address} is not an authority: {error}"))?;
                Sender::Http2(sender, authority)
            }
        };
        let host = HeaderValue::from_str(&address.to_string())
            .map_err(|error| format!("{address} is not a Host header: {error}"))?;
        Ok(Connection {
            address,
            host,
            sender,
        })
    }

    fn protocol(&self) -> Protocol {
        match self.sender {
            Sender::Http1(_) => Protocol::Http1,
            Sender::Http2(..) => Protocol::Http2,
        }
    }

    /// Sends `spec` and reads its whole answer, whatever its status.
    pub async fn send(&mut self, spec: &RequestSpec) -> Result<Answer, String> {
        let mut request = Request::new(Full::new(spec.body.clone()));
        *request.method_mut() = spec.method.clone();
        let headers = request.headers_mut();
        if !spec.body.is_empty() {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        if let Some(authorization) = &spec.authorization {
            headers.insert(AUTHORIZATION, authorization.clone());
        }
        let closed = |error: hyper::Error| format!("connection closed: {error}");
        let response = match &mut self.sender {
            Sender::Http1(sender) => {
                *request.uri_mut() = spec.uri.clone();
                request.headers_mut().insert(HOST, self.host.clone());
                sender.ready().await.map_err(closed)?;
                sender.send_request(request).await
            }
            Sender::Http2(sender, authority) => {
                // The parts are reference-counted: no formatting per request.
                let mut parts = spec.uri.clone().into_parts();
                parts.scheme = Some(Scheme::HTTP);
                parts.authority = Some(authority.clone());
                *request.uri_mut() = Uri::from_parts(parts)
                    .map_err(|error| format!("{} as an absolute URI: {error}", spec.uri))?;
                sender.ready().await.map_err(closed)?;
                sender.send_request(request).await
            }
        }
        .map_err(|error| error.to_string())?;
        let (parts, body) = response.into_parts();
        // The whole body is read: a server is not done until it has sent it.
        let body = body
            .collect()
            .await
            .map_err(|error| format!("reading the body: {error}"))?
            .to_bytes();
        Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    /// Sends `spec` and classifies the answer.
    async fn exchange(&mut self, spec: &RequestSpec) -> Result<(), Failure> {
        match self.send(spec).await {
            Ok(answer) if answer.status.is_success() => Ok(()),
            Ok(answer) => Err(Failure::Status(format!(
                "{} {} answered {}: {}",
                spec.method,
                spec.uri,
                answer.status,
                String::from_utf8_lossy(&answer.body[..answer.body.len().min(300)])
            ))),
            Err(error) => Err(Failure::Transport(format!(
                "{} {}: {error}",
                spec.method, spec.uri
            ))),
        }
    }

    /// After a transport failure: a fresh connection, retried until `until`
    /// (a server that closed one connection may still accept another).
    pub async fn reconnect(&mut self, until: Instant) -> bool {
        while Instant::now() < until {
            match Connection::open_over(self.address, self.protocol()).await {
                Ok(fresh) => {
                    *self = fresh;
                    return true;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
        false
    }
}

/// Sends one request on a fresh HTTP/1.1 connection and returns the whole
/// answer (sizes of a sample answer, /metrics, the manual clock).
pub async fn send_once(address: SocketAddr, spec: &RequestSpec) -> Result<Answer, String> {
    send_once_over(address, Protocol::Http1, spec).await
}

/// [`send_once`] over `protocol`.
pub async fn send_once_over(
    address: SocketAddr,
    protocol: Protocol,
    spec: &RequestSpec,
) -> Result<Answer, String> {
    let mut connection = Connection::open_over(address, protocol).await?;
    connection
        .send(spec)
        .await
        .map_err(|error| format!("{} {}: {error}", spec.method, spec.uri))
}

/// The instants that bound a run.
#[derive(Clone, Copy, Debug)]
struct Window {
    /// When the first request is due.
    start: Instant,
    /// When the warm-up ends and counting begins.
    measure_start: Instant,
    /// When sending stops.
    end: Instant,
}

impl Window {
    fn counts(&self, completed: Instant) -> bool {
        completed >= self.measure_start && completed < self.end
    }
}

/// Runs `plan` against `address`: opens every connection first (so that
/// connection set-up is not measured), then sends through warm-up and the
/// measured span, and merges every connection's outcome.
/// Runs `plan` against `address`; with `server_pid`, also measures the CPU
/// that process uses during the measured window.
pub async fn run_load(
    address: SocketAddr,
    plan: LoadPlan,
    generator: RequestGenerator,
    server_pid: Option<u32>,
) -> Result<LoadOutcome, String> {
    let mut connections = Vec::with_capacity(plan.connections);
    for _ in 0..plan.connections {
        connections.push(Connection::open_over(address, plan.protocol).await?);
    }
    let start = Instant::now();
    let window = Window {
        start,
        measure_start: start + plan.warmup,
        end: start + plan.warmup + plan.measure,
    };
    let cpu = server_pid.map(|pid| {
        tokio::spawn(async move {
            let (ticks_per_second, _) = crate::process::clock_ticks_per_second();
            tokio::time::sleep_until(window.measure_start).await;
            let meter = crate::process::CpuMeter::start(pid, ticks_per_second)?;
            tokio::time::sleep_until(window.end).await;
            meter.finish().map(|(_, cpu_seconds)| cpu_seconds)
        })
    });
    let tasks: Vec<_> = connections
        .into_iter()
        .enumerate()
        .map(|(index, connection)| {
            let generator = generator.clone();
            tokio::spawn(async move {
                // The same seed per connection index in every run: the same
                // requests for presenced and for the ceiling.
                let mut random = Xorshift64::seeded(index as u64 + 1);
                match plan.pacing {
                    Pacing::ClosedLoop => {
                        drive_closed_loop(connection, window, &generator, &mut random).await
                    }
                    Pacing::OpenLoop {
                        requests_per_second,
                    } => {
                        let per_connection = requests_per_second / plan.connections as f64;
                        let interval = Duration::from_secs_f64(1.0 / per_connection);
                        // Connections start staggered across one interval, so
                        // that the load is smooth rather than in bursts.
                        let offset = interval.mul_f64(index as f64 / plan.connections as f64);
                        drive_open_loop(
                            connection,
                            window,
                            interval,
                            offset,
                            &generator,
                            &mut random,
                        )
                        .await
                    }
                }
            })
        })
        .collect();
    let mut total = LoadOutcome::empty(plan.measure);
    for task in tasks {
        let outcome = task
            .await
            .map_err(|error| format!("a load connection task failed: {error}"))?;
        total.merge(&outcome);
    }
    total.measured = plan.measure;
    if let Some(cpu) = cpu {
        let measured = cpu
            .await
            .map_err(|error| format!("the CPU meter task failed: {error}"))??;
        total.server_cpu_seconds = Some(measured);
    }
    Ok(total)
}

async fn drive_closed_loop(
    mut connection: Connection,
    window: Window,
    generator: &RequestGenerator,
    random: &mut Xorshift64,
) -> LoadOutcome {
    let mut outcome = LoadOutcome::empty(window.end - window.measure_start);
    loop {
        let sent = Instant::now();
        if sent >= window.end {
            return outcome;
        }
        let spec = generator(random);
        let result = connection.exchange(&spec).await;
        let completed = Instant::now();
        if !record(
            &mut outcome,
            &mut connection,
            window,
            result,
            sent,
            completed,
        )
        .await
        {
            return outcome;
        }
    }
}

/// Counts one exchange that was charged from `charged_from` and answered at
/// `completed`; after a transport failure, reconnects. `false` when the
/// connection cannot be had again before the window ends.
async fn record(
    outcome: &mut LoadOutcome,
    connection: &mut Connection,
    window: Window,
    result: Result<(), Failure>,
    charged_from: Instant,
    completed: Instant,
) -> bool {
    match result {
        Ok(()) if window.counts(completed) => outcome.record_success(completed - charged_from),
        Ok(()) => {}
        Err(failure) => {
            let transport = matches!(failure, Failure::Transport(_));
            outcome.record_failure(failure);
            if transport && !connection.reconnect(window.end).await {
                return false;
            }
        }
    }
    true
}

/// Sends on a fixed schedule, one request every `interval` on this
/// connection, and measures each latency from the instant the request was
/// *due* whenever the previous answer on this connection came in after that
/// instant: a slow answer then delays the next request, and that delay is
/// the server's doing, so it is counted (this is the correction for
/// coordinated omission). When the connection was free in time, latency is
/// measured from the actual send instead, because tokio's timer fires up to
/// a millisecond late and that lateness is the harness's, not the server's.
async fn drive_open_loop(
    mut connection: Connection,
    window: Window,
    interval: Duration,
    offset: Duration,
    generator: &RequestGenerator,
    random: &mut Xorshift64,
) -> LoadOutcome {
    let mut outcome = LoadOutcome::empty(window.end - window.measure_start);
    let mut due = window.start + offset;
    let mut previous_completed = window.start;
    while due < window.end {
        if Instant::now() < due {
            tokio::time::sleep_until(due).await;
        }
        let sent = Instant::now();
        let charged_from = if previous_completed > due { due } else { sent };
        let spec = generator(random);
        let result = connection.exchange(&spec).await;
        let completed = Instant::now();
        previous_completed = completed;
        due += interval;
        if !record(
            &mut outcome,
            &mut connection,
            window,
            result,
            charged_from,
            completed,
        )
        .await
        {
            return outcome;
        }
    }
    outcome
}

/// Sends requests `0..total` of `generator` over `connections` connections as
/// fast as the server answers (preloading users), each connection taking the
/// next index when it is free. Every request counts; `measured` is the
/// elapsed time.
pub async fn run_sequence(
    address: SocketAddr,
    connections: usize,
    total: usize,
    generator: SequenceGenerator,
) -> Result<LoadOutcome, String> {
    let next_index = Arc::new(AtomicUsize::new(0));
    let mut opened = Vec::with_capacity(connections);
    for _ in 0..connections.min(total.max(1)) {
        opened.push(Connection::open(address).await?);
    }
    let started = Instant::now();
    let tasks: Vec<_> = opened
        .into_iter()
        .map(|mut connection| {
            let generator = generator.clone();
            let next_index = next_index.clone();
            tokio::spawn(async move {
                let mut outcome = LoadOutcome::empty(Duration::ZERO);
                loop {
                    let index = next_index.fetch_add(1, Ordering::Relaxed);
                    if index >= total {
                        return outcome;
                    }
                    let spec = generator(index);
                    let sent = Instant::now();
                    match connection.exchange(&spec).await {
                        Ok(()) => outcome.record_success(sent.elapsed()),
                        Err(failure) => {
                            let transport = matches!(failure, Failure::Transport(_));
                            outcome.record_failure(failure);
                            let give_up_at = Instant::now() + Duration::from_secs(5);
                            if transport && !connection.reconnect(give_up_at).await {
                                return outcome;
                            }
                        }
                    }
                }
            })
        })
        .collect();
    let mut total_outcome = LoadOutcome::empty(Duration::ZERO);
    for task in tasks {
        let outcome = task
            .await
            .map_err(|error| format!("a preload connection task failed: {error}"))?;
        total_outcome.merge(&outcome);
    }
    total_outcome.measured = started.elapsed();
    Ok(total_outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome_with(latencies_micros: &[u64], failed_status: u64) -> LoadOutcome {
        let mut outcome = LoadOutcome::empty(Duration::from_secs(2));
        for micros in latencies_micros {
            outcome.record_success(Duration::from_micros(*micros));
        }
        for _ in 0..failed_status {
            outcome.record_failure(Failure::Status("GET / answered 500".into()));
        }
        outcome
    }

    #[test]
    fn merging_outcomes_adds_counts_and_keeps_every_latency() {
        let mut first = outcome_with(&[100; 98], 0);
        let second = outcome_with(&[5_000, 9_000], 3);
        first.merge(&second);
        assert_eq!(first.succeeded, 100);
        assert_eq!(first.failed_status, 3);
        assert_eq!(first.errors(), 3);
        assert_eq!(first.first_failure.as_deref(), Some("GET / answered 500"));
        assert_eq!(first.latency_micros.len(), 100);
        // 98 of 100 at 100 µs: the median is there, the top two are the
        // slow ones from the other connection.
        assert_eq!(first.latency_at(0.5), 100);
        let histogram = &first.latency_micros;
        assert!(histogram.equivalent(first.latency_at(0.99), 5_000));
        assert!(histogram.equivalent(first.latency_at(1.0), 9_000));
        // Connections run side by side: the span is not summed.
        assert_eq!(first.measured, Duration::from_secs(2));
        assert_eq!(first.requests_per_second(), 50.0);
    }

    #[test]
    fn latencies_beyond_the_histogram_are_clamped_not_lost() {
        let outcome = outcome_with(&[0, 3_600_000_000], 0);
        assert_eq!(outcome.succeeded, 2);
        assert_eq!(outcome.latency_at(0.0), 1);
        assert!(outcome.latency_at(1.0) >= HISTOGRAM_MAX_MICROS * 999 / 1000);
    }

    #[test]
    fn the_generator_is_deterministic_and_stays_below_its_bound() {
        let mut first = Xorshift64::seeded(7);
        let mut second = Xorshift64::seeded(7);
        let mut other = Xorshift64::seeded(8);
        let a: Vec<u64> = (0..16).map(|_| first.next_u64()).collect();
        let b: Vec<u64> = (0..16).map(|_| second.next_u64()).collect();
        let c: Vec<u64> = (0..16).map(|_| other.next_u64()).collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
        let mut seen = [false; 10];
        for _ in 0..10_000 {
            let value = first.below(10);
            assert!(value < 10);
            seen[value] = true;
        }
        assert!(seen.iter().all(|hit| *hit), "every value below 10 comes up");
    }
}
