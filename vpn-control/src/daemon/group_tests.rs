//! The overlay loop against a fake overlay, a fake data plane and the fake
//! network configuration: reconciliation on view changes, the first-packet
//! queue, re-injection, failures with backoff, traffic reports, status.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use libp2p::PeerId;
use tokio::sync::{mpsc, watch};

use super::group::GroupRuntime;
use super::server::{Context, OverlayContext};
use crate::config::values::parse_prefix;
use crate::control::OverlayStatus;
use crate::dataplane::{
    Dataplane, DataplaneError, DataplaneStats, DesiredState, PacketSink, PassUpStats, PathKind,
    PeerCounters, RxKey, TxKey,
};
use crate::netdev::fake::FakeNet;
use crate::netdev::{DeviceSpec, NetSpec};
use crate::overlay::session_driver::PeerKeys;
use crate::overlay::{GroupOverlay, GroupView, OverlayError, OverlayStats, PeerView};

fn pid(n: u8) -> PeerId {
    let id = vpn_pki::NodeIdentity::from_seed([n; 32]).unwrap();
    crate::overlay::ids::keypair_of(&id).public().to_peer_id()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// An IPv4 packet to `dst` carrying `tag`.
fn packet(dst: &str, tag: u8) -> Vec<u8> {
    let mut p = vec![0u8; 28];
    p[0] = 0x45;
    p[2..4].copy_from_slice(&28u16.to_be_bytes());
    p[12..16].copy_from_slice(&[10, 77, 0, 1]);
    p[16..20].copy_from_slice(&match ip(dst) {
        IpAddr::V4(a) => a.octets(),
        IpAddr::V6(_) => unreachable!(),
    });
    p[27] = tag;
    p
}

struct FakeOverlay {
    view: Arc<watch::Sender<GroupView>>,
    /// Who connect_ip can reach, and what the view then shows.
    members: HashMap<IpAddr, (PeerId, PeerView)>,
    calls: Arc<Mutex<Vec<IpAddr>>>,
    traffic: Arc<Mutex<Vec<(PeerId, u64, u64)>>>,
    shutdowns: Arc<Mutex<u32>>,
    applied: Arc<Mutex<Option<GroupView>>>,
}

impl GroupOverlay for FakeOverlay {
    fn view(&self) -> watch::Receiver<GroupView> {
        self.view.subscribe()
    }
    fn connect_ip(&self, ip: IpAddr) -> BoxFuture<'static, Result<PeerId, OverlayError>> {
        self.calls.lock().unwrap().push(ip);
        let view = self.view.clone();
        let member = self.members.get(&ip).cloned();
        Box::pin(async move {
            // The handshake takes a moment.
            tokio::time::sleep(Duration::from_millis(50)).await;
            let (peer, pv) = member.ok_or(OverlayError::NotFound(ip))?;
            view.send_modify(|v| {
                v.peers.insert(peer, pv);
            });
            Ok(peer)
        })
    }
    fn stats(&self) -> BoxFuture<'static, Result<OverlayStats, OverlayError>> {
        Box::pin(async {
            Ok(OverlayStats {
                records_forged: 2,
                members: 3,
                ..Default::default()
            })
        })
    }
    fn shutdown(&self) -> BoxFuture<'static, ()> {
        *self.shutdowns.lock().unwrap() += 1;
        Box::pin(async {})
    }
    fn report_traffic(&self, traffic: Vec<(PeerId, u64, u64)>) {
        self.traffic.lock().unwrap().extend(traffic);
    }
    fn applied(&self, view: &GroupView) {
        *self.applied.lock().unwrap() = Some(view.clone());
    }
}

#[derive(Default)]
struct PlaneLog {
    /// Refuse the next apply.
    fail_next: bool,
    applied: Vec<DesiredState>,
    injected: Vec<Vec<u8>>,
    counters: HashMap<u32, PeerCounters>,
}

struct FakePlane(Arc<Mutex<PlaneLog>>);

