//! The kernel (eBPF) data plane: loads the embedded object, attaches the
//! programs, reconciles the maps from a [`DesiredState`], reads counters.
//!
//! - `vpn_encrypt` is attached to TC ingress of `vpn0p` (the wire end of the
//!   `vpn0` veth pair), `vpn_decrypt` to TC ingress of the underlay. Both go
//!   through TCX links owned by this process: when it exits, even by
//!   `kill -9`, the kernel detaches them and frees the maps.
//! - The interfaces themselves are created by the daemon's netdev code;
//!   `load` only attaches.

mod maps;
mod object;
mod reader;

use std::net::IpAddr;
use std::os::fd::OwnedFd;
use std::time::Duration;

use aya::programs::{tc::TcAttachType, ProgramError, SchedClassifier, TestRun, TestRunOptions};
use aya::{Ebpf, EbpfLoader};
use vpn_common::maps::{programs, DataplaneConfig, FAMILY_V4, FAMILY_V6};

pub use self::object::object_bytes;
use self::{
    maps::Maps,
    reader::{Injector, NoSessionReader},
};
use super::{
    Dataplane, DataplaneError, DataplaneStats, DesiredState, PacketSink, PassUpStats, PathKind,
};

/// What the kernel data plane needs to know about the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelParams {
    /// The physical (underlay) interface: decrypt attaches here, encrypted
    /// packets leave here.
    pub underlay_ifindex: u32,
    /// `vpn0`: decrypted packets are delivered into its receive path.
    pub vpn_ifindex: u32,
    /// `vpn0p`: encrypt attaches here.
    pub vpn_peer_ifindex: u32,
    /// `vpn0`'s MAC address (decrypted frames are addressed to it).
    pub vpn_mac: [u8; 6],
    /// The underlay source address of outer packets.
    pub local_addr: IpAddr,
    /// The UDP data port.
    pub data_port: u16,
    /// `vpn0`'s MTU: the largest inner packet sent or accepted.
    pub mtu: u32,
}

impl KernelParams {
    fn config(&self) -> DataplaneConfig {
        let mut local_addr = [0u8; 16];
        let local_family = match self.local_addr {
            IpAddr::V4(a) => {
                local_addr[..4].copy_from_slice(&a.octets());
                FAMILY_V4
            }
            IpAddr::V6(a) => {
                local_addr.copy_from_slice(&a.octets());
                FAMILY_V6
            }
        };
        DataplaneConfig {
            underlay_ifindex: self.underlay_ifindex,
            vpn_ifindex: self.vpn_ifindex,
            vpn_peer_ifindex: self.vpn_peer_ifindex,
            data_port: self.data_port,
            local_family,
            _pad0: 0,
            local_addr,
            vpn_mac: self.vpn_mac,
            _pad1: [0; 2],
            mtu: self.mtu,
            _pad2: 0,
        }
    }
}

/// Result of one `BPF_PROG_TEST_RUN`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TestRunOutcome {
    /// The program's return value (a TC action).
    pub verdict: u32,
    /// Bytes of the (possibly rewritten) packet written to `data_out`.
    pub out_len: usize,
    /// Mean time per run as measured by the kernel.
    pub duration: Duration,
}

/// The loaded eBPF data plane.
pub struct KernelDataplane {
    // Field order matters on drop: stop the reader before detaching.
    reader: Option<NoSessionReader>,
    injector: Option<Injector>,
    maps: Maps,
    ebpf: Ebpf,
    stats_fd: Option<OwnedFd>,
}

fn load_err(what: &str) -> impl Fn(ProgramError) -> DataplaneError + '_ {
    move |e| {
        let detail = match &e {
            ProgramError::LoadError {
                io_error,
                verifier_log,
            } => {
                let log = verifier_log.to_string();
                // The full log can be megabytes; keep it on request.
                if let Some(path) = std::env::var_os("VPN_BPF_VERIFIER_LOG") {
                    let _ = std::fs::write(path, &log);
                }
                let tail: Vec<&str> = log.lines().rev().take(30).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                format!("{io_error}; verifier log (tail):\n{}", tail.join("\n"))
            }
            other => other.to_string(),
        };
        DataplaneError::Load(format!("{what}: {detail}"))
    }
}

