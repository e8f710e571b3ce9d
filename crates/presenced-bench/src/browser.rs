//! A real browser for the board part: Debian's Chromium, headless, driven by
//! playwright-core through a Node.js script of this crate (`js/`).
//!
//! playwright-core comes from the same pinned files as the browser tests'
//! (`crates/presenced/tests/js/package.json` and `package-lock.json`),
//! installed with `npm ci --ignore-scripts` into a directory of the target
//! directory on first use and again whenever those files change; nothing
//! else is downloaded (no install scripts run, and no browser is fetched).
//! The driver script is copied beside the packages, because Node resolves a
//! script's imports from where the script is.
//!
//! The driver speaks one JSON object a line on its standard output and reads
//! one word a line on its standard input ([`Driver`]); its standard error goes
//! to a log file quoted when it fails. A driver dropped early has its
//! standard input closed, which makes it close the browser and exit, so that
//! no Chromium outlives the harness.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::process::log_tail;

/// Debian's Chromium, which playwright-core drives (it never downloads a
/// browser of its own).
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// The oldest Node.js the pinned packages support (playwright-core declares
/// `node >= 20`).
const NODE_MAJOR: u32 = 20;

const FIX: &str = "The board part needs Node.js 20 or later with npm (and the npm registry, \
                   once, for the pinned packages) and Chromium at /usr/bin/chromium: \
                   scripts/test.sh installs them when run as root, or run \
                   `apt-get install nodejs npm chromium`.";

/// The pins, built into the harness so that it installs what this checkout
/// pins, and is rebuilt when they change.
const PACKAGE_JSON: &str = include_str!("../../presenced/tests/js/package.json");
const PACKAGE_LOCK: &str = include_str!("../../presenced/tests/js/package-lock.json");

/// The scripts of `js/`, by file name.
pub const BOARD_DRIVER: (&str, &str) = ("board_bench.mjs", include_str!("../js/board_bench.mjs"));

/// How long the driver may take to close the browser and exit once told to.
const EXIT_WITHIN: Duration = Duration::from_secs(10);

/// Checks that Chromium and Node.js are there, installs the pinned packages
/// when they are not installed yet (or were installed from other pins), and
/// writes `script` beside them. Returns the directory to run it in.
pub fn prepare(script: (&str, &str)) -> Result<PathBuf, String> {
    if !Path::new(CHROMIUM).is_file() {
        return Err(format!("{CHROMIUM} is missing. {FIX}"));
    }
    check_node()?;
    let directory = install_directory();
    let stamp = directory.join("installed-from.txt");
    let pinned = format!("{PACKAGE_JSON}{PACKAGE_LOCK}");
    let ready = directory
        .join("node_modules")
        .join(".package-lock.json")
        .is_file();
    if !(ready && std::fs::read_to_string(&stamp).ok().as_deref() == Some(pinned.as_str())) {
        install(&directory)?;
        write(&stamp, &pinned)?;
    }
    let (name, contents) = script;
    let path = directory.join(name);
    if std::fs::read_to_string(&path).ok().as_deref() != Some(contents) {
        write(&path, contents)?;
    }
    Ok(directory)
}

/// `target/tmp/presenced-bench-js`: under `CARGO_TARGET_DIR` when it is
/// set, else under the workspace's `target` (where `build_presenced`
/// builds). `scripts/board-screenshots.sh` uses the same directory.
fn install_directory() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
            workspace.canonicalize().unwrap_or(workspace).join("target")
        });
    target.join("tmp").join("presenced-bench-js")
}

fn write(path: &Path, contents: &str) -> Result<(), String> {
    std::fs::write(path, contents)
        .map_err(|error| format!("cannot write {}: {error}", path.display()))
}

fn check_node() -> Result<(), String> {
    let (major, version) =
        presenced_testkit::node_major_version().map_err(|error| format!("{error}. {FIX}"))?;
    if major >= NODE_MAJOR {
        Ok(())
    } else {
        Err(format!(
            "node --version says {version:?}; the pinned playwright-core needs Node.js \
             {NODE_MAJOR} or later. {FIX}"
        ))
    }
}

