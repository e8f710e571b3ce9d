//! HTTP/2 beside HTTP/1.1 on the same port: in plain text with prior
//! knowledge (h2c) and over TLS by ALPN, its bounds (streams per
//! connection, the reset flood, a client that withholds its window), the
//! live stream over it, the connection registry's view of its streams, and
//! draining it on SIGTERM.
//!
//! reqwest speaks for ordinary clients; the h2 library itself is the
//! test's hand where a client must do what reqwest never does (hold many
//! streams on one connection it controls, reset them in a flood, read the
//! server's settings). No test measures how long anything took: deadlines
//! only turn a hang into a failure.

use std::time::Duration;

use bytes::Bytes;
use hyper::{Method, Request, StatusCode};
use reqwest::Version;
use serde_json::json;
use tokio::net::TcpStream;

use crate::helpers::{GUARD, Reply, TestServer, refusals};

/// A client that speaks HTTP/2 in plain text from its first byte.
fn h2c_client() -> reqwest::Client {
    reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .expect("a client")
}

/// Sends `request` and asserts it came back over HTTP/2.
async fn over_h2(server: &TestServer, request: reqwest::RequestBuilder) -> Reply {
    let reply = tokio::time::timeout(GUARD, server.send(request))
        .await
        .expect("answered in time");
    assert_eq!(reply.version, Version::HTTP_2, "{reply:?}");
    reply
}

/// One HTTP/2 connection in plain text, driven by the h2 library: the
/// connection's own task ends with what the server closed it with.
struct H2 {
    base: String,
    send: h2::client::SendRequest<Bytes>,
    connection: tokio::task::JoinHandle<Result<(), h2::Error>>,
}

/// A response read whole.
#[derive(Debug)]
struct H2Reply {
    status: StatusCode,
    body: String,
}

impl H2 {
    /// Connects, and answers the connection once the server's settings
    /// have arrived, with the number of streams they allow at once.
    async fn connect(server: &TestServer) -> (H2, usize) {
        let address = server.base.strip_prefix("http://").expect("plain text");
        let stream = TcpStream::connect(address).await.expect("connects");
        let (send, mut connection) = h2::client::handshake(stream)
            .await
            .expect("the HTTP/2 handshake");
        // One request answered: the server's SETTINGS came before it.
        let mut send = send;
        let (answer, _) = start(&mut send, &server.base, Method::GET, "/healthz", true);
        let answered = tokio::select! {
            answered = answer => answered.expect("answered"),
            ended = &mut connection => panic!("the connection ended first: {ended:?}"),
        };
        assert_eq!(answered.status(), StatusCode::OK);
        let streams = connection.max_concurrent_send_streams();
        let connected = H2 {
            base: server.base.clone(),
            send,
            connection: tokio::spawn(connection),
        };
        (connected, streams)
    }

    /// Opens a stream and sends its head, leaving the stream open for the
    /// caller to send a body on (or to reset).
    async fn open(
        &mut self,
        method: Method,
        path: &str,
    ) -> (h2::client::ResponseFuture, h2::SendStream<Bytes>) {
        self.start(method, path, false).await
    }

    /// Opens a stream once the client may (the stream it opened before is
    /// open: beyond the server's bound, the client queues one stream at a
    /// time).
    async fn start(
        &mut self,
        method: Method,
        path: &str,
        whole: bool,
    ) -> (h2::client::ResponseFuture, h2::SendStream<Bytes>) {
        self.send = tokio::time::timeout(GUARD, self.send.clone().ready())
            .await
            .expect("the client may open a stream in time")
            .expect("the connection is open");
        start(&mut self.send, &self.base, method, path, whole)
    }

