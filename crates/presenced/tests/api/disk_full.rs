//! A full disk, for real: the data directory sits on an 8 MiB tmpfs that the
//! test fills up. Fault injection inside the engine would test our error
//! path but not the engine's; a real filesystem that runs out of space tests
//! both, and what the engine does to recover. Mounting needs root, which the
//! tests have in CI; anywhere else this test fails saying so, never skips.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use crate::helpers::{Reply, TestServer};

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("Uid:"))
                .and_then(|line| line.split_whitespace().nth(2).map(|uid| uid == "0"))
        })
        .unwrap_or(false)
}

/// A size-limited tmpfs, unmounted when dropped.
struct SmallDisk {
    path: PathBuf,
}

impl SmallDisk {
    fn mount(path: &Path, size: &str) -> SmallDisk {
        std::fs::create_dir_all(path).expect("a mount point");
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(path)
            .status()
            .expect("mount runs");
        assert!(
            status.success(),
            "mounting a tmpfs at {} failed",
            path.display()
        );
        SmallDisk {
            path: path.to_path_buf(),
        }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // Lazily: a server being killed may still hold files open.
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.path)
            .status();
    }
}

/// Fills the filesystem of `path` until a write fails for lack of space.
fn fill(path: &Path) {
    let mut file = std::fs::File::create(path).expect("the filler file");
    let chunk = vec![0u8; 4096];
    loop {
        match file.write_all(&chunk).and_then(|()| file.sync_all()) {
            Ok(()) => {}
            Err(error) if error.raw_os_error() == Some(28) => return,
            Err(error) => panic!("filling the disk failed otherwise: {error}"),
        }
    }
}

/// A status message write, answered with whatever status presenced gives.
async fn set_status_message(server: &TestServer, content: &str) -> Reply {
    server
        .try_send(
            server
                .client()
                .post(server.url("/v1.0/users/u1/presence/setStatusMessage"))
                .json(
                    &json!({"statusMessage": {"message": {"content": content, "contentType": "text"}}}),
                ),
        )
        .await
        .expect("answered")
}

async fn shown_message(server: &TestServer) -> String {
    let presence = server.presence("u1").await;
    presence["statusMessage"]["message"]["content"]
        .as_str()
        .unwrap_or_else(|| panic!("a status message: {presence}"))
        .to_owned()
}

/// Each write's content is long and distinct, so each one needs new space.
fn content(attempt: usize) -> String {
    format!("attempt {attempt:04} {}", "x".repeat(900))
}

#[tokio::test]
async fn a_full_disk_answers_503_keeps_reads_and_recovers_by_itself() {
    assert!(
        running_as_root(),
        "this test mounts a small tmpfs to fill it up and needs root (CI runs the tests as \
         root); run `cargo test` as root"
    );
    let base = tempfile::tempdir().expect("a temporary directory");
    let disk = SmallDisk::mount(&base.path().join("small"), "8m");
    let data_dir = disk.path.join("data");
    let server = TestServer::start_on(&data_dir, &[]).await;
    server
        .set_presence("u1", "app", "Busy", "InACall", Some("PT4H"))
        .await
        .assert_ok_empty();
    set_status_message(&server, &content(0))
        .await
        .assert_ok_empty();

    fill(&disk.path.join("filler"));
    let mut last_saved = 0;
    let mut refused = None;
    for attempt in 1..=500 {
        let reply = set_status_message(&server, &content(attempt)).await;
        match reply.status {
            200 => last_saved = attempt,
            503 => {
                refused = Some((attempt, reply));
                break;
            }
            other => panic!("a write on a full disk answered {other}: {}", reply.text),
        }
    }
    let (refused_attempt, reply) = refused.expect("a write on a full disk must fail with 503");
    let message = reply.assert_error(503, "ServiceUnavailable");
    assert!(message.contains("was not made"), "{message}");

    // Reads keep working, and the refused write was not applied.
    assert_eq!(shown_message(&server).await, content(last_saved));
    assert_eq!(
        server.shown("u1").await,
        ("Busy".to_owned(), "InACall".to_owned())
    );

    // Free the space: writes work again without a restart.
    std::fs::remove_file(disk.path.join("filler")).expect("removable");
    let mut recovered = false;
    for _ in 0..200 {
        let reply = set_status_message(&server, "after the disk was freed").await;
        if reply.status == 200 {
            recovered = true;
            break;
        }
        assert_eq!(reply.status, 503, "{}", reply.text);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        recovered,
        "writes did not recover within 10 s of freeing the disk"
    );
    assert_eq!(shown_message(&server).await, "after the disk was freed");
    server
        .set_presence("u2", "app", "Away", "Away", Some("PT4H"))
        .await
        .assert_ok_empty();

    // What was acknowledged after the recovery is on disk.
    server.kill().await;
    let server = TestServer::start_on(&data_dir, &[]).await;
    assert_eq!(shown_message(&server).await, "after the disk was freed");
    assert_eq!(
        server.shown("u2").await,
        ("Away".to_owned(), "Away".to_owned())
    );
    assert!(refused_attempt > last_saved);
    server.kill().await;
    drop(disk);
}
