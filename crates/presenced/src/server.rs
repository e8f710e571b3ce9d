//! The server as a function of its inputs: `run(socket, config, shutdown)`.
//! Tests and `main` call the same function; nothing here reads globals.
//!
//! The port is bound at once but opened only once requests can be served:
//! the store read back from disk, or Redis reached and the node joined.
//! Until then a connection is refused, so that whoever waits for the port
//! (or for the `listening` line `main` prints then) never meets a server
//! that cannot answer yet.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;
use presence_core::{Duration, Timeouts};
use presence_store::{
    Durability, EmbeddedStore, Facts, MemoryStore, RedisOptions, RedisStore, Store, StoreError,
};
use tokio::net::{TcpListener, TcpSocket};
use tokio_util::sync::CancellationToken;

use crate::auth::{AuthMode, AuthSettings, Authenticator};
use crate::clock::{Clock, ClockKind};
use crate::connections::{Connections, Tracked, Watched};
use crate::http;
use crate::limits::{Limits, Refusal, Refusals};
use crate::notify::NotifySettings;
use crate::ownership::Ownership;
use crate::protocol::{Builders, Protocol, reset_flood, sniff};
use crate::scheduler::Scheduler;
use crate::service::PresenceService;
use crate::state::{AppState, Shared};
use crate::tasks::{TaskFailure, Tasks};
use crate::throttle::{Throttle, ThrottleSettings};
use crate::timeline::{DueWork, Timeline};
use crate::tls::TlsFiles;

/// Everything `serve` needs, resolved: each module's own settings, and the
/// server's. Built by `cli.rs` from the command line, the environment and
/// the config file, or in code.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    pub listen: SocketAddr,
    pub store: StoreSettings,
    pub auth: AuthSettings,
    /// The certificate chain and key files, to serve HTTPS.
    pub tls: Option<TlsFiles>,
    /// Allows `--auth none` on an address other than loopback.
    pub allow_insecure: bool,
    pub clock: ClockKind,
    /// The length of one fade stage.
    pub idle_timeout: Duration,
    pub notify: NotifySettings,
    /// How long a stopping server waits for requests in flight.
    pub drain_timeout: Duration,
    /// The throttling limits.
    pub throttle: ThrottleSettings,
    /// The bounds on what clients may hold.
    pub limits: Limits,
    /// The origins browser pages may call from (`--cors-origin`).
    pub cors: crate::cors::CorsOrigins,
}

impl Default for ServeConfig {
    fn default() -> ServeConfig {
        ServeConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            store: StoreSettings::default(),
            auth: AuthSettings::default(),
            tls: None,
            allow_insecure: false,
            clock: ClockKind::default(),
            idle_timeout: Timeouts::default().idle,
            notify: NotifySettings::default(),
            drain_timeout: Duration::from_secs(30),
            throttle: ThrottleSettings::default(),
            limits: Limits::default(),
            cors: crate::cors::CorsOrigins::default(),
        }
    }
}

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("serving HTTP failed: {0}")]
    Io(#[from] std::io::Error),
    /// A long-lived task ended before shutdown was requested, or with an
    /// error or a panic; the message names the task.
    #[error(transparent)]
    Task(#[from] TaskFailure),
}

/// Where facts are kept (`--store`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum StoreKind {
    /// In memory only.
    Memory,
    /// Durable, in the data directory.
    #[default]
    Embedded,
    /// Redis or Redis Cluster, shared by any number of nodes.
    Redis,
}

/// The store's settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreSettings {
    pub kind: StoreKind,
    /// The embedded store's directory (`--data-dir`).
    pub data_dir: PathBuf,
    /// When the embedded store answers a write (`--durability`).
    pub durability: Durability,
    /// Redis seed nodes (`--redis-url`).
    pub redis_urls: Vec<String>,
    /// When a write to Redis is answered (`--redis-durability`).
    pub redis_durability: presence_store::RedisDurability,
    /// A node's lease on its partitions (`--redis-lease`).
    pub redis_lease: Duration,
    /// The private CA of `rediss://` servers (`--redis-ca-file`).
    pub redis_ca_file: Option<PathBuf>,
    /// Accept a standalone Redis that persists nothing.
    pub redis_allow_volatile: bool,
    /// Partitions of a new keyspace (`--redis-partitions`).
    pub redis_partitions: u32,
    /// Overrides a password in the URLs (`PRESENCED_REDIS_PASSWORD`).
    pub redis_password: Option<crate::token::Secret>,
}