    /// Sends a whole request: its head, and its body if it has one.
    async fn request(
        &mut self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> h2::client::ResponseFuture {
        let (answer, mut stream) = self.start(method, path, body.is_none()).await;
        if let Some(body) = body {
            stream
                .send_data(Bytes::from(body.to_string()), true)
                .expect("the body is sent");
        }
        answer
    }

    /// Sends a whole request and reads its whole answer.
    async fn call(
        &mut self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> H2Reply {
        read_whole(answered(self.request(method, path, body).await).await).await
    }
}

/// Opens a stream on `send` and sends its head; `whole`: the request has
/// no body, and the stream is ended with the head.
fn start(
    send: &mut h2::client::SendRequest<Bytes>,
    base: &str,
    method: Method,
    path: &str,
    whole: bool,
) -> (h2::client::ResponseFuture, h2::SendStream<Bytes>) {
    let request = Request::builder()
        .method(method)
        .uri(format!("{base}{path}"))
        .header("content-type", "application/json")
        .body(())
        .expect("a request");
    send.send_request(request, whole).expect("a stream opens")
}

/// The response a stream gets.
async fn answered(answer: h2::client::ResponseFuture) -> hyper::Response<h2::RecvStream> {
    tokio::time::timeout(GUARD, answer)
        .await
        .expect("answered in time")
        .expect("answered")
}

/// Reads a response's whole body, giving the window back as it goes.
async fn read_whole(response: hyper::Response<h2::RecvStream>) -> H2Reply {
    let status = response.status();
    let mut body = response.into_body();
    let mut text = Vec::new();
    while let Some(chunk) = tokio::time::timeout(GUARD, body.data())
        .await
        .expect("the body arrives in time")
    {
        let chunk = chunk.expect("a chunk");
        let _ = body.flow_control().release_capacity(chunk.len());
        text.extend_from_slice(&chunk);
    }
    H2Reply {
        status,
        body: String::from_utf8_lossy(&text).into_owned(),
    }
}

/// Reads a live stream until `text` has arrived; false if it ends first.
async fn read_until(body: &mut h2::RecvStream, seen: &mut String, text: &str) -> bool {
    while !seen.contains(text) {
        let chunk = tokio::time::timeout(GUARD, body.data())
            .await
            .expect("the stream goes on");
        match chunk {
            Some(Ok(chunk)) => {
                let _ = body.flow_control().release_capacity(chunk.len());
                seen.push_str(&String::from_utf8_lossy(&chunk));
            }
            _ => return false,
        }
    }
    true
}

/// Opens a live stream of `users` on `connection` and reads its first event.
async fn open_stream(connection: &mut H2, users: &str) -> h2::RecvStream {
    let answer = connection
        .request(
            Method::GET,
            &format!("/_presenced/stream?ids={users}"),
            None,
        )
        .await;
    let response = answered(answer).await;
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let mut seen = String::new();
    assert!(
        read_until(&mut body, &mut seen, "event: presence").await,
        "the first presence: {seen}"
    );
    body
}

fn set_body(availability: &str, activity: &str) -> serde_json::Value {
    json!({"sessionId": "app", "availability": availability, "activity": activity})
}

#[tokio::test]
async fn h2c_with_prior_knowledge_serves_presence_and_http1_goes_on_on_the_same_port() {
    let server = TestServer::start(&[]).await;
    let client = h2c_client();
    let set = |availability: &str, activity: &str| {
        client
            .post(server.url("/v1.0/users/alice/presence/setPresence"))
            .json(&set_body(availability, activity))
    };
    over_h2(&server, set("Busy", "InACall"))
        .await
        .assert_ok_empty();
    let read = over_h2(
        &server,
        client.get(server.url("/v1.0/users/alice/presence")),
    )
    .await;
    assert_eq!(read.status, 200, "{}", read.text);
    assert_eq!(read.body["availability"], "Busy", "{}", read.text);
    assert_eq!(read.body["activity"], "InACall", "{}", read.text);
    // HTTP/2 names the host in `:authority`, not `Host`.
    assert!(
        read.body["@odata.context"]
            .as_str()
            .is_some_and(|context| context.starts_with(&format!("{}/v1.0/", server.base))),
        "{}",
        read.text
    );
    // Errors carry Graph's envelope over HTTP/2 too.
    let refused = over_h2(
        &server,
        client
            .post(server.url("/v1.0/users/alice/presence/setPresence"))
            .json(&json!({"sessionId": "app", "availability": "Busy", "activity": "InACall", "expirationDuration": "PT1M"})),
    )
    .await;
    refused.assert_error(400, "InvalidArgument");
    let unknown = over_h2(&server, client.get(server.url("/v1.0/nowhere"))).await;
    assert_eq!(unknown.status, 404, "{}", unknown.text);
    assert!(
        unknown.body["error"]["code"].is_string(),
        "{}",
        unknown.text
    );
    // A head beyond --max-header-bytes is answered 431 by the h2 library;
    // the connection goes on.
    let beyond = "x".repeat(20_000);
    let refused = tokio::time::timeout(
        GUARD,
        client
            .get(server.url("/healthz"))
            .header("x-padding", &beyond)
            .send(),
    )
    .await
    .expect("answered in time")
    .expect("answered");
    assert_eq!(refused.status(), 431);
    let read = over_h2(
        &server,
        client.get(server.url("/v1.0/users/alice/presence")),
    )
    .await;
    assert_eq!(read.body["availability"], "Busy", "{}", read.text);
    // HTTP/1.1 on the same port, as before, sees the same presence.
    let plain = reqwest::Client::builder()
        .http1_only()
        .build()
        .expect("a client");
    let read = server
        .send(plain.get(server.url("/v1.0/users/alice/presence")))
        .await;
    assert_eq!(read.version, Version::HTTP_11);
    assert_eq!(read.body["availability"], "Busy", "{}", read.text);
}

#[tokio::test]
async fn https_offers_http2_by_alpn_and_http1_to_clients_that_ask_for_it() {
    let pki = crate::certs::TestPki::new();
    let (cert, key) = (
        crate::certs::text(&pki.cert()),
        crate::certs::text(&pki.key()),
    );
    let server = TestServer::start(&["--tls-cert", &cert, "--tls-key", &key]).await;
    assert!(server.base.starts_with("https://"), "{}", server.base);
    let authority = std::fs::read(pki.ca()).expect("the authority's certificate");
    let trusting = || {
        reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&authority).expect("PEM"))
    };
    let h2 = trusting().build().expect("a client");
    over_h2(
        &server,
        h2.post(server.url("/v1.0/users/bob/presence/setPresence"))
            .json(&set_body("DoNotDisturb", "Presenting")),
    )
    .await
    .assert_ok_empty();
    let read = over_h2(&server, h2.get(server.url("/v1.0/users/bob/presence"))).await;
    assert_eq!(read.body["availability"], "DoNotDisturb", "{}", read.text);
    assert!(
        read.body["@odata.context"]
            .as_str()
            .is_some_and(|context| context.starts_with("https://")),
        "{}",
        read.text
    );
    let http1 = trusting().http1_only().build().expect("a client");
    let read = server
        .send(http1.get(server.url("/v1.0/users/bob/presence")))
        .await;
    assert_eq!(read.version, Version::HTTP_11);
    assert_eq!(read.body["availability"], "DoNotDisturb", "{}", read.text);
}

