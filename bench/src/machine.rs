//! A description of the machine and kernel the numbers were measured on.

use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    /// CPU model as `/proc/cpuinfo` names it.
    pub cpu: String,
    /// Online logical CPUs.
    pub cores: usize,
    /// Total memory in GiB.
    pub memory_gib: f64,
    /// `uname -r` plus the build string (`uname -v`).
    pub kernel: String,
    /// Whether the kernel reports running under a hypervisor.
    pub virtualized: bool,
}

impl Machine {
    pub fn probe() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let field = |text: &str, key: &str| -> Option<String> {
            text.lines()
                .find(|l| l.split(':').next().map(str::trim) == Some(key))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        };
        let cpu = field(&cpuinfo, "model name").unwrap_or_else(|| "unknown CPU".into());
        let virtualized =
            field(&cpuinfo, "flags").is_some_and(|f| f.split(' ').any(|x| x == "hypervisor"));
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let mem_kib: f64 = field(&meminfo, "MemTotal")
            .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse().ok()))
            .unwrap_or(0.0);
        let release = read_trim("/proc/sys/kernel/osrelease");
        let version = read_trim("/proc/sys/kernel/version");
        Self {
            cpu,
            cores,
            memory_gib: (mem_kib / (1024.0 * 1024.0) * 10.0).round() / 10.0,
            kernel: format!("Linux {release} {version}").trim().to_owned(),
            virtualized,
        }
    }

    /// One line: `CPU, N cores, M GiB RAM (virtual machine)`.
    pub fn summary(&self) -> String {
        format!(
            "{}, {} logical CPU{}, {:.1} GiB RAM{}",
            self.cpu,
            self.cores,
            if self.cores == 1 { "" } else { "s" },
            self.memory_gib,
            if self.virtualized {
                " (virtual machine)"
            } else {
                ""
            }
        )
    }
}

fn read_trim(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}
