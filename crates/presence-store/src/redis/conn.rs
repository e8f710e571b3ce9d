//! Connections to Redis: one standalone server or a cluster, behind one
//! type, with bounded timeouts and a metric for every round trip.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, IntoConnectionInfo, Pipeline, RedisFuture, RedisResult, Value};

use crate::StoreError;

/// How to reach Redis.
#[derive(Clone)]
pub struct Endpoint {
    /// Seed URLs (`redis://` or `rediss://`); one URL of a standalone
    /// server works too.
    pub urls: Vec<String>,
    /// Overrides a password in the URLs.
    pub password: Option<String>,
    /// A PEM file of the private CA that signed the servers' certificates.
    pub ca_file: Option<std::path::PathBuf>,
    /// How long a request may wait for an answer, and a connection for its
    /// handshake.
    pub timeout: Duration,
}

/// Never shows the password, nor one written in a URL.
impl std::fmt::Debug for Endpoint {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let urls: Vec<String> = self
            .urls
            .iter()
            .map(|url| match (url.find("://"), url.rfind('@')) {
                (Some(scheme), Some(at)) if at > scheme => {
                    format!("{}://***{}", &url[..scheme], &url[at..])
                }
                _ => url.clone(),
            })
            .collect();
        formatter
            .debug_struct("Endpoint")
            .field("urls", &urls)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("ca_file", &self.ca_file)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// One multiplexed connection: cheap to clone, shared by every task.
#[derive(Clone)]
pub enum Conn {
    Single(ConnectionManager),
    Cluster(Arc<Healing>),
}

/// A cluster connection that is replaced when it stops working.
///
/// The cluster client refreshes its slots and reconnects by itself after a
/// failover, but some of its connections were seen to stay on the dead
/// primary for good (every request timing out while fresh connections
/// worked; the multi-node failover test shows it). So when a connection has
/// failed for [`HEAL_AFTER`] without a single success, a new one is made
/// from the client and takes its place; requests in flight on the old one
/// end with their own timeouts.
pub struct Healing {
    client: redis::cluster::ClusterClient,
    current: std::sync::RwLock<ClusterConnection>,
    /// Wall-clock ms of the first failure since the last success (0: none).
    failing_since: AtomicU64,
    replacing: AtomicBool,
}

/// How long a cluster connection may fail without a success before it is
/// replaced.
const HEAL_AFTER: Duration = Duration::from_secs(3);

/// The wall clock in ms since the epoch.
pub(super) fn wall_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

impl Healing {
    fn connection(&self) -> ClusterConnection {
        self.current
            .read()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone()
    }

    fn observe(self: &Arc<Self>, error: Option<&redis::RedisError>) {
        let Some(error) = error else {
            if self.failing_since.load(Ordering::Relaxed) != 0 {
                self.failing_since.store(0, Ordering::Relaxed);
            }
            return;
        };
        if !(error.is_timeout()
            || error.is_io_error()
            || error.is_connection_dropped()
            || error.is_connection_refusal()
            || error.is_cluster_error())
        {
            return;
        }
        let now = wall_millis();
        let since =
            match self
                .failing_since
                .compare_exchange(0, now, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => now,
                Err(since) => since,
            };
        if now.saturating_sub(since) < HEAL_AFTER.as_millis() as u64
            || self.replacing.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let healing = self.clone();
        tokio::spawn(async move {
            match healing.client.get_async_connection().await {
                Ok(fresh) => {
                    *healing
                        .current
                        .write()
                        .unwrap_or_else(|poison| poison.into_inner()) = fresh;
                    healing.failing_since.store(0, Ordering::Relaxed);
                    metrics::counter!("presenced_redis_reconnects_total").increment(1);
                    tracing::warn!("replaced a Redis Cluster connection that kept failing");
                }
                Err(error) => {
                    tracing::debug!(%error, "could not replace a failing Redis Cluster connection yet");
                }
            }
            healing.replacing.store(false, Ordering::Release);
        });
    }
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(match self {
            Conn::Single(_) => "Conn::Single",
            Conn::Cluster(_) => "Conn::Cluster",
        })
    }
}

fn observe<'a, T: Send + 'a>(commands: usize, call: RedisFuture<'a, T>) -> RedisFuture<'a, T> {
    Box::pin(async move {
        let started = std::time::Instant::now();
        let result = call.await;
        metrics::counter!("presenced_redis_round_trips_total").increment(1);
        metrics::counter!("presenced_redis_commands_total").increment(commands as u64);
        metrics::histogram!("presenced_redis_round_trip_seconds")
            .record(started.elapsed().as_secs_f64());
        if result.is_err() {
            metrics::counter!("presenced_redis_errors_total").increment(1);
        }
        result
    })
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(conn) => observe(1, conn.req_packed_command(cmd)),
            Conn::Cluster(healing) => {
                let healing = healing.clone();
                observe(
                    1,
                    Box::pin(async move {
                        let mut conn = healing.connection();
                        let result = conn.req_packed_command(cmd).await;
                        healing.observe(result.as_ref().err());
                        result
                    }),
                )
            }
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(conn) => observe(count, conn.req_packed_commands(pipeline, offset, count)),
            Conn::Cluster(healing) => {
                let healing = healing.clone();
                observe(
                    count,
                    Box::pin(async move {
                        let mut conn = healing.connection();
                        let result = conn.req_packed_commands(pipeline, offset, count).await;
                        healing.observe(result.as_ref().err());
                        result
                    }),
                )
            }
        }
    }

    fn get_db(&self) -> i64 {
        0
    }
}