#[tokio::test]
async fn many_streams_at_once_on_one_connection_are_all_answered() {
    let server = TestServer::start(&[]).await;
    let (mut connection, allowed) = H2::connect(&server).await;
    assert_eq!(allowed, 100, "the default --max-h2-streams is advertised");
    // Twice as many as allowed at once, writes and reads mixed: the client
    // opens the rest as the first ones end.
    let mut answers = Vec::new();
    for n in 0..200 {
        let user = format!("user-{}", n % 50);
        answers.push(if n % 2 == 0 {
            connection
                .request(
                    Method::POST,
                    &format!("/v1.0/users/{user}/presence/setPresence"),
                    Some(&set_body("Busy", "InACall")),
                )
                .await
        } else {
            connection
                .request(Method::GET, &format!("/v1.0/users/{user}/presence"), None)
                .await
        });
    }
    for answer in answers {
        let reply = read_whole(answered(answer).await).await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    }
    let reply = connection
        .call(Method::GET, "/v1.0/users/user-8/presence", None)
        .await;
    assert!(reply.body.contains("\"Busy\""), "{reply:?}");
    assert!(
        !connection.connection.is_finished(),
        "one connection throughout"
    );
}

#[tokio::test]
async fn streams_beyond_max_h2_streams_wait_for_one_to_end() {
    let server = TestServer::start(&["--max-h2-streams", "2"]).await;
    server
        .set_presence("alice", "app", "Available", "Available", None)
        .await
        .assert_ok_empty();
    let (mut connection, allowed) = H2::connect(&server).await;
    assert_eq!(allowed, 2, "--max-h2-streams is advertised");
    // Two live streams take both places.
    let first = open_stream(&mut connection, "alice").await;
    let _second = open_stream(&mut connection, "alice").await;
    // A third request waits for a place: it is not answered while both
    // streams are open.
    let mut answer = connection.request(Method::GET, "/healthz", None).await;
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut answer)
            .await
            .is_err(),
        "a third stream was served beside two open ones"
    );
    // One stream ends (its client resets it): the waiting request is
    // answered, and so is every one of twenty more sent at once.
    drop(first);
    assert_eq!(answered(answer).await.status(), StatusCode::OK);
    let mut more = Vec::new();
    for _ in 0..20 {
        more.push(connection.request(Method::GET, "/healthz", None).await);
    }
    for answer in more {
        assert_eq!(answered(answer).await.status(), StatusCode::OK);
    }
}

