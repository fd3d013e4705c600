//! `vpn-control dht-node`: a public-DHT-only bootstrap node in its own
//! namespace, stopped on drop.

use std::path::Path;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::netns::NsRef;
use crate::process::Background;

/// How long a DHT node may take to print its listen address.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// The line `vpn-control dht-node` prints per listen address when ready.
const READY_PREFIX: &str = "dht-node listening on ";

/// A running public DHT node.
#[derive(Debug)]
pub struct DhtNode {
    ns: NsRef,
    /// Its PeerId.
    pub peer_id: String,
    /// Its full address (`/ip4/.../tcp/.../p2p/<PeerId>`), as it printed it.
    pub multiaddr: String,
    proc: Background,
}

impl DhtNode {
    /// Starts `vpn-control dht-node --identity IDENTITY --listen LISTEN
    /// [--bootstrap B]...` in `ns` and waits for its ready line.
    pub fn start(
        bin: &Path,
        ns: &NsRef,
        identity: &Path,
        listen: &str,
        bootstrap: &[String],
        log: &Path,
    ) -> Result<Self> {
        let mut cmd = ns.cmd(bin);
        cmd.arg("dht-node")
            .arg("--identity")
            .arg(identity)
            .args(["--listen", listen]);
        for b in bootstrap {
            cmd.args(["--bootstrap", b]);
        }
        cmd.env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        );
        let mut proc = Background::spawn("vpn-control dht-node", cmd, log)?;
        let start = std::time::Instant::now();
        let line = loop {
            if let Some(l) = proc.log().lines().find_map(|l| {
                l.split_once(READY_PREFIX)
                    .map(|(_, rest)| rest.trim().to_owned())
            }) {
                break l;
            }
            if let Some(s) = proc.try_status() {
                return Err(Error::Setup(format!(
                    "vpn-control dht-node exited ({s}): {}",
                    proc.log()
                )));
            }
            if start.elapsed() > READY_TIMEOUT {
                return Err(Error::Timeout {
                    what: "dht-node to print its listen address".into(),
                    secs: READY_TIMEOUT.as_secs_f64(),
                    last: format!("; its log: {}", proc.log()),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let peer_id = line
            .rsplit_once("/p2p/")
            .map(|(_, id)| id.to_owned())
            .ok_or_else(|| Error::Parse {
                what: "dht-node ready line".into(),
                detail: line.clone(),
            })?;
        Ok(Self {
            ns: ns.clone(),
            peer_id,
            multiaddr: line,
            proc,
        })
    }

    pub fn ns(&self) -> &NsRef {
        &self.ns
    }

    pub fn pid(&self) -> i32 {
        self.proc.pid()
    }

    pub fn is_running(&mut self) -> bool {
        self.proc.is_running()
    }

    pub fn log(&self) -> String {
        self.proc.log()
    }
}
