//! Tools the tests install from pinned files into directories under the
//! target directory (a Python virtual environment, a node_modules): on
//! first use, and again whenever the pinned files change. A test that needs
//! one fails, saying how to fix it, when the tool or its registry is
//! unavailable: it never skips.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs `command` to completion; panics, with its output and `fix`, when it
/// cannot start or fails. `what` names the step in the message.
pub fn run(command: &mut Command, what: &str, fix: &str) {
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("{what}: cannot run {command:?}: {error}. {fix}"));
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}\n{}\n{fix}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The directory `name` under the target directory, with what `install`
/// puts there from the files `pins` (requirements, lockfiles). `install`
/// runs when the directory was installed from other contents of `pins`, or
/// `ready` says it is incomplete; otherwise the directory is used as it is.
pub fn pinned(
    name: &str,
    pins: &[&Path],
    ready: impl Fn(&Path) -> bool,
    install: impl FnOnce(&Path),
) -> PathBuf {
    // The tests that need one run at the same time: one installs while the
    // others wait, then find it installed.
    static INSTALLING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _installing = INSTALLING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut pinned = String::new();
    for pin in pins {
        pinned.push_str(
            &std::fs::read_to_string(pin)
                .unwrap_or_else(|error| panic!("{} is readable: {error}", pin.display())),
        );
    }
    let directory = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let stamp = directory.join("installed-from.txt");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(pinned.as_str()) && ready(&directory)
    {
        return directory;
    }
    let _ = std::fs::remove_file(&stamp);
    install(&directory);
    std::fs::write(&stamp, pinned).expect("the stamp is writable");
    directory
}

/// Writes `contents` to `path` unless it holds them already, through a
/// rename, so that a process reading the file meanwhile sees the old or
/// the new file, never half of one.
pub fn write_if_changed(path: &Path, contents: &[u8]) {
    if std::fs::read(path).ok().as_deref() == Some(contents) {
        return;
    }
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let write = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let partial = path.with_extension(format!("partial-{}-{write}", std::process::id()));
    std::fs::write(&partial, contents)
        .unwrap_or_else(|error| panic!("{} is writable: {error}", partial.display()));
    std::fs::rename(&partial, path)
        .unwrap_or_else(|error| panic!("{} is writable: {error}", path.display()));
}
