//! The webhook receiver of the notification part: an in-process hyper
//! HTTP/1.1 server on `127.0.0.1:0` playing a Graph subscriber.
//!
//! It answers Graph's validation handshake (a POST whose query carries a
//! `validationToken`: 200, `text/plain`, the URL-decoded token as the body)
//! and accepts every other POST as a batch of change notifications. The
//! instant a batch's body is complete is its items' receipt time; the
//! receiver then answers 202 at once and parses the batch in a task of its
//! own, so that parsing is not part of presenced's round trip (presenced
//! keeps one POST in flight per notification URL, and would wait for it).
//!
//! It runs on the harness's current-thread runtime, beside everything else
//! the harness does, so it never takes more than the harness's one core from
//! presenced.

use std::collections::HashSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// Problems quoted in full; more are only counted.
const QUOTED_PROBLEMS: usize = 5;

/// One change notification as received.
#[derive(Clone, Debug)]
pub struct Receipt {
    /// When the body of its POST was complete.
    pub at: Instant,
    /// `resourceData.id`: the user whose presence changed.
    pub user: String,
    /// `resourceData.sequenceNumber`: which of the user's presences it is
    /// (receivers drop a notification older than one they have).
    pub sequence: String,
    pub client_state: Option<String>,
}

/// Everything received since the last [`Receiver::take`].
#[derive(Debug, Default)]
pub struct Log {
    /// Validation handshakes answered.
    pub handshakes: usize,
    /// Notification POSTs accepted.
    pub posts: usize,
    /// The most items in one POST.
    pub largest_batch: usize,
    pub receipts: Vec<Receipt>,
    /// The distinct users notified (what [`Receiver::wait_for_users`]
    /// counts).
    pub users: HashSet<String>,
    /// POSTs that were neither a handshake nor a batch of notifications.
    pub problems: Vec<String>,
    pub unquoted_problems: usize,
}

impl Log {
    fn problem(&mut self, problem: String) {
        if self.problems.len() < QUOTED_PROBLEMS {
            self.problems.push(problem);
        } else {
            self.unquoted_problems += 1;
        }
    }
}

/// What the connection tasks share with the harness.
#[derive(Debug, Default)]
struct Shared {
    /// A std mutex: it is never held across an await, and everything runs
    /// on one thread anyway.
    log: Mutex<Log>,
    /// Woken whenever a batch has been recorded.
    recorded: Notify,
}

impl Shared {
    fn log(&self) -> MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(|poison| poison.into_inner())
    }

    /// Parses a batch received at `at` and records its items.
    fn record(&self, at: Instant, path: &str, body: &[u8]) {
        let parsed = parse_batch(body);
        let mut log = self.log();
        match parsed {
            Ok(notifications) => {
                log.posts += 1;
                log.largest_batch = log.largest_batch.max(notifications.len());
                for notification in notifications {
                    log.users.insert(notification.user.clone());
                    log.receipts.push(Receipt {
                        at,
                        user: notification.user,
                        sequence: notification.sequence,
                        client_state: notification.client_state,
                    });
                }
            }
            Err(problem) => log.problem(format!("POST {path}: {problem}")),
        }
        drop(log);
        self.recorded.notify_waiters();
    }
}

/// The running receiver; dropping it stops accepting connections.
#[derive(Debug)]
pub struct Receiver {
    address: SocketAddr,
    shared: Arc<Shared>,
    accepting: JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

impl Receiver {
    pub async fn start() -> Result<Receiver, String> {
        let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .map_err(|error| format!("the webhook receiver cannot listen: {error}"))?;
        let address = listener
            .local_addr()
            .map_err(|error| format!("the webhook receiver has no address: {error}"))?;
        let shared = Arc::new(Shared::default());
        let accepting = tokio::spawn(accept(listener, shared.clone()));
        Ok(Receiver {
            address,
            shared,
            accepting,
        })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// `http://127.0.0.1:PORT` followed by `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address())
    }