impl Default for StoreSettings {
    fn default() -> StoreSettings {
        StoreSettings {
            kind: StoreKind::default(),
            data_dir: PathBuf::from("./presenced-data"),
            durability: Durability::Strict,
            redis_urls: Vec::new(),
            redis_durability: presence_store::RedisDurability::Replicated,
            redis_lease: Duration::from_secs(6),
            redis_ca_file: None,
            redis_allow_volatile: false,
            redis_partitions: presence_store::redis::DEFAULT_PARTITIONS,
            redis_password: None,
        }
    }
}

/// The options of the Redis store from the serve settings.
pub fn redis_options(settings: &StoreSettings) -> RedisOptions {
    let mut options = RedisOptions::new(settings.redis_urls.clone());
    options.endpoint.password = settings
        .redis_password
        .as_ref()
        .map(|secret| secret.0.clone());
    options.endpoint.ca_file = settings.redis_ca_file.clone();
    options.durability = settings.redis_durability;
    options.partitions = settings.redis_partitions;
    options.allow_volatile = settings.redis_allow_volatile;
    options
}

/// Connects to Redis, retrying while it cannot be reached (a node may
/// start before Redis does), until `shutdown`. A Redis that answers but is
/// refused (evicting, volatile, another layout) stops the start at once.
async fn connect_redis(
    settings: &StoreSettings,
    shutdown: &CancellationToken,
) -> Result<RedisStore, ServeError> {
    if settings.redis_urls.is_empty() {
        return Err(ServeError::Config(
            "--store redis needs --redis-url redis://HOST:PORT (repeat it for a cluster's seed nodes)".into(),
        ));
    }
    let mut logged = false;
    loop {
        match RedisStore::connect(redis_options(settings)).await {
            Ok(store) => return Ok(store),
            Err(StoreError::Unavailable(message)) if message.starts_with("Redis: ") => {
                if !logged {
                    tracing::warn!(error = %message, "cannot reach Redis yet; retrying every second");
                    logged = true;
                }
            }
            Err(error) => return Err(ServeError::Store(error)),
        }
        tokio::select! {
            () = shutdown.cancelled() => {
                return Err(ServeError::Config("stopped before Redis could be reached".into()));
            }
            () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
        }
    }
}

/// Opens the configured store; reading an embedded store back from disk
/// blocks, so it runs on a blocking thread.
async fn open_store(
    settings: &StoreSettings,
    shutdown: &CancellationToken,
) -> Result<(Arc<dyn Store>, Option<RedisStore>), ServeError> {
    match settings.kind {
        StoreKind::Memory => Ok((Arc::new(MemoryStore::new()), None)),
        StoreKind::Embedded => {
            let dir = settings.data_dir.clone();
            let durability = settings.durability;
            let started = std::time::Instant::now();
            let store = tokio::task::spawn_blocking(move || EmbeddedStore::open(&dir, durability))
                .await
                .map_err(|error| {
                    ServeError::Config(format!("opening the embedded store stopped: {error}"))
                })??;
            tracing::info!(
                dir = %settings.data_dir.display(),
                ?durability,
                users = store.counts().users,
                seconds = started.elapsed().as_secs_f64(),
                "the embedded store is loaded"
            );
            Ok((Arc::new(store), None))
        }
        StoreKind::Redis => {
            let store = connect_redis(settings, shutdown).await?;
            tracing::info!(
                cluster = store.is_cluster(),
                partitions = store.layout().partitions(),
                durability = ?settings.redis_durability,
                "connected to Redis"
            );
            Ok((Arc::new(store.clone()), Some(store)))
        }
    }
}

/// A duration as an ISO 8601 text, for the recorded settings (`PT5M`).
fn iso_duration(duration: Duration) -> String {
    jiff::SignedDuration::from_millis(duration.as_millis()).to_string()
}

/// The settings every node over one Redis must share, as recorded there.
fn shared_settings(config: &ServeConfig) -> Vec<(&'static str, String)> {
    vec![
        ("--idle-timeout", iso_duration(config.idle_timeout)),
        (
            "--clock",
            match config.clock {
                ClockKind::System => "system".into(),
                ClockKind::Manual => "manual".into(),
            },
        ),
        (
            "--max-subscription-lifetime",
            iso_duration(config.notify.max_lifetime),
        ),
        (
            "--webhook-retry-window",
            iso_duration(config.notify.retry_window),
        ),
    ]
}