fn ifname(ifindex: u32) -> Result<String, DataplaneError> {
    let mut buf = [0u8; libc::IF_NAMESIZE];
    // SAFETY: `buf` has IF_NAMESIZE bytes as if_indextoname requires.
    let p = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr().cast()) };
    if p.is_null() {
        return Err(DataplaneError::Other(format!(
            "no interface with index {ifindex}: {}",
            std::io::Error::last_os_error()
        )));
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    Ok(String::from_utf8_lossy(&buf[..end]).into_owned())
}

impl KernelDataplane {
    /// Loads the programs, fills `CONFIG`, attaches encrypt to `vpn0p` and
    /// decrypt to the underlay, and starts the no-session reader on `vpn0p`.
    pub fn load(params: &KernelParams) -> Result<Self, DataplaneError> {
        let mut dp = Self::load_unattached(params)?;
        let vpn0p = ifname(params.vpn_peer_ifindex)?;
        let underlay = ifname(params.underlay_ifindex)?;
        dp.attach(programs::DECRYPT, &underlay)?;
        dp.attach(programs::ENCRYPT, &vpn0p)?;
        dp.reader = Some(NoSessionReader::start(params.vpn_peer_ifindex)?);
        dp.injector = Some(Injector::new(params.vpn_ifindex, params.vpn_mac)?);
        tracing::info!(%vpn0p, %underlay, "kernel data plane attached");
        Ok(dp)
    }

    /// Loads the programs and fills `CONFIG` without attaching anything:
    /// for `BPF_PROG_TEST_RUN` tests and benchmarks.
    pub fn load_unattached(params: &KernelParams) -> Result<Self, DataplaneError> {
        let bytes = object_bytes();
        if bytes.is_empty() {
            return Err(DataplaneError::Load(
                "this build has no eBPF object (built with AYA_BUILD_SKIP)".into(),
            ));
        }
        let mut ebpf = EbpfLoader::new()
            .load(bytes)
            .map_err(|e| DataplaneError::Load(format!("parsing the eBPF object: {e}")))?;
        for name in [programs::ENCRYPT, programs::DECRYPT] {
            classifier_mut(&mut ebpf, name)?
                .load()
                .map_err(load_err(name))?;
        }
        let mut maps = Maps::take(&mut ebpf)?;
        maps.set_config(&params.config())?;
        Ok(Self {
            reader: None,
            injector: None,
            maps,
            ebpf,
            stats_fd: None,
        })
    }

    fn attach(&mut self, program: &str, ifname: &str) -> Result<(), DataplaneError> {
        classifier_mut(&mut self.ebpf, program)?
            .attach(ifname, TcAttachType::Ingress)
            .map_err(|e| DataplaneError::Load(format!("attaching {program} to {ifname}: {e}")))?;
        Ok(())
    }

    /// Keeps the kernel's per-program run-time statistics on for as long as
    /// this data plane lives (like `sysctl kernel.bpf_stats_enabled=1`, but
    /// undone automatically).
    pub fn enable_program_stats(&mut self) -> Result<(), DataplaneError> {
        if self.stats_fd.is_none() {
            let fd = aya::sys::enable_stats(aya::sys::Stats::RunTime)
                .map_err(|e| DataplaneError::Other(format!("enabling BPF run-time stats: {e}")))?;
            self.stats_fd = Some(fd);
        }
        Ok(())
    }

    /// Per program: name, total run time in ns and run count, from the
    /// kernel's statistics (they only move while stats are enabled, by
    /// [`Self::enable_program_stats`] or the sysctl).
    pub fn program_stats(&self) -> Vec<(String, u64, u64)> {
        [programs::ENCRYPT, programs::DECRYPT]
            .into_iter()
            .filter_map(|name| {
                let info = self.ebpf.program(name)?.info().ok()?;
                Some((
                    name.to_string(),
                    info.run_time().as_nanos() as u64,
                    info.run_count(),
                ))
            })
            .collect()
    }

