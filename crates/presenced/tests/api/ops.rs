//! Operating presenced: health, metrics, the OpenAPI document, signals, the
//! command line, the config file and the environment.

use std::io::Write;
use std::time::Duration;

use serde_json::Value;

use crate::endpoints::{VERSIONS, graph_path_templates};
use crate::helpers::{SERVE_MEMORY_MANUAL, TestServer, gauge, run_binary};

fn pair(availability: &str, activity: &str) -> (String, String) {
    (availability.to_owned(), activity.to_owned())
}

#[tokio::test]
async fn healthz_and_readyz_answer_200_without_a_token() {
    let server = TestServer::start(&[]).await;
    for path in ["/healthz", "/readyz"] {
        let reply = server.get(path).await;
        assert_eq!(reply.status, 200, "GET {path}: {}", reply.text);
        assert!(reply.body.is_object(), "GET {path}: {}", reply.text);
    }
}

#[tokio::test]
async fn metrics_are_prometheus_text_with_request_counts_durations_and_store_gauges() {
    let server = TestServer::start(&[]).await;
    let user = "metrics-user-7f3a";
    server
        .set_presence(user, "app", "Busy", "InACall", Some("PT1H"))
        .await
        .assert_ok_empty();
    let reply = server.get(&format!("/v1.0/users/{user}/presence")).await;
    assert_eq!(reply.status, 200);
    let reply = server.get("/metrics").await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let content_type = reply
        .headers
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let text = &reply.text;
    assert!(
        text.lines()
            .any(|line| line.starts_with("presenced_http_requests_total{")
                && line.contains("route=\"/v1.0/users/{id}/presence\"")),
        "a request counter labelled with the route template:\n{text}"
    );
    assert!(
        text.lines()
            .any(|line| line.starts_with("presenced_http_requests_total{")
                && line.contains("route=\"/v1.0/users/{id}/presence/setPresence\"")),
        "{text}"
    );
    assert!(
        text.lines().any(|line| line
            .starts_with("presenced_http_request_duration_seconds_bucket{")
            && line.contains("le=")),
        "a duration histogram with buckets:\n{text}"
    );
    assert!(
        !text.contains(user),
        "labels never carry a user id:\n{text}"
    );
    assert_eq!(gauge(text, "presenced_users"), 1.0, "{text}");
    assert_eq!(gauge(text, "presenced_sessions"), 1.0, "{text}");

    server
        .set_presence(user, "second-app", "Available", "Available", None)
        .await
        .assert_ok_empty();
    server
        .set_presence("another-user", "app", "Away", "Away", None)
        .await
        .assert_ok_empty();
    let text = server.get("/metrics").await.text;
    assert_eq!(gauge(&text, "presenced_users"), 2.0, "{text}");
    assert_eq!(gauge(&text, "presenced_sessions"), 3.0, "{text}");
}

