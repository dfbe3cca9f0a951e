//! The link manager for planned contacts.

use std::collections::HashMap;

use bpa::Eid;
use bpa::agent::ContactEvent;

use super::PlannedDialer;

/// At the start of a planned contact with a peer whose address is known, a connection is
/// opened through the layer that dials it (and kept, reconnecting, while the contact lasts); at
/// its end it is closed (SESS_TERM, SHUTDOWN) and the agent routes again what was queued for
/// the peer.
pub(crate) fn manage_contacts(
    dialers: HashMap<Eid, PlannedDialer>,
    mut events: tokio::sync::mpsc::Receiver<ContactEvent>,
) {
    tokio::spawn(async move {
        let mut open: HashMap<Eid, tokio::sync::watch::Sender<bool>> = HashMap::new();
        while let Some(event) = events.recv().await {
            match event {
                ContactEvent::Started { neighbour, end, rate } => {
                    if open.contains_key(&neighbour) {
                        continue;
                    }
                    let Some(dialer) = dialers.get(&neighbour) else {
                        tracing::info!(%neighbour, "a planned contact starts; no [[tcpcl.peers]] or [[tcpcl3.peers]] address with this node_id, so the peer is waited for");
                        continue;
                    };
                    tracing::info!(%neighbour, via = dialer.via, until = %bpa::time::format_dtn_time(end), rate, "planned contact: connecting");
                    let (wanted, flag) = tokio::sync::watch::channel(true);
                    (dialer.connect_while)(flag);
                    open.insert(neighbour, wanted);
                }
                ContactEvent::Ended { neighbour } => {
                    if let Some(wanted) = open.remove(&neighbour) {
                        tracing::info!(%neighbour, "planned contact ended: closing the connection");
                        let _ = wanted.send(false);
                    }
                }
            }
        }
    });
}
