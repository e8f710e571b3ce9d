//! Getting notifications to receivers: one queue per notification URL,
//! drained by its own task, one batch in flight at a time, so that a URL
//! receives its notifications in order. A failed batch is retried with
//! exponential backoff and jitter until it is older than the retry window,
//! then given up (the notifier then sends `missed`). A slow or dead receiver
//! holds only its own queue: each request has a timeout, and the number of
//! requests in flight across all receivers is bounded. With many nodes, a
//! change notification is sent only while its partition's warrant holds,
//! checked right before each POST (`nodes.rs`).
//!
//! Also the validation handshake, which goes through the same client.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use presence_core::UserId;
use tokio::sync::{Semaphore, mpsc};

use crate::notify::address::{PublicResolver, is_public};
use crate::notify::nodes::{Warrant, Warrants};
use crate::tasks::Tasks;

/// How long a receiver has to accept a batch, as Graph's publish timeout.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(3);

/// How long a receiver has to answer the validation handshake, as Graph.
pub const VALIDATION_TIMEOUT: Duration = Duration::from_secs(10);

/// The most notifications in one POST, and about the most bytes.
const MAX_BATCH_ITEMS: usize = 1_000;
const MAX_BATCH_BYTES: usize = 1 << 20;

/// Requests in flight at once, across every receiver.
const MAX_IN_FLIGHT: usize = 64;

/// The first retry comes after about this long, then twice as long each
/// time, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// The most notifications waiting for one URL. Beyond it the oldest are
/// given up (and `missed` is sent), so that a receiver that is down for
/// hours cannot grow presenced's memory without bound; after a restart, the
/// latest presence of each subscribed user is sent again in any case.
const MAX_QUEUED: usize = 200_000;

/// One element of a notification POST's `value`.
#[derive(Debug)]
pub struct Item {
    pub subscription: Arc<str>,
    /// For a change notification: the user and the sequence number the
    /// receiver has seen once this is delivered.
    pub mark: Option<(UserId, u64)>,
    /// With many nodes, for a change notification: the warrant it was
    /// claimed under; it is sent only while that holds.
    pub warrant: Option<Warrant>,
    /// The element's JSON.
    pub json: String,
    /// When it was queued: the retry window and the latency start here.
    pub queued: std::time::Instant,
}

/// What became of a batch, for the notifier.
#[derive(Debug)]
pub enum Report {
    Delivered(Vec<Item>),
    GaveUp(Vec<Item>),
}

#[derive(Debug, Default)]
struct QueueState {
    items: VecDeque<Item>,
    /// Whether a task is draining it.
    running: bool,
}

#[derive(Debug)]
struct Queue {
    url: String,
    /// The URL's origin, the `receiver` label of the metrics.
    receiver: String,
    state: Mutex<QueueState>,
}

impl Queue {
    fn state(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    fn gauge(&self, depth: usize) {
        metrics::gauge!("presenced_notification_queue_depth", "receiver" => self.receiver.clone())
            .set(depth as f64);
    }
}

#[derive(Debug)]
pub struct Delivery {
    client: reqwest::Client,
    allow_private: bool,
    retry_window: Duration,
    queues: Mutex<HashMap<String, Arc<Queue>>>,
    permits: Semaphore,
    reports: mpsc::UnboundedSender<Report>,
    /// Owns the queues' drain tasks (short-lived: one per queue while it
    /// has items), and tells them when presenced stops.
    tasks: Tasks,
    /// What items' warrants are checked against (none are issued on a
    /// single node).
    warrants: Arc<Warrants>,
}

fn origin(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(url) => url.origin().ascii_serialization(),
        Err(_) => "invalid".into(),
    }
}

/// Full jitter over the upper half: the `attempt`th retry waits between
/// half of and the whole exponential delay.
fn backoff(attempt: u32) -> Duration {
    let exponential = FIRST_BACKOFF
        .saturating_mul(1u32 << attempt.min(16))
        .min(MAX_BACKOFF);
    exponential.mul_f64(0.5 + rand::random::<f64>() / 2.0)
}

