//! Python tools the tests run (the official Graph SDK, schemathesis), each
//! installed from a pinned requirements file into its own virtual
//! environment under the target directory, on first use and whenever the
//! requirements change. A test that needs one fails, saying how to fix it,
//! when Python, venv or PyPI is unavailable: it never skips.

use std::path::{Path, PathBuf};
use std::process::Command;

fn run(command: &mut Command, what: &str) {
    let output = command.output().unwrap_or_else(|error| {
        panic!("{what}: cannot run {command:?}: {error}. Install Python 3 with venv and pip (Debian: apt-get install python3-venv python3-pip).")
    });
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}\n{}\nInstall Python 3 with venv and pip, with access to PyPI.",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The virtual environment `name` (under the target directory) with the
/// packages pinned in `requirements` installed; returns its `bin`
/// directory. `what` names the packages in failure messages.
pub fn installed(name: &str, requirements: &Path, what: &str) -> PathBuf {
    // The tests that need one run at the same time: one installs while the
    // others wait, then find it installed.
    static INSTALLING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _installing = INSTALLING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let pinned = std::fs::read_to_string(requirements)
        .unwrap_or_else(|error| panic!("{} is readable: {error}", requirements.display()));
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let bin = venv.join("bin");
    let stamp = venv.join("installed-requirements.txt");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(pinned.as_str())
        && bin.join("python").exists()
    {
        return bin;
    }
    let interpreter = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned());
    run(
        Command::new(&interpreter)
            .args(["-m", "venv", "--clear"])
            .arg(&venv),
        &format!("creating the virtual environment for {what}"),
    );
    run(
        Command::new(bin.join("python"))
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
    );
    std::fs::write(&stamp, pinned).expect("the stamp is writable");
    bin
}
