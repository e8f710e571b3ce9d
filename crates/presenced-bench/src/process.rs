//! The servers under test as separate processes, and what the kernel knows
//! about them.
//!
//! Every server is started through [`ServerProcess::start`] and lives inside
//! it: its `Drop` kills and reaps the process, so a panic or an early `?` in
//! the harness never leaves a server running. Servers listen on
//! `127.0.0.1:0` and announce the bound address as the first line of their
//! standard output (`... listening on http://ADDR`); their standard error
//! goes to a log file that is quoted when they fail.
//!
//! The `/proc` readers (resident memory, CPU time) are split into a reading
//! and a pure parsing half so the parsing can be tested on sample text.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long a server may take to print its address.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a server may take to load its store and answer `/readyz`.
const READY_TIMEOUT: Duration = Duration::from_secs(300);

/// A child process that is killed and reaped when dropped.
#[derive(Debug)]
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        // SIGKILL: the harness wants the CPU back now, and a server under
        // test has nothing to save.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A running server under test.
#[derive(Debug)]
pub struct ServerProcess {
    label: String,
    process: KillOnDrop,
    address: SocketAddr,
    log_path: PathBuf,
    /// Keep the log when the server is dropped: its requests failed.
    keep_log: bool,
    /// A data directory made for this server alone, removed with it.
    owned_data_dir: Option<PathBuf>,
}