impl Dataplane for FakePlane {
    fn path(&self) -> PathKind {
        PathKind::Userspace
    }
    fn apply(&mut self, d: &DesiredState) -> Result<(), DataplaneError> {
        let mut log = self.0.lock().unwrap();
        if std::mem::take(&mut log.fail_next) {
            return Err(DataplaneError::Other("map full".into()));
        }
        log.applied.push(d.clone());
        Ok(())
    }
    fn stats(&self) -> Result<DataplaneStats, DataplaneError> {
        let mut s = DataplaneStats::default();
        for (id, c) in &self.0.lock().unwrap().counters {
            s.peers.insert(*id, *c);
        }
        Ok(s)
    }
    fn set_packet_sink(&mut self, _: PacketSink) {}
    fn pass_up_stats(&self) -> PassUpStats {
        PassUpStats {
            passed: 9,
            dropped: 1,
        }
    }
    fn inject(&self, packets: &[Vec<u8>]) -> Result<usize, DataplaneError> {
        self.0
            .lock()
            .unwrap()
            .injected
            .extend(packets.iter().cloned());
        Ok(packets.len())
    }
}

fn member(name: &str, addr: &str, n: u8) -> PeerView {
    PeerView {
        name: name.into(),
        addresses: vec![ip(addr)],
        endpoints: vec![format!("192.168.77.{n}:51830").parse().unwrap()],
        keys: PeerKeys {
            tx: Some(TxKey {
                key: [n; 32],
                remote_index: 100 + u32::from(n),
                initial_counter: 0,
            }),
            rx: vec![RxKey {
                key: [n + 1; 32],
                local_index: 200 + u32::from(n),
            }],
        },
    }
}

struct Harness {
    view: Arc<watch::Sender<GroupView>>,
    calls: Arc<Mutex<Vec<IpAddr>>>,
    traffic: Arc<Mutex<Vec<(PeerId, u64, u64)>>>,
    applied: Arc<Mutex<Option<GroupView>>>,
    plane: Arc<Mutex<PlaneLog>>,
    sink: mpsc::Sender<Vec<u8>>,
    ctx: Arc<Context>,
    net: Arc<FakeNet>,
    runtime: Option<GroupRuntime>,
    b: PeerId,
}

fn harness() -> Harness {
    harness_with(vec![])
}

/// `start`: the interface's addresses at start (a fixed certificate's).
fn harness_with(start: Vec<crate::config::InterfaceAddress>) -> Harness {
    let me = pid(1);
    let b = pid(2);
    let view = Arc::new(watch::channel(GroupView::empty(me)).0);
    let mut members = HashMap::new();
    members.insert(ip("10.77.0.2"), (b, member("b", "10.77.0.2", 2)));
    let calls = Arc::new(Mutex::new(Vec::new()));
    let traffic = Arc::new(Mutex::new(Vec::new()));
    let applied = Arc::new(Mutex::new(None));
    let overlay: Arc<dyn GroupOverlay> = Arc::new(FakeOverlay {
        view: view.clone(),
        members,
        calls: calls.clone(),
        traffic: traffic.clone(),
        shutdowns: Arc::default(),
        applied: applied.clone(),
    });
    let plane = Arc::new(Mutex::new(PlaneLog::default()));
    let ctx = Arc::new(Context {
        interface: "vpn0".into(),
        path: PathKind::Userspace,
        mtu: 1400,
        desired: Mutex::new(DesiredState::default()),
        dataplane: Arc::new(Mutex::new(Box::new(FakePlane(plane.clone())))),
        overlay: Some(OverlayContext {
            overlay: overlay.clone(),
            status: Mutex::new(OverlayStatus {
                peer_id: me.to_string(),
                group: "lab".into(),
                ..Default::default()
            }),
        }),
    });
    let net = Arc::new(FakeNet::new());
    net.add_tun("vpn0");
    let range = parse_prefix("10.77.0.0/24").unwrap();
    let spec = NetSpec {
        name: "vpn0".into(),
        device: DeviceSpec::Tun,
        addresses: start,
        mtu: 1400,
        routes: vec![range],
    };
    let (sink, rx) = mpsc::channel(64);
    let runtime = GroupRuntime::new(
        overlay,
        rx,
        vec![range],
        DesiredState::default(),
        vec![],
        spec,
        ctx.clone(),
    );
    Harness {
        view,
        calls,
        traffic,
        applied,
        plane,
        sink,
        ctx,
        net,
        runtime: Some(runtime),
        b,
    }
}