/// Checks the settings that are dangerous together.
pub fn check_config(config: &ServeConfig) -> Result<(), ServeError> {
    // One decides, the other follows: a config built in code must not
    // name a verifying mode and serve openly.
    if (config.auth.mode == AuthMode::None) != config.auth.keys.is_none() {
        return Err(ServeError::Config(format!(
            "--auth {:?} and the token key settings disagree; --auth hs256 needs --jwt-secret, --auth jwks a JWKS, and --auth none neither",
            config.auth.mode
        )));
    }
    if config.auth.mode == AuthMode::None
        && !config.listen.ip().is_loopback()
        && !config.allow_insecure
    {
        return Err(ServeError::Config(format!(
            "--auth none on {} would let anyone on the network change presence; listen on a loopback address, or pass --allow-insecure",
            config.listen
        )));
    }
    Ok(())
}

/// Serves HTTP/1.1 and HTTP/2 (over TLS when `tls` is given) on `listener`
/// until `tasks`' shutdown token is cancelled, then stops accepting, lets
/// in-flight requests finish (for at most `drain`) and closes idle
/// keep-alive connections. Each connection is a short-lived task of `tasks`,
/// and so is each HTTP/2 stream.
///
/// Written out instead of `axum::serve`, which accepts through hyper-util's
/// protocol-detecting builder: that one was measurably dearer per HTTP/1.1
/// request than hyper's own connection, and its detection has no time
/// bound and takes no ALPN. Here the protocol is chosen once
/// (`protocol.rs`: ALPN over TLS, the preface in plain text), and each
/// connection is hyper's own of its protocol. Each request carries its
/// peer's address as `ConnectInfo`.
///
/// The bounds of the accept loop (`limits.rs`): at `--max-connections` the
/// connection idle the longest is closed for each new client, or the new one
/// is refused when none is idle (`connections.rs`); a client that has not
/// said which protocol it speaks within `--header-timeout` is cut off;
/// hyper's bounds on heads, streams and resets (`protocol::Builders`); an
/// answer whose client reads none of it for `--send-timeout` ends its
/// connection.
async fn serve_http(
    listener: TcpListener,
    app: http::served::Served,
    tls: Option<tokio_rustls::TlsAcceptor>,
    tasks: &Tasks,
    drain: std::time::Duration,
    limits: Limits,
) -> std::io::Result<()> {
    use axum::extract::connect_info::ConnectInfo;
    use hyper_util::rt::TokioIo;
    use hyper_util::service::TowerToHyperService;
    use tower::Layer;

    let connections = Arc::new(Connections::new(limits.max_connections));
    let refusals = Refusals::register();
    let mut out_of_descriptors = OutOfDescriptors::default();
    // Closes what is still open when the drain time is up.
    let force_close = CancellationToken::new();
    let builders = Builders::new(&limits, tasks.clone());
    let header_timeout = limits.header_timeout();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = tasks.shutdown().cancelled() => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => {
                out_of_descriptors.recovered();
                accepted
            }
            Err(error) => {
                // The connections that exist go on; the client waits in the
                // listen backlog until a descriptor is free.
                out_of_descriptors
                    .wait(&error, &connections, tasks.shutdown())
                    .await;
                continue;
            }
        };
        let Some(open) = connections.admit() else {
            // Closed at once: every connection has a request in flight.
            refusals.count(Refusal::ConnectionRefused);
            drop(stream);
            continue;
        };
        // Answers are written whole; waiting to coalesce them only adds latency.
        let _ = stream.set_nodelay(true);
        let stream = Watched::new(stream, open.connection.clone(), limits.send_timeout());
        let service = Tracked::new(
            TowerToHyperService::new(axum::Extension(ConnectInfo(peer)).layer(app.clone())),
            open.connection.clone(),
        );
        let builders = builders.clone();
        let tls = tls.clone();
        let force_close = force_close.clone();
        let refusals = refusals.clone();
        tasks.spawn_short("connection", async move {
            let connection = &open.connection;
            let serve = async {
                match tls {
                    None => {
                        let sniffed = tokio::time::timeout(header_timeout, sniff(stream));
                        let sniffed = tokio::select! {
                            sniffed = sniffed => sniffed,
                            () = connection.close.cancelled() => return,
                        };
                        match sniffed {
                            Ok(Ok((protocol, stream))) => {
                                let io = TokioIo::new(stream);
                                serve_connection(
                                    &builders, protocol, io, service, connection, &refusals,
                                )
                                .await;
                            }
                            // The client went away before it said anything.
                            Ok(Err(_)) => {}
                            // It said nothing, or too little to tell, in
                            // time: as a head that did not arrive.
                            Err(_) => refusals.count(Refusal::Timeout),
                        }
                    }
                    Some(acceptor) => {
                        let handshake =
                            tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream));
                        let handshake = tokio::select! {
                            handshake = handshake => handshake,
                            () = connection.close.cancelled() => return,
                        };
                        match handshake {
                            Ok(Ok(stream)) => {
                                let protocol =
                                    Protocol::of_alpn(stream.get_ref().1.alpn_protocol());
                                let io = TokioIo::new(stream);
                                serve_connection(
                                    &builders, protocol, io, service, connection, &refusals,
                                )
                                .await;
                            }
                            Ok(Err(error)) => {
                                tracing::debug!(%error, %peer, "TLS handshake failed");
                            }
                            Err(_) => {
                                tracing::debug!(%peer, "TLS handshake timed out");
                            }
                        }
                    }
                }
            };
            tokio::select! {
                () = serve => {}
                () = force_close.cancelled() => {}
            }
            drop(open);
        });
    }
    drop(listener);
    connections.drain();
    if tokio::time::timeout(drain, connections.drained())
        .await
        .is_err()
    {
        tracing::warn!("in-flight requests did not finish within {drain:?}; closing them");
        force_close.cancel();
    }
    Ok(())
}

