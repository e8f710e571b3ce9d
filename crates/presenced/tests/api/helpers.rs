//! Starts the real `presenced` binary on a free loopback port and talks HTTP
//! to it. Every response is checked for the one thing no test may ever see:
//! a 5xx.

use std::process::Stdio;
use std::time::Duration;

use base64::Engine;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub struct TestServer {
    child: Child,
    pub base: String,
    client: reqwest::Client,
    /// The data directory made for this server, when the test gave none;
    /// removed when the server is dropped.
    _data_dir: Option<tempfile::TempDir>,
}

#[derive(Debug)]
pub struct Reply {
    /// The HTTP version it came over.
    pub version: reqwest::Version,
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
    /// The body as JSON, or `Null` if it is empty or not JSON.
    pub body: Value,
}

impl Reply {
    /// Each presence of a collection (`value`) as its id and availability,
    /// in order.
    #[track_caller]
    pub fn availabilities(&self) -> Vec<(&str, &str)> {
        self.body["value"]
            .as_array()
            .expect("a value array")
            .iter()
            .map(|presence| {
                (
                    presence["id"].as_str().unwrap_or_default(),
                    presence["availability"].as_str().unwrap_or_default(),
                )
            })
            .collect()
    }

    /// Asserts a Graph OData error envelope with `status` and `code`, and
    /// returns the message.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) -> String {
        assert_eq!(
            self.status, status,
            "unexpected status; body: {}",
            self.text
        );
        let error = &self.body["error"];
        assert_eq!(error["code"], code, "unexpected code; body: {}", self.text);
        let message = error["message"].as_str().expect("a message").to_owned();
        assert!(
            message.len() > 10,
            "the message should say what to fix: {message}"
        );
        let inner = &error["innerError"];
        assert!(
            inner["request-id"]
                .as_str()
                .is_some_and(|id| !id.is_empty()),
            "{}",
            self.text
        );
        assert!(inner["client-request-id"].is_string(), "{}", self.text);
        assert!(inner["date"].is_string(), "{}", self.text);
        assert_eq!(
            self.headers
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("application/json")
        );
        message
    }

    #[track_caller]
    pub fn assert_ok_empty(&self) {
        assert_eq!(self.status, 200, "body: {}", self.text);
        assert!(
            self.text.is_empty(),
            "a write answers an empty body, got {}",
            self.text
        );
    }
}

/// A token for a server started with `--auth hs256 --jwt-secret secret`:
/// the application's own, with `grants` as its roles, when `user` is
/// `None`; else delegated for `user`, with `grants` as its scopes. Valid for
/// a day.
pub fn signed_token(
    secret: &str,
    tenant: &str,
    app: &str,
    user: Option<&str>,
    grants: &[&str],
) -> String {
    let grants: Vec<String> = grants.iter().map(|grant| grant.to_string()).collect();
    let (scopes, roles) = match user {
        Some(_) => (grants, Vec::new()),
        None => (Vec::new(), grants),
    };
    let request = presenced::token::MintRequest {
        tenant: tenant.into(),
        user: user.map(str::to_owned),
        app: app.into(),
        scopes,
        roles,
        ttl_seconds: 24 * 3600,
        issuer: None,
        audience: None,
        secret: presenced::token::Secret(secret.into()),
    };
    presenced::token::mint(&request, jiff::Timestamp::now().as_second()).expect("a token")
}

/// A delegated token for `--auth none`, where presenced reads its claims
/// without verifying them.
pub fn dev_token(user: &str) -> String {
    let encode =
        |value: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string());
    format!(
        "{}.{}.{}",
        encode(serde_json::json!({"alg": "none", "typ": "JWT"})),
        encode(serde_json::json!({"oid": user, "tid": "default", "scp": "Presence.ReadWrite"})),
        "signature"
    )
}

/// `presenced serve` on a free loopback port with the memory store and the
/// manual clock: what most tests start.
pub const SERVE_MEMORY_MANUAL: [&str; 7] = [
    "serve",
    "--listen",
    "127.0.0.1:0",
    "--store",
    "memory",
    "--clock",
    "manual",
];

impl TestServer {
    /// Starts presenced with the manual clock and the memory store, plus `args`.
    pub async fn start(args: &[&str]) -> TestServer {
        let mut all = SERVE_MEMORY_MANUAL.to_vec();
        all.extend_from_slice(args);
        TestServer::start_with(&all).await
    }