/// `npm ci` of the pins into `directory`, emptied first.
fn install(directory: &Path) -> Result<(), String> {
    println!(
        "[board] installing the pinned JavaScript packages (npm ci) into {}",
        directory.display()
    );
    let _ = std::fs::remove_dir_all(directory);
    std::fs::create_dir_all(directory)
        .map_err(|error| format!("cannot create {}: {error}", directory.display()))?;
    write(&directory.join("package.json"), PACKAGE_JSON)?;
    write(&directory.join("package-lock.json"), PACKAGE_LOCK)?;
    let output = Command::new("npm")
        .args([
            "ci",
            "--ignore-scripts",
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
        ])
        .current_dir(directory)
        .output()
        .map_err(|error| format!("cannot run npm: {error}. {FIX}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "npm ci in {} failed ({}):\n{}{}\n{FIX}",
            directory.display(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// A running driver script.
#[derive(Debug)]
pub struct Driver {
    child: Child,
    /// Dropped (closed) to tell the script to stop.
    stdin: Option<ChildStdin>,
    lines: mpsc::UnboundedReceiver<String>,
    log_path: PathBuf,
}

impl Driver {
    /// Starts `node SCRIPT PLAN` in `directory`.
    pub fn start(
        directory: &Path,
        script: &str,
        plan: &serde_json::Value,
    ) -> Result<Driver, String> {
        let log_path = std::env::temp_dir().join(format!(
            "presenced-bench-{}-{}.log",
            std::process::id(),
            script.replace(|c: char| !c.is_ascii_alphanumeric(), "-")
        ));
        let log = std::fs::File::create(&log_path)
            .map_err(|error| format!("cannot create {}: {error}", log_path.display()))?;
        let mut child = Command::new("node")
            .arg(script)
            .arg(plan.to_string())
            .current_dir(directory)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .map_err(|error| format!("cannot start node {script}: {error}. {FIX}"))?;
        let stdin = child.stdin.take();
        let Some(stdout) = child.stdout.take() else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("node {script}: no standard output to read"));
        };
        // A thread reads the lines, so that the harness's one async thread
        // can wait for them with a deadline.
        let (sender, lines) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if sender.send(line).is_err() {
                    return;
                }
            }
        });
        Ok(Driver {
            child,
            stdin,
            lines,
            log_path,
        })
    }

    /// The next JSON line the script prints, within `within`.
    pub async fn next_message(&mut self, within: Duration) -> Result<serde_json::Value, String> {
        loop {
            let line = match tokio::time::timeout(within, self.lines.recv()).await {
                Ok(Some(line)) => line,
                Ok(None) => {
                    let status = self.child.wait().map_or_else(
                        |error| format!("cannot be waited for: {error}"),
                        |status| format!("exited with {status}"),
                    );
                    return Err(format!(
                        "the browser driver {status} without a result; its log ({}) ends \
                         with:\n{}",
                        self.log_path.display(),
                        log_tail(&self.log_path)
                    ));
                }
                Err(_) => {
                    return Err(format!(
                        "the browser driver said nothing for {} s; its log ({}) ends with:\n{}",
                        within.as_secs(),
                        self.log_path.display(),
                        log_tail(&self.log_path)
                    ));
                }
            };
            // Anything else on standard output (a library's warning) is
            // not the protocol's; it goes to the terminal as it is.
            match serde_json::from_str::<serde_json::Value>(&line) {
                Ok(message) if message.is_object() => return Ok(message),
                _ => println!("[board] driver: {line}"),
            }
        }
    }

    /// Writes `word` as a line to the script.
    pub fn say(&mut self, word: &str) -> Result<(), String> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| "the browser driver's input is closed".to_string())?;
        writeln!(stdin, "{word}")
            .and_then(|()| stdin.flush())
            .map_err(|error| format!("cannot write to the browser driver: {error}"))
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // Closing its input tells the script to close the browser and exit;
        // killing it outright would leave Chromium running.
        drop(self.stdin.take());
        let deadline = Instant::now() + EXIT_WITHIN;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                // The log of a driver that failed is kept: messages name it.
                if status.success() {
                    let _ = std::fs::remove_file(&self.log_path);
                }
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
