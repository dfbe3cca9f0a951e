//! The daemon's configuration file (TOML), documented key by key in docs/configuration.md.
//! Every key is optional: a node runs on the defaults with no file at all. Unknown keys are
//! refused, so a typo is an error naming the key, not a silently ignored setting.

use std::path::{Path, PathBuf};

use anyhow::Context;
use bpa::Eid;
use serde::Deserialize;

mod custody;
mod de;
mod layers;
mod node;
mod starter;

pub use custody::*;
pub use layers::*;
pub use node::*;
pub use starter::starter;

use de::eid_opt;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This node's ID: `ipn:N.0` or `dtn://name/`.
    #[serde(default, deserialize_with = "eid_opt")]
    pub node_id: Option<Eid>,
    /// Where the store (and, by default, the API socket) live.
    pub data_dir: Option<PathBuf>,
    #[serde(default)]
    pub api: ApiSection,
    #[serde(default)]
    pub store: StoreSection,
    #[serde(default)]
    pub reports: ReportsSection,
    #[serde(default)]
    pub accept: AcceptSection,
    #[serde(default)]
    pub agent: AgentSection,
    #[serde(default)]
    pub routes: Vec<RouteEntry>,
    #[serde(default)]
    pub tcpcl: TcpclSection,
    #[serde(default)]
    pub routing: RoutingSection,
    #[serde(default)]
    pub stcp: FramedSection,
    #[serde(default)]
    pub mtcp: FramedSection,
    #[serde(default)]
    pub udp: UdpSection,
    #[serde(default)]
    pub tcpcl3: Tcpcl3Section,
    #[serde(default)]
    pub serial: Vec<SerialEntry>,
    #[serde(default)]
    pub spool: Vec<SpoolEntry>,
    #[serde(default)]
    pub custody: CustodySection,
    #[serde(default)]
    pub connections: ConnectionsSection,
}

impl Config {
    /// Reads and checks a configuration file. The error names the file, the line and the key.
    /// Relative paths in it (data directory, socket, certificates) are taken from the file's
    /// own directory, not from wherever the daemon is started.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the configuration file {}", path.display()))?;
        let mut config = Config::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let file = std::path::absolute(path)
            .with_context(|| format!("cannot resolve the configuration file's path {}", path.display()))?;
        config.resolve_from(file.parent().unwrap_or(Path::new("/")));
        Ok(config)
    }

    /// Makes the relative paths in the configuration relative to `base`.
    fn resolve_from(&mut self, base: &Path) {
        let tls = &mut self.tcpcl;
        for path in [
            &mut self.data_dir,
            &mut self.api.socket,
            &mut tls.certificate,
            &mut tls.private_key,
            &mut tls.trust,
            &mut self.routing.plan,
        ]
        .into_iter()
        .flatten()
        {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        }
        for spool in &mut self.spool {
            if spool.dir.is_relative() {
                spool.dir = base.join(&spool.dir);
            }
        }
    }

    pub fn parse(text: &str) -> Result<Config, String> {
        let config: Config = toml::from_str(text).map_err(|e| e.to_string().trim_end().to_string())?;
        if let Some(node) = &config.node_id
            && node.node_id() != *node
        {
            return Err(format!(
                "node_id {node} is an application endpoint, not a node ID: use {} (ipn service 0, or a dtn \
                 name with an empty demux)",
                node.node_id()
            ));
        }
        if let Some(Eid::Null) = config.node_id {
            return Err("node_id dtn:none cannot name a node: use ipn:N.0 or dtn://name/".into());
        }
        Ok(config)
    }

    /// The data directory: the configured one, else `$XDG_DATA_HOME/dtn`, else
    /// `~/.local/share/dtn`.
    pub fn data_dir(&self) -> anyhow::Result<PathBuf> {
        if let Some(dir) = &self.data_dir {
            return Ok(dir.clone());
        }
        default_data_dir()
    }

    /// The node ID: the configured one, else `dtn://HOSTNAME/`.
    pub fn node_id(&self) -> Eid {
        self.node_id.clone().unwrap_or_else(default_node_id)
    }

    pub fn socket(&self) -> anyhow::Result<PathBuf> {
        match &self.api.socket {
            Some(path) => Ok(path.clone()),
            None => Ok(self.data_dir()?.join(SOCKET_NAME)),
        }
    }
}

/// The API socket's name inside the data directory.
pub const SOCKET_NAME: &str = "api.sock";