impl Delivery {
    /// `extra_roots` are trusted beside the public roots
    /// (`--webhook-ca-file`).
    pub fn new(
        allow_private: bool,
        extra_roots: &[rustls_pki_types::CertificateDer<'static>],
        retry_window: Duration,
        reports: mpsc::UnboundedSender<Report>,
        tasks: Tasks,
    ) -> Result<Delivery, String> {
        // No proxy from the environment: a proxy would resolve the
        // receiver's name itself, out of reach of the address check.
        let mut builder = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(DELIVERY_TIMEOUT)
            .user_agent(concat!("presenced/", env!("CARGO_PKG_VERSION")));
        if !allow_private {
            builder = builder.dns_resolver(Arc::new(PublicResolver));
        }
        for root in extra_roots {
            let certificate = reqwest::Certificate::from_der(root).map_err(|error| {
                format!("cannot trust a --webhook-ca-file certificate: {error}")
            })?;
            builder = builder.add_root_certificate(certificate);
        }
        let client = builder
            .build()
            .map_err(|error| format!("cannot build the webhook client: {error}"))?;
        Ok(Delivery {
            client,
            allow_private,
            retry_window,
            queues: Mutex::new(HashMap::new()),
            permits: Semaphore::new(MAX_IN_FLIGHT),
            reports,
            tasks,
            warrants: Arc::new(Warrants::default()),
        })
    }

    /// Checks items' warrants against `warrants`.
    pub fn checking(mut self, warrants: Arc<Warrants>) -> Delivery {
        self.warrants = warrants;
        self
    }

    /// Queues `items` for `url`, after whatever is already queued for it.
    pub fn send(self: &Arc<Self>, url: &str, items: Vec<Item>) {
        if items.is_empty() {
            return;
        }
        // The map's lock is held while the queue takes the items, so that a
        // queue its task is retiring (see `drain`) never takes new ones.
        let mut queues = self
            .queues
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let queue = queues
            .entry(url.to_string())
            .or_insert_with(|| {
                Arc::new(Queue {
                    url: url.to_string(),
                    receiver: origin(url),
                    state: Mutex::new(QueueState::default()),
                })
            })
            .clone();
        let mut state = queue.state();
        state.items.extend(items);
        let mut overflow = Vec::new();
        while state.items.len() > MAX_QUEUED {
            overflow.extend(state.items.pop_front());
        }
        queue.gauge(state.items.len());
        let start = !state.running;
        state.running = true;
        drop(state);
        drop(queues);
        if !overflow.is_empty() {
            tracing::warn!(url = %queue.url, dropped = overflow.len(), "a receiver's queue is full; its oldest notifications are given up");
            self.report(Report::GaveUp(overflow));
        }
        if start {
            let delivery = self.clone();
            self.tasks
                .spawn_short("delivery drain", async move { delivery.drain(queue).await });
        }
    }

    /// Takes out what is queued at `url` for one subscription (it was
    /// deleted, or moved to another URL).
    pub fn take(&self, url: &str, subscription: &str) -> Vec<Item> {
        let queue = self
            .queues
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .get(url)
            .cloned();
        let Some(queue) = queue else {
            return Vec::new();
        };
        let mut state = queue.state();
        let (taken, kept): (Vec<Item>, Vec<Item>) = state
            .items
            .drain(..)
            .partition(|item| &*item.subscription == subscription);
        state.items = kept.into();
        queue.gauge(state.items.len());
        taken
    }

    fn report(&self, report: Report) {
        // The notifier is gone only when presenced is stopping.
        let _ = self.reports.send(report);
    }

    async fn drain(self: Arc<Self>, queue: Arc<Queue>) {
        loop {
            let mut batch = {
                let mut state = queue.state();
                if state.items.is_empty() {
                    drop(state);
                    self.retire(&queue);
                    return;
                }
                let mut batch = Vec::new();
                let mut bytes = 0;
                while let Some(item) = state.items.front() {
                    if !batch.is_empty()
                        && (batch.len() == MAX_BATCH_ITEMS
                            || bytes + item.json.len() > MAX_BATCH_BYTES)
                    {
                        break;
                    }
                    bytes += item.json.len() + 1;
                    batch.extend(state.items.pop_front());
                }
                queue.gauge(state.items.len());
                batch
            };
            let mut attempt = 0;
            loop {
                let result = {
                    let Ok(_permit) = self.permits.acquire().await else {
                        return;
                    };
                    // As late as can be: a batch taken, or its retry due,
                    // before this process was paused is sent after it.
                    self.withhold(&mut batch);
                    if batch.is_empty() {
                        break;
                    }
                    let body = batch_body(&batch);
                    tokio::select! {
                        () = self.tasks.shutdown().cancelled() => return,
                        result = self.post(&queue.url, body) => result,
                    }
                };
                match result {
                    Ok(()) => {
                        let histogram =
                            metrics::histogram!("presenced_notification_delivery_seconds");
                        for item in &batch {
                            histogram.record(item.queued.elapsed().as_secs_f64());
                        }
                        metrics::counter!("presenced_notifications_delivered_total")
                            .increment(batch.len() as u64);
                        self.report(Report::Delivered(batch));
                        break;
                    }
                    Err(reason) => {
                        metrics::counter!("presenced_notification_failures_total", "receiver" => queue.receiver.clone())
                            .increment(1);
                        let age = batch
                            .iter()
                            .map(|item| item.queued.elapsed())
                            .max()
                            .unwrap_or_default();
                        let left = self.retry_window.saturating_sub(age);
                        if left.is_zero() {
                            tracing::warn!(url = %queue.url, %reason, notifications = batch.len(), "giving up on a batch after the retry window");
                            self.report(Report::GaveUp(batch));
                            break;
                        }
                        let delay = backoff(attempt).min(left);
                        attempt += 1;
                        tracing::info!(url = %queue.url, %reason, retry_in = ?delay, "a notification batch was not accepted; retrying");
                        metrics::counter!("presenced_notification_retries_total").increment(1);
                        tokio::select! {
                            () = self.tasks.shutdown().cancelled() => return,
                            () = tokio::time::sleep(delay) => {}
                        }
                    }
                }
            }
        }
    }

    /// Takes out of `batch` the notifications whose warrant no longer
    /// holds: their partition's lease is lost or no longer safe, or a
    /// take-over caught the partition up since they were queued. The
    /// partition's next owner (this node again, or another) sends each of
    /// their users' presence as it is then; sending them as well could
    /// repeat what it sends. Their marks are not raised, so nothing is lost.
    fn withhold(&self, batch: &mut Vec<Item>) {
        let before = batch.len();
        batch.retain(|item| {
            item.warrant
                .is_none_or(|warrant| self.warrants.honours(&warrant))
        });
        let withheld = before - batch.len();
        if withheld > 0 {
            metrics::counter!("presenced_notifications_withheld_total").increment(withheld as u64);
            tracing::info!(
                notifications = withheld,
                "notifications of partitions no longer held safely are left to their next owner"
            );
        }
    }

    /// Removes a drained queue from the map (URLs come and go with
    /// subscriptions), unless items arrived meanwhile; then it keeps going.
    fn retire(self: &Arc<Self>, queue: &Arc<Queue>) {
        let mut queues = self
            .queues
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        let mut state = queue.state();
        if state.items.is_empty() {
            state.running = false;
            queues.remove(&queue.url);
        } else {
            drop(state);
            drop(queues);
            let delivery = self.clone();
            let queue = queue.clone();
            self.tasks
                .spawn_short("delivery drain", async move { delivery.drain(queue).await });
        }
    }

    /// Refuses, at delivery time, a URL whose host is a literal private
    /// address (names are checked by the resolver).
    fn check_literal(&self, url: &url::Url) -> Result<(), String> {
        if self.allow_private {
            return Ok(());
        }
        let address = match url.host() {
            Some(url::Host::Ipv4(v4)) => std::net::IpAddr::V4(v4),
            Some(url::Host::Ipv6(v6)) => std::net::IpAddr::V6(v6),
            _ => return Ok(()),
        };
        if is_public(address) {
            Ok(())
        } else {
            Err(format!("{address} is not a public address"))
        }
    }

    async fn post(&self, url: &str, body: String) -> Result<(), String> {
        let parsed = url::Url::parse(url).map_err(|error| error.to_string())?;
        self.check_literal(&parsed)?;
        let response = self
            .client
            .post(parsed)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .timeout(DELIVERY_TIMEOUT)
            .send()
            .await
            .map_err(|error| describe(&error))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("the receiver answered {status}"))
        }
    }

    /// Graph's validation handshake: POSTs `validationToken` to `url` and
    /// requires it back, exactly, as `200 text/plain`, within
    /// [`VALIDATION_TIMEOUT`]. `field` names the URL's property in errors.
    pub async fn validate(&self, field: &str, url: &url::Url) -> Result<(), String> {
        let token = format!(
            "Validation: Testing client application reachability for subscription Request-Id: {}",
            uuid::Uuid::new_v4()
        );
        let encoded =
            percent_encoding::utf8_percent_encode(&token, percent_encoding::NON_ALPHANUMERIC);
        let mut target = url.clone();
        let query = match url.query() {
            Some(query) if !query.is_empty() => format!("{query}&validationToken={encoded}"),
            _ => format!("validationToken={encoded}"),
        };
        target.set_query(Some(&query));
        self.check_literal(&target)?;
        let shown = crate::wire::truncate(url.as_str());
        let response = self
            .client
            .post(target)
            .header(reqwest::header::CONTENT_TYPE, "text/plain; charset=utf-8")
            .timeout(VALIDATION_TIMEOUT)
            .send()
            .await
            .map_err(|error| {
                if error.is_timeout() {
                    format!(
                        "Subscription validation request timed out: {field} {shown} did not answer within {} seconds.",
                        VALIDATION_TIMEOUT.as_secs()
                    )
                } else {
                    format!(
                        "Subscription validation request failed: {field} {shown} could not be reached ({}).",
                        describe(&error)
                    )
                }
            })?;
        let status = response.status();
        if status != reqwest::StatusCode::OK {
            return Err(format!(
                "Subscription validation request failed. Notification endpoint must respond with 200 OK to validation request; {field} {shown} answered {status}."
            ));
        }
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        let echoed = tokio::time::timeout(VALIDATION_TIMEOUT, read_at_most(response, token.len() + 1024))
            .await
            .map_err(|_| {
                format!("Subscription validation request timed out: {field} {shown} did not finish its answer within {} seconds.", VALIDATION_TIMEOUT.as_secs())
            })?
            .map_err(|error| {
                format!("Subscription validation request failed: the answer of {field} {shown} could not be read ({}).", describe(&error))
            })?;
        let echoed = String::from_utf8_lossy(&echoed);
        if echoed != token {
            return Err(format!(
                "Subscription validation request failed. Response must exactly match validationToken query parameter; {field} {shown} answered with a body of {} bytes that is not the URL-decoded token.",
                echoed.len()
            ));
        }
        if !content_type.starts_with("text/plain") {
            return Err(format!(
                "Subscription validation request failed. The response must have Content-Type text/plain; {field} {shown} answered with '{}'.",
                crate::wire::truncate(&content_type)
            ));
        }
        Ok(())
    }
}