#[tokio::test]
async fn a_rapid_reset_flood_gets_goaway_while_another_client_is_served() {
    let server = TestServer::start(&[]).await;
    let (mut flood, _) = H2::connect(&server).await;
    // Streams opened and reset at once, as fast as the client can write
    // them (CVE-2023-44487): a hundred, five times the bound, written
    // together before the server has started on any.
    for _ in 0..100 {
        let (_, mut stream) = flood.open(Method::GET, "/v1.0/users/alice/presence").await;
        stream.send_reset(h2::Reason::CANCEL);
    }
    let ended = tokio::time::timeout(GUARD, flood.connection)
        .await
        .expect("the server closes the flooding connection")
        .expect("the connection task");
    let error = ended.expect_err("closed with an error");
    // GOAWAY, unless the server's close reached the client while it was
    // still writing its flood (then the counted refusal below says why).
    assert!(
        (error.is_go_away()
            && error.is_remote()
            && error.reason() == Some(h2::Reason::ENHANCE_YOUR_CALM))
            || error.is_io(),
        "{error:?}"
    );
    assert_eq!(refusals(&server, "too_many_resets", 1.0).await, 1.0);
    // Another client, over either protocol, is served.
    server
        .set_presence("alice", "app", "Busy", "InACall", None)
        .await
        .assert_ok_empty();
    let read = over_h2(
        &server,
        h2c_client().get(server.url("/v1.0/users/alice/presence")),
    )
    .await;
    assert_eq!(read.body["availability"], "Busy", "{}", read.text);
}