/// The service of one connection: the application with the peer's
/// address, each request tracked in flight.
type ConnectionService = Tracked<
    hyper_util::service::TowerToHyperService<
        axum::middleware::AddExtension<
            http::served::Served,
            axum::extract::connect_info::ConnectInfo<SocketAddr>,
        >,
    >,
>;

/// Serves one connection until it ends; once its `close` is cancelled (the
/// server stops, or the connection is evicted at `--max-connections`), it
/// ends after the requests in flight, at once if there are none (HTTP/2
/// says so first with GOAWAY, and finishes the streams the client had
/// opened by then). A client that goes away mid-request is not the
/// server's error, so what the connection ends with is not reported; only
/// the bounds it ran into are counted, before the socket is closed (so
/// that a client that sees it closed finds it counted).
async fn serve_connection<I>(
    builders: &Builders,
    protocol: Protocol,
    io: I,
    service: ConnectionService,
    connection: &crate::connections::Connection,
    refusals: &Refusals,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    match protocol {
        Protocol::Http1 => serve_http1(builders, io, service, connection, refusals).await,
        Protocol::Http2 => serve_http2(builders, io, service, connection, refusals).await,
    }
}

/// HTTP/1.1: hyper bounds the head (size, time) and closes an idle
/// keep-alive connection itself.
async fn serve_http1<I>(
    builders: &Builders,
    io: I,
    service: ConnectionService,
    connection: &crate::connections::Connection,
    refusals: &Refusals,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let served = builders.http1.serve_connection(io, service);
    tokio::pin!(served);
    let ended = tokio::select! {
        ended = served.as_mut() => ended,
        () = connection.close.cancelled() => {
            served.as_mut().graceful_shutdown();
            served.as_mut().await
        }
    };
    if let Err(error) = ended {
        if error.is_parse_too_large() {
            refusals.count(Refusal::HeaderTooLarge);
        } else if connection.stalled() || (error.is_timeout() && connection.cut_off_mid_request()) {
            refusals.count(Refusal::Timeout);
        }
    }
}

