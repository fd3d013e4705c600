//! Cleanup when the bench is interrupted (SIGINT, SIGTERM, SIGHUP).
//!
//! Normal exits and errors clean up through destructors (namespaces,
//! daemons, the BPF statistics switch). A signal would skip those, so a
//! handler writes the signal's number into a pipe and a watcher thread
//! reading it stops what runs in this process's namespaces (SIGTERM first,
//! so `vpn-control` detaches its programs and boringtun removes its
//! socket), deletes the namespaces and scratch folders, restores the BPF
//! statistics sysctl if this process changed it, and exits.
//!
//! A handler rather than a blocked mask with `sigwait`: children inherit
//! the signal mask through `exec` (std's `Command` does not reset it), and
//! daemons started with SIGTERM blocked would never see their stop signal;
//! handlers, by contrast, fall back to the default in the child.

use std::os::fd::{FromRawFd as _, OwnedFd};
use std::process::Command;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

/// `(path, old value)` of a sysctl to restore if interrupted.
static RESTORE: Mutex<Option<(String, String)>> = Mutex::new(None);

/// Write end of the self-pipe (-1 until installed).
static PIPE_WR: AtomicI32 = AtomicI32::new(-1);

/// Remembers a sysctl value to write back if the process is interrupted
/// (`None` clears it once the owner restored it itself).
pub fn restore_on_signal(entry: Option<(String, String)>) {
    if let Ok(mut g) = RESTORE.lock() {
        *g = entry;
    }
}

extern "C" fn on_signal(sig: libc::c_int) {
    let byte = u8::try_from(sig).unwrap_or(0);
    let fd = PIPE_WR.load(Ordering::Relaxed);
    // SAFETY: write(2) is async-signal-safe; one byte from a live local.
    unsafe { libc::write(fd, std::ptr::from_ref(&byte).cast(), 1) };
}

/// Installs the handlers and starts the watcher thread.
pub fn install() -> Result<()> {
    let mut fds = [0i32; 2];
    // SAFETY: pipe2 fills the two-element array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        bail!("pipe2: {}", std::io::Error::last_os_error());
    }
    // SAFETY: the read end was just created and is owned here. The write
    // end stays open for the life of the process (the handler uses it).
    let rd = unsafe { OwnedFd::from_raw_fd(fds[0]) };
    PIPE_WR.store(fds[1], Ordering::Relaxed);
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: querying the current disposition into a zeroed struct.
        let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: valid pointers; a null new action only reads the old one.
        unsafe { libc::sigaction(sig, std::ptr::null(), &mut old) };
        // Under nohup SIGHUP stays ignored, as asked. (A shell's background
        // job has SIGINT ignored too, but an interrupt is still wanted.)
        if sig == libc::SIGHUP && old.sa_sigaction == libc::SIG_IGN {
            continue;
        }
        // SAFETY: a zeroed sigaction with our handler and an empty mask.
        let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
        act.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        act.sa_flags = libc::SA_RESTART;
        // SAFETY: installing a handler that only calls write(2).
        if unsafe { libc::sigaction(sig, &act, std::ptr::null_mut()) } != 0 {
            bail!("sigaction({sig}): {}", std::io::Error::last_os_error());
        }
    }
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            use std::io::Read as _;
            let mut file = std::fs::File::from(rd);
            let mut b = [0u8; 1];
            if file.read_exact(&mut b).is_err() {
                return;
            }
            let sig = i32::from(b[0]);
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