pub fn default_data_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("dtn"));
    }
    let home = std::env::var_os("HOME").filter(|h| !h.is_empty()).context(
        "neither XDG_DATA_HOME nor HOME is set: give a data directory (data_dir in the config, or --data-dir)",
    )?;
    Ok(PathBuf::from(home).join(".local/share/dtn"))
}

fn default_node_id() -> Eid {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let name: String =
        host.trim().chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '.').collect();
    let name = if name.is_empty() { "localhost".to_string() } else { name };
    Eid::dtn(&name, "").unwrap_or_else(|_| Eid::ipn(1, 0))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn relative_spool_directories_are_taken_from_the_config_files_directory() {
        let mut config = Config::parse(
            "[[spool]]\ndir = \"stick/dtn\"\npeers = [\"ipn:2.0\"]\n[[spool]]\ndir = \"/media/usb\"\n",
        )
        .expect("parses");
        config.resolve_from(Path::new("/etc/dtn"));
        assert_eq!(config.spool[0].dir, Path::new("/etc/dtn/stick/dtn"));
        assert_eq!(config.spool[1].dir, Path::new("/media/usb"));
        assert!(
            Config::parse("[[spool]]\ndir = \"x\"\npeers = [\"ipn:2.1\"]\n")
                .expect_err("an endpoint is not a node")
                .contains("ipn:2.1 is not a node ID")
        );
    }

    #[test]
    fn the_custody_section_becomes_the_agents_policy_and_mistakes_are_named() {
        let config = Config::parse(
            "[custody]\ndestinations = [\"ipn:9.*\"]\nretransmit_max = \"1h\"\nsignal_batch = 0\n\
             [[custody.peers]]\nnode = \"ipn:5.0\"\nmode = \"never\"\n\
             [[custody.peers]]\nnode = \"ipn:*.*\"\nrecord_types = \"ion\"\ncustody_signal_type = 40\nround_trip = \"30s\"\n",
        )
        .expect("parses");
        let policy = config.custody.policy().expect("a valid policy");
        assert!(policy.covers(&Eid::ipn(9, 1)));
        assert_eq!(policy.retransmit_max, Duration::from_secs(3600));
        assert_eq!(policy.signal_batch, 1, "at least one answer per batch");
        assert_eq!(policy.mode_for(&Eid::ipn(5, 0)), bpa::agent::PeerCustody::Never);
        assert_eq!(policy.mode_for(&Eid::ipn(6, 0)), bpa::agent::PeerCustody::WhenCustodial);
        assert_eq!(
            policy.record_types_for(&Eid::ipn(6, 0)),
            bpa::admin::AdminRecordTypes { bibe_pdu: 7, custody_signal: 40 }
        );
        assert_eq!(policy.peers[1].round_trip, Some(Duration::from_secs(30)));
        // ION's retransmission time comes with its record types, and either can be overridden.
        use bpa::agent::RetransmissionTime;
        assert_eq!(policy.retransmission_time_for(&Eid::ipn(6, 0)), RetransmissionTime::UnixSecondsHalfway);
        assert_eq!(policy.retransmission_time_for(&Eid::ipn(5, 0)), RetransmissionTime::DtnMillis);
        let policy = Config::parse(
            "[[custody.peers]]\nnode = \"ipn:5.0\"\nrecord_types = \"ion\"\nretransmission_time = \"dtn_ms\"\n\
             [[custody.peers]]\nnode = \"ipn:6.0\"\nretransmission_time = \"unix_seconds\"\n",
        )
        .expect("parses")
        .custody
        .policy()
        .expect("policy");
        assert_eq!(policy.retransmission_time_for(&Eid::ipn(5, 0)), RetransmissionTime::DtnMillis);
        assert_eq!(policy.retransmission_time_for(&Eid::ipn(6, 0)), RetransmissionTime::UnixSecondsHalfway);
        let bad = Config::parse("[[custody.peers]]\nnode = \"ipn:5.0\"\nretransmission_time = \"ms\"\n")
            .expect_err("no such unit");
        assert!(bad.contains("expected `dtn_ms` or `unix_seconds`"), "{bad}");
        let bad = Config::parse("[[custody.peers]]\nnode = \"ipn:5.0\"\nmode = \"sometimes\"\n")
            .expect_err("no such mode");
        assert!(
            bad.contains("unknown variant `sometimes`, expected one of `never`, `custodial`, `always`"),
            "{bad}"
        );
        let bad = Config::parse("[custody]\ndestinations = [\"ipn:x\"]\n").expect_err("no pattern");
        assert!(bad.contains("is not an EID pattern"), "{bad}");
        for (pdu, signal) in [(1, 4), (3, 1), (5, 5), (8, 9), (10, 7)] {
            let text = format!(
                "[[custody.peers]]\nnode = \"ipn:5.0\"\nbibe_pdu_type = {pdu}\ncustody_signal_type = {signal}\n"
            );
            let error = Config::parse(&text).expect("parses").custody.policy().expect_err("clashing codes");
            assert!(error.to_string().contains("would be read as other records"), "{error}");
        }
        let text =
            "[[custody.peers]]\nnode = \"ipn:5.0\"\nbibe_pdu_type = 40000\ncustody_signal_type = 40001\n";
        assert!(Config::parse(text).expect("parses").custody.policy().is_ok(), "private codes are fine");
    }

    #[test]
    fn the_starter_config_parses_and_says_what_it_says() {
        let text = starter(&Eid::ipn(7, 0), Path::new("/var/lib/dtn"));
        let config = Config::parse(&text).expect("starter parses");
        assert_eq!(config.node_id, Some(Eid::ipn(7, 0)));
        assert_eq!(config.data_dir.as_deref(), Some(Path::new("/var/lib/dtn")));
        // Uncommented, every key parses too.
        let all: String = text
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(rest) if rest.contains(" = ") || rest.starts_with("[[") => rest,
                _ => l,
            })
            .collect::<Vec<_>>()
            .join("\n");
        let config = Config::parse(&all).expect("every key parses");
        assert_eq!(config.api.tcp, Some("127.0.0.1:4242".parse().expect("addr")));
        assert_eq!(config.reports.lifetime, Some(Duration::from_secs(86_400)));
        assert_eq!(config.routes.len(), 1);
        // The commented values agree with the defaults where they claim to be them: reports
        // off (RFC 9171 §5.1), and the quotas shown as examples of a limit there is not by default.
        assert_eq!(config.reports.enabled, Some(bpa::agent::ReportPolicy::default().enabled));
        assert_eq!(config.reports.enabled, Some(false));
        assert!(text.contains("No limit unless set;"), "{text}");
        assert_eq!(Config::parse("").expect("empty").store.max_bytes, None);
        assert_eq!(config.tcpcl.listen, ["0.0.0.0:4556".parse().expect("addr")]);
        assert_eq!(config.tcpcl.peers.len(), 1);
        assert_eq!(config.tcpcl.tls, Some(TlsSetting::Off));
        assert_eq!(config.tcpcl.trust.as_deref(), Some(Path::new("/etc/dtn/ca.crt")));
        assert_eq!(config.tcpcl.reconnect_max, Some(Duration::from_secs(60)));
    }

    #[test]
    fn a_bad_key_is_named() {
        let error = Config::parse("nod_id = \"ipn:1.0\"\n").expect_err("refused");
        assert!(error.contains("unknown field `nod_id`"), "{error}");
        let error = Config::parse("[store]\nmax_byte = 5\n").expect_err("refused");
        assert!(error.contains("unknown field `max_byte`"), "{error}");
    }

    #[test]
    fn a_bad_value_is_named_with_its_key() {
        let error = Config::parse("node_id = \"ipn:x.0\"\n").expect_err("refused");
        assert!(error.contains("node_id") && error.contains("is not an endpoint ID"), "{error}");
        let error = Config::parse("node_id = \"ipn:1.5\"\n").expect_err("refused");
        assert_eq!(
            error,
            "node_id ipn:1.5 is an application endpoint, not a node ID: use ipn:1.0 (ipn service 0, or a dtn name \
             with an empty demux)"
        );
        let error = Config::parse("[reports]\nlifetime = \"soon\"\n").expect_err("refused");
        assert!(error.contains("lifetime") && error.contains("invalid duration \"soon\""), "{error}");
        let error = Config::parse("[[routes]]\nto = \"ipn:x.*\"\nvia = \"ipn:2.0\"\n").expect_err("refused");
        assert!(error.contains("to") && error.contains("is not an EID pattern"), "{error}");
        let error = Config::parse("[api]\ntcp = \"localhost\"\n").expect_err("refused");
        assert!(error.contains("tcp"), "{error}");
        let error = Config::parse("[tcpcl]\ntls = \"maybe\"\n").expect_err("refused");
        assert!(error.contains("tls") && error.contains("unknown variant `maybe`"), "{error}");
        let error = Config::parse("[tcpcl]\nkeepalive = 70000\n").expect_err("refused");
        assert!(error.contains("keepalive"), "{error}");
        let error = Config::parse("[[tcpcl.peers]]\nadress = \"x:1\"\n").expect_err("refused");
        assert!(error.contains("unknown field `adress`"), "{error}");
    }
}