    /// Starts presenced with exactly `args`, plus a fresh temporary
    /// `--data-dir` when they name none (the embedded store is the default,
    /// and no test may write `./presenced-data`), and waits until it is ready.
    pub async fn start_with(args: &[&str]) -> TestServer {
        TestServer::start_with_env(args, &[]).await
    }

    /// Starts presenced with `args` on `data_dir`, without a temporary
    /// directory of its own (for restarts on the same directory).
    pub async fn start_on(data_dir: &std::path::Path, args: &[&str]) -> TestServer {
        let data_dir = data_dir.to_str().expect("a UTF-8 path");
        let mut all = vec!["serve", "--listen", "127.0.0.1:0", "--data-dir", data_dir];
        all.extend_from_slice(args);
        TestServer::start_with_env(&all, &[]).await
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("running")
    }

    pub async fn wait(&mut self) -> std::process::ExitStatus {
        tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .expect("presenced exits within 20 s")
            .expect("wait works")
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> Reply {
        let response = request.send().await.expect("the request is answered");
        let version = response.version();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("the body is readable");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        assert!(status < 500, "presenced answered {status}: {text}");
        Reply {
            version,
            status,
            headers,
            text,
            body,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(self.client.get(self.url(path))).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.send(self.client.post(self.url(path)).json(&body))
            .await
    }

    pub async fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>) -> Reply {
        let request = self
            .client
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body);
        self.send(request).await
    }

    pub async fn put(&self, path: &str, body: Value) -> Reply {
        self.send(self.client.put(self.url(path)).json(&body)).await
    }

    /// POSTs `body` as JSON to `path` with `token` as its bearer.
    pub async fn post_bearer(&self, path: &str, token: &str, body: &Value) -> Reply {
        self.send(
            self.client()
                .post(self.url(path))
                .bearer_auth(token)
                .json(body),
        )
        .await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.send(self.client.delete(self.url(path))).await
    }

    /// Advances the manual clock by an ISO 8601 duration.
    pub async fn advance(&self, by: &str) {
        let reply = self
            .post("/_presenced/clock/advance", serde_json::json!({ "by": by }))
            .await;
        assert_eq!(reply.status, 200, "advance: {}", reply.text);
    }

    /// The (availability, activity) of a user, read through /v1.0/users.
    pub async fn shown(&self, user: &str) -> (String, String) {
        let reply = self.get(&format!("/v1.0/users/{user}/presence")).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        (
            reply.body["availability"]
                .as_str()
                .expect("availability")
                .to_owned(),
            reply.body["activity"]
                .as_str()
                .expect("activity")
                .to_owned(),
        )
    }

    pub async fn set_presence(
        &self,
        user: &str,
        session: &str,
        availability: &str,
        activity: &str,
        expiration: Option<&str>,
    ) -> Reply {
        let mut body = serde_json::json!({
            "sessionId": session,
            "availability": availability,
            "activity": activity,
        });
        if let Some(expiration) = expiration {
            body["expirationDuration"] = Value::String(expiration.to_owned());
        }
        self.post(&format!("/v1.0/users/{user}/presence/setPresence"), body)
            .await
    }
}

// ---------------------------------------------------------------------------
// Added for the endpoint, error, aggregation, extension and ops tests.

impl TestServer {
    /// Starts presenced with exactly `args` and the extra environment
    /// variables `env` (for the `PRESENCED_*` settings).
    pub async fn start_with_env(args: &[&str], env: &[(&str, &str)]) -> TestServer {
        let server = TestServer::spawn(args, env).await;
        server.wait_until_ready().await;
        server
    }

    /// A server the test started itself, serving at `base`.
    pub fn attach(child: Child, base: String) -> TestServer {
        TestServer {
            child,
            base,
            client: reqwest::Client::new(),
            _data_dir: None,
        }
    }

    /// Starts presenced through `launcher` (a program and its arguments,
    /// such as `prlimit --nofile=64:64`, which runs presenced in its own
    /// place) with exactly `args`, and waits until it is ready.
    pub async fn start_through(launcher: &[&str], args: &[&str]) -> TestServer {
        let server = TestServer::spawn_through(launcher, args, &[]).await;
        server.wait_until_ready().await;
        server
    }

    async fn spawn(args: &[&str], env: &[(&str, &str)]) -> TestServer {
        TestServer::spawn_through(&[], args, env).await
    }