    /// Per program: name and the number of instructions the verifier
    /// processed to accept it (the kernel's limit is 1,000,000; the cipher's
    /// bounded loops use most of it, so this is worth watching).
    pub fn verified_instructions(&self) -> Vec<(String, u32)> {
        [programs::ENCRYPT, programs::DECRYPT]
            .into_iter()
            .filter_map(|name| {
                let info = self.ebpf.program(name)?.info().ok()?;
                Some((name.to_string(), info.verified_instruction_count()?))
            })
            .collect()
    }

    /// Packets without a session read on `vpn0p` so far.
    pub fn no_session_packets(&self) -> u64 {
        self.reader.as_ref().map_or(0, NoSessionReader::seen)
    }

    /// Runs `program` once per `repeat` on `data_in` with
    /// `BPF_PROG_TEST_RUN`; the rewritten packet lands in `data_out`.
    pub fn test_run(
        &self,
        program: &str,
        data_in: &[u8],
        data_out: &mut [u8],
        repeat: u32,
    ) -> Result<TestRunOutcome, DataplaneError> {
        let p: &SchedClassifier = self
            .ebpf
            .program(program)
            .ok_or_else(|| DataplaneError::Load(format!("no program {program}")))?
            .try_into()
            .map_err(|e: ProgramError| DataplaneError::Other(e.to_string()))?;
        let r = p
            .test_run(TestRunOptions {
                data_in: Some(data_in),
                data_out: Some(data_out),
                repeat,
                ..TestRunOptions::default()
            })
            .map_err(|e| DataplaneError::Other(format!("BPF_PROG_TEST_RUN of {program}: {e}")))?;
        Ok(TestRunOutcome {
            verdict: r.return_value,
            out_len: r.data_size_out as usize,
            duration: r.duration,
        })
    }
}

/// Names of the programs attached (through TCX) to TC ingress of the
/// interface `ifname` in the caller's network namespace: for `status`,
/// tests and clean-up checks.
pub fn attached_ingress_programs(ifname: &str) -> Result<Vec<String>, DataplaneError> {
    let (_, infos) = SchedClassifier::query_tcx(ifname, TcAttachType::Ingress)
        .map_err(|e| DataplaneError::Other(format!("querying TC ingress of {ifname}: {e}")))?;
    Ok(infos
        .iter()
        .map(|i| i.name_as_str().unwrap_or("?").to_string())
        .collect())
}

fn classifier_mut<'a>(
    ebpf: &'a mut Ebpf,
    name: &str,
) -> Result<&'a mut SchedClassifier, DataplaneError> {
    ebpf.program_mut(name)
        .ok_or_else(|| DataplaneError::Load(format!("the eBPF object has no program {name}")))?
        .try_into()
        .map_err(|e: ProgramError| DataplaneError::Load(format!("{name}: {e}")))
}

impl Dataplane for KernelDataplane {
    fn path(&self) -> PathKind {
        PathKind::Kernel
    }

    fn apply(&mut self, desired: &DesiredState) -> Result<(), DataplaneError> {
        self.maps.apply(desired)
    }

    fn stats(&self) -> Result<DataplaneStats, DataplaneError> {
        self.maps.stats()
    }

    fn set_packet_sink(&mut self, sink: PacketSink) {
        if let Some(r) = &self.reader {
            r.pass_up().set(sink);
        }
    }

    fn pass_up_stats(&self) -> PassUpStats {
        self.reader
            .as_ref()
            .map_or_else(PassUpStats::default, |r| r.pass_up().stats())
    }

    fn inject(&self, packets: &[Vec<u8>]) -> Result<usize, DataplaneError> {
        let Some(inj) = &self.injector else {
            return Err(DataplaneError::Other(
                "the data plane is not attached (no vpn0 to inject into)".into(),
            ));
        };
        let mut sent = 0;
        for p in packets {
            match inj.send(p) {
                Ok(()) => sent += 1,
                Err(e) => tracing::debug!("re-injecting a queued packet: {e}"),
            }
        }
        Ok(sent)
    }
}
