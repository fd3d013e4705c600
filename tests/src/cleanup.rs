//! Removal of leftover `gv-*` namespaces (after a test process was killed
//! before its destructors ran).

use std::process::Command;

use crate::error::{run_checked, Result};
use crate::netns::{destroy, NETNS_PREFIX};

/// Which leftovers to remove.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CleanScope {
    /// Only namespaces whose creating process (the `<pid>` in
    /// `gv-<tag>-<pid>-<n>`) no longer exists: safe while other suites run.
    Stale,
    /// Every `gv-*` namespace.
    All,
}

/// What a cleanup did.
#[derive(Debug, Default)]
pub struct CleanReport {
    pub removed: Vec<String>,
    /// Namespaces left alone because their owner is alive.
    pub kept: Vec<String>,
    pub errors: Vec<String>,
}

fn owner_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(NETNS_PREFIX)?;
    let mut parts = rest.rsplit('-');
    let _counter: u32 = parts.next()?.parse().ok()?;
    parts.next()?.parse().ok()
}

fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Removes leftover namespaces (killing what runs inside them) and the
/// scratch folders `/tmp/gv-*` of dead processes.
pub fn clean_namespaces(scope: CleanScope) -> Result<CleanReport> {
    let list = run_checked(Command::new("ip").args(["netns", "list"]))?;
    let mut report = CleanReport::default();
    for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
        if !name.starts_with(NETNS_PREFIX) {
            continue;
        }
        let stale = owner_pid(name).is_none_or(|p| !alive(p));
        if scope == CleanScope::Stale && !stale {
            report.kept.push(name.to_owned());
            continue;
        }
        match destroy(name) {
            Ok(()) => report.removed.push(name.to_owned()),
            Err(e) => report.errors.push(format!("{name}: {e}")),
        }
    }
    if let Ok(dir) = std::fs::read_dir(std::env::temp_dir()) {
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            // Scratch folders only of dead owners, whatever the scope.
            if owner_pid(&name).is_some_and(|p| !alive(p)) && e.path().is_dir() {
                let _ = std::fs::remove_dir_all(e.path());
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_pid_from_name() {
        assert_eq!(owner_pid("gv-kk0h1-4242-7"), Some(4242));
        assert_eq!(owner_pid("gv-x-1-0"), Some(1));
        assert_eq!(owner_pid("gv-nopid"), None);
        assert_eq!(owner_pid("other-1-2"), None);
    }
}
