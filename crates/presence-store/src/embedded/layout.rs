//! The data directory: who may use it, and which format it is in.
//!
//! ```text
//! DIR/FORMAT   "presenced embedded store, format N": written once, when the directory is new
//! DIR/LOCK     held with an exclusive advisory lock while a presenced uses DIR
//! DIR/engine/  the engine's own files (fjall: journals, tables, its own lock)
//! ```
//!
//! The advisory lock (`flock`) is released by the kernel when the process
//! ends, however it ends, so a presenced killed with SIGKILL never leaves a
//! stale lock behind.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::StoreError;

/// The directory format this presenced writes and the newest it reads.
pub const FORMAT_VERSION: u32 = 1;
const FORMAT_FILE: &str = "FORMAT";
const FORMAT_PREFIX: &str = "presenced embedded store, format ";
const LOCK_FILE: &str = "LOCK";
pub const ENGINE_DIRECTORY: &str = "engine";

fn io_error(dir: &Path, what: &str, error: std::io::Error) -> StoreError {
    StoreError::Io {
        dir: dir.to_path_buf(),
        problem: format!("{what}: {error}"),
    }
}

/// Takes the directory's lock, creating the directory if needed. The lock
/// is held as long as the returned file is open.
pub fn lock(dir: &Path) -> Result<File, StoreError> {
    std::fs::create_dir_all(dir)
        .map_err(|error| io_error(dir, "cannot create the directory", error))?;
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|error| io_error(dir, &format!("cannot open {}", path.display()), error))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Locked {
            dir: dir.to_path_buf(),
            lock: path,
        }),
        Err(std::fs::TryLockError::Error(error)) => Err(io_error(
            dir,
            &format!("cannot lock {}", path.display()),
            error,
        )),
    }
}

/// Reads the format marker. `Ok(None)` for a directory that has none.
pub fn read_format(dir: &Path) -> Result<Option<u32>, StoreError> {
    let path = dir.join(FORMAT_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) if error.kind() == std::io::ErrorKind::InvalidData => {
            return Err(damaged(dir, &path, "it is not text".into()));
        }
        Err(error) => {
            return Err(io_error(
                dir,
                &format!("cannot read {}", path.display()),
                error,
            ));
        }
    };
    text.trim_end()
        .strip_prefix(FORMAT_PREFIX)
        .and_then(|version| version.parse().ok())
        .map(Some)
        .ok_or_else(|| {
            damaged(
                dir,
                &path,
                format!("it should say \"{FORMAT_PREFIX}N\" but says {text:?}"),
            )
        })
}

fn damaged(dir: &Path, file: &Path, problem: String) -> StoreError {
    StoreError::Damaged {
        dir: dir.to_path_buf(),
        file: file.to_path_buf(),
        problem,
    }
}

/// Checks the directory's format, or marks a new directory with this
/// presenced's. A directory of a newer format is refused and left as it is.
pub fn check_or_mark_format(dir: &Path) -> Result<(), StoreError> {
    match read_format(dir)? {
        Some(found) if found > FORMAT_VERSION => Err(StoreError::NewerFormat {
            dir: dir.to_path_buf(),
            found,
            supported: FORMAT_VERSION,
        }),
        Some(_) => Ok(()),
        None => {
            let engine = dir.join(ENGINE_DIRECTORY);
            if engine.exists() {
                // Data without a marker: something removed it. Guessing the
                // format could rewrite data this presenced cannot read.
                return Err(damaged(
                    dir,
                    &dir.join(FORMAT_FILE),
                    format!("it is missing, although {} holds data", engine.display()),
                ));
            }
            write_format(dir)
        }
    }
}

/// Writes the marker durably: the file, then the directory entry.
fn write_format(dir: &Path) -> Result<(), StoreError> {
    let path = dir.join(FORMAT_FILE);
    let temporary = dir.join("FORMAT.new");
    let write = || -> std::io::Result<()> {
        let mut file = File::create(&temporary)?;
        writeln!(file, "{FORMAT_PREFIX}{FORMAT_VERSION}")?;
        file.sync_all()?;
        std::fs::rename(&temporary, &path)?;
        File::open(dir)?.sync_all()
    };
    write().map_err(|error| io_error(dir, &format!("cannot write {}", path.display()), error))
}

pub fn engine_path(dir: &Path) -> PathBuf {
    dir.join(ENGINE_DIRECTORY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_directory_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let first = lock(dir.path()).expect("the first lock");
        let second = lock(dir.path());
        assert!(
            matches!(second, Err(StoreError::Locked { .. })),
            "{second:?}"
        );
        drop(first);
        lock(dir.path()).expect("free again");
    }

    #[test]
    fn a_new_directory_is_marked_and_a_newer_one_refused_untouched() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        check_or_mark_format(dir.path()).expect("marks");
        assert_eq!(read_format(dir.path()), Ok(Some(FORMAT_VERSION)));
        check_or_mark_format(dir.path()).expect("accepts its own");

        let newer = format!("{FORMAT_PREFIX}{}\n", FORMAT_VERSION + 1);
        std::fs::write(dir.path().join(FORMAT_FILE), &newer).expect("writable");
        let refused = check_or_mark_format(dir.path());
        assert!(
            matches!(refused, Err(StoreError::NewerFormat { found: 2, .. })),
            "{refused:?}"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join(FORMAT_FILE)).expect("readable"),
            newer,
            "left as it was"
        );
    }

    #[test]
    fn a_garbled_or_missing_marker_names_the_file() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        std::fs::write(dir.path().join(FORMAT_FILE), "hello").expect("writable");
        let error = check_or_mark_format(dir.path()).expect_err("damaged");
        assert!(error.to_string().contains("FORMAT"), "{error}");

        std::fs::remove_file(dir.path().join(FORMAT_FILE)).expect("removable");
        std::fs::create_dir(dir.path().join(ENGINE_DIRECTORY)).expect("creatable");
        let error = check_or_mark_format(dir.path()).expect_err("damaged");
        assert!(error.to_string().contains("missing"), "{error}");
    }
}