/// HTTP/2: hyper bounds the streams and the resets; the connection's task
/// closes it when it has had no stream open for `--header-timeout` (hyper
/// has no such bound), or when its client withholds its window from every
/// answer for `--send-timeout`.
async fn serve_http2<I>(
    builders: &Builders,
    io: I,
    service: ConnectionService,
    connection: &crate::connections::Connection,
    refusals: &Refusals,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    connection.watch_sends();
    let served = builders.http2.serve_connection(io, service);
    tokio::pin!(served);
    let starved = connection.starved_for(builders.send_timeout);
    tokio::pin!(starved);
    let mut closing = false;
    let ended = loop {
        tokio::select! {
            ended = served.as_mut() => break ended,
            () = starved.as_mut() => {
                // The client reads nothing: cut off, as on HTTP/1.1.
                refusals.count(Refusal::Timeout);
                return;
            }
            () = connection.close.cancelled(), if !closing => {
                served.as_mut().graceful_shutdown();
                closing = true;
            }
            () = connection.idle_for(builders.idle_timeout) => {
                if closing {
                    // GOAWAY was sent, no stream is open, and the client
                    // has neither closed nor answered.
                    return;
                }
                if !connection.answered_any() {
                    // Connected and never asked: as a head that did not
                    // arrive on HTTP/1.1.
                    refusals.count(Refusal::Timeout);
                }
                served.as_mut().graceful_shutdown();
                closing = true;
            }
        }
    };
    if let Err(error) = ended {
        if connection.stalled() {
            refusals.count(Refusal::Timeout);
        } else if reset_flood(&error) {
            refusals.count(Refusal::TooManyResets);
        }
    }
}

/// What the accept loop does when accepting fails, above all when the
/// process is out of file descriptors: it never spins and never stops.
/// Out of descriptors, it closes the connection idle the longest (a
/// descriptor is worth more to a new client) and waits for a connection to
/// close; when none is idle, it waits for one to close or for a pause that
/// doubles from 10 ms to a second (descriptors held elsewhere: the store,
/// webhooks). Each failure is counted in
/// `presenced_http_accept_failures_total{cause}`; each run of them is
/// logged once, and so is the recovery.
#[derive(Debug, Default)]
struct OutOfDescriptors {
    /// The failures since the last accept that worked.
    failures: u64,
}

impl OutOfDescriptors {
    async fn wait(
        &mut self,
        error: &std::io::Error,
        connections: &Connections,
        shutdown: &CancellationToken,
    ) {
        let descriptors = crate::connections::out_of_descriptors(error);
        let cause = if descriptors {
            "out_of_descriptors"
        } else {
            "other"
        };
        metrics::counter!("presenced_http_accept_failures_total", "cause" => cause).increment(1);
        let closed = connections.closed();
        let evicted = descriptors && connections.evict_oldest_idle();
        if self.failures == 0 {
            if descriptors {
                tracing::warn!(
                    %error,
                    open = connections.len(),
                    evicted,
                    "out of file descriptors: new clients wait until a connection closes (the one idle the longest is closed to make room); raise the open-file limit (ulimit -n) or lower --max-connections"
                );
            } else {
                tracing::warn!(%error, "accepting a connection failed; retrying");
            }
        }
        self.failures += 1;
        let doublings = (self.failures - 1).min(7);
        let pause = std::time::Duration::from_millis(10 << doublings)
            .min(std::time::Duration::from_secs(1));
        tokio::select! {
            () = closed => {}
            () = tokio::time::sleep(pause) => {}
            () = shutdown.cancelled() => {}
        }
    }

    fn recovered(&mut self) {
        if self.failures > 0 {
            tracing::info!(failures = self.failures, "accepting connections again");
            self.failures = 0;
        }
    }
}

/// How long a client may take to complete the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Folds the recorded histogram samples into their buckets every few
/// seconds. The Prometheus recorder keeps every sample until then, so
/// without this a server that nobody scrapes would grow by a few bytes per
/// request forever.
async fn drain_histograms(
    handle: PrometheusHandle,
    shutdown: CancellationToken,
) -> Result<(), String> {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(5));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => handle.run_upkeep(),
            () = shutdown.cancelled() => return Ok(()),
        }
    }
}

/// Joins the nodes over one Redis: checks this node's settings against the
/// ones recorded, shares the manual clock, and starts taking a share of the
/// partitions (the notifier sends the webhooks of those only).
async fn join_nodes(
    config: &ServeConfig,
    redis: &RedisStore,
    clock: &Arc<Clock>,
    notifier: &Arc<crate::notify::Notifier>,
    tasks: &Tasks,
) -> Result<
    (
        Arc<Ownership>,
        tokio::sync::mpsc::UnboundedReceiver<Vec<crate::ownership::Tenure>>,
    ),
    ServeError,
