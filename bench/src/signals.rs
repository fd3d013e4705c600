//! Cleanup when the bench is interrupted (SIGINT, SIGTERM, SIGHUP).
//!
//! Normal exits and errors clean up through destructors (namespaces,
//! daemons, the BPF statistics switch). A signal would skip those, so the
//! signals are blocked in every thread and one watcher thread waits for
//! them: it stops what runs in this process's namespaces (SIGTERM first, so
//! `vpn-control` detaches its programs and boringtun removes its socket),
//! deletes the namespaces and scratch folders, restores the BPF statistics
//! sysctl if this process changed it, and exits.

use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

/// `(path, old value)` of a sysctl to restore if interrupted.
static RESTORE: Mutex<Option<(String, String)>> = Mutex::new(None);

/// Remembers a sysctl value to write back if the process is interrupted
/// (`None` clears it once the owner restored it itself).
pub fn restore_on_signal(entry: Option<(String, String)>) {
    if let Ok(mut g) = RESTORE.lock() {
        *g = entry;
    }
}

fn signal_set() -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the set; sigaddset only writes into it.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, s);
        }
        set
    }
}

/// Blocks the signals in the calling thread (call it first, so every later
/// thread inherits the mask; `std::process::Command` resets the mask in
/// children) and starts the watcher thread.
pub fn install() -> Result<()> {
    // A shell starts background jobs with SIGINT ignored, and an ignored
    // signal is discarded instead of queued for sigwait: take SIGINT and
    // SIGTERM back (SIGHUP stays ignored under nohup, as asked).
    for s in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: installing the default disposition has no preconditions.
        unsafe { libc::signal(s, libc::SIG_DFL) };
    }
    let set = signal_set();
    // SAFETY: valid set pointer; the old mask is not needed.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc != 0 {
        bail!("pthread_sigmask: {}", std::io::Error::from_raw_os_error(rc));
    }
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut sig = 0;
            // SAFETY: the set is initialised and blocked in this thread.
            let rc = unsafe { libc::sigwait(&set, &mut sig) };
            if rc != 0 {
                return;
            }
            eprintln!("vpn-bench: signal {sig}: cleaning up");
            cleanup();
            std::process::exit(128 + sig);
        })?;
    Ok(())
}

/// Namespaces made by this process: `gv-<tag>-<pid>-<n>`.
fn own_namespaces() -> Vec<String> {
    let me = std::process::id().to_string();
    let out = Command::new("ip").args(["netns", "list"]).output();
    let text = out
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(vpn_tests::NETNS_PREFIX))
        .filter(|n| n.rsplit('-').nth(1) == Some(me.as_str()))
        .map(str::to_owned)
        .collect()
}

fn pids_in(ns: &str) -> Vec<i32> {
    Command::new("ip")
        .args(["netns", "pids", ns])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn kill_all(pids: &[i32], sig: i32) {
    for &p in pids {
        // SAFETY: kill(2) on a pid listed in one of our namespaces.
        unsafe { libc::kill(p, sig) };
    }
}

/// Whether `pid` still runs (a zombie our main thread has not reaped yet
/// counts as gone).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

fn cleanup() {
    if let Ok(mut g) = RESTORE.lock() {
        if let Some((path, old)) = g.take() {
            if let Err(e) = std::fs::write(&path, &old) {
                eprintln!("vpn-bench: restoring {path} to {old}: {e}");
            }
        }
    }
    let spaces = own_namespaces();
    let all: Vec<i32> = spaces.iter().flat_map(|n| pids_in(n)).collect();
    kill_all(&all, libc::SIGTERM);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) && all.iter().any(|&p| alive(p)) {
        std::thread::sleep(Duration::from_millis(50));
    }
    for n in &spaces {
        kill_all(&pids_in(n), libc::SIGKILL);
        let _ = Command::new("ip").args(["netns", "del", n]).status();
    }
    let me = std::process::id().to_string();
    if let Ok(dir) = std::fs::read_dir(std::env::temp_dir()) {
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("gv-") && name.rsplit('-').nth(1) == Some(me.as_str()) {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
}