impl ServerProcess {
    /// Starts `program args...`, waits for its `listening on http://ADDR`
    /// line, and returns it running. `label` names it in messages and in its
    /// log file's name.
    pub fn start(label: &str, program: &Path, args: &[String]) -> Result<ServerProcess, String> {
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let serial = STARTED.fetch_add(1, Ordering::Relaxed);
        let log_path = std::env::temp_dir().join(format!(
            "presenced-bench-{}-{serial}-{}.log",
            std::process::id(),
            label.replace(|c: char| !c.is_ascii_alphanumeric(), "-")
        ));
        let log = std::fs::File::create(&log_path)
            .map_err(|error| format!("cannot create {}: {error}", log_path.display()))?;
        let mut child = Command::new(program)
            .args(args)
            // Only warnings and errors: per-request logging would be measured
            // as the server's work.
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .map_err(|error| format!("cannot start {}: {error}", program.display()))?;
        let stdout = child.stdout.take();
        let mut process = KillOnDrop(child);
        let Some(stdout) = stdout else {
            return Err(format!(
                "{label}: no standard output to read the address from"
            ));
        };

        // A thread reads the first line (so that a server that never prints
        // it cannot hang the harness), then drains the rest so the server
        // never blocks on a full pipe.
        let (first_line_sender, first_line) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = first_line_sender.send(lines.next());
            for _ in lines {}
        });
        let describe_exit = |process: &mut KillOnDrop| {
            let status = match process.0.try_wait() {
                Ok(Some(status)) => format!("exited with {status}"),
                _ => "did not announce its address".to_string(),
            };
            format!(
                "{label} ({} {}) {status}; its log ({}) ends with:\n{}",
                program.display(),
                args.join(" "),
                log_path.display(),
                log_tail(&log_path)
            )
        };
        let line = match first_line.recv_timeout(STARTUP_TIMEOUT) {
            Ok(Some(Ok(line))) => line,
            _ => return Err(describe_exit(&mut process)),
        };
        let Some(address) = parse_listening_line(&line) else {
            return Err(format!(
                "{label} printed {line:?} instead of `... listening on http://ADDR`"
            ));
        };
        Ok(ServerProcess {
            label: label.to_string(),
            process,
            address,
            log_path,
            keep_log: false,
            owned_data_dir: None,
        })
    }

    /// Makes `dir` this server's own: it is removed when the server is.
    pub fn owning_data_dir(mut self, dir: PathBuf) -> ServerProcess {
        self.owned_data_dir = Some(dir);
        self
    }

    /// Waits until `GET /readyz` answers 2xx: presenced serves 503 while it
    /// loads its store. Returns how long that took.
    pub async fn wait_until_ready(&mut self) -> Result<Duration, String> {
        let started = Instant::now();
        let readyz = crate::load::RequestSpec::get(hyper::Uri::from_static("/readyz"));
        loop {
            if let Ok(answer) = crate::load::send_once(self.address, &readyz).await
                && answer.status.is_success()
            {
                return Ok(started.elapsed());
            }
            self.ensure_running()?;
            if started.elapsed() > READY_TIMEOUT {
                return Err(format!(
                    "{} was not ready within {} s",
                    self.label,
                    READY_TIMEOUT.as_secs()
                ));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Keeps this server's log (warnings and errors) after it stops, for a
    /// run whose requests failed; its path, for the report.
    pub fn keep_log(&mut self) -> PathBuf {
        self.keep_log = true;
        self.log_path.clone()
    }

    pub fn pid(&self) -> u32 {
        self.process.0.id()
    }

    /// An error if the server has exited (it crashed under load), quoting its
    /// log.
    pub fn ensure_running(&mut self) -> Result<(), String> {
        match self.process.0.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(format!(
                "{} exited with {status} during the run; its log ({}) ends with:\n{}",
                self.label,
                self.log_path.display(),
                log_tail(&self.log_path)
            )),
            Err(error) => Err(format!("cannot check on {}: {error}", self.label)),
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        // The process itself is killed by `KillOnDrop`; a log of a server
        // that ran normally is not worth keeping. After a panic, keep it.
        if !std::thread::panicking() && !self.keep_log {
            let _ = std::fs::remove_file(&self.log_path);
        }
        if let Some(dir) = &self.owned_data_dir {
            // Killed first (by `KillOnDrop`, after this), but the files can
            // go now: an open file's blocks are freed when it is closed.
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// The address in `presenced listening on http://127.0.0.1:PORT`.
pub fn parse_listening_line(line: &str) -> Option<SocketAddr> {
    let (_, address) = line.split_once("listening on http://")?;
    address.trim().trim_end_matches('/').parse().ok()
}

/// The last few lines of a log file, for error messages.
pub fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = &lines[lines.len().saturating_sub(20)..];
    if tail.is_empty() {
        "(empty)".to_string()
    } else {
        tail.join("\n")
    }
}

/// `cargo build --release -p presenced --bin presenced` in the workspace, and
/// the path of the binary it produced (cargo reports it, so a custom
/// `CARGO_TARGET_DIR` works too). Building first makes sure the harness
/// measures the presenced of this checkout, not a stale binary.
pub fn build_presenced() -> Result<PathBuf, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let workspace = workspace.canonicalize().unwrap_or(workspace);
    println!(
        "building presenced: cargo build --release -p presenced --bin presenced (in {})",
        workspace.display()
    );
    let mut command = Command::new(&cargo);
    // `cargo run` gave this program the variables cargo sets for a
    // package's binary. Passed on, they would make this build's environment
    // differ from a plain `cargo build`'s, and build scripts that watch them
    // would run again (ring's watches CARGO_MANIFEST_DIR): ring, rustls and
    // everything above them rebuilt, minutes, whenever the two alternate.
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(set_by_cargo_for_a_binary) {
            command.env_remove(name);
        }
    }
    let output = command
        .args([
            "build",
            "--release",
            "-p",
            "presenced",
            "--bin",
            "presenced",
            "--message-format=json-render-diagnostics",
        ])
        .current_dir(&workspace)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|error| format!("cannot run cargo ({cargo:?}): {error}"))?;
    if !output.status.success() {
        return Err(format!("building presenced failed ({})", output.status));
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|message| message["reason"] == "compiler-artifact")
        .filter(|message| message["target"]["name"] == "presenced")
        .find_map(|message| message["executable"].as_str().map(PathBuf::from))
        .ok_or_else(|| "cargo built presenced but did not say where the binary is".to_string())
}

/// Whether `name` is one of the variables cargo sets for a package it
/// builds or runs (never a setting of cargo itself, such as `CARGO_HOME`).
fn set_by_cargo_for_a_binary(name: &str) -> bool {
    name.starts_with("CARGO_PKG_")
        || matches!(
            name,
            "CARGO_MANIFEST_DIR"
                | "CARGO_MANIFEST_PATH"
                | "CARGO_MANIFEST_LINKS"
                | "CARGO_CRATE_NAME"
                | "CARGO_BIN_NAME"
                | "CARGO_PRIMARY_PACKAGE"
                | "CARGO_TARGET_TMPDIR"
                | "OUT_DIR"
        )
}

/// A new, empty data directory for one presenced under the temporary
/// directory, named after this harness run.
pub fn fresh_data_dir(label: &str) -> Result<PathBuf, String> {
    static MADE: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "presenced-bench-{}-{}-{}-data",
        std::process::id(),
        MADE.fetch_add(1, Ordering::Relaxed),
        label.replace(|c: char| !c.is_ascii_alphanumeric(), "-")
    ));
    std::fs::create_dir_all(&dir)
        .map_err(|error| format!("cannot create {}: {error}", dir.display()))?;
    Ok(dir)
}