#[tokio::test]
async fn an_http2_client_that_reads_none_of_its_answers_is_cut_off_while_others_are_served() {
    let server = TestServer::start(&["--send-timeout", "PT1S"]).await;
    let (mut stalled, _) = H2::connect(&server).await;
    // Batch reads, each answer several times larger than the window the
    // client grants and never gives back (64 KiB): the answers wait on
    // the client's flow control, with the socket idle.
    let ids: Vec<String> = (0..650)
        .map(|n| format!("a-user-with-a-long-id-{n:04}"))
        .collect();
    let mut unread = Vec::new();
    for _ in 0..4 {
        unread.push(
            stalled
                .request(
                    Method::POST,
                    "/v1.0/communications/getPresencesByUserId",
                    Some(&json!({ "ids": ids })),
                )
                .await,
        );
    }
    // Beside it, a fast client is served.
    let client = h2c_client();
    over_h2(
        &server,
        client
            .post(server.url("/v1.0/users/alice/presence/setPresence"))
            .json(&set_body("Busy", "InACall")),
    )
    .await
    .assert_ok_empty();
    // The server closes the stalled client's connection.
    tokio::time::timeout(GUARD, stalled.connection)
        .await
        .expect("the server closes the connection of a client that reads nothing")
        .expect("the connection task")
        .ok();
    assert!(refusals(&server, "timeout", 1.0).await >= 1.0);
    let read = over_h2(
        &server,
        client.get(server.url("/v1.0/users/alice/presence")),
    )
    .await;
    assert_eq!(read.body["availability"], "Busy", "{}", read.text);
    drop(unread);
}

