//! One `redis-server` process that can be stopped and started again on the
//! same port, directory and arguments, and running `redis-cli` with a
//! deadline. Shared by [`crate::RedisServer`] and [`crate::RedisCluster`].

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::redis_binaries;

/// How long a started server has to answer `PING` with `PONG`.
const READY_DEADLINE: Duration = Duration::from_secs(30);
/// How long a server has to exit after `SIGTERM`.
const STOP_DEADLINE: Duration = Duration::from_secs(30);
/// How long one `redis-cli` run may take.
pub(crate) const CLI_DEADLINE: Duration = Duration::from_secs(60);

/// The file in a node's directory that gets the server's stdout and stderr
/// (its log: `logfile` is left at its default, stdout), across restarts.
const LOG_FILE: &str = "redis.log";

/// A `redis-server` on `127.0.0.1:port` in its own temporary directory.
/// Dropping it kills the process.
#[derive(Debug)]
pub(crate) struct Node {
    port: u16,
    args: Vec<String>,
    child: Option<Child>,
    // Declared last so that it is removed after the process is killed.
    dir: TempDir,
}

impl Node {
    /// A node that is not running yet: `--port`, `--bind 127.0.0.1` and
    /// `--dir` first, then `args` (later arguments win over earlier ones).
    pub(crate) fn new(port: u16, args: &[&str]) -> Node {
        let dir = tempfile::Builder::new()
            .prefix(&format!("presenced-redis-{port}-"))
            .tempdir()
            .unwrap_or_else(|e| {
                panic!("cannot create a temporary directory for redis-server on port {port}: {e}; is TMPDIR writable?")
            });
        let mut all = vec![
            "--port".to_owned(),
            port.to_string(),
            "--bind".to_owned(),
            "127.0.0.1".to_owned(),
            "--dir".to_owned(),
            dir.path().display().to_string(),
            "--daemonize".to_owned(),
            "no".to_owned(),
        ];
        all.extend(args.iter().map(|a| (*a).to_owned()));
        Node {
            port,
            args: all,
            child: None,
            dir,
        }
    }

    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// Whether this node was started and has not been killed or stopped
    /// through this handle (a crash on its own shows up as a node that
    /// does not answer).
    pub(crate) fn is_started(&self) -> bool {
        self.child.is_some()
    }

    /// Starts the process without waiting for it to answer. Panics if it is
    /// already running or cannot be spawned.
    pub(crate) fn spawn(&mut self) {
        assert!(
            self.child.is_none(),
            "redis-server on port {} is already running; kill or stop it before starting it again",
            self.port
        );
        let log = self.open_log();
        let log_err = log.try_clone().unwrap_or_else(|e| {
            panic!(
                "cannot duplicate the log file handle of redis-server on port {}: {e}",
                self.port
            )
        });
        let server = &redis_binaries().server;
        let child = Command::new(server)
            .args(&self.args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot spawn {} for port {}: {e}",
                    server.display(),
                    self.port
                )
            });
        self.child = Some(child);
    }

    /// Waits until the server answers `PING` with `PONG` (it answers
    /// `-LOADING` while it replays its append-only file). Panics with the
    /// log tail if it exits first or does not answer within 30 s.
    pub(crate) fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_DEADLINE;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                panic!(
                    "redis-server on port {} exited with {status} before answering PING; is the port taken or an argument wrong? args: {:?}\n{}",
                    self.port,
                    self.args,
                    self.log_tail()
                );
            }
            assert!(
                self.child.is_some(),
                "redis-server on port {} is not running; start it before waiting for it",
                self.port
            );
            let last = match ping(self.port) {
                Ok(()) => return,
                Err(why) => why,
            };
            if Instant::now() >= deadline {
                panic!(
                    "redis-server on port {} did not answer PING with PONG within {READY_DEADLINE:?} (last: {last}); the machine may be overloaded\n{}",
                    self.port,
                    self.log_tail()
                );
            }
            sleep(Duration::from_millis(20));
        }
    }

    /// `SIGKILL`, then waits for the process to exit. Does nothing if it
    /// is not running.
    pub(crate) fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // Fails only if the process was already reaped, which `take`
            // rules out; an exited but unreaped process is killed fine.
            if let Err(e) = child.kill() {
                panic!("cannot SIGKILL redis-server on port {}: {e}", self.port);
            }
            if let Err(e) = child.wait() {
                panic!(
                    "cannot wait for redis-server on port {} after SIGKILL: {e}",
                    self.port
                );
            }
        }
    }

    /// `SIGTERM` (a graceful shutdown: the append-only file is flushed and
    /// fsynced), then waits up to 30 s for the process to exit. Does nothing
    /// if it is not running. Panics with the log tail if the process does
    /// not exit in time (it is killed first).
    pub(crate) fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child.id().to_string();
        let signalled = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .map_err(|e| format!("cannot run kill: {e}"))
            .and_then(|status| match status.success() {
                true => Ok(()),
                false => Err(format!("kill -TERM {pid} exited with {status}")),
            });
        let deadline = Instant::now() + STOP_DEADLINE;
        loop {
            match child.try_wait() {
                Ok(Some(_)) => return,
                Ok(None) if signalled.is_ok() && Instant::now() < deadline => {
                    sleep(Duration::from_millis(20));
                }
                outcome => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "redis-server on port {} did not exit after SIGTERM within {STOP_DEADLINE:?} (signal: {signalled:?}, wait: {outcome:?}); it was SIGKILLed\n{}",
                        self.port,
                        self.log_tail()
                    );
                }
            }
        }
    }

    /// Kills the process without ever panicking: for `Drop`.
    pub(crate) fn kill_quietly(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The last lines of this node's log, with a heading, for panic
    /// messages.
    pub(crate) fn log_tail(&self) -> String {
        let path = self.log_path();
        match std::fs::read(&path) {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                let lines: Vec<&str> = text.lines().collect();
                let tail = lines[lines.len().saturating_sub(30)..].join("\n");
                format!("--- last lines of {} ---\n{tail}", path.display())
            }
            Err(e) => format!("--- cannot read {}: {e} ---", path.display()),
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join(LOG_FILE)
    }

    fn open_log(&self) -> File {
        let path = self.log_path();
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("cannot open the log file {}: {e}", path.display()));
        // Marks each (re)start in the log, so that a tail shows which run
        // it comes from; losing the marker is harmless.
        let _ = writeln!(log, "--- presenced-testkit: starting redis-server ---");
        log
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill_quietly();
    }
}

