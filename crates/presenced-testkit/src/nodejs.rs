//! The Node.js on the machine, for the JavaScript the tests and the bench
//! run (the official SDKs, the browser driver).

use std::process::Command;

/// The major version `node --version` reports, or why there is none (no
/// `node`, or an answer that is not a version), with the text it printed.
pub fn node_major_version() -> Result<(u32, String), String> {
    let output = Command::new("node")
        .arg("--version")
        .output()
        .map_err(|error| format!("cannot run node: {error}"))?;
    let version = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let major = version
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|major| major.parse().ok())
        .filter(|_| output.status.success())
        .ok_or_else(|| format!("node --version says {version:?}"))?;
    Ok((major, version))
}