    /// Everything received so far; the log starts empty again.
    pub fn take(&self) -> Log {
        std::mem::take(&mut *self.shared.log())
    }

    pub fn handshakes(&self) -> usize {
        self.shared.log().handshakes
    }

    /// Waits until `users` distinct users have been notified, or `timeout`
    /// has passed; whether they were.
    pub async fn wait_for_users(&self, users: usize, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Made before the check, so a batch recorded in between still
            // wakes it.
            let recorded = self.shared.recorded.notified();
            if self.shared.log().users.len() >= users {
                return true;
            }
            if tokio::time::timeout_at(deadline, recorded).await.is_err() {
                return self.shared.log().users.len() >= users;
            }
        }
    }
}

async fn accept(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of file descriptors and the like: keep serving the
            // connections that exist; presenced retries.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| answer(shared.clone(), request));
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn answer(
    shared: Arc<Shared>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let token = request.uri().query().and_then(validation_token);
    let path = request.uri().path().to_string();
    let body = request.into_body().collect().await;
    let at = Instant::now();
    if let Some(token) = token {
        shared.log().handshakes += 1;
        let mut response = Response::new(Full::new(Bytes::from(token)));
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        return Ok(response);
    }
    let body = match body {
        Ok(collected) => collected.to_bytes(),
        Err(error) => {
            shared
                .log()
                .problem(format!("POST {path}: the body did not arrive: {error}"));
            return Ok(status(StatusCode::BAD_REQUEST));
        }
    };
    tokio::spawn(async move { shared.record(at, &path, &body) });
    Ok(status(StatusCode::ACCEPTED))
}

fn status(status: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = status;
    response
}

/// The URL-decoded `validationToken` of a query string, if it has one.
pub fn validation_token(query: &str) -> Option<String> {
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix("validationToken="))
        .and_then(percent_decode)
}

/// Decodes `%XX` escapes and `+` (a space in a query, as the web frameworks
/// Graph's subscribers use read it); `None` for a broken escape or text
/// that is not UTF-8.
pub fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(index + 1..index + 3)?).ok()?;
                decoded.push(u8::from_str_radix(hex, 16).ok()?);
                index += 3;
            }
            b'+' => {
                decoded.push(b' ');
                index += 1;
            }
            byte => {
                decoded.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8(decoded).ok()
}

/// One change notification, as the receiver reads it.
#[derive(Debug, PartialEq, Eq)]
pub struct Notification {
    pub subscription: String,
    pub user: String,
    pub sequence: String,
    pub client_state: Option<String>,
}

