//! The harness's error type.

use std::process::Output;

/// Errors of the harness. Tests usually `unwrap()`/`expect()` them; the
/// messages carry the command line and its stderr so a failure is readable.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("`{cmd}` failed ({status}): {stderr}")]
    Command {
        cmd: String,
        status: String,
        stderr: String,
    },
    #[error("running `{cmd}`: {source}")]
    Spawn {
        cmd: String,
        #[source]
        source: std::io::Error,
    },
    #[error("timed out after {secs:.1}s waiting for {what}{last}")]
    Timeout {
        what: String,
        secs: f64,
        /// The last error seen while polling, if any (with a leading "; last: ").
        last: String,
    },
    #[error("parsing {what}: {detail}")]
    Parse { what: String, detail: String },
    #[error("{0}")]
    Setup(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Renders a command for messages.
pub(crate) fn describe(cmd: &std::process::Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs `cmd` to completion; an error unless it exits 0. Returns stdout.
pub(crate) fn run_checked(cmd: &mut std::process::Command) -> Result<String> {
    let out = run_output(cmd)?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(command_error(cmd, &out))
    }
}

/// Runs `cmd` to completion and returns its output whatever the exit status.
pub(crate) fn run_output(cmd: &mut std::process::Command) -> Result<Output> {
    cmd.stdin(std::process::Stdio::null());
    cmd.output().map_err(|source| Error::Spawn {
        cmd: describe(cmd),
        source,
    })
}

pub(crate) fn command_error(cmd: &std::process::Command, out: &Output) -> Error {
    let mut stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    if stderr.is_empty() {
        stderr = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    }
    Error::Command {
        cmd: describe(cmd),
        status: out.status.to_string(),
        stderr,
    }
}