/// The bytes the files under `path` take on disk (allocated blocks, so a
/// sparse, preallocated journal counts for what it holds).
pub fn disk_bytes(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.metadata() {
            Ok(metadata) if metadata.is_dir() => disk_bytes(&entry.path()),
            Ok(metadata) => std::os::unix::fs::MetadataExt::blocks(&metadata) * 512,
            Err(_) => 0,
        })
        .sum()
}

/// Resident memory of `pid` in bytes (`VmRSS` of `/proc/PID/status`).
pub fn resident_bytes(pid: u32) -> Result<u64, String> {
    let path = format!("/proc/{pid}/status");
    let text =
        std::fs::read_to_string(&path).map_err(|error| format!("cannot read {path}: {error}"))?;
    parse_vm_rss_bytes(&text).ok_or_else(|| format!("{path} has no VmRSS line"))
}

/// `VmRSS:    123456 kB` → 123456 × 1024.
pub fn parse_vm_rss_bytes(status: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let mut words = line["VmRSS:".len()..].split_whitespace();
    let kibibytes: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") => Some(kibibytes * 1024),
        _ => None,
    }
}

/// User plus system CPU time of `pid`, in clock ticks (`/proc/PID/stat`).
pub fn cpu_ticks(pid: u32) -> Result<u64, String> {
    let path = format!("/proc/{pid}/stat");
    let text =
        std::fs::read_to_string(&path).map_err(|error| format!("cannot read {path}: {error}"))?;
    parse_cpu_ticks(&text).ok_or_else(|| format!("{path} is not in the expected format"))
}

/// Fields 14 (utime) and 15 (stime) of `/proc/PID/stat`, summed. The second
/// field, the command name, is in parentheses and may itself contain spaces
/// and parentheses, so fields are counted from the last `)`, after which
/// field 3 (the state) comes first.
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let (_, after_command) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = after_command.split_whitespace().collect();
    let user: u64 = fields.get(14 - 3)?.parse().ok()?;
    let system: u64 = fields.get(15 - 3)?.parse().ok()?;
    Some(user + system)
}

/// Clock ticks per second (`getconf CLK_TCK`), and whether it is the assumed
/// Linux default of 100 because `getconf` could not say.
pub fn clock_ticks_per_second() -> (u64, bool) {
    let asked = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .filter(|output| output.status.success())
        .and_then(|output| String::from_utf8_lossy(&output.stdout).trim().parse().ok());
    match asked {
        Some(ticks) if ticks > 0 => (ticks, false),
        _ => (100, true),
    }
}

/// Measures the CPU a process uses over a span of wall time.
#[derive(Debug)]
pub struct CpuMeter {
    pid: u32,
    ticks_per_second: u64,
    started_ticks: u64,
    started: Instant,
}

impl CpuMeter {
    pub fn start(pid: u32, ticks_per_second: u64) -> Result<CpuMeter, String> {
        Ok(CpuMeter {
            pid,
            ticks_per_second,
            started_ticks: cpu_ticks(pid)?,
            started: Instant::now(),
        })
    }

