//! Replays every fuzz target's corpus (`fuzz/corpus/<target>/` at the
//! repository root) through the target's entry point, so that every input
//! a fuzzer once found interesting, and every hand-written seed, is checked
//! by `cargo test` on stable.

use std::path::{Path, PathBuf};

use super::TARGETS;

fn fuzz_directory() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// Runs every file of `target`'s corpus through it, and fails naming every
/// file that fails (each one's panic message is printed above).
fn replay(target: &str) {
    let (_, run) = TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .unwrap_or_else(|| panic!("no fuzz target is named {target}"));
    let directory = fuzz_directory().join("corpus").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&directory)
        .unwrap_or_else(|error| {
            panic!(
                "{} cannot be read ({error}); every fuzz target keeps its corpus there",
                directory.display()
            )
        })
        .map(|entry| entry.expect("a directory entry").path())
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "{} is empty; every fuzz target keeps seed inputs there",
        directory.display()
    );
    let failures: Vec<String> = files
        .iter()
        .filter(|file| {
            let data = std::fs::read(file).expect("a corpus file is readable");
            std::panic::catch_unwind(|| run(&data)).is_err()
        })
        .map(|file| file.display().to_string())
        .collect();
    assert!(
        failures.is_empty(),
        "{target} fails on {} of {} inputs (reproduce one with `cargo +nightly fuzz run {target} FILE` in fuzz/): {failures:#?}",
        failures.len(),
        files.len()
    );
}

macro_rules! replay_each {
    ($($target:ident),+ $(,)?) => {
        const REPLAYED: &[&str] = &[$(stringify!($target)),+];
        $(
            #[test]
            fn $target() {
                replay(stringify!($target));
            }
        )+
    };
}

replay_each!(
    duration,
    date_time,
    ids,
    json_body,
    headers,
    subscription,
    token,
    jwk_set,
    certificate,
);

/// Every target has a replay test above, a cargo-fuzz target that calls it
/// in `fuzz/`, and a corpus; and every corpus belongs to a target.
#[test]
fn every_target_is_replayed_and_fuzzed() {
    let names: Vec<&str> = TARGETS.iter().map(|(name, _)| *name).collect();
    assert_eq!(names, REPLAYED, "each target needs a replay test");
    let fuzz = fuzz_directory();
    let manifest = std::fs::read_to_string(fuzz.join("Cargo.toml")).expect("fuzz/Cargo.toml");
    for name in &names {
        let source = fuzz.join("fuzz_targets").join(format!("{name}.rs"));
        let text = std::fs::read_to_string(&source)
            .unwrap_or_else(|error| panic!("{}: {error}", source.display()));
        assert!(
            text.contains(&format!("presenced::fuzzing::{name}(")),
            "{} does not call presenced::fuzzing::{name}",
            source.display()
        );
        assert!(
            manifest.contains(&format!("name = \"{name}\"")),
            "fuzz/Cargo.toml has no target {name}"
        );
    }
    for entry in std::fs::read_dir(fuzz.join("corpus")).expect("fuzz/corpus") {
        let name = entry.expect("a directory entry").file_name();
        let name = name.to_string_lossy();
        assert!(
            names.contains(&&*name),
            "fuzz/corpus/{name} belongs to no target"
        );
    }
}