/// One `PING` over a raw TCP connection; `Ok` only on `+PONG`.
pub(crate) fn ping(port: u16) -> Result<(), String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let timeout = Duration::from_secs(1);
    let mut stream =
        TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| format!("set timeouts: {e}"))?;
    stream
        .write_all(b"PING\r\n")
        .map_err(|e| format!("write: {e}"))?;
    let mut reply = Vec::new();
    let mut byte = [0u8; 1];
    while !reply.ends_with(b"\r\n") && reply.len() < 512 {
        match stream.read(&mut byte) {
            Ok(0) => break,
            Ok(_) => reply.push(byte[0]),
            Err(e) => return Err(format!("read: {e}")),
        }
    }
    match reply.as_slice() {
        b"+PONG\r\n" => Ok(()),
        other => Err(format!("reply {:?}", String::from_utf8_lossy(other))),
    }
}

/// Runs `redis-cli` with `args`, with a deadline of [`CLI_DEADLINE`].
/// Returns its stdout trimmed if it exits with status 0; otherwise a
/// description of the failure with its stdout and stderr.
///
/// Note that `redis-cli` exits with 0 on an error reply (it prints it, e.g.
/// `ERR unknown command`), so error replies come back as `Ok` text.
pub(crate) fn run_cli(args: &[&str]) -> Result<String, String> {
    let cli = &redis_binaries().cli;
    let what = format!("{} {}", cli.display(), args.join(" "));
    // Files rather than pipes: nothing has to drain them while we poll.
    let capture =
        || tempfile::tempfile().map_err(|e| format!("{what}: cannot create a temporary file: {e}"));
    let (mut out, mut err) = (capture()?, capture()?);
    let dup = |f: &File| {
        f.try_clone()
            .map_err(|e| format!("{what}: cannot duplicate a file handle: {e}"))
    };
    let mut child = Command::new(cli)
        .args(args)
        .stdin(Stdio::null())
        .stdout(dup(&out)?)
        .stderr(dup(&err)?)
        .spawn()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    let deadline = Instant::now() + CLI_DEADLINE;
    let mut pause = Duration::from_millis(1);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Ok(status),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break Err(format!(
                    "did not finish within {CLI_DEADLINE:?} and was killed"
                ));
            }
            Ok(None) => {
                sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(20));
            }
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                break Err(format!("cannot wait for it: {e}"));
            }
        }
    };
    let read = |f: &mut File| {
        let mut bytes = Vec::new();
        let _ = f.rewind().and_then(|()| f.read_to_end(&mut bytes));
        String::from_utf8_lossy(&bytes).trim().to_owned()
    };
    let (stdout, stderr) = (read(&mut out), read(&mut err));
    match status {
        Ok(status) if status.success() => Ok(stdout),
        Ok(status) => Err(format!(
            "`{what}` exited with {status}\nstdout: {stdout}\nstderr: {stderr}"
        )),
        Err(why) => Err(format!(
            "`{what}` {why}\nstdout: {stdout}\nstderr: {stderr}"
        )),
    }
}
