//! The starter configuration `dtn init` writes.

use std::path::Path;

use bpa::Eid;

/// The starter configuration `dtn init` writes: every key, commented, with its default.
pub fn starter(node_id: &Eid, data_dir: &Path) -> String {
    format!(
        r#"# dtn daemon configuration. Every key is optional; docs/configuration.md explains each.

# This node's ID: ipn:N.0 or dtn://name/.
node_id = "{node_id}"

# Where the store and the API socket live.
data_dir = "{data_dir}"

[api]
# Unix socket of the local API (default: DATA_DIR/api.sock).
# socket = "{data_dir}/api.sock"
# Also serve the API on a loopback TCP address.
# tcp = "127.0.0.1:4242"
# Largest payload an application may send, in bytes. Payloads stream to the store, so this
# is about disk space, not memory.
# max_payload = 4294967296
# Lifetime of bundles sent without one.
# default_lifetime = "1d"
# A client must send a request's header within this time (idle connections are closed),
# a body that stalls this long is cut off, and at most this many connections are served.
# header_timeout = "30s"
# body_idle_timeout = "60s"
# max_connections = 256
# The largest contact plan `dtn plan load` may give, in bytes.
# max_plan = 67108864

[store]
# Refuse new bundles beyond these totals (reason: depleted storage). No limit unless set;
# for example 10 GiB and ten million bundles:
# max_bytes = 10737418240
# max_bundles = 10000000
# Bundles up to this size live in the database, larger ones in their own files.
# inline_threshold = 65536

[reports]
# Send the status reports bundles ask for. Off unless enabled here: RFC 9171 §5.1 says their
# generation MUST be disabled by default, since a report per hop per status can multiply the
# traffic of a network; enable it where that is acceptable (a testbed, a small network).
# enabled = false
# lifetime = "1d"

[accept]
# Leniency for peers that bend RFC 9171 (dtn7-rs sends primary blocks without CRC; ION's
# fragments number every extension block 0: they are renumbered, counted as "renumbered").
# primary_without_crc = false
# missing_bundle_age = false
# duplicate_block_numbers = false

[agent]
# Answer pings on ipn:N.7 / dtn://name/echo.
# echo = true
# max_in_flight_per_neighbour = 256
# expiry_interval = "1s"

# Static routes: bundles for `to` (a pattern: *, ipn:N.*, dtn://name/**, or an EID) go via
# the neighbour `via`. The most specific pattern wins.
# [[routes]]
# to = "ipn:3.*"
# via = "ipn:2.0"

[tcpcl]
# Accept TCPCLv4 sessions (RFC 9174) on these addresses (none by default).
# listen = ["0.0.0.0:4556"]
# Keepalive interval offered, in seconds (0 disables keepalives; dtn7-rs needs them).
# keepalive = 30
# Largest segment and largest bundle accepted, in bytes.
# segment_mru = 16777216
# transfer_mru = 17179869184
# Largest segment sent, in bytes.
# max_segment_size = 1048576
# TLS: off, optional or required. With TLS, the node's certificate must name its node ID as
# a URI subject alternative name, and peers' certificates must chain to `trust`.
# tls = "off"
# certificate = "/etc/dtn/node.crt"
# private_key = "/etc/dtn/node.key"
# trust = "/etc/dtn/ca.crt"
# require_node_id_authentication = true
# Longest wait between attempts to reach a peer (the first wait is 1 s, doubled each time).
# reconnect_max = "60s"
# A transfer that receives nothing for this long is abandoned (its partial data removed) and
# the session ended, whatever the keepalive; a peer that reads nothing for this long too.
# transfer_idle_timeout = "2m"
# send_stall_timeout = "2m"
# Send bundles larger than a peer's announced Transfer MRU anyway: dtn7-rs announces 64000
# bytes but takes larger bundles.
# ignore_peer_transfer_mru = false

# Peers this node keeps a TCPCL session to, reconnecting whenever the session is lost. With
# a contact plan ([routing] plan), a peer whose node_id is given is connected only while the
# plan has a contact from this node to it, and the session is closed at the contact's end.
# [[tcpcl.peers]]
# address = "192.0.2.7:4556"
# node_id = "ipn:2.0"

[stcp]
# ION's simple TCP: each bundle after its length (32 bits); no acknowledgement. ION listens on
# 4456. Peers are dialled and kept; their node IDs are given, as STCP does not say them.
# listen = ["0.0.0.0:4456"]
# max_bundle_size = 17179869184
# keepalive = "15s"
# A bundle part-way in that receives nothing for this long is dropped, its connection closed.
# stall_timeout = "2m"
# [[stcp.peers]]
# address = "192.0.2.8:4456"
# node_id = "ipn:8.0"

[mtcp]
# µD3TN's and dtn7-rs's minimal TCP: each bundle as a CBOR byte string; no acknowledgement.
# dtn7-rs listens on 16162.
# listen = ["0.0.0.0:16162"]
# max_bundle_size = 17179869184
# stall_timeout = "2m"
# [[mtcp.peers]]
# address = "192.0.2.9:16162"
# node_id = "ipn:9.0"

[tcpcl3]
# TCPCL version 3 (RFC 7242), for ION, µD3TN and HDTN. A peer listed here is dialled with
# version 3 (one under [[tcpcl.peers]] with version 4); the contact header names each peer.
# With acknowledgements a bundle counts as sent only when the peer acknowledged its last
# segment, and a received one is acknowledged only once it is on disk.
# listen = ["0.0.0.0:4557"]
# keepalive = 15
# acknowledgements = true
# refusal = true
# request_length = false
# segment_size = 65536
# max_bundle_size = 17179869184
# reconnect_max = "60s"
# A bundle in progress that moves no byte for this long closes the connection, keepalive or not.
# stall_timeout = "2m"
# [[tcpcl3.peers]]
# address = "192.0.2.11:4556"
# node_id = "ipn:11.0"

[connections]
# What the stream layers' listeners (tcpcl, tcpcl3, stcp, mtcp) allow peers that connect. Past
# `max` (or `max_per_address` from one IP), the connection idle longest is shed for a newcomer.
# Every connection must send its contact header or first frame within handshake_timeout, and
# is closed after idle_timeout with nothing received, whatever its keepalive (even none).
# max = 256
# max_per_address = 32
# handshake_timeout = "30s"
# idle_timeout = "5m"

# Serial lines, one [[serial]] table each: a cable or a radio modem to one peer. Frames are
# COBS with a CRC-32C (or SLIP, for HDTN's slip_over_uart); bundles larger than max_frame are
# fragmented so a frame lost to noise costs one fragment.
# [[serial]]
# device = "/dev/ttyUSB0"
# baud = 9600
# node_id = "ipn:12.0"
# framing = "cobs"
# flow_control = "none"
# max_frame = 4096
# min_gap = "0s"

# Spools, one [[spool]] table each: a directory (a USB stick's mount point) carried between
# nodes that never meet. Bundles for `peers` are written there while it is mounted; files for
# this node (and `import_for`) are taken in and removed once stored here.
# [[spool]]
# dir = "/media/stick/dtn"
# peers = ["ipn:20.0"]
# import_for = []
# scan_interval = "2s"

[udp]
# Bundles in datagrams (RFC 7122), one per datagram; no acknowledgement, loss is expected.
# Bundles larger than max_datagram are fragmented first (unless they must not be).
# listen = ["0.0.0.0:4556"]
# max_datagram = 65507
# allow = ["192.0.2.10"]
# socket_buffer = 4194304
# [[udp.peers]]
# address = "192.0.2.10:4556"
# node_id = "ipn:10.0"
# rate = "10 Mbit/s"
# Where its datagrams come from, if not from `address`; port 0 stands for any port (ION: "IP:0").
# Custody signals, BIBE PDUs and reports in its name from anywhere else are refused.
# sends_from = ["192.0.2.10:4556"]

[routing]
# A contact plan, loaded at start (relative times count from then); `dtn plan load` replaces it
# live. Forms: ION ionrc, HDTN JSON, dtn-tvg-util JSON, TOML (docs/routing.md). Bundles that no
# connected neighbour or static route takes go by Contact Graph Routing over it.
# plan = "contacts.rc"
# The plan's form when its name and content do not tell: ion, hdtn, tvgutil or toml.
# format = "ion"

[custody]
# Custody transfer hop by hop (BIBE, docs/custody.md): a custodial bundle stays in the store
# until the next custodian's signal takes it over, and is sent again until one does.
# Applications ask with `dtn send --custody`; bundles to these destinations are custodial here.
# destinations = ["ipn:9.*"]
# round_trip = "2s"
# retransmit_min = "1s"
# retransmit_max = "10m"
# signal_delay = "100ms"
# signal_batch = 4096
# signal_lifetime = "1h"
# Refuse custody ("no known route" / "no timely contact") of bundles with no way on from here.
# refuse_unroutable = false
# One table per neighbour pattern (first match): mode never | custodial | always; record_types
# default (3/4) | ion (7/8) | pyd3tn (64443/4); the PDU's retransmission time dtn_ms (the
# draft's) | unix_seconds (ION's; implied by record_types "ion"); the round trip to it.
# [[custody.peers]]
# node = "ipn:5.0"
# mode = "custodial"
# record_types = "ion"
# retransmission_time = "unix_seconds"
# round_trip = "30s"
"#,
        data_dir = data_dir.display()
    )
}
