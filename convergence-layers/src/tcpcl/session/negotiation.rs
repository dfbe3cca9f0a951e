//! Negotiation (RFC 9174 §4): the contact headers, the TLS decision and SESS_INIT, which settle
//! the session's parameters (keepalive, segment and transfer MRUs, the peer's node ID).

use super::*;

impl Session {
    pub(super) fn our_contact_header(&self) -> ContactHeader {
        let flags = if self.config.tls == TlsPolicy::Off { 0 } else { crate::tcpcl::wire::CAN_TLS };
        ContactHeader { version: VERSION, flags }
    }

    pub(super) fn send_contact_header(&mut self) {
        let header = self.our_contact_header().encode();
        self.output.extend_from_slice(&header);
    }

    pub(super) fn our_sess_init(&self) -> Message {
        Message::SessInit(SessInit {
            keepalive: self.config.keepalive,
            segment_mru: self.config.segment_mru,
            transfer_mru: self.config.transfer_mru,
            node_id: self.config.node_id.clone(),
            extensions: Vec::new(),
        })
    }

    /// The TLS handshake succeeded; `certified_node_ids` are the node IDs (URI subject
    /// alternative names) of the peer's certificate, empty if it presented none (§4.4.4.3).
    pub fn tls_established(&mut self, certified_node_ids: Vec<String>, now: Instant) {
        self.latest = self.latest.max(now);
        if self.state != State::AwaitTls {
            return;
        }
        self.certified_node_ids = Some(certified_node_ids);
        self.state = State::AwaitSessInit;
        self.deadline = Some(now + self.config.negotiation_timeout);
        if self.role == Role::Active {
            let init = self.our_sess_init();
            self.send(init);
        }
        // Anything the peer sent after its handshake is TCPCL again.
        self.process(now);
    }

    pub(super) fn on_contact_header(&mut self, header: ContactHeader, now: Instant) {
        if header.version != VERSION {
            let error = SessionError::VersionMismatch { theirs: header.version };
            if self.role == Role::Passive {
                // §4.3: send our contact header, then end with "version mismatch".
                self.send_contact_header();
                self.send(Message::SessTerm { flags: 0, reason: SessTermReason::VERSION_MISMATCH });
            }
            self.close(Some(error));
            return;
        }
        if self.role == Role::Passive {
            self.send_contact_header();
        }
        let ours = self.our_contact_header();
        let enable_tls = ours.can_tls() && header.can_tls();
        if self.config.tls == TlsPolicy::Required && !enable_tls {
            // §4.3: an unacceptable Enable TLS → SESS_TERM "contact failure".
            self.send(Message::SessTerm { flags: 0, reason: SessTermReason::CONTACT_FAILURE });
            self.close(Some(SessionError::TlsRequired));
            return;
        }
        self.tls = enable_tls;
        if enable_tls {
            self.state = State::AwaitTls;
            self.events.push_back(Event::StartTls);
            return;
        }
        self.state = State::AwaitSessInit;
        self.deadline = Some(now + self.config.negotiation_timeout);
        if self.role == Role::Active {
            let init = self.our_sess_init();
            self.send(init);
        }
    }

    /// Whether a peer's SESS_INIT node ID names this node: a peer pretending to be us (or our
    /// own node reached through a loop) is no neighbour.
    pub(super) fn claims_our_node_id(&self, claimed: &str) -> bool {
        match (claimed.parse::<bpa::Eid>(), self.config.node_id.parse::<bpa::Eid>()) {
            (Ok(theirs), Ok(ours)) => !ours.is_null() && theirs.node_id() == ours.node_id(),
            _ => false,
        }
    }

    pub(super) fn on_sess_init(&mut self, init: SessInit, now: Instant) {
        let unacceptable = |why: String| Some(SessionError::Unacceptable(why));
        let problem = if init.segment_mru == 0 {
            unacceptable("its segment MRU is 0: no segment could be sent".into())
        } else if init.transfer_mru == 0 {
            unacceptable("its transfer MRU is 0: no bundle could be sent".into())
        } else if let Some(item) = init.extensions.iter().find(|i| i.is_critical()) {
            // §4.8: no session extension is known here, so a critical one ends the session.
            unacceptable(format!(
                "it carries critical session extension type {:#06x}, unknown here",
                item.item_type
            ))
        } else if init.node_id.len() > MAX_NODE_ID_LEN {
            unacceptable(format!(
                "its node ID {:?} is {} bytes; at most {MAX_NODE_ID_LEN} are accepted",
                shown(&init.node_id),
                init.node_id.len()
            ))
        } else if !init.node_id.is_empty() && init.node_id.parse::<bpa::Eid>().is_err() {
            unacceptable(format!("its node ID {:?} is not an endpoint ID", shown(&init.node_id)))
        } else if self.claims_our_node_id(&init.node_id) {
            unacceptable(format!("it claims this node's own node ID {:?}", shown(&init.node_id)))
        } else {
            None
        };
        if let Some(error) = problem {
            self.terminate_with(SessTermReason::CONTACT_FAILURE, Some(error.clone()));
            self.close(Some(error));
            return;
        }
        let certified = self.certified_node_ids.clone().unwrap_or_default();
        let authenticated = self.tls && !init.node_id.is_empty() && certified.contains(&init.node_id);
        if self.tls && self.config.require_node_id_authentication && !authenticated {
            let error = SessionError::NodeIdNotAuthenticated {
                claimed: shown(&init.node_id),
                certified: certified.iter().map(|id| shown(id)).collect(),
            };
            self.terminate_with(SessTermReason::CONTACT_FAILURE, Some(error.clone()));
            self.close(Some(error));
            return;
        }
        // §4.6: the passive side answers the active side's SESS_INIT — only once it accepts it,
        // so a refused peer learns nothing more of this node than the SESS_TERM.
        if self.role == Role::Passive {
            let ours = self.our_sess_init();
            self.send(ours);
        }
        let keepalive = Duration::from_secs(u64::from(init.keepalive.min(self.config.keepalive)));
        let negotiated = Negotiated {
            peer_node_id: init.node_id,
            node_id_authenticated: authenticated,
            tls: self.tls,
            keepalive,
            segment_mtu: init.segment_mru,
            transfer_mtu: init.transfer_mru,
        };
        self.state = State::Established;
        self.deadline = None;
        self.last_received = now;
        self.negotiated = Some(negotiated.clone());
        self.events.push_back(Event::Established(negotiated));
    }
}

/// Keepalives go out at half the negotiated interval: some peers (dtn7-rs) end a session after
/// one interval without a message rather than two (design §8).
pub(super) fn keepalive_send_interval(keepalive: Duration) -> Duration {
    keepalive / 2
}