#[tokio::test]
async fn the_openapi_document_describes_every_graph_and_presenced_path() {
    let server = TestServer::start(&[]).await;
    let reply = server.get("/openapi.json").await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let document: Value = serde_json::from_str(&reply.text).expect("valid JSON");
    assert!(
        document["openapi"]
            .as_str()
            .is_some_and(|version| version.starts_with("3.")),
        "{}",
        document["openapi"]
    );
    let paths = document["paths"].as_object().expect("paths");
    let methods = |path: &str| -> Vec<String> {
        paths
            .get(path)
            .and_then(Value::as_object)
            .map(|item| item.keys().cloned().collect())
            .unwrap_or_default()
    };
    for version in VERSIONS {
        for path in graph_path_templates(version) {
            let expected: &[&str] =
                if path.ends_with("/presence") || path.ends_with("/presences/{id}") {
                    &["get"]
                } else if path.contains("{sessionId}") {
                    &["put", "delete"]
                } else {
                    &["post"]
                };
            let found = methods(&path);
            for method in expected {
                assert!(
                    found.iter().any(|found| found == method),
                    "{path} should have {method}; it has {found:?}"
                );
            }
        }
    }
    for (path, method) in [
        ("/_presenced/users/{id}/sessions", "get"),
        ("/_presenced/users/{id}/outOfOffice", "put"),
        ("/_presenced/clock", "get"),
        ("/_presenced/clock/advance", "post"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
        ("/openapi.json", "get"),
    ] {
        assert!(
            methods(path).iter().any(|found| found == method),
            "{path} should have {method}: {:?}",
            methods(path)
        );
    }
    for template in crate::endpoints::LEGACY_TEMPLATES {
        let path = format!("/v1.0{template}");
        assert!(!paths.contains_key(&path), "{path} is beta only");
    }
}

#[tokio::test]
async fn sigterm_makes_the_process_exit_0() {
    let mut server = TestServer::start(&[]).await;
    server
        .set_presence("u1", "app", "Busy", "InACall", None)
        .await
        .assert_ok_empty();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &server.pid().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let exit = server.wait().await;
    assert!(exit.success(), "presenced exits 0 on SIGTERM, got {exit}");
}

const FLAGS: [&str; 10] = [
    "--listen",
    "--data-dir",
    "--store",
    "--durability",
    "--redis-url",
    "--auth",
    "--clock",
    "--idle-timeout",
    "--webhook-ca-file",
    "--config",
];

#[tokio::test]
async fn serve_help_mentions_every_flag() {
    let output = run_binary(Duration::from_secs(20), &["serve", "--help"]).await;
    assert!(output.status.success(), "{output:?}");
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in FLAGS {
        assert!(
            help.contains(flag),
            "`presenced serve --help` should mention {flag}:\n{help}"
        );
        let variable = format!(
            "PRESENCED_{}",
            flag.trim_start_matches("--")
                .replace('-', "_")
                .to_uppercase()
        );
        assert!(
            help.contains(&variable),
            "`presenced serve --help` should name {variable} for {flag}:\n{help}"
        );
    }
}

#[tokio::test]
async fn top_level_help_mentions_every_flag() {
    let output = run_binary(Duration::from_secs(20), &["--help"]).await;
    assert!(output.status.success(), "{output:?}");
    let help = String::from_utf8_lossy(&output.stdout);
    let missing: Vec<&str> = FLAGS
        .iter()
        .copied()
        .filter(|flag| !help.contains(flag))
        .collect();
    assert!(
        missing.is_empty(),
        "`presenced --help` should explain every flag; it does not mention {missing:?}:\n{help}"
    );
}

#[tokio::test]
async fn a_config_file_sets_the_idle_timeout() {
    let mut file = tempfile::NamedTempFile::new().expect("a temporary file");
    writeln!(file, "idle_timeout = \"PT10S\"").expect("writable");
    let path = file.path().to_str().expect("a UTF-8 path").to_owned();
    let server = TestServer::start(&["--config", &path]).await;
    server
        .set_presence("u1", "app", "Available", "Available", Some("PT1H"))
        .await
        .assert_ok_empty();
    server.advance("PT9S").await;
    assert_eq!(server.shown("u1").await, pair("Available", "Available"));
    server.advance("PT1S").await;
    assert_eq!(
        server.shown("u1").await,
        pair("Available", "AvailableInactive")
    );
    server.advance("PT10S").await;
    assert_eq!(server.shown("u1").await, pair("Away", "Away"));
}

#[tokio::test]
async fn the_presenced_idle_timeout_variable_sets_the_idle_timeout() {
    let server =
        TestServer::start_with_env(&SERVE_MEMORY_MANUAL, &[("PRESENCED_IDLE_TIMEOUT", "PT10S")])
            .await;
    server
        .set_presence("u1", "app", "Available", "Available", Some("PT1H"))
        .await
        .assert_ok_empty();
    server.advance("PT10S").await;
    assert_eq!(
        server.shown("u1").await,
        pair("Available", "AvailableInactive")
    );
}

#[tokio::test]
async fn a_flag_beats_its_variable_which_beats_the_config_file() {
    let mut file = tempfile::NamedTempFile::new().expect("a temporary file");
    writeln!(file, "idle_timeout = \"PT10S\"").expect("writable");
    let path = file.path().to_str().expect("a UTF-8 path").to_owned();
    let mut args = SERVE_MEMORY_MANUAL.to_vec();
    args.extend(["--config", path.as_str()]);
    let variable_over_file =
        TestServer::start_with_env(&args, &[("PRESENCED_IDLE_TIMEOUT", "PT20S")]).await;
    args.extend(["--idle-timeout", "PT30S"]);
    let flag_over_variable =
        TestServer::start_with_env(&args, &[("PRESENCED_IDLE_TIMEOUT", "PT20S")]).await;
    for (server, fade) in [(&variable_over_file, 20), (&flag_over_variable, 30)] {
        server
            .set_presence("u1", "app", "Available", "Available", Some("PT1H"))
            .await
            .assert_ok_empty();
        server.advance(&format!("PT{}S", fade - 1)).await;
        assert_eq!(
            server.shown("u1").await,
            pair("Available", "Available"),
            "fade at {fade}s"
        );
        server.advance("PT1S").await;
        assert_eq!(
            server.shown("u1").await,
            pair("Available", "AvailableInactive"),
            "fade at {fade}s"
        );
    }
}

#[tokio::test]
async fn a_bad_config_file_or_idle_timeout_stops_the_start_with_a_message() {
    let mut file = tempfile::NamedTempFile::new().expect("a temporary file");
    writeln!(file, "idle_timout = \"PT10S\"").expect("writable");
    let path = file.path().to_str().expect("a UTF-8 path").to_owned();
    for (args, needle) in [
        (
            vec![
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--config",
                path.as_str(),
            ],
            "idle_timout",
        ),
        (
            vec![
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--idle-timeout",
                "5 minutes",
            ],
            "--idle-timeout",
        ),
        (
            vec!["serve", "--listen", "127.0.0.1:0", "--idle-timeout", "PT0S"],
            "positive",
        ),
    ] {
        let output = run_binary(Duration::from_secs(20), &args).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} should not start");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}

#[tokio::test]
async fn auth_none_on_a_non_loopback_address_refuses_to_start() {
    let output = run_binary(
        Duration::from_secs(20),
        &[
            "serve",
            "--auth",
            "none",
            "--listen",
            "0.0.0.0:0",
            "--store",
            "memory",
        ],
    )
    .await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "it must not start: {stdout}\n{stderr}"
    );
    assert!(!stdout.contains("listening"), "{stdout}");
    assert!(stderr.contains("--allow-insecure"), "{stderr}");
}

#[tokio::test]
async fn invented_methods_cannot_make_new_metric_series() {
    let server = TestServer::start(&[]).await;
    for index in 0..5 {
        let method = reqwest::Method::from_bytes(format!("INVENTED{index}").as_bytes()).unwrap();
        let reply = server
            .send(
                server
                    .client()
                    .request(method, server.url("/v1.0/users/someone/presence")),
            )
            .await;
        reply.assert_error(405, "MethodNotAllowed");
    }
    let metrics = server.get("/metrics").await;
    assert!(!metrics.text.contains("INVENTED"), "{}", metrics.text);
    assert!(
        metrics
            .text
            .lines()
            .any(|line| line.starts_with("presenced_http_requests_total{")
                && line.contains("method=\"OTHER\"")
                && line.contains("status=\"405\"")),
        "{}",
        metrics.text
    );
}
