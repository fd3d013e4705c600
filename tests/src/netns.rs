//! RAII network namespaces with unique names.

use std::ffi::OsStr;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::error::{run_checked, run_output, Error, Result};

/// Every namespace the harness makes is named `gv-<tag>-<pid>-<n>`.
pub const NETNS_PREFIX: &str = "gv-";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A network namespace, deleted on drop (also while a test panics), after
/// killing whatever still runs inside it. Derefs to [`NsRef`], which has
/// the methods to run things inside it.
#[derive(Debug)]
pub struct Netns {
    handle: NsRef,
}

/// A non-owning handle on a namespace (cheap to clone; does not delete it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NsRef {
    name: String,
}

impl std::ops::Deref for Netns {
    type Target = NsRef;
    fn deref(&self) -> &NsRef {
        &self.handle
    }
}

impl Netns {
    /// Creates `gv-<tag>-<pid>-<n>` with `lo` up and IPv6 duplicate address
    /// detection off (so IPv6 addresses are usable at once).
    pub fn new(tag: &str) -> Result<Self> {
        if tag.is_empty() || !tag.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(Error::Setup(format!(
                "namespace tag {tag:?} must be non-empty ASCII alphanumerics"
            )));
        }
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("{NETNS_PREFIX}{tag}-{}-{n}", std::process::id());
        run_checked(Command::new("ip").args(["netns", "add", &name]))?;
        let ns = Self {
            handle: NsRef { name },
        };
        ns.ip(["link", "set", "lo", "up"])?;
        for key in [
            "net.ipv6.conf.all.accept_dad",
            "net.ipv6.conf.default.accept_dad",
        ] {
            ns.sysctl(key, "0")?;
        }
        Ok(ns)
    }
}

impl NsRef {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip netns exec <ns> <program>`: add arguments and run or spawn it.
    /// (`ip netns exec` execs the program, so the child's pid is the program's.)
    pub fn cmd(&self, program: impl AsRef<OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }

    /// Runs `program args...` inside the namespace; stdout, or an error
    /// carrying stderr when it exits non-zero.
    pub fn run<I, S>(&self, program: &str, args: I) -> Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run_checked(self.cmd(program).args(args))
    }

    /// Like [`Netns::run`] but returns the raw output whatever the exit status.
    pub fn output<I, S>(&self, program: &str, args: I) -> Result<std::process::Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run_output(self.cmd(program).args(args))
    }

    /// `ip -n <ns> args...`.
    pub fn ip<I, S>(&self, args: I) -> Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run_checked(Command::new("ip").args(["-n", &self.name]).args(args))
    }

    /// Sets a sysctl inside the namespace.
    pub fn sysctl(&self, key: &str, value: &str) -> Result<()> {
        self.run("sysctl", ["-q", "-w", &format!("{key}={value}")])
            .map(drop)
    }

    /// Runs `f` on a thread that entered this namespace. Sockets created by
    /// `f` belong to the namespace for their whole life, so this is how the
    /// test process itself sends and receives traffic inside a namespace.
    pub fn enter<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let file = std::fs::File::open(format!("/run/netns/{}", self.name))?;
        let handle = std::thread::spawn(move || -> Result<T> {
            // SAFETY: setns on a valid namespace fd; it only changes this
            // (fresh, short-lived) thread's network namespace.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            if rc != 0 {
                return Err(std::io::Error::last_os_error().into());
            }
            Ok(f())
        });
        handle
            .join()
            .map_err(|_| Error::Setup("thread inside the namespace panicked".into()))?
    }

    /// Process ids running inside the namespace.
    pub fn pids(&self) -> Vec<i32> {
        pids_in(&self.name)
    }
}

pub(crate) fn pids_in(name: &str) -> Vec<i32> {
    let out = run_output(Command::new("ip").args(["netns", "pids", name]));
    match out {
        Ok(o) => String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Kills everything inside `name` and deletes the namespace.
pub(crate) fn destroy(name: &str) -> Result<()> {
    for pid in pids_in(name) {
        // SAFETY: plain kill(2) on a pid we just listed.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    // A killed process may hold the namespace a moment longer; deleting the
    // name is still fine (the kernel frees it when the last user goes).
    run_checked(Command::new("ip").args(["netns", "del", name])).map(drop)
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Err(e) = destroy(&self.handle.name) {
            eprintln!("warning: removing namespace {}: {e}", self.handle.name);
        }
    }
}
