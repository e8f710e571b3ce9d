//! The JavaScript the tests run (the official Graph JavaScript SDKs, the
//! browser driver): `tests/js/package.json` and its committed
//! `package-lock.json`, installed with `npm ci` into `js-sdk` under the
//! target directory on first use and whenever the lockfile changes
//! (`install::pinned`), with the scripts of `tests/js` copied beside them
//! (Node resolves a script's imports from where the script is). Nothing is
//! downloaded but the pinned packages: no install scripts run, and no
//! browser is fetched (the browser tests use the system's Chromium).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::install;

/// The oldest Node.js the pinned packages support (playwright-core and the
/// Azure packages under the Kiota SDK declare `node >= 20`).
const NODE_MAJOR: u32 = 20;

const FIX: &str = "Install Node.js 20 or later with npm (scripts/test.sh does it as root with apt-get install nodejs npm), with access to the npm registry.";

fn sources() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("js")
}

/// Fails, saying how to fix it, unless `node` is Node.js 20 or later.
fn check_node() {
    let (major, version) =
        presenced_testkit::node_major_version().unwrap_or_else(|error| panic!("{error}. {FIX}"));
    assert!(
        major >= NODE_MAJOR,
        "node --version says {version:?}: the JavaScript tests need Node.js {NODE_MAJOR} or later. {FIX}"
    );
}

/// The directory holding the installed packages and the scripts of
/// `tests/js`, ready for `node SCRIPT`.
pub fn workspace() -> PathBuf {
    check_node();
    let package = sources().join("package.json");
    let lock = sources().join("package-lock.json");
    let directory = install::pinned(
        "js-sdk",
        &[&package, &lock],
        |directory| {
            directory
                .join("node_modules")
                .join(".package-lock.json")
                .exists()
        },
        |directory| {
            std::fs::create_dir_all(directory).expect("the directory is writable");
            std::fs::copy(&package, directory.join("package.json")).expect("copied");
            std::fs::copy(&lock, directory.join("package-lock.json")).expect("copied");
            install::run(
                Command::new("npm")
                    .args([
                        "ci",
                        "--ignore-scripts",
                        "--no-audit",
                        "--no-fund",
                        "--loglevel=error",
                    ])
                    .current_dir(directory),
                "installing the pinned JavaScript packages (npm ci)",
                FIX,
            );
        },
    );
    for entry in std::fs::read_dir(sources()).expect("tests/js is readable") {
        let path = entry.expect("an entry").path();
        let copied = matches!(
            path.extension().and_then(|extension| extension.to_str()),
            Some("mjs" | "js" | "html")
        );
        if copied {
            let contents = std::fs::read(&path).expect("readable");
            install::write_if_changed(
                &directory.join(path.file_name().expect("a name")),
                &contents,
            );
        }
    }
    directory
}
