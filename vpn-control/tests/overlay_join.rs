//! In-process overlays on libp2p's memory transport: members join through
//! public bootstrap nodes that are not group members, find each other
//! through provider records, join the private DHT and resolve each other's
//! address claims; intruders (foreign CA, stolen certificate) are kept out.

use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt;
use libp2p::identity::Keypair;
use libp2p::multiaddr::Protocol;
use libp2p::request_response;
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, StreamProtocol};
use vpn_control::overlay::behaviour::{
    build_swarm, MemberBehaviour, MemberBehaviourEvent, SessionRequest, SessionResponse,
};
use vpn_control::overlay::gate::GateEvent;
use vpn_control::overlay::membership::{MembershipRequest, MembershipResponse};
use vpn_control::overlay::{
    self, ids, Client, OverlayConfig, OverlayError, OverlayEvent, PublicNode, Timers, TransportKind,
};
use vpn_pki::{AddressAssignment, CaParams, CertProfile, GroupCa, NodeIdentity, Role};

const DAY: Duration = Duration::from_secs(86_400);
const GROUP: &str = "lab";

fn ca() -> GroupCa {
    GroupCa::init(
        &CaParams {
            group: GROUP.into(),
            ranges: vec!["10.77.0.0/16".parse().unwrap()],
            validity: 365 * DAY,
        },
        SystemTime::now(),
    )
    .unwrap()
}

fn cert_for(ca: &GroupCa, id: &NodeIdentity, addr: IpAddr) -> Vec<u8> {
    ca.issue(
        &id.public_key(),
        &CertProfile {
            name: format!("n{}", addr.to_string().replace('.', "-")),
            address: AddressAssignment::Fixed(vec![addr]),
            roles: vec![Role::Member],
            validity: 30 * DAY,
        },
        SystemTime::now(),
    )
    .unwrap()
    .der()
    .to_vec()
}

fn mem(n: u64) -> Multiaddr {
    Multiaddr::empty().with(Protocol::Memory(n))
}

/// A per-test base for memory ports (the memory transport is process-wide).
fn port_base(test: u64) -> u64 {
    (u64::from(std::process::id()) << 24) + (test << 16)
}

fn timers() -> Timers {
    Timers {
        discovery: Duration::from_millis(500),
        discovery_max: Duration::from_secs(4),
        record_ttl: Duration::from_secs(600),
        cache_ttl: Duration::from_secs(60),
        recheck: Duration::from_secs(5),
        refusal_backoff: Duration::from_secs(60),
    }
}

fn addr_of(i: usize) -> IpAddr {
    IpAddr::from([10, 77, (i / 200) as u8, (i % 200 + 10) as u8])
}

