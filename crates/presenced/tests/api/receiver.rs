//! A real webhook receiver: an HTTP server on a loopback port that answers
//! Graph's validation handshake and records every notification POSTed to
//! it, with behaviours a test can switch (fail, hang, answer wrongly).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{OriginalUri, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use tokio::sync::Notify;

/// What the receiver does with the next requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// 202 for notifications; the token back for validations.
    Accept,
    /// Answers with this status (notifications and validations alike).
    Status(u16),
    /// Never answers (until the behaviour changes).
    Hang,
    /// Echoes something other than the token.
    WrongEcho,
    /// Echoes the token as JSON instead of text/plain.
    JsonEcho,
}

/// One notification item, with where and when it arrived.
#[derive(Clone, Debug)]
pub struct Received {
    pub path: String,
    pub item: Value,
    pub at: Instant,
    /// The wall-clock time of arrival, to compare with the server's instants.
    pub wall: jiff::Timestamp,
}

#[derive(Debug)]
struct Shared {
    behaviour: Mutex<Behaviour>,
    /// Notification POSTs answered with a failure before `behaviour` applies.
    failures_left: Mutex<u32>,
    items: Mutex<Vec<Received>>,
    tokens: Mutex<Vec<(String, String)>>,
    posts: Mutex<u32>,
    arrived: Notify,
    unhang: Notify,
}

#[derive(Clone, Debug)]
pub struct Receiver {
    pub base: String,
    shared: Arc<Shared>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let (shared, app) = Receiver::app();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let base = format!("http://{}", listener.local_addr().expect("bound"));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Receiver { base, shared }
    }

    /// A receiver served over HTTPS with the certificate `cert` and its key
    /// `key` (PEM files), at `https://127.0.0.1:PORT`.
    pub async fn start_tls(cert: &std::path::Path, key: &std::path::Path) -> Receiver {
        let (shared, app) = Receiver::app();
        let acceptor = presenced::tls::acceptor(cert, key).expect("the certificate serves");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let base = format!("https://{}", listener.local_addr().expect("bound"));
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, app) = (acceptor.clone(), app.clone());
                tokio::spawn(async move {
                    // A client that refuses the certificate ends here.
                    let Ok(stream) = acceptor.accept(stream).await else {
                        return;
                    };
                    // HTTP/2 when the client chose it by ALPN (the
                    // acceptor is presenced's own, which offers both).
                    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2".as_slice());
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let service = hyper_util::service::TowerToHyperService::new(app);
                    let _ = if h2 {
                        hyper::server::conn::http2::Builder::new(
                            hyper_util::rt::TokioExecutor::new(),
                        )
                        .serve_connection(io, service)
                        .await
                    } else {
                        hyper::server::conn::http1::Builder::new()
                            .serve_connection(io, service)
                            .await
                    };
                });
            }
        });
        Receiver { base, shared }
    }

    fn app() -> (Arc<Shared>, Router) {
        let shared = Arc::new(Shared {
            behaviour: Mutex::new(Behaviour::Accept),
            failures_left: Mutex::new(0),
            items: Mutex::new(Vec::new()),
            tokens: Mutex::new(Vec::new()),
            posts: Mutex::new(0),
            arrived: Notify::new(),
            unhang: Notify::new(),
        });
        let app = Router::new().fallback(handle).with_state(shared.clone());
        (shared, app)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn behave(&self, behaviour: Behaviour) {
        *self.shared.behaviour.lock().unwrap() = behaviour;
        if behaviour != Behaviour::Hang {
            self.shared.unhang.notify_waiters();
        }
    }

    /// The next `count` notification POSTs fail with `status`.
    pub fn fail_next(&self, count: u32) {
        *self.shared.failures_left.lock().unwrap() = count;
    }

    /// The validation tokens received, with the path they came to.
    pub fn tokens(&self) -> Vec<(String, String)> {
        self.shared.tokens.lock().unwrap().clone()
    }

    /// Notification POSTs received (answered or not).
    pub fn posts(&self) -> u32 {
        *self.shared.posts.lock().unwrap()
    }

    pub fn items(&self) -> Vec<Received> {
        self.shared.items.lock().unwrap().clone()
    }

    /// Waits until at least `count` items have arrived at `path` (any path
    /// with `None`) and returns those.
    pub async fn wait_for(
        &self,
        path: Option<&str>,
        count: usize,
        limit: Duration,
    ) -> Vec<Received> {
        let deadline = Instant::now() + limit;
        loop {
            let arrived = self.shared.arrived.notified();
            let items: Vec<Received> = self
                .items()
                .into_iter()
                .filter(|received| path.is_none_or(|path| received.path == path))
                .collect();
            if items.len() >= count {
                return items;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "expected {count} notifications at {path:?} within {limit:?}, got {}: {items:#?}",
                items.len()
            );
            let _ = tokio::time::timeout(left, arrived).await;
        }
    }

    /// Asserts that nothing more than `count` items arrives at `path` in `quiet`.
    pub async fn assert_no_more(&self, path: &str, count: usize, quiet: Duration) {
        tokio::time::sleep(quiet).await;
        let items: Vec<Received> = self
            .items()
            .into_iter()
            .filter(|received| received.path == path)
            .collect();
        assert_eq!(items.len(), count, "unexpected notifications: {items:#?}");
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    OriginalUri(uri): OriginalUri,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let behaviour = *shared.behaviour.lock().unwrap();
    if let Some(token) = query.get("validationToken") {
        shared.tokens.lock().unwrap().push((path, token.clone()));
        return match behaviour {
            Behaviour::Accept => (
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                token.clone(),
            )
                .into_response(),
            Behaviour::Status(status) => StatusCode::from_u16(status)
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
                .into_response(),
            Behaviour::Hang => {
                shared.unhang.notified().await;
                StatusCode::OK.into_response()
            }
            Behaviour::WrongEcho => {
                ([(header::CONTENT_TYPE, "text/plain")], "not the token").into_response()
            }
            Behaviour::JsonEcho => {
                ([(header::CONTENT_TYPE, "application/json")], token.clone()).into_response()
            }
        };
    }
    *shared.posts.lock().unwrap() += 1;
    {
        let mut failures = shared.failures_left.lock().unwrap();
        if *failures > 0 {
            *failures -= 1;
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    }
    match behaviour {
        Behaviour::Hang => {
            // Answers only when told to, and then not as an acceptance:
            // presenced has given up on this request long before.
            shared.unhang.notified().await;
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
        Behaviour::Status(status) => {
            return StatusCode::from_u16(status)
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
                .into_response();
        }
        Behaviour::Accept | Behaviour::WrongEcho | Behaviour::JsonEcho => {}
    }
    let Ok(value) = serde_json::from_slice::<Value>(&body) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let at = Instant::now();
    let wall = jiff::Timestamp::now();
    let items: Vec<Received> = value["value"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|item| Received {
            path: path.clone(),
            item,
            at,
            wall,
        })
        .collect();
    shared.items.lock().unwrap().extend(items);
    shared.arrived.notify_waiters();
    StatusCode::ACCEPTED.into_response()
}
