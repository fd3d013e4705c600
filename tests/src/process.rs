//! Background processes that are stopped on drop.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::error::{describe, Error, Result};

/// How long a process gets to exit after SIGTERM before SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(10);

/// A child process with stdout and stderr in a log file. Dropping it sends
/// SIGTERM (then SIGKILL after a grace period); if the thread is panicking
/// its log is printed, so a failed test shows what the process said.
#[derive(Debug)]
pub struct Background {
    child: Child,
    label: String,
    log: PathBuf,
    reaped: Option<ExitStatus>,
}

impl Background {
    /// Spawns `cmd` with output to `log`. The child also gets SIGTERM if
    /// the spawning thread dies without dropping this.
    pub fn spawn(label: &str, mut cmd: Command, log: &Path) -> Result<Self> {
        let file = std::fs::File::create(log)?;
        let err = file.try_clone()?;
        cmd.stdin(Stdio::null()).stdout(file).stderr(err);
        // SAFETY: prctl is async-signal-safe; nothing else runs in the hook.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().map_err(|source| Error::Spawn {
            cmd: describe(&cmd),
            source,
        })?;
        Ok(Self {
            child,
            label: label.to_owned(),
            log: log.to_owned(),
            reaped: None,
        })
    }

    pub fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).expect("pid fits i32")
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// What the process printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `Some(status)` once the process has exited.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.reaped.is_none() {
            self.reaped = self.child.try_wait().ok().flatten();
        }
        self.reaped
    }

    pub fn is_running(&mut self) -> bool {
        self.try_status().is_none()
    }

    fn signal(&self, sig: i32) {
        if self.reaped.is_none() {
            // SAFETY: kill(2) on our own unreaped child.
            unsafe { libc::kill(self.pid(), sig) };
        }
    }

    /// Waits up to `timeout` for the process to exit on its own.
    pub fn wait(&mut self, timeout: Duration) -> Result<ExitStatus> {
        self.signal_and_wait(0, timeout)
    }

    /// Sends `sig` (0: none) and waits up to `timeout` for the exit.
    pub fn signal_and_wait(&mut self, sig: i32, timeout: Duration) -> Result<ExitStatus> {
        if sig != 0 {
            self.signal(sig);
        }
        let start = Instant::now();
        loop {
            if let Some(s) = self.try_status() {
                return Ok(s);
            }
            if start.elapsed() >= timeout {
                return Err(Error::Timeout {
                    what: format!("{} to exit after signal {sig}", self.label),
                    secs: timeout.as_secs_f64(),
                    last: String::new(),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then SIGKILL if it has not exited within the grace period.
    pub fn stop(&mut self) -> Result<ExitStatus> {
        match self.signal_and_wait(libc::SIGTERM, TERM_GRACE) {
            Ok(s) => Ok(s),
            Err(e) => {
                let _ = self.kill9();
                Err(e)
            }
        }
    }

    /// `kill -9` and reap: the process gets no chance to clean up.
    pub fn kill9(&mut self) -> Result<ExitStatus> {
        self.signal_and_wait(libc::SIGKILL, Duration::from_secs(10))
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if self.is_running() {
            if let Err(e) = self.stop() {
                eprintln!("warning: {e}");
            }
        }
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            eprintln!(
                "---- last lines of {} ({}) ----",
                self.label,
                self.log.display()
            );
            for l in tail.iter().rev() {
                eprintln!("{l}");
            }
            eprintln!("---- end of {} ----", self.label);
        }
    }
}