struct Net {
    bootstrap: Vec<Multiaddr>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Net {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn public_nodes(base: u64) -> Net {
    let proto = StreamProtocol::new(ids::DEFAULT_PUBLIC_KAD_PROTOCOL);
    let mut nodes: Vec<PublicNode> = (0..3)
        .map(|i| {
            PublicNode::new(
                Keypair::generate_ed25519(),
                TransportKind::Memory,
                mem(base + i),
                proto.clone(),
            )
            .unwrap()
        })
        .collect();
    let ids: Vec<PeerId> = nodes.iter().map(|n| n.peer_id()).collect();
    for (i, n) in nodes.iter_mut().enumerate() {
        for (j, id) in ids.iter().enumerate() {
            if i != j {
                n.add_peer(*id, mem(base + j as u64));
            }
        }
    }
    let bootstrap = ids
        .iter()
        .enumerate()
        .map(|(i, id)| mem(base + i as u64).with(Protocol::P2p(*id)))
        .collect();
    let tasks = nodes.into_iter().map(|n| tokio::spawn(n.run())).collect();
    Net { bootstrap, tasks }
}

fn start_member_with_events(
    net: &mut Net,
    ca: &GroupCa,
    ca_cert: &GroupCa,
    addr: IpAddr,
    port: u64,
) -> (Client, tokio::sync::mpsc::Receiver<OverlayEvent>) {
    start_member_full(net, ca, ca_cert, addr, port, None)
}

fn start_member_full(
    net: &mut Net,
    ca: &GroupCa,
    ca_cert: &GroupCa,
    addr: IpAddr,
    port: u64,
    neighbours: Option<usize>,
) -> (Client, tokio::sync::mpsc::Receiver<OverlayEvent>) {
    let id = NodeIdentity::generate();
    let cert = cert_for(ca, &id, addr);
    let mut cfg = OverlayConfig::new(
        GROUP.into(),
        ca_cert.certificate().clone(),
        cert,
        ids::keypair_of(&id),
    );
    cfg.transport = TransportKind::Memory;
    cfg.listen = vec![mem(port)];
    cfg.bootstrap = net.bootstrap.clone();
    cfg.timers = timers();
    if let Some(k) = neighbours {
        cfg.neighbours = k;
    }
    // Every third member only uses the public DHT (client mode, as behind
    // NAT): it must find and be found all the same.
    cfg.public_dht_server = !port.is_multiple_of(3);
    let (client, ev_loop, events) = overlay::new(cfg).unwrap();
    net.tasks.push(tokio::spawn(ev_loop.run()));
    (client, events)
}

fn start_member(net: &mut Net, ca: &GroupCa, ca_cert: &GroupCa, addr: IpAddr, port: u64) -> Client {
    start_member_with_events(net, ca, ca_cert, addr, port).0
}

async fn wait_until<F, Fut>(deadline: Instant, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    loop {
        if f().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `n` members join; with `neighbours` set below `n - 1` the overlay is
/// sparse (each member chooses that many neighbours from the providers) and
/// formation is judged by resolution alone.
async fn run_group(n: usize, test: u64, budget: Duration, neighbours: Option<usize>) {
    let t0 = Instant::now();
    let deadline = t0 + budget;
    let base = port_base(test);
    let mut net = public_nodes(base);
    let ca = ca();
    let members: Vec<Client> = (0..n)
        .map(|i| {
            let port = base + 100 + i as u64;
            start_member_full(&mut net, &ca, &ca, addr_of(i), port, neighbours).0
        })
        .collect();
    // Foreign CA, same group name, an address inside the range.
    let foreign = ca_like();
    let intruder = start_member(&mut net, &foreign, &foreign, addr_of(n), base + 99);
    let intruder_id = intruder.peer_id();

    let full_mesh = neighbours.is_none_or(|k| k + 1 >= n);
    if full_mesh {
        for (i, m) in members.iter().enumerate() {
            wait_until(
                deadline,
                &format!("member {i} to verify all others"),
                || async { m.members().await.unwrap().len() >= n - 1 },
            )
            .await;
        }
        eprintln!("{n} members: all verified after {:?}", t0.elapsed());
    } else {
        let k = neighbours.unwrap_or_default() as u64;
        for (i, m) in members.iter().enumerate() {
            wait_until(
                deadline,
                &format!("member {i} to have its neighbours"),
                || async { m.stats().await.unwrap().neighbours >= k },
            )
            .await;
        }
        let mut verified = Vec::new();
        for m in &members {
            let st = m.stats().await.unwrap();
            verified.push((st.members, st.connected_members, st.neighbours));
        }
        eprintln!(
            "{n} members, {k} neighbours each: joined after {:?}; (verified, connected, neighbours) per member: {verified:?}",
            t0.elapsed()
        );
        // Not a full mesh: members verify their neighbours and whom their
        // private-DHT lookups meet, not everyone they see.
        let least = verified.iter().map(|v| v.0).min().unwrap_or_default();
        assert!(
            least + 1 < n as u64,
            "every member verified every other: {verified:?}"
        );
    }

    for (i, m) in members.iter().enumerate() {
        for (j, other) in members.iter().enumerate() {
            if i == j {
                continue;
            }
            let want = other.peer_id();
            wait_until(
                deadline,
                &format!("member {i} to resolve {}", addr_of(j)),
                || async { matches!(m.resolve(addr_of(j)).await, Ok(r) if r.peer == want) },
            )
            .await;
        }
    }
    let resolved = t0.elapsed();
    eprintln!(
        "{n} members: all {} resolutions after {resolved:?}",
        n * (n - 1)
    );

    // The intruder got nothing private.
    let mut refused = 0;
    for m in &members {
        assert!(!m.members().await.unwrap().contains(&intruder_id));
        assert!(!m
            .private_routing_table()
            .await
            .unwrap()
            .contains(&intruder_id));
        assert!(
            m.resolve(addr_of(n)).await.is_err(),
            "intruder's claim resolved"
        );
        refused += m.stats().await.unwrap().membership_refused;
    }
    assert!(refused > 0, "no member ever saw (and refused) the intruder");
    assert!(intruder.members().await.unwrap().is_empty());
    assert!(intruder.private_routing_table().await.unwrap().is_empty());
    assert!(intruder.resolve(addr_of(0)).await.is_err());
    // Members' routing tables hold members only.
    let ids: Vec<PeerId> = members.iter().map(|m| m.peer_id()).collect();
    for m in &members {
        for p in m.private_routing_table().await.unwrap() {
            assert!(
                ids.contains(&p),
                "non-member {p} in a private routing table"
            );
        }
    }
}

fn ca_like() -> GroupCa {
    ca()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_members_join_and_resolve_each_other() {
    run_group(10, 1, Duration::from_secs(40), None).await;
}

/// A sparse overlay: 30 members, each choosing only 3 neighbours from the
/// provider records; the private DHT's lookups (which verify the members
/// they meet, their requests held until then) still resolve every address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_members_with_three_neighbours_resolve_each_other() {
    run_group(30, 7, Duration::from_secs(240), Some(3)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
// CPU-bound: ~90 s in the dev profile on an idle 2-core VM (the crypto and
// X.509 crates are optimised there, see the root Cargo.toml); nextest runs
// it alone (.config/nextest.toml). The budget is generous on purpose: this
// checks that every member ends up resolving every other, not how fast.
async fn fifty_members_join_and_resolve_each_other() {
    run_group(50, 2, Duration::from_secs(300), None).await;
}

/// A node that presents a member's certificate with its own key (PeerId
/// mismatch): refused, its session requests refused, the private Kademlia
/// protocol refused at negotiation, and it never enters the routing table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stolen_certificate_is_kept_out() {
    let base = port_base(3);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut net = public_nodes(base);
    let ca = ca();
    let a = start_member(&mut net, &ca, &ca, addr_of(0), base + 100);
    let b = start_member(&mut net, &ca, &ca, addr_of(1), base + 101);
    wait_until(deadline, "a and b to verify each other", || async {
        a.members().await.unwrap().len() == 1 && b.members().await.unwrap().len() == 1
    })
    .await;

    // The thief holds a valid certificate issued to someone else.
    let victim = NodeIdentity::generate();
    let stolen = cert_for(&ca, &victim, addr_of(7));
    let kp = Keypair::generate_ed25519();
    let behaviour = MemberBehaviour::new(
        &kp,
        GROUP,
        StreamProtocol::new(ids::DEFAULT_PUBLIC_KAD_PROTOCOL),
        Duration::from_secs(60),
    )
    .unwrap();
    let mut thief = build_swarm(kp.clone(), TransportKind::Memory, move |_| behaviour).unwrap();
    thief.listen_on(mem(base + 50)).unwrap();
    let a_addr = mem(base + 100);
    thief
        .dial(a_addr.clone().with(Protocol::P2p(a.peer_id())))
        .unwrap();
    thief
        .behaviour_mut()
        .private_kad
        .inner()
        .add_address(&a.peer_id(), a_addr.clone());
    thief.behaviour_mut().private_kad.admit(a.peer_id());

    let mut membership_refused = None;
    let mut session_refused = None;
    let mut kad_failed = false;
    let mut sent = false;
    while Instant::now() < deadline
        && (membership_refused.is_none() || session_refused.is_none() || !kad_failed)
    {
        let ev = tokio::time::timeout(Duration::from_millis(500), thief.select_next_some()).await;
        let Ok(ev) = ev else { continue };
        match ev {
            SwarmEvent::ConnectionEstablished { peer_id, .. }
                if peer_id == a.peer_id() && !sent =>
            {
                sent = true;
                let bh = thief.behaviour_mut();
                bh.membership.send_request(
                    &peer_id,
                    MembershipRequest {
                        cert: stolen.clone(),
                        data: Default::default(),
                        crl: None,
                        neighbour: false,
                    },
                );
                bh.session
                    .send_request(&peer_id, SessionRequest(b"init".to_vec()));
                // The thief's own gate would hold its private requests until
                // `a` accepted its certificate (never): let them go, so that
                // `a`'s refusal at negotiation is what is tested.
                bh.private_kad.release(peer_id);
                bh.private_kad
                    .inner()
                    .get_record(libp2p::kad::RecordKey::new(&ids::address_key(addr_of(1))));
            }
            SwarmEvent::Behaviour(MemberBehaviourEvent::Membership(
                request_response::Event::Message {
                    message: request_response::Message::Response { response, .. },
                    ..
                },
            )) => membership_refused = Some(response),
            SwarmEvent::Behaviour(MemberBehaviourEvent::Session(
                request_response::Event::Message {
                    message: request_response::Message::Response { response, .. },
                    ..
                },
            )) => session_refused = Some(response),
            SwarmEvent::Behaviour(MemberBehaviourEvent::PrivateKad(GateEvent::Inner(
                libp2p::kad::Event::OutboundQueryProgressed {
                    result: libp2p::kad::QueryResult::GetRecord(res),
                    ..
                },
            ))) => {
                assert!(
                    !matches!(res, Ok(libp2p::kad::GetRecordOk::FoundRecord(_))),
                    "the private DHT served a record to a non-member"
                );
                kad_failed = true;
            }
            _ => {}
        }
    }
    match membership_refused {
        Some(MembershipResponse::Refused { reason }) => {
            assert!(
                reason.to_lowercase().contains("peer"),
                "unexpected reason {reason}"
            )
        }
        other => panic!("membership not refused: {other:?}"),
    }
    assert!(
        matches!(session_refused, Some(SessionResponse::Refused(_))),
        "session not refused: {session_refused:?}"
    );
    assert!(kad_failed, "private get_record did not finish");
    let thief_id = kp.public().to_peer_id();
    assert!(!a.members().await.unwrap().contains(&thief_id));
    assert!(!a.private_routing_table().await.unwrap().contains(&thief_id));
    let st = a.stats().await.unwrap();
    assert!(
        st.membership_refused >= 1 && st.private_requests_refused >= 1,
        "{st:?}"
    );
    // The members still resolve each other.
    wait_until(deadline, "a to resolve b", || async {
        matches!(a.resolve(addr_of(1)).await, Ok(r) if r.peer == b.peer_id())
    })
    .await;
}

/// The session protocol carries a request to a verified member and its
/// owner's answer back (the shape of the session core's
/// `handle_request`/`handle_response`); non-members are refused locally.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_requests_between_members() {
    let base = port_base(4);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut net = public_nodes(base);
    let ca = ca();
    let (a, _ea) = start_member_with_events(&mut net, &ca, &ca, addr_of(0), base + 100);
    let (b, mut eb) = start_member_with_events(&mut net, &ca, &ca, addr_of(1), base + 101);
    wait_until(deadline, "a and b to verify each other", || async {
        a.members().await.unwrap().len() == 1 && b.members().await.unwrap().len() == 1
    })
    .await;
    let a_id = a.peer_id();
    net.tasks.push(tokio::spawn(async move {
        while let Some(ev) = eb.recv().await {
            if let OverlayEvent::SessionRequest { peer, msg, reply } = ev {
                assert_eq!(peer, a_id);
                let _ = reply.send([b"re:".as_slice(), &msg].concat());
            }
        }
    }));
    for i in 0..5u8 {
        let got = a.send_session(b.peer_id(), vec![i; 3]).await.unwrap();
        assert_eq!(got, [b"re:".as_slice(), &[i; 3]].concat());
    }
    let stranger = Keypair::generate_ed25519().public().to_peer_id();
    assert!(matches!(
        a.send_session(stranger, b"x".to_vec()).await,
        Err(OverlayError::NotMember(p)) if p == stranger
    ));
}

/// A newer CRL that revokes a member expels it at once: it leaves the member
/// table and the private routing table, its resolution is no longer served,
/// and the expulsion is reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_member_is_expelled() {
    let base = port_base(5);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut net = public_nodes(base);
    let ca = ca();
    let (a, mut ea) = start_member_with_events(&mut net, &ca, &ca, addr_of(0), base + 100);
    let b = start_member(&mut net, &ca, &ca, addr_of(1), base + 101);
    wait_until(deadline, "a to resolve b", || async {
        matches!(a.resolve(addr_of(1)).await, Ok(r) if r.peer == b.peer_id())
    })
    .await;
    let serial = vpn_pki::MemberCert::from_der(&a.resolve(addr_of(1)).await.unwrap().cert)
        .unwrap()
        .info()
        .serial
        .clone();
    let now = SystemTime::now();
    let crl = ca
        .sign_crl(
            &[vpn_pki::RevokedEntry {
                serial,
                revoked_at: now,
                reason: vpn_pki::RevocationReason::KeyCompromise,
            }],
            1,
            now,
            DAY,
        )
        .unwrap();
    a.set_crl(crl).await.unwrap();
    assert!(!a.members().await.unwrap().contains(&b.peer_id()));
    assert!(!a
        .private_routing_table()
        .await
        .unwrap()
        .contains(&b.peer_id()));
    assert!(
        a.resolve(addr_of(1)).await.is_err(),
        "revoked member's claim still resolves"
    );
    assert_eq!(a.stats().await.unwrap().members_expelled, 1);
    let mut expelled = false;
    while let Ok(ev) = ea.try_recv() {
        if let OverlayEvent::MemberExpelled(p, reason) = ev {
            assert_eq!(p, b.peer_id());
            assert!(reason.contains("revoked"), "{reason}");
            expelled = true;
        }
    }
    assert!(expelled, "no MemberExpelled event");
}

/// Two overlay nodes negotiate data-plane keys with the session core over
/// the `session` protocol: each side's sending key is the other's receiving
/// key under the index the other chose.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_members_negotiate_session_keys() {
    use vpn_control::overlay::session_driver;
    let base = port_base(6);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut net = public_nodes(base);
    let ca = ca();
    let mut drivers = Vec::new();
    for i in 0..2 {
        let id = NodeIdentity::generate();
        let cert = cert_for(&ca, &id, addr_of(i));
        let mut cfg = OverlayConfig::new(
            GROUP.into(),
            ca.certificate().clone(),
            cert.clone(),
            ids::keypair_of(&id),
        );
        cfg.transport = TransportKind::Memory;
        cfg.listen = vec![mem(base + 100 + i as u64)];
        cfg.bootstrap = net.bootstrap.clone();
        cfg.timers = timers();
        let (client, ev_loop, events) = overlay::new(cfg).unwrap();
        net.tasks.push(tokio::spawn(ev_loop.run()));
        let (driver, keys, task) = session_driver::start(
            client.clone(),
            events,
            &cert,
            vpn_core::session::Config::default(),
            vpn_core::session::SystemEntropy::new(),
        )
        .unwrap();
        net.tasks.push(tokio::spawn(task));
        drivers.push((client, driver, keys));
    }
    let (a, a_drv, a_keys) = &drivers[0];
    let (b, _, b_keys) = &drivers[1];
    wait_until(deadline, "a and b to verify each other", || async {
        a.members().await.unwrap().len() == 1 && b.members().await.unwrap().len() == 1
    })
    .await;
    a_drv.connect(b.peer_id()).await.unwrap();
    wait_until(deadline, "both sides to hold a sending key", || async {
        let ka = a_keys
            .borrow()
            .get(&b.peer_id())
            .and_then(|k| k.tx)
            .is_some();
        let kb = b_keys
            .borrow()
            .get(&a.peer_id())
            .and_then(|k| k.tx)
            .is_some();
        ka && kb
    })
    .await;
    let ka = a_keys.borrow().get(&b.peer_id()).cloned().unwrap();
    let kb = b_keys.borrow().get(&a.peer_id()).cloned().unwrap();
    let (ta, tb) = (ka.tx.unwrap(), kb.tx.unwrap());
    assert!(kb
        .rx
        .iter()
        .any(|r| r.local_index == ta.remote_index && r.key == ta.key));
    assert!(ka
        .rx
        .iter()
        .any(|r| r.local_index == tb.remote_index && r.key == tb.key));
    assert_ne!(ta.key, tb.key, "directional keys must differ");
}