/// Runs the loop while `script` runs (time is paused: sleeps advance it).
async fn with_loop<F: std::future::Future<Output = ()>>(h: &mut Harness, script: F) {
    let rt = h.runtime.take().unwrap();
    let net = h.net.clone();
    let run = rt.run(&*net);
    tokio::pin!(run);
    tokio::select! {
        why = &mut run => panic!("the loop ended: {why}"),
        () = script => {}
    }
}

#[tokio::test(start_paused = true)]
async fn first_packets_wait_for_the_session_and_are_reinjected() {
    let mut h = harness();
    let applied = h.applied.clone();
    let (view, sink, calls, plane, net, ctx) = (
        h.view.clone(),
        h.sink.clone(),
        h.calls.clone(),
        h.plane.clone(),
        h.net.clone(),
        h.ctx.clone(),
    );
    let b = h.b;
    with_loop(&mut h, async move {
        // The address arrives (allocated): on the interface, and the
        // group route is now the connected one.
        view.send_modify(|v| v.addresses = vec![(ip("10.77.0.1"), 24)]);
        tokio::time::sleep(Duration::from_millis(10)).await;
        let link = net.link_named("vpn0").unwrap();
        assert_eq!(link.addresses, vec!["10.77.0.1/24".parse().unwrap()]);
        assert!(link.routes.is_empty(), "{:?}", link.routes);

        // Three packets to b, one outside the group, one to our own address.
        for t in 1..=3 {
            sink.send(packet("10.77.0.2", t)).await.unwrap();
        }
        sink.send(packet("10.99.0.1", 9)).await.unwrap();
        sink.send(packet("10.77.0.1", 9)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(*calls.lock().unwrap(), vec![ip("10.77.0.2")], "one connect");
        assert!(plane.lock().unwrap().injected.is_empty(), "still waiting");
        tokio::time::sleep(Duration::from_millis(100)).await;
        {
            let p = plane.lock().unwrap();
            let d = p.applied.last().expect("applied");
            let peer = &d.peers[&1];
            assert_eq!(peer.name, "b");
            assert_eq!(peer.allowed, vec![parse_prefix("10.77.0.2/32").unwrap()]);
            assert!(peer.tx.is_some());
            let tags: Vec<u8> = p.injected.iter().map(|p| p[27]).collect();
            assert_eq!(tags, vec![1, 2, 3], "re-injected in order");
        }
        // The overlay learns that b's keys are in the data plane.
        let seen = applied.lock().unwrap().clone().expect("applied reported");
        assert!(seen.peers[&b].keys.tx.is_some());
        // With the session up, a packet passed up late goes straight back.
        sink.send(packet("10.77.0.2", 4)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(plane.lock().unwrap().injected.len(), 4);
        assert_eq!(calls.lock().unwrap().len(), 1);

        // The view does not change: nothing is re-applied.
        let applies = plane.lock().unwrap().applied.len();
        view.send_modify(|_| {});
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(plane.lock().unwrap().applied.len(), applies);

        let st = ctx.status().await.unwrap();
        let o = st.overlay.unwrap();
        assert_eq!(o.addresses, vec!["10.77.0.1/24".to_string()]);
        assert_eq!((o.members, o.sessions), (3, 1));
        assert_eq!(o.pending.delivered, 3);
        assert_eq!(o.pending.connects, 1);
        assert_eq!(o.pending.passed_up, 9);
        assert_eq!(o.counters["records_forged"], 2);
        assert_eq!(st.peers[0].name, "b");
        assert_eq!(st.peers[0].id, 1);
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn unknown_destinations_fail_once_and_back_off() {
    let mut h = harness();
    let (sink, calls, plane, ctx) = (
        h.sink.clone(),
        h.calls.clone(),
        h.plane.clone(),
        h.ctx.clone(),
    );
    with_loop(&mut h, async move {
        sink.send(packet("10.77.0.9", 1)).await.unwrap();
        sink.send(packet("10.77.0.9", 2)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        // Failed: dropped, and in backoff no new connect.
        sink.send(packet("10.77.0.9", 3)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(calls.lock().unwrap().len(), 1);
        // After the backoff the next packet tries again.
        tokio::time::sleep(Duration::from_secs(1)).await;
        sink.send(packet("10.77.0.9", 4)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(calls.lock().unwrap().len(), 2);
        assert!(plane.lock().unwrap().injected.is_empty());
        let o = ctx.status().await.unwrap().overlay.unwrap();
        assert_eq!(o.pending.connect_failures, 2);
        assert_eq!(o.pending.dropped, 4);
        assert_eq!(o.pending.queued, 0);
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn traffic_is_reported_as_deltas() {
    let mut h = harness();
    let (view, traffic, plane) = (h.view.clone(), h.traffic.clone(), h.plane.clone());
    let b = h.b;
    with_loop(&mut h, async move {
        view.send_modify(|v| {
            v.peers.insert(b, member("b", "10.77.0.2", 2));
        });
        let set = |tx: u64, rx: u64| {
            plane.lock().unwrap().counters.insert(
                1,
                PeerCounters {
                    tx_packets: tx,
                    rx_packets: rx,
                    ..Default::default()
                },
            );
        };
        set(10, 4);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        set(15, 4);
        tokio::time::sleep(Duration::from_millis(1000)).await;
        tokio::time::sleep(Duration::from_millis(1000)).await;
        assert_eq!(*traffic.lock().unwrap(), vec![(b, 10, 4), (b, 5, 0)]);
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_failed_apply_is_retried() {
    let mut h = harness();
    let (view, plane, ctx, applied) = (
        h.view.clone(),
        h.plane.clone(),
        h.ctx.clone(),
        h.applied.clone(),
    );
    let b = h.b;
    with_loop(&mut h, async move {
        tokio::time::sleep(Duration::from_millis(10)).await;
        plane.lock().unwrap().fail_next = true;
        *applied.lock().unwrap() = None;
        view.send_modify(|v| {
            v.peers.insert(b, member("b", "10.77.0.2", 2));
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(plane.lock().unwrap().applied.is_empty());
        assert!(ctx.desired.lock().unwrap().peers.is_empty());
        assert!(applied.lock().unwrap().is_none(), "not reported as applied");
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert_eq!(plane.lock().unwrap().applied.len(), 1);
        assert_eq!(ctx.desired.lock().unwrap().peers.len(), 1);
        assert!(applied.lock().unwrap().is_some());
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn fixed_addresses_stay_while_the_view_has_none() {
    let mut h = harness_with(vec!["10.77.0.5/24".parse().unwrap()]);
    let (view, ctx) = (h.view.clone(), h.ctx.clone());
    with_loop(&mut h, async move {
        tokio::time::sleep(Duration::from_millis(10)).await;
        view.send_modify(|v| v.addresses = vec![(ip("10.77.0.5"), 24)]);
        tokio::time::sleep(Duration::from_millis(10)).await;
        view.send_modify(|v| v.addresses.clear());
        tokio::time::sleep(Duration::from_millis(10)).await;
        let o = ctx.status().await.unwrap().overlay.unwrap();
        assert_eq!(o.addresses, vec!["10.77.0.5/24".to_string()]);
    })
    .await;
}
