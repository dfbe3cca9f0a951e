//! TCPCLv4 with TLS against Hardy: a peer assembled here from the `hardy-bpa` 0.2 and
//! `hardy-tcpclv4` 0.4 crates (Hardy's own bundle agent, in-memory store, its TCPCL), and one
//! of our nodes (agent, SQLite store on disk, our TCPCL driver), on loopback, TLS required on
//! both sides, certificates from one test CA.
//!
//! - Our node dials Hardy: Hardy's certificate names its node ID (ipn:3.0) in a URI SAN, which
//!   our side authenticates (RFC 9174 §4.4.4); bundles of 1 B, 1 KiB, 1.9 MB and 8 MiB cross
//!   both ways on that session.
//! - Hardy dials our node: Hardy 0.4 sends no client certificate, so our side runs TLS without
//!   authenticating Hardy's node ID (`require_node_id_authentication = false`); bundles cross
//!   both ways.
//! - Hardy refuses our node when our certificate is not from a CA it trusts.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bpa::Eid;
use bpa::testing::{agent_on_disk, send_streamed, take_payloads};
use bpa::{Agent, AgentConfig};
use bpa::{SqliteStore, StoreConfig};
use convergence_layers::tcpcl::driver::{SessionSummary, Tcpcl, TcpclConfig};
use convergence_layers::tcpcl::session::{SessionConfig, TlsPolicy};
use convergence_layers::tcpcl::tls::TlsSetup;
use convergence_layers::testing::Pki;
use hardy_bpa::bpa::{Bpa, BpaRegistration};
use hardy_bpa::services::{Application, ApplicationSink, StatusNotify};
use hardy_bpa::{Bytes, async_trait};
use hardy_bpv7::eid::{IpnNodeId, NodeId};
use tokio::sync::mpsc;

const HARDY_NODE: u32 = 3;
const HARDY_SERVICE: u32 = 42;
const OUR_NODE: u32 = 1;
const OUR_SERVICE: u32 = 9;

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}

fn payload(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ seed).collect()
}

fn sizes() -> [(usize, u8); 4] {
    [(1, 1), (1024, 2), (1_900_000, 3), (8 << 20, 4)]
}

fn sorted(mut payloads: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    payloads.sort();
    payloads
}

/// An application on the Hardy node: what it receives goes to a channel.
struct HardyApp {
    sink: OnceLock<Box<dyn ApplicationSink>>,
    received: mpsc::UnboundedSender<(String, Bytes)>,
}

#[async_trait]
impl Application for HardyApp {
    async fn on_register(&self, _source: &hardy_bpv7::eid::Eid, sink: Box<dyn ApplicationSink>) {
        let _ = self.sink.set(sink);
    }

    async fn on_unregister(&self) {}

    async fn on_receive(
        &self,
        source: hardy_bpv7::eid::Eid,
        _expiry: time::OffsetDateTime,
        _ack_requested: bool,
        payload: Bytes,
    ) -> hardy_bpa::services::Result<()> {
        let _ = self.received.send((source.to_string(), payload));
        Ok(())
    }

    async fn on_status_notify(
        &self,
        _bundle_id: &hardy_bpv7::bundle::Id,
        _from: &hardy_bpv7::eid::Eid,
        _kind: StatusNotify,
        _reason: hardy_bpv7::status_report::ReasonCode,
        _timestamp: Option<time::OffsetDateTime>,
    ) {
    }
}

/// A Hardy node: `hardy-bpa` with its in-memory store, `hardy-tcpclv4` listening on loopback
/// with TLS required, and one application at ipn:3.42.
struct HardyNode {
    bpa: Arc<Bpa>,
    cla: Arc<hardy_tcpclv4::Cla>,
    app: Arc<HardyApp>,
    received: mpsc::UnboundedReceiver<(String, Bytes)>,
    address: SocketAddr,
}