    async fn spawn_through(launcher: &[&str], args: &[&str], env: &[(&str, &str)]) -> TestServer {
        let mut all: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
        let names_a_directory = args.contains(&"--data-dir")
            || env.iter().any(|(name, _)| *name == "PRESENCED_DATA_DIR");
        let data_dir = (args.first() == Some(&"serve") && !names_a_directory).then(|| {
            let dir = tempfile::tempdir().expect("a temporary data directory");
            all.extend(["--data-dir".to_string(), dir.path().display().to_string()]);
            dir
        });
        let mut command = match launcher.split_first() {
            None => Command::new(env!("CARGO_BIN_EXE_presenced")),
            Some((program, launcher_args)) => {
                let mut command = Command::new(program);
                command
                    .args(launcher_args)
                    .arg(env!("CARGO_BIN_EXE_presenced"));
                command
            }
        };
        command.args(&all).env("RUST_LOG", "warn");
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("presenced starts");
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("presenced prints its address within 30 s")
            .expect("stdout is readable")
            .expect("presenced printed a line");
        let base = line
            .strip_prefix("presenced listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line}"))
            .to_owned();
        // Keep draining stdout so that the child never blocks on it.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        // A server started with --tls-cert has a certificate the test made
        // itself; the helper's own client (readiness, helpers) trusts it.
        // Tests of TLS itself use clients of their own.
        // The helper's client never reuses a pooled connection idle for half
        // a second or more: the shortest idle timeout a test gives a server
        // is one second (`--header-timeout PT1S`), and a request written as
        // the server closes such a connection fails (an incomplete message)
        // instead of reaching it.
        let client = reqwest::Client::builder()
            .danger_accept_invalid_certs(base.starts_with("https://"))
            .pool_idle_timeout(Duration::from_millis(500))
            .build()
            .expect("a client");
        TestServer {
            child,
            base,
            client,
            _data_dir: data_dir,
        }
    }

    /// Polls `/readyz` until it answers 200 (a node over Redis answers 503
    /// while Redis cannot be reached).
    pub async fn wait_until_ready(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(response) = self.client.get(self.url("/readyz")).send().await
                && response.status() == 200
            {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "presenced at {} was not ready within 60 s",
                self.base
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Kills the process with SIGKILL and waits for it: no shutdown code runs.
    pub async fn kill(mut self) {
        self.child.start_kill().expect("the process can be killed");
        let _ = self.child.wait().await;
    }

    /// `GET path`, as the delegated user `user` when given (for `/me`).
    pub async fn get_as(&self, path: &str, user: Option<&str>) -> Reply {
        let mut request = self.client.get(self.url(path));
        if let Some(user) = user {
            request = request.bearer_auth(dev_token(user));
        }
        self.send(request).await
    }

    /// `POST path` with a JSON body, as the delegated user `user` when given.
    pub async fn post_as(&self, path: &str, user: Option<&str>, body: Value) -> Reply {
        let mut request = self.client.post(self.url(path)).json(&body);
        if let Some(user) = user {
            request = request.bearer_auth(dev_token(user));
        }
        self.send(request).await
    }

    /// The whole presence of a user, read through /v1.0/users.
    pub async fn presence(&self, user: &str) -> Value {
        let reply = self.get(&format!("/v1.0/users/{user}/presence")).await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        reply.body
    }

    /// The sequence number of a user, read through /v1.0/users.
    pub async fn sequence_number(&self, user: &str) -> String {
        let presence = self.presence(user).await;
        presence["sequenceNumber"]
            .as_str()
            .unwrap_or_else(|| panic!("sequenceNumber is a string: {presence}"))
            .to_owned()
    }

    /// The manual clock's now, from `GET /_presenced/clock`.
    pub async fn now(&self) -> jiff::Timestamp {
        let reply = self.get("/_presenced/clock").await;
        assert_eq!(reply.status, 200, "clock: {}", reply.text);
        reply.body["now"]
            .as_str()
            .unwrap_or_else(|| panic!("now is a string: {}", reply.text))
            .parse()
            .unwrap_or_else(|error| panic!("now is RFC 3339 ({error}): {}", reply.text))
    }

    /// Sets the user-preferred presence of `user` through /v1.0/users.
    pub async fn set_preferred(
        &self,
        user: &str,
        availability: &str,
        activity: &str,
        expiration: Option<&str>,
    ) -> Reply {
        let mut body = serde_json::json!({
            "availability": availability,
            "activity": activity,
        });
        if let Some(expiration) = expiration {
            body["expirationDuration"] = Value::String(expiration.to_owned());
        }
        self.post(
            &format!("/v1.0/users/{user}/presence/setUserPreferredPresence"),
            body,
        )
        .await
    }

    /// Clears the session `session` of `user` through /v1.0/users.
    pub async fn clear_presence(&self, user: &str, session: &str) -> Reply {
        self.post(
            &format!("/v1.0/users/{user}/presence/clearPresence"),
            serde_json::json!({ "sessionId": session }),
        )
        .await
    }
}

/// Formats an instant as presenced writes an `Edm.DateTimeOffset`: UTC, seven
/// fractional digits (milliseconds then zeros) and `Z`.
pub fn graph_instant(timestamp: jiff::Timestamp) -> String {
    format!(
        "{}.{:03}0000Z",
        timestamp.strftime("%Y-%m-%dT%H:%M:%S"),
        timestamp.subsec_millisecond()
    )
}

/// The value of the series `name` (with its labels, if any) in Prometheus
/// text, if it is there.
fn metric(metrics: &str, name: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        line.strip_prefix(name)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// The value of an unlabelled gauge in Prometheus text.
pub fn gauge(metrics: &str, name: &str) -> f64 {
    metric(metrics, name).unwrap_or_else(|| panic!("{name} is not in /metrics:\n{metrics}"))
}

/// Runs the binary with `args` to completion (a run that must not start
/// serving), failing the test if it has not exited within `limit`.
pub async fn run_binary(limit: Duration, args: &[&str]) -> std::process::Output {
    let child = Command::new(env!("CARGO_BIN_EXE_presenced"))
        .args(args)
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(limit, child)
        .await
        .unwrap_or_else(|_| panic!("presenced {args:?} should exit by itself"))
        .expect("presenced runs")
}

// ---------------------------------------------------------------------------
// Added for the many-nodes tests (`--store redis`).

impl TestServer {
    /// Starts one presenced node over Redis (`--store redis` with each of
    /// `redis_urls` as a seed), plus `extra` arguments, and waits until it
    /// is ready.
    pub async fn start_node(redis_urls: &[String], extra: &[&str]) -> TestServer {
        let mut args: Vec<&str> = vec!["serve", "--listen", "127.0.0.1:0", "--store", "redis"];
        for url in redis_urls {
            args.extend(["--redis-url", url.as_str()]);
        }
        args.extend_from_slice(extra);
        TestServer::start_with(&args).await
    }

    /// Sends the process a signal by name (`TERM`, `STOP`, `CONT`), with
    /// `kill -NAME PID`.
    pub fn signal(&self, name: &str) {
        let status = std::process::Command::new("kill")
            .args([format!("-{name}"), self.pid().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{name} {} failed", self.pid());
    }

    /// Sends `request` and returns the reply whatever its status (a 503 is
    /// expected while Redis is away), or the transport error.
    pub async fn try_send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<Reply, reqwest::Error> {
        let response = request.send().await?;
        let version = response.version();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await?;
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok(Reply {
            version,
            status,
            headers,
            text,
            body,
        })
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> String {
        let reply = self.get("/metrics").await;
        assert_eq!(reply.status, 200, "metrics: {}", reply.text);
        reply.text
    }
}

/// How long a step may take before the test fails: a guard against a hang,
/// never a measurement.
pub const GUARD: Duration = Duration::from_secs(60);

/// `presenced_refusals_total{kind}` on `/metrics`, once it has reached
/// `at_least` (a refusal that closes a connection is counted as it closes,
/// so a client may see the close a moment before `/metrics` does).
pub async fn refusals(server: &TestServer, kind: &str, at_least: f64) -> f64 {
    let name = format!("presenced_refusals_total{{kind=\"{kind}\"}}");
    let deadline = std::time::Instant::now() + GUARD;
    loop {
        let count = counter(&server.metrics().await, &name);
        if count >= at_least || std::time::Instant::now() > deadline {
            return count;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The value of a counter (or gauge) in Prometheus text by its full name
/// with labels, e.g. `presenced_lease_changes_total{change="lost"}`; 0 when
/// it was never incremented (absent).
pub fn counter(metrics: &str, name: &str) -> f64 {
    metric(metrics, name).unwrap_or(0.0)
}