> {
    let settings = shared_settings(config);
    let borrowed: Vec<(&str, String)> = settings
        .iter()
        .map(|(name, value)| (*name, value.clone()))
        .collect();
    if let Err(differences) = redis.agree(&borrowed).await {
        return Err(ServeError::Config(format!(
            "this node's settings differ from those the other nodes over this Redis run with: {}. Start it with the same settings",
            differences.join("; ")
        )));
    }
    if clock.is_manual() {
        // The clock lives in Redis: a node joining takes it as it is.
        match redis.clock().await? {
            Some(shared) => clock.set_manual(shared),
            None => {
                let now = redis.set_clock(clock.now()).await?;
                clock.set_manual(now);
            }
        }
    }
    let node = crate::ownership::node_name();
    let lease =
        std::time::Duration::from_millis(config.store.redis_lease.as_millis().max(1) as u64);
    let (ownership, gained) = Ownership::new(redis.clone(), node.clone(), lease);
    notifier.share(ownership.holdings().clone());
    // The first round before serving, so that a lone node owns its
    // partitions from the start.
    if let Err(error) = ownership.round().await {
        tracing::warn!(%error, "could not take partitions yet; retrying");
    }
    tasks.spawn("ownership", ownership.clone().run(tasks.shutdown().clone()));
    tracing::info!(%node, "joined the nodes over Redis");
    Ok((ownership, gained))
}

/// Stops every task started so far, because starting failed with `error`.
async fn abandon(tasks: &Tasks, error: ServeError) -> ServeError {
    // The report is logged; the start-up error is what `run` returns.
    let _ = tasks.stop().await;
    error
}

/// Binds a socket to `address` without listening on it yet (port 0 picks
/// one; its `local_addr` says which).
pub fn bind(address: SocketAddr) -> std::io::Result<TcpSocket> {
    let socket = if address.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // As every listener does, so that a restart does not wait out the
    // previous process's closed connections.
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    Ok(socket)
}

/// How many connections the kernel queues before they are accepted.
const LISTEN_BACKLOG: u32 = 1024;