/// A Redis failure as the store reports it: the cause, for operators.
pub fn unavailable(error: redis::RedisError) -> StoreError {
    StoreError::Unavailable(format!("Redis: {error}"))
}

fn certificates(endpoint: &Endpoint) -> Result<Option<redis::TlsCertificates>, StoreError> {
    let Some(file) = &endpoint.ca_file else {
        return Ok(None);
    };
    let pem = std::fs::read(file).map_err(|error| {
        StoreError::Unavailable(format!(
            "cannot read the CA file {} given by --redis-ca-file: {error}",
            file.display()
        ))
    })?;
    Ok(Some(redis::TlsCertificates {
        client_tls: None,
        root_cert: Some(pem),
    }))
}

fn info(url: &str, endpoint: &Endpoint) -> Result<redis::ConnectionInfo, StoreError> {
    let info = url.into_connection_info().map_err(|error| {
        StoreError::Unavailable(format!(
            "the Redis URL is not valid ({error}); give redis://HOST:PORT or rediss://HOST:PORT"
        ))
    })?;
    Ok(match &endpoint.password {
        Some(password) => {
            let settings = info.redis_settings().clone().set_password(password);
            info.set_redis_settings(settings)
        }
        None => info,
    })
}

fn client(url: &str, endpoint: &Endpoint) -> Result<redis::Client, StoreError> {
    let info = info(url, endpoint)?;
    match certificates(endpoint)? {
        Some(certs) => redis::Client::build_with_tls(info, certs).map_err(unavailable),
        None => redis::Client::open(info).map_err(unavailable),
    }
}

/// Whether the first reachable seed is a cluster node.
pub async fn is_cluster(endpoint: &Endpoint) -> Result<bool, StoreError> {
    let mut last = None;
    for url in &endpoint.urls {
        let attempt = async {
            let client = client(url, endpoint)?;
            let config = redis::AsyncConnectionConfig::new()
                .set_connection_timeout(Some(endpoint.timeout))
                .set_response_timeout(Some(endpoint.timeout));
            let mut conn = client
                .get_multiplexed_async_connection_with_config(&config)
                .await
                .map_err(unavailable)?;
            let info: String = redis::cmd("INFO")
                .arg("cluster")
                .query_async(&mut conn)
                .await
                .map_err(unavailable)?;
            Ok::<bool, StoreError>(info.contains("cluster_enabled:1"))
        };
        match attempt.await {
            Ok(cluster) => return Ok(cluster),
            Err(error) => last = Some(error),
        }
    }
    Err(last.unwrap_or_else(|| StoreError::Unavailable("no Redis URL was given".into())))
}

/// Opens one multiplexed connection (each call a new one, for work that
/// must not queue behind another's blocking commands).
pub async fn connect(endpoint: &Endpoint, cluster: bool) -> Result<Conn, StoreError> {
    if cluster {
        let mut infos = Vec::new();
        for url in &endpoint.urls {
            infos.push(info(url, endpoint)?);
        }
        let mut builder = ClusterClientBuilder::new(infos)
            .connection_timeout(endpoint.timeout)
            .response_timeout(endpoint.timeout)
            .overall_response_timeout(Some(endpoint.timeout * 2))
            .retries(3)
            .min_retry_wait(50)
            .max_retry_wait(500);
        if let Some(certs) = certificates(endpoint)? {
            builder = builder.certs(certs);
        }
        let client = builder.build().map_err(unavailable)?;
        let conn = client.get_async_connection().await.map_err(unavailable)?;
        Ok(Conn::Cluster(Arc::new(Healing {
            client,
            current: std::sync::RwLock::new(conn),
            failing_since: AtomicU64::new(0),
            replacing: AtomicBool::new(false),
        })))
    } else {
        let url = endpoint
            .urls
            .first()
            .ok_or_else(|| StoreError::Unavailable("no Redis URL was given".into()))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(endpoint.timeout))
            .set_response_timeout(Some(endpoint.timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_with_config(client(url, endpoint)?, config)
            .await
            .map_err(unavailable)?;
        Ok(Conn::Single(conn))
    }
}

/// Runs `cmd` on every primary and returns each one's answer (one, for a
/// standalone server).
pub async fn on_every_primary(conn: &Conn, cmd: Cmd) -> RedisResult<Vec<Value>> {
    match conn.clone() {
        Conn::Single(mut conn) => Ok(vec![cmd.query_async(&mut conn).await?]),
        Conn::Cluster(healing) => {
            let mut conn = healing.connection();
            use redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo};
            let value = conn
                .route_command(
                    cmd,
                    RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None)),
                )
                .await?;
            Ok(match value {
                Value::Map(entries) => entries.into_iter().map(|(_, value)| value).collect(),
                other => vec![other],
            })
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_password_never_shows() {
        let endpoint = super::Endpoint {
            urls: vec![
                "redis://user:hunter2@10.0.0.1:6379".into(),
                "redis://10.0.0.2:6379".into(),
            ],
            password: Some("sesame".into()),
            ca_file: None,
            timeout: std::time::Duration::from_secs(1),
        };
        let shown = format!("{endpoint:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("sesame"),
            "{shown}"
        );
        assert!(
            shown.contains("10.0.0.1:6379") && shown.contains("10.0.0.2:6379"),
            "{shown}"
        );
    }
}