    /// CPU used since `start`, as a fraction of one core (0.5 = half a
    /// core), and the CPU seconds themselves.
    pub fn finish(&self) -> Result<(f64, f64), String> {
        let ticks = cpu_ticks(self.pid)?.saturating_sub(self.started_ticks);
        let cpu_seconds = ticks as f64 / self.ticks_per_second as f64;
        let wall_seconds = self.started.elapsed().as_secs_f64();
        Ok((cpu_seconds / wall_seconds.max(1e-9), cpu_seconds))
    }
}

/// The machine the numbers were taken on.
#[derive(Clone, Debug)]
pub struct Machine {
    pub cores: usize,
    pub cpu_model: String,
    pub memory: String,
    pub rustc: String,
    pub kernel: String,
}

pub fn describe_machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find(|line| line.starts_with("model name"))
        .and_then(|line| line.split_once(':'))
        .map_or_else(
            || "unknown CPU".to_string(),
            |(_, model)| model.trim().to_string(),
        );
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory = meminfo
        .lines()
        .find(|line| line.starts_with("MemTotal:"))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|kibibytes| kibibytes.parse::<u64>().ok())
        .map_or_else(
            || "unknown".to_string(),
            |kibibytes| format!("{:.1} GiB", kibibytes as f64 / (1024.0 * 1024.0)),
        );
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let rustc = command_line_output(Command::new(rustc).arg("--version"));
    let kernel = command_line_output(Command::new("uname").arg("-sr"));
    Machine {
        cores: std::thread::available_parallelism().map_or(1, |cores| cores.get()),
        cpu_model,
        memory,
        rustc,
        kernel,
    }
}

fn command_line_output(command: &mut Command) -> String {
    command
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map_or_else(
            || "unknown".to_string(),
            |output| String::from_utf8_lossy(&output.stdout).trim().to_string(),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resident_memory_is_read_from_vm_rss_in_kibibytes() {
        let status = "Name:\tpresenced\nVmPeak:\t  900000 kB\nVmRSS:\t  123456 kB\nThreads:\t3\n";
        assert_eq!(parse_vm_rss_bytes(status), Some(123_456 * 1024));
        assert_eq!(parse_vm_rss_bytes("Name:\tkthreadd\n"), None);
    }

    #[test]
    fn cpu_ticks_are_counted_after_the_command_name() {
        // A command name with a space and a parenthesis must not shift the
        // fields: utime is 7, stime is 3.
        let stat =
            "4242 (presenced (x) y) S 1 4242 4242 0 -1 4194560 1000 0 0 0 7 3 0 0 20 0 3 0 100 0 0";
        assert_eq!(parse_cpu_ticks(stat), Some(10));
        assert_eq!(parse_cpu_ticks("4242 (short) S 1"), None);
    }

    #[test]
    fn the_nested_build_drops_what_cargo_run_set_and_keeps_settings() {
        for name in [
            "CARGO_MANIFEST_DIR",
            "CARGO_PKG_NAME",
            "CARGO_PKG_VERSION_MAJOR",
            "OUT_DIR",
        ] {
            assert!(set_by_cargo_for_a_binary(name), "{name}");
        }
        for name in [
            "CARGO",
            "CARGO_HOME",
            "CARGO_TARGET_DIR",
            "CARGO_BUILD_JOBS",
            "RUSTFLAGS",
        ] {
            assert!(!set_by_cargo_for_a_binary(name), "{name}");
        }
    }

    #[test]
    fn the_listening_line_gives_the_address() {
        assert_eq!(
            parse_listening_line("presenced listening on http://127.0.0.1:40123"),
            Some(SocketAddr::from(([127, 0, 0, 1], 40123)))
        );
        assert_eq!(parse_listening_line("starting..."), None);
    }

    #[test]
    fn this_process_can_be_measured() {
        let pid = std::process::id();
        assert!(resident_bytes(pid).unwrap() > 0);
        cpu_ticks(pid).unwrap();
    }
}