/// Serves on `socket` (bound by [`bind`]) until `shutdown` is cancelled,
/// then drains in-flight requests and stops every task it started. It
/// starts listening once requests can be served, and then calls `serving`
/// with the address. Every task is owned by one
/// [`Tasks`]; if one that should run until shutdown ends first (or fails, or
/// panics), `run` cancels `shutdown` itself, stops the rest, and returns an
/// error naming it.
pub async fn run(
    socket: TcpSocket,
    config: ServeConfig,
    shutdown: CancellationToken,
    metrics: Option<PrometheusHandle>,
    serving: Box<dyn FnOnce(SocketAddr) + Send>,
) -> Result<(), ServeError> {
    check_config(&config)?;
    if config.auth.mode == AuthMode::None {
        tracing::warn!(
            "authentication is off (--auth none): every request is an application with every permission in tenant 'default'; use this for local development only"
        );
    }
    let auth = Arc::new(
        Authenticator::new(&config.auth)
            .await
            .map_err(ServeError::Config)?,
    );
    let tls = match &config.tls {
        None => None,
        Some(files) => {
            Some(crate::tls::acceptor(&files.cert, &files.key).map_err(ServeError::Config)?)
        }
    };
    let clock = Arc::new(Clock::new(config.clock));
    let timeouts = Timeouts {
        idle: config.idle_timeout,
    };
    let tasks = Tasks::new(shutdown);
    let (notifier, mut inboxes) = crate::notify::Notifier::new(
        clock.clone(),
        timeouts,
        config.notify.clone(),
        tasks.clone(),
    )
    .map_err(ServeError::Config)?;
    let notifier = Arc::new(notifier);
    let service = Arc::new(PresenceService::new(
        clock.clone(),
        timeouts,
        notifier.clone(),
        config.limits.render_cache_bytes,
    ));
    let openapi = serde_json::to_vec(&http::openapi_document()).map_err(|error| {
        ServeError::Config(format!("cannot render the OpenAPI document: {error}"))
    })?;
    let throttle = Arc::new(Throttle::new(config.throttle));
    if throttle.is_on() {
        tasks.spawn(
            "throttle upkeep",
            throttle.clone().run(tasks.shutdown().clone()),
        );
    }
    let state = AppState::new(Shared {
        service: service.clone(),
        clock: clock.clone(),
        timeouts,
        timeline: std::sync::OnceLock::new(),
        metrics: metrics.clone(),
        openapi: openapi.into(),
        auth,
        throttle: throttle.clone(),
        scheme: if tls.is_some() { "https" } else { "http" },
        notifier: notifier.clone(),
        redis: std::sync::OnceLock::new(),
        draining: std::sync::atomic::AtomicBool::new(false),
        limits: config.limits,
        streams: Arc::new(tokio::sync::Semaphore::new(config.limits.max_streams)),
    });
    {
        // A stopping node says so at once: load balancers stop sending it
        // requests while those in flight finish.
        let state = state.clone();
        let shutdown = tasks.shutdown().clone();
        tasks.spawn("drain flag", async move {
            shutdown.cancelled().await;
            state
                .draining
                .store(true, std::sync::atomic::Ordering::Release);
            Ok(())
        });
    }

    if let Some(handle) = metrics {
        tasks.spawn(
            "histogram upkeep",
            drain_histograms(handle, tasks.shutdown().clone()),
        );
    }
    let (loaded, redis) = match open_store(&config.store, tasks.shutdown()).await {
        Ok(opened) => opened,
        Err(error) => return Err(abandon(&tasks, error).await),
    };
    loaded.limit_users_per_tenant(config.limits.max_users_per_tenant);
    let scheduler = match &redis {
        None => {
            let Some(scheduler) = Scheduler::new(loaded.clone(), timeouts, clock.now()).await
            else {
                let error = ServeError::Config(
                    "the store would not lease its due index to this presenced".into(),
                );
                return Err(abandon(&tasks, error).await);
            };
            scheduler
        }
        Some(redis) => match join_nodes(&config, redis, &clock, &notifier, &tasks).await {
            Ok((ownership, gained)) => {
                inboxes.gained = Some(gained);
                let _ = state.redis.set(redis.clone());
                throttle.share(redis.clone());
                if clock.is_manual() {
                    Scheduler::on_demand(loaded.clone(), timeouts, redis.clone())
                } else {
                    Scheduler::shared(loaded.clone(), timeouts, ownership)
                }
            }
            Err(error) => return Err(abandon(&tasks, error).await),
        },
    };
    // The notifier follows the change feed from the first tick on; it
    // reads its subscriptions back and notifies what receivers have not
    // yet acknowledged before the scheduler's first ticks.
    notifier.attach(loaded.clone());
    if let Err(error) = notifier.load().await {
        return Err(abandon(&tasks, error.into()).await);
    }
    tasks.spawn("notifier", notifier.clone().run(inboxes));
    if redis.is_none() {
        // Every stored user is ticked once, at once: what fell due while
        // presenced was down is applied as if it had been running. (Redis
        // keeps its due index: nothing to file again.)
        scheduler.load(clock.now()).await;
    }
    let clients: Vec<Arc<dyn DueWork>> = vec![
        Arc::new(scheduler),
        Arc::new(crate::notify::Lifecycle(notifier.clone())),
    ];
    let timeline = Arc::new(Timeline::new(clients));
    if !clock.is_manual() {
        let timeline = timeline.clone();
        let (clock, shutdown) = (clock.clone(), tasks.shutdown().clone());
        tasks.spawn("timeline", async move {
            timeline.run(clock, shutdown).await;
            Ok(())
        });
    }
    let _ = state.timeline.set(timeline);
    service.attach(loaded);
    let listener = match socket.listen(LISTEN_BACKLOG) {
        Ok(listener) => listener,
        Err(error) => return Err(abandon(&tasks, error.into()).await),
    };
    let address = listener.local_addr()?;
    {
        // Only nodes that share a manual clock through Redis read it on
        // every request.
        let shared_clock = config.clock == crate::clock::ClockKind::Manual
            && config.store.kind == StoreKind::Redis;
        let app = http::app(state.clone(), &config.cors, shared_clock);
        let owner = tasks.clone();
        let limits = config.limits;
        let drain =
            std::time::Duration::from_millis(config.drain_timeout.as_millis().max(0) as u64);
        tasks.spawn("http", async move {
            serve_http(listener, app, tls, &owner, drain, limits)
                .await
                .map_err(|error| format!("serving HTTP failed: {error}"))
        });
    }
    serving(address);
    tracing::info!(%address, store = ?config.store.kind, clock = ?config.clock, "presenced started");
    // Serves until shutdown is requested, by the caller or by a task that
    // failed; then waits for every task and logs how each ended.
    tasks.shutdown().cancelled().await;
    let report = tasks.stop().await;
    // Dropping the last handle on the store stops its writer after a final
    // sync (what --durability relaxed may still hold).
    drop(state);
    drop(service);
    tracing::info!("presenced stopped");
    report.into_result().map_err(ServeError::Task)
}