/// `{"value":[...]}` with only the fields the receiver reads; the others
/// are skipped unparsed.
#[derive(Deserialize)]
struct BatchJson {
    value: Vec<NotificationJson>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NotificationJson {
    subscription_id: String,
    resource: String,
    resource_data: ResourceDataJson,
    client_state: Option<String>,
}

#[derive(Deserialize)]
struct ResourceDataJson {
    id: String,
    #[serde(rename = "sequenceNumber")]
    sequence_number: Option<String>,
}

/// The notifications of one POST body. Each names its user twice
/// (`resource` and `resourceData.id`), and the two must agree.
pub fn parse_batch(body: &[u8]) -> Result<Vec<Notification>, String> {
    let batch: BatchJson = serde_json::from_slice(body).map_err(|error| {
        format!(
            "not a batch of change notifications ({error}): {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        )
    })?;
    batch
        .value
        .into_iter()
        .map(|item| {
            let named = item
                .resource
                .trim_start_matches('/')
                .strip_prefix("communications/presences/");
            if named != Some(item.resource_data.id.as_str()) {
                return Err(format!(
                    "a notification's resource {:?} does not name its resourceData.id {:?}",
                    item.resource, item.resource_data.id
                ));
            }
            Ok(Notification {
                subscription: item.subscription_id,
                user: item.resource_data.id,
                sequence: item.resource_data.sequence_number.unwrap_or_default(),
                client_state: item.client_state,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_validation_token_is_found_and_decoded() {
        // As presenced encodes it: everything but letters and digits.
        let query = "validationToken=Validation%3A%20Testing%20client%20application%20reachability%20for%20subscription%20Request%2DId%3A%2042";
        assert_eq!(
            validation_token(query).as_deref(),
            Some(
                "Validation: Testing client application reachability for subscription Request-Id: 42"
            )
        );
        assert_eq!(
            validation_token("a=1&validationToken=x+y%2By&b=2").as_deref(),
            Some("x y+y")
        );
        assert_eq!(validation_token("token=abc"), None);
        assert_eq!(validation_token("validationToken=%4"), None);
        assert_eq!(validation_token("validationToken=%ff"), None);
    }

    #[test]
    fn a_batch_gives_each_notifications_user_and_sequence() {
        let body = br##"{"value":[
            {"subscriptionId":"s1","subscriptionExpirationDateTime":"2026-01-01T10:59:00.0000000Z",
             "changeType":"updated","resource":"communications/presences/u1",
             "resourceData":{"@odata.type":"#microsoft.graph.presence","@odata.id":"users/u1/presence",
                             "id":"u1","sequenceNumber":"7"},
             "clientState":"bench","tenantId":"t","organizationId":"t"},
            {"subscriptionId":"s2","resource":"/communications/presences/u2",
             "resourceData":{"id":"u2"},"clientState":null}
        ]}"##;
        assert_eq!(
            parse_batch(body).expect("a batch"),
            vec![
                Notification {
                    subscription: "s1".into(),
                    user: "u1".into(),
                    sequence: "7".into(),
                    client_state: Some("bench".into()),
                },
                Notification {
                    subscription: "s2".into(),
                    user: "u2".into(),
                    sequence: String::new(),
                    client_state: None,
                },
            ]
        );
    }

    #[tokio::test]
    async fn over_http_it_echoes_the_handshake_and_records_batches() {
        use crate::load::{RequestSpec, send_once};

        let receiver = Receiver::start().await.expect("a receiver");
        let address = receiver.address();
        let handshake = RequestSpec::post_json(
            hyper::Uri::from_static("/notify?validationToken=Request%2DId%3A%20abc"),
            Bytes::new(),
        );
        let answer = send_once(address, &handshake).await.expect("an answer");
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(&answer.body[..], b"Request-Id: abc");
        assert!(
            answer.headers[CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/plain")
        );

        let batch = |user: &str| {
            RequestSpec::post_json(
                hyper::Uri::from_static("/notify/3"),
                Bytes::from(format!(
                    r#"{{"value":[{{"subscriptionId":"s","resource":"communications/presences/{user}","resourceData":{{"id":"{user}"}},"clientState":"bench"}}]}}"#
                )),
            )
        };
        for user in ["u1", "u2", "u1"] {
            let answer = send_once(address, &batch(user)).await.expect("an answer");
            assert_eq!(answer.status, StatusCode::ACCEPTED);
        }
        assert!(receiver.wait_for_users(2, Duration::from_secs(5)).await);
        assert!(!receiver.wait_for_users(3, Duration::from_millis(50)).await);
        let log = receiver.take();
        assert_eq!((log.handshakes, log.posts, log.receipts.len()), (1, 3, 3));
        assert!(log.problems.is_empty(), "{:?}", log.problems);
        assert_eq!(receiver.take().receipts.len(), 0, "taking empties the log");
    }

    #[test]
    fn what_is_not_a_batch_is_a_problem_that_says_why() {
        let mismatched =
            br#"{"value":[{"subscriptionId":"s","resource":"communications/presences/u1",
                              "resourceData":{"id":"u2"}}]}"#;
        let error = parse_batch(mismatched).unwrap_err();
        assert!(error.contains("does not name"), "{error}");
        let error = parse_batch(br#"{"values":[]}"#).unwrap_err();
        assert!(error.contains("not a batch"), "{error}");
        assert_eq!(parse_batch(br#"{"value":[]}"#).expect("empty"), vec![]);
    }
}