#[tokio::test]
async fn the_live_stream_works_over_http2() {
    let server = TestServer::start(&[]).await;
    server
        .set_presence("alice", "app", "Available", "Available", None)
        .await
        .assert_ok_empty();
    let client = h2c_client();
    let mut stream = tokio::time::timeout(
        GUARD,
        client
            .get(server.url("/_presenced/stream?ids=alice"))
            .header("accept", "text/event-stream")
            .send(),
    )
    .await
    .expect("answered in time")
    .expect("answered");
    assert_eq!(stream.version(), Version::HTTP_2);
    assert_eq!(stream.status(), 200);
    // A change made on the same connection, beside the open stream.
    over_h2(
        &server,
        client
            .post(server.url("/v1.0/users/alice/presence/setPresence"))
            .json(&set_body("Busy", "InACall")),
    )
    .await
    .assert_ok_empty();
    let mut seen = String::new();
    while !seen.contains("\"availability\":\"Busy\"") {
        let chunk = tokio::time::timeout(GUARD, stream.chunk())
            .await
            .expect("the change arrives")
            .expect("readable")
            .expect("the stream goes on");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(seen.contains("event: presence"), "{seen}");
}

#[tokio::test]
async fn an_http2_connection_with_a_stream_open_is_never_evicted_as_idle() {
    let server = TestServer::start(&["--max-connections", "2", "--header-timeout", "PT5M"]).await;
    server
        .set_presence("alice", "app", "Available", "Available", None)
        .await
        .assert_ok_empty();
    // The HTTP/2 connection has been answered before (its first request),
    // long before the others, and now holds a live stream.
    let (mut h2, _) = H2::connect(&server).await;
    let mut live = open_stream(&mut h2, "alice").await;
    // An HTTP/1.1 connection answered after it, then idle.
    let http1 = reqwest::Client::builder()
        .http1_only()
        .build()
        .expect("a client");
    let reply = server.send(http1.get(server.url("/healthz"))).await;
    assert_eq!(reply.status, 200);
    // A newcomer at the bound: the idle HTTP/1.1 connections make room
    // (the helper's, then the one above), never the one whose stream is
    // open, though its last request ended first.
    let newcomer = reqwest::Client::builder()
        .http1_only()
        .build()
        .expect("a client");
    let reply = server.send(newcomer.get(server.url("/healthz"))).await;
    assert_eq!(reply.status, 200);
    // The stream goes on, and its connection takes more requests.
    let written = h2
        .call(
            Method::POST,
            "/v1.0/users/alice/presence/setPresence",
            Some(&set_body("Busy", "InACall")),
        )
        .await;
    assert_eq!(written.status, StatusCode::OK, "{written:?}");
    let mut seen = String::new();
    assert!(
        read_until(&mut live, &mut seen, "\"availability\":\"Busy\"").await,
        "the stream goes on: {seen}"
    );
    assert!(!h2.connection.is_finished());
}

#[tokio::test]
async fn an_http2_connection_with_no_stream_open_is_closed_after_the_header_timeout() {
    let server = TestServer::start(&["--header-timeout", "PT1S"]).await;
    server
        .set_presence("alice", "app", "Available", "Available", None)
        .await
        .assert_ok_empty();
    // One that asked once and then sat idle; one that connected and never
    // asked; one holding a live stream.
    let (idle, _) = H2::connect(&server).await;
    let address = server.base.strip_prefix("http://").expect("plain text");
    let (_silent_send, silent) =
        h2::client::handshake(TcpStream::connect(address).await.expect("connects"))
            .await
            .expect("the HTTP/2 handshake");
    let silent = tokio::spawn(silent);
    let (mut holding, _) = H2::connect(&server).await;
    let mut live = open_stream(&mut holding, "alice").await;
    // The first two are closed (GOAWAY, no error), as idle keep-alive
    // connections are.
    for (connection, name) in [
        (idle.connection, "the idle one"),
        (silent, "the silent one"),
    ] {
        let ended = tokio::time::timeout(GUARD, connection)
            .await
            .unwrap_or_else(|_| panic!("{name} is closed"))
            .expect("the connection task");
        if let Err(error) = ended {
            assert_eq!(
                error.reason(),
                Some(h2::Reason::NO_ERROR),
                "{name}: {error:?}"
            );
        }
    }
    // The one with a stream open outlived them, and its stream goes on.
    server
        .set_presence("alice", "app", "Busy", "InACall", None)
        .await
        .assert_ok_empty();
    let mut seen = String::new();
    assert!(
        read_until(&mut live, &mut seen, "\"availability\":\"Busy\"").await,
        "the stream goes on: {seen}"
    );
    assert!(!holding.connection.is_finished());
    // Only the one that never asked anything is a refusal.
    assert_eq!(refusals(&server, "timeout", 1.0).await, 1.0);
}

#[tokio::test]
async fn sigterm_drains_an_http2_connection() {
    let mut server = TestServer::start(&[]).await;
    server
        .set_presence("alice", "app", "Available", "Available", None)
        .await
        .assert_ok_empty();
    let (mut connection, _) = H2::connect(&server).await;
    let mut live = open_stream(&mut connection, "alice").await;
    // A write in flight: its head and half its body sent.
    let body = set_body("Busy", "InACall").to_string();
    let (half, rest) = body.split_at(body.len() / 2);
    let (answer, mut write) = connection
        .open(Method::POST, "/v1.0/users/alice/presence/setPresence")
        .await;
    write
        .send_data(Bytes::from(half.to_owned()), false)
        .expect("half the body");
    server.signal("TERM");
    // The live stream ends with the hint to come back, which says the
    // node is draining.
    let mut seen = String::new();
    assert!(
        read_until(&mut live, &mut seen, "presenced is stopping").await,
        "{seen}"
    );
    // The write in flight is finished and answered.
    write
        .send_data(Bytes::from(rest.to_owned()), true)
        .expect("the rest of the body");
    assert_eq!(answered(answer).await.status(), StatusCode::OK);
    // Then the server closes the connection, saying so (GOAWAY, no error),
    // and exits 0.
    drop(live);
    drop(connection.send);
    let ended = tokio::time::timeout(GUARD, connection.connection)
        .await
        .expect("the connection is closed")
        .expect("the connection task");
    if let Err(error) = ended {
        assert!(
            error.is_go_away() && error.reason() == Some(h2::Reason::NO_ERROR),
            "{error:?}"
        );
    }
    let exit = server.wait().await;
    assert!(exit.success(), "presenced exits 0 on SIGTERM, got {exit}");
}