/// A response body, but no more than `limit` bytes of it (a receiver
/// chooses how much it sends).
async fn read_at_most(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = limit.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= limit {
            break;
        }
    }
    Ok(body)
}

/// reqwest's error with its causes, which hold the useful part.
fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// `{"value":[item,item,...]}`.
fn batch_body(batch: &[Item]) -> String {
    let mut body =
        String::with_capacity(12 + batch.iter().map(|item| item.json.len() + 1).sum::<usize>());
    body.push_str("{\"value\":[");
    for (index, item) in batch.iter().enumerate() {
        if index > 0 {
            body.push(',');
        }
        body.push_str(&item.json);
    }
    body.push_str("]}");
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        for attempt in 0..20 {
            let exponential = FIRST_BACKOFF
                .saturating_mul(1 << attempt.min(16))
                .min(MAX_BACKOFF);
            let delay = backoff(attempt);
            assert!(
                delay >= exponential / 2 && delay <= exponential,
                "{attempt}: {delay:?}"
            );
        }
        assert!(backoff(30) <= MAX_BACKOFF);
    }

    #[test]
    fn a_batch_is_one_json_object() {
        let item = |json: &str| Item {
            subscription: Arc::from("s"),
            mark: None,
            warrant: None,
            json: json.into(),
            queued: std::time::Instant::now(),
        };
        let body = batch_body(&[item("{\"a\":1}"), item("{\"b\":2}")]);
        let parsed: serde_json::Value = serde_json::from_str(&body).expect("JSON");
        assert_eq!(parsed, serde_json::json!({"value": [{"a": 1}, {"b": 2}]}));
    }
}