impl HardyNode {
    /// `certificate` and `key` are its server certificate; `trusted_dir` holds the CA
    /// certificates it checks ours against.
    async fn start(certificate: &Path, key: &Path, trusted_dir: &Path) -> HardyNode {
        let node_ids = hardy_bpa::node_ids::NodeIds::try_from(
            [NodeId::Ipn(IpnNodeId { allocator_id: 0, node_number: HARDY_NODE })].as_slice(),
        )
        .expect("Hardy node IDs");
        let bpa = Arc::new(Bpa::builder().node_ids(node_ids).build().await.expect("Hardy BPA"));
        bpa.start(false);
        let address: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("address");
        let config = hardy_tcpclv4::config::Config {
            address: Some(address),
            session_defaults: hardy_tcpclv4::config::SessionConfig {
                require_tls: true,
                ..Default::default()
            },
            tls: Some(hardy_tcpclv4::config::TlsConfig {
                cert_file: Some(certificate.to_path_buf()),
                private_key_file: Some(key.to_path_buf()),
                ca_certs: Some(trusted_dir.to_path_buf()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let cla = Arc::new(hardy_tcpclv4::Cla::new(&config).expect("Hardy TCPCL"));
        bpa.register_cla("tcp0".to_string(), cla.clone(), None).await.expect("register TCPCL");
        let (tx, received) = mpsc::unbounded_channel();
        let app = Arc::new(HardyApp { sink: OnceLock::new(), received: tx });
        bpa.register_application(hardy_bpv7::eid::Service::Ipn(HARDY_SERVICE), app.clone())
            .await
            .expect("register application");
        // The listener is spawned on registration; wait until it accepts.
        for _ in 0..500 {
            if tokio::net::TcpStream::connect(address).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        HardyNode { bpa, cla, app, received, address }
    }

    /// Sends `payload` from ipn:3.42 to our node's endpoint.
    async fn send(&self, payload: &[u8]) {
        let destination: hardy_bpv7::eid::Eid =
            format!("ipn:{OUR_NODE}.{OUR_SERVICE}").parse().expect("destination");
        self.app
            .sink
            .get()
            .expect("registered")
            .send(destination, Bytes::copy_from_slice(payload), Duration::from_secs(3600), None)
            .await
            .expect("Hardy accepts the bundle");
    }

    /// The next `count` payloads for ipn:3.42, each checked to come from our endpoint.
    async fn receive(&mut self, count: usize) -> Vec<Vec<u8>> {
        let mut payloads = Vec::new();
        while payloads.len() < count {
            let next = tokio::time::timeout(Duration::from_secs(60), self.received.recv()).await;
            let (source, payload) = next
                .unwrap_or_else(|_| panic!("Hardy received only {} of {count} bundles", payloads.len()))
                .expect("Hardy's application channel");
            assert_eq!(source, format!("ipn:{OUR_NODE}.{OUR_SERVICE}"));
            payloads.push(payload.to_vec());
        }
        payloads
    }

    async fn stop(self) {
        self.cla.unregister().await;
        self.bpa.shutdown().await;
    }
}

/// Our node: agent, SQLite store on disk, TCPCL with TLS required.
struct OurNode {
    agent: Agent<SqliteStore>,
    tcpcl: Tcpcl<Agent<SqliteStore>>,
    _dir: tempfile::TempDir,
}

impl OurNode {
    async fn start(tls: TlsSetup, require_node_id_authentication: bool) -> OurNode {
        // RUST_LOG=debug shows what our side did.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let (agent, dir) =
            agent_on_disk(AgentConfig::new(Eid::ipn(OUR_NODE, 0)), StoreConfig::default()).await;
        let mut session = SessionConfig::new("");
        session.tls = TlsPolicy::Required;
        session.require_node_id_authentication = require_node_id_authentication;
        let mut config = TcpclConfig::new(session);
        config.tls = Some(tls);
        config.reconnect_min = Duration::from_millis(100);
        config.reconnect_max = Duration::from_millis(500);
        let tcpcl = Tcpcl::new(agent.clone(), config);
        OurNode { agent, tcpcl, _dir: dir }
    }

    async fn send(&self, payload: &[u8]) {
        send_streamed(
            &self.agent,
            Eid::ipn(OUR_NODE, OUR_SERVICE.into()),
            Eid::ipn(HARDY_NODE, HARDY_SERVICE.into()),
            payload,
        )
        .await;
    }

    async fn receive(&self, count: usize) -> Vec<Vec<u8>> {
        take_payloads(&self.agent, &Eid::ipn(OUR_NODE, OUR_SERVICE.into()), count, Duration::from_secs(60))
            .await
    }

    async fn wait_for_hardy(&self) -> SessionSummary {
        for _ in 0..1000 {
            if self.agent.neighbours().iter().any(|n| n.node_id == Eid::ipn(HARDY_NODE, 0))
                && let Some(session) = self
                    .tcpcl
                    .sessions()
                    .into_iter()
                    .find(|s| s.node_id.as_deref() == Some(format!("ipn:{HARDY_NODE}.0").as_str()))
            {
                return session;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("no session with Hardy: {:?}", self.tcpcl.sessions());
    }

    async fn wait_until_empty(&self) {
        for _ in 0..1000 {
            if self.agent.store().stats().bundles == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("our node still holds {} bundles", self.agent.store().stats().bundles);
    }
}

/// The certificates of one test, in a temporary directory: a CA (`trusted/ca.crt`, the
/// directory Hardy reads its CAs from), Hardy's certificate (ipn:3.0, and `localhost`, the
/// name Hardy's client checks on loopback) and ours (ipn:1.0, `localhost`) issued by
/// `our_issuer`.
struct Certificates {
    _dir: tempfile::TempDir,
    trusted_dir: std::path::PathBuf,
    hardy: (std::path::PathBuf, std::path::PathBuf),
    ours: TlsSetup,
}

impl Certificates {
    fn new(pki: &Pki, our_issuer: &Pki) -> Certificates {
        install_crypto_provider();
        let dir = tempfile::tempdir().expect("tempdir");
        let trusted_dir = dir.path().join("trusted");
        std::fs::create_dir(&trusted_dir).expect("trusted dir");
        let ca = pki.write_ca(&trusted_dir);
        let hardy =
            pki.issue_with_dns(&[&format!("ipn:{HARDY_NODE}.0")], &["localhost"], dir.path(), "hardy");
        let (certificate, key) =
            our_issuer.issue_with_dns(&[&format!("ipn:{OUR_NODE}.0")], &["localhost"], dir.path(), "ours");
        let ours = TlsSetup::from_pem_files(&certificate, &key, &ca, false).expect("our TLS setup");
        Certificates { _dir: dir, trusted_dir, hardy, ours }
    }

    async fn hardy(&self) -> HardyNode {
        HardyNode::start(&self.hardy.0, &self.hardy.1, &self.trusted_dir).await
    }
}

/// Hardy's rustls calls pick the process's default crypto provider; with both ring (ours)
/// and aws-lc-rs (Hardy's default) compiled in there is none until one is installed.
fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

async fn cross_both_ways(ours: &OurNode, hardy: &mut HardyNode) {
    let expected: Vec<_> = sizes().iter().map(|&(len, seed)| payload(len, seed)).collect();
    for (len, seed) in sizes() {
        ours.send(&payload(len, seed)).await;
    }
    let at_hardy = hardy.receive(sizes().len()).await;
    assert!(sorted(at_hardy) == sorted(expected.clone()), "us → Hardy: payloads differ");

    for (len, seed) in sizes() {
        hardy.send(&payload(len, seed)).await;
    }
    let at_ours = ours.receive(sizes().len()).await;
    assert!(sorted(at_ours) == sorted(expected), "Hardy → us: payloads differ");
    ours.wait_until_empty().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_node_dials_hardy_over_tls_authenticates_its_node_id_and_bundles_cross_both_ways() {
    let pki = Pki::new("interop CA");
    let certs = Certificates::new(&pki, &pki);
    let mut hardy = certs.hardy().await;
    let ours = OurNode::start(certs.ours.clone(), true).await;

    ours.tcpcl.connect_forever(hardy.address.to_string());
    let session = ours.wait_for_hardy().await;
    assert!(session.tls, "the session runs TLS: {session:?}");
    assert!(session.node_id_authenticated, "Hardy's node ID is authenticated: {session:?}");

    cross_both_ways(&ours, &mut hardy).await;
    ours.tcpcl.shutdown();
    hardy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hardy_dials_our_node_over_tls_and_bundles_cross_both_ways() {
    let pki = Pki::new("interop CA");
    let certs = Certificates::new(&pki, &pki);
    let mut hardy = certs.hardy().await;
    // Hardy 0.4 presents no client certificate: TLS, but its node ID cannot be authenticated.
    let ours = OurNode::start(certs.ours.clone(), false).await;
    let address = ours.tcpcl.listen("127.0.0.1:0".parse().expect("address")).await.expect("listen");

    hardy.cla.connect(&address).await.expect("Hardy connects to our node");
    let session = ours.wait_for_hardy().await;
    assert!(session.tls, "the session runs TLS: {session:?}");
    assert!(!session.node_id_authenticated, "no client certificate, nothing authenticated: {session:?}");

    cross_both_ways(&ours, &mut hardy).await;
    ours.tcpcl.shutdown();
    hardy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hardy_refuses_our_node_when_its_certificate_is_from_a_ca_hardy_does_not_trust() {
    let pki = Pki::new("interop CA");
    let stranger = Pki::new("another CA");
    let certs = Certificates::new(&pki, &stranger);
    let hardy = certs.hardy().await;
    let ours = OurNode::start(certs.ours.clone(), false).await;
    let address = ours.tcpcl.listen("127.0.0.1:0".parse().expect("address")).await.expect("listen");

    // Hardy checks the certificate our listener presents, and gives up.
    let outcome = hardy.cla.connect(&address).await;
    assert!(outcome.is_err(), "Hardy accepted a certificate from a CA it does not trust");
    assert!(ours.agent.neighbours().is_empty(), "no neighbour: {:?}", ours.agent.neighbours());
    ours.tcpcl.shutdown();
    hardy.stop().await;
}
