//! Choosing and starting the data plane, with the OS configuration each
//! one needs: the kernel path on a veth pair, the userspace twin on a TUN
//! device, and `auto` falling back from the first to the second.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;

use super::underlay::Underlay;
use super::DaemonError;
use crate::config::{Config, DataplaneMode, InterfaceAddress};
use crate::dataplane::kernel::{KernelDataplane, KernelParams};
use crate::dataplane::userspace::UserspaceDataplane;
use crate::dataplane::{Dataplane, DataplaneError, DesiredState, PathKind};
use crate::netdev::{self, tun, DeviceSpec, NetConfig, NetSpec};

/// A running data plane and what keeps it alive.
pub struct Plane {
    pub dataplane: Box<dyn Dataplane>,
    pub path: PathKind,
    /// The interface as configured (the overlay loop changes its addresses).
    pub spec: NetSpec,
    /// The data port's socket: the twin's, or the kernel path's reservation.
    pub _udp: UdpSocket,
}

/// Socket buffer size for the data socket (forced, we run as root).
const SOCKET_BUFFER: libc::c_int = 4 << 20;

fn bind_data_port(local: Option<IpAddr>, port: u16, exact: bool) -> Result<UdpSocket, DaemonError> {
    let ip = match (local, exact) {
        (Some(ip), true) => ip,
        (Some(IpAddr::V6(_)), false) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    };
    let addr = SocketAddr::new(ip, port);
    let s = UdpSocket::bind(addr)
        .map_err(|e| DaemonError::Io(format!("binding the data port {addr}: {e}")))?;
    for opt in [libc::SO_RCVBUFFORCE, libc::SO_SNDBUFFORCE] {
        // SAFETY: setsockopt with a valid fd and a c_int option value.
        unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                &SOCKET_BUFFER as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
    Ok(s)
}

/// The interface's addresses and routes at start.
#[derive(Clone, Debug)]
pub struct Layout {
    pub addresses: Vec<InterfaceAddress>,
    pub routes: Vec<crate::dataplane::Prefix>,
}

fn spec(cfg: &Config, device: DeviceSpec, mtu: u32, layout: &Layout) -> NetSpec {
    NetSpec {
        name: cfg.interface.name.clone(),
        device,
        addresses: layout.addresses.clone(),
        mtu,
        routes: layout.routes.clone(),
    }
}

async fn start_kernel<N: NetConfig>(
    n: &N,
    cfg: &Config,
    underlay: Option<&Underlay>,
    mtu: u32,
    layout: &Layout,
    desired: &DesiredState,
) -> Result<Plane, DaemonError> {
    let u = underlay.ok_or_else(|| {
        DaemonError::Kernel("no underlay interface (no peers and no interface.underlay)".into())
    })?;
    let net = spec(
        cfg,
        DeviceSpec::Veth {
            peer: cfg.interface.peer_name(),
        },
        mtu,
        layout,
    );
    let handles = netdev::ensure(n, &net).await?;
    let udp = bind_data_port(Some(u.local), cfg.interface.listen_port, true)?;
    let params = KernelParams {
        underlay_ifindex: u.ifindex,
        vpn_ifindex: handles.ifindex,
        vpn_peer_ifindex: handles
            .peer_ifindex
            .ok_or_else(|| DaemonError::Kernel("veth peer has no index".into()))?,
        vpn_mac: handles
            .mac
            .ok_or_else(|| DaemonError::Kernel("veth has no MAC address".into()))?,
        local_addr: u.local,
        data_port: cfg.interface.listen_port,
        mtu,
    };
    tracing::info!(
        "loading the eBPF data plane (underlay {}, {} -> {})",
        u.name,
        cfg.interface.name,
        cfg.interface.peer_name()
    );
    let mut dp = KernelDataplane::load(&params).map_err(|e| DaemonError::Kernel(e.to_string()))?;
    dp.apply(desired)
        .map_err(|e| DaemonError::Kernel(e.to_string()))?;
    Ok(Plane {
        dataplane: Box::new(dp),
        path: PathKind::Kernel,
        spec: net,
        _udp: udp,
    })
}

async fn start_userspace<N: NetConfig>(
    n: &N,
    cfg: &Config,
    underlay: Option<&Underlay>,
    mtu: u32,
    layout: &Layout,
    desired: &DesiredState,
) -> Result<Plane, DaemonError> {
    let (fd, vnet) =
        tun::open(&cfg.interface.name, true).map_err(|e| DaemonError::Io(e.to_string()))?;
    let net = spec(cfg, DeviceSpec::Tun, mtu, layout);
    netdev::ensure(n, &net).await?;
    let udp = bind_data_port(underlay.map(|u| u.local), cfg.interface.listen_port, false)?;
    let sock = udp
        .try_clone()
        .map_err(|e| DaemonError::Io(e.to_string()))?;
    let mut dp = UserspaceDataplane::start(fd, sock, vnet).map_err(DaemonError::Dataplane)?;
    dp.apply(desired).map_err(DaemonError::Dataplane)?;
    Ok(Plane {
        dataplane: Box::new(dp),
        path: PathKind::Userspace,
        spec: net,
        _udp: udp,
    })
}

/// Starts the configured data plane. In `auto` mode a kernel failure is
/// logged in one line and the twin takes over (after the veth pair is
/// removed, since the twin's TUN device takes the same name).
pub async fn start<N: NetConfig>(
    n: &N,
    cfg: &Config,
    underlay: Option<&Underlay>,
    mtu: u32,
    layout: &Layout,
    desired: &DesiredState,
) -> Result<Plane, DaemonError> {
    let names = [cfg.interface.name.as_str(), &cfg.interface.peer_name()];
    match cfg.interface.dataplane {
        DataplaneMode::Userspace => start_userspace(n, cfg, underlay, mtu, layout, desired).await,
        DataplaneMode::Kernel => match start_kernel(n, cfg, underlay, mtu, layout, desired).await {
            Ok(p) => Ok(p),
            Err(e) => {
                let _ = netdev::remove(n, &names).await;
                Err(e)
            }
        },
        DataplaneMode::Auto => match start_kernel(n, cfg, underlay, mtu, layout, desired).await {
            Ok(p) => Ok(p),
            Err(e) => {
                tracing::warn!("falling back to the userspace twin: {e}");
                netdev::remove(n, &names).await?;
                start_userspace(n, cfg, underlay, mtu, layout, desired).await
            }
        },
    }
}

impl From<DataplaneError> for DaemonError {
    fn from(e: DataplaneError) -> Self {
        DaemonError::Dataplane(e)
    }
}
