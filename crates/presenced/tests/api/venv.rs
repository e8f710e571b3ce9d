//! Python tools the tests run (the official Graph SDK, schemathesis), each
//! installed from a pinned requirements file into its own virtual
//! environment under the target directory (`install::pinned`). A test that
//! needs one fails, saying how to fix it, when Python, venv or PyPI is
//! unavailable: it never skips.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::install;

const FIX: &str = "Install Python 3 with venv and pip (Debian: apt-get install python3-venv python3-pip), with access to PyPI.";

/// The virtual environment `name` (under the target directory) with the
/// packages pinned in `requirements` installed; returns its `bin`
/// directory. `what` names the packages in failure messages.
pub fn installed(name: &str, requirements: &Path, what: &str) -> PathBuf {
    let venv = install::pinned(
        name,
        &[requirements],
        |venv| venv.join("bin").join("python").exists(),
        |venv| {
            let interpreter = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned());
            install::run(
                Command::new(&interpreter)
                    .args(["-m", "venv", "--clear"])
                    .arg(venv),
                &format!("creating the virtual environment for {what}"),
                FIX,
            );
            install::run(
                Command::new(venv.join("bin").join("python"))
                    .args([
                        "-m",
                        "pip",
                        "install",
                        "--quiet",
                        "--disable-pip-version-check",
                        "-r",
                    ])
                    .arg(requirements),
                &format!("installing {what} from PyPI"),
                FIX,
            );
        },
    );
    venv.join("bin")
}
