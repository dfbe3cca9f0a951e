//! Outgoing transfers (RFC 9174 §5.2): IDs, segmentation to the peer's segment MRU, the peer's
//! acknowledgements and refusals.

use super::*;

#[derive(Debug)]
pub(super) struct Outgoing {
    pub(super) id: u64,
    pub(super) total: u64,
    pub(super) sent: u64,
}

impl Session {
    /// The outgoing transfer an XFER_ACK or XFER_REFUSE names. One this session never sent is
    /// rejected as unexpected; one it finished lately (a late ack, a refusal crossing our last
    /// segment) is ignored.
    pub(super) fn outgoing_named(&mut self, transfer_id: u64, rejected_type: u8) -> Option<usize> {
        let index = self.outgoing.iter().position(|t| t.id == transfer_id);
        if index.is_none() && !self.recently_finished.contains(&transfer_id) {
            self.send(Message::MsgReject { reason: RejectReason::UNEXPECTED, rejected_type });
        }
        index
    }

    pub(super) fn on_ack(&mut self, transfer_id: u64, length: u64) {
        let Some(index) = self.outgoing_named(transfer_id, message_type::XFER_ACK) else { return };
        let transfer = &self.outgoing[index];
        if length > transfer.sent {
            // Acknowledging bytes never sent: the peer cannot comply with this transfer.
            self.send(Message::MsgReject {
                reason: RejectReason::UNSUPPORTED,
                rejected_type: message_type::XFER_ACK,
            });
            return;
        }
        // The acknowledgement of the whole transfer completes it. Its END flag is not required:
        // some peers (dtn7-rs) send every XFER_ACK with flags 0 (design §8).
        if length == transfer.total && transfer.sent == transfer.total {
            self.outgoing.remove(index);
            self.remember_finished(transfer_id);
            self.events.push_back(Event::TransferAcked { transfer_id });
        }
    }

    pub(super) fn on_refuse(&mut self, reason: RefuseReason, transfer_id: u64) {
        let Some(index) = self.outgoing_named(transfer_id, message_type::XFER_REFUSE) else { return };
        // Forgotten at once (a long session refuses many transfers); remembered among the
        // recent IDs so a refusal repeated for a crossing segment, or a late ack, is no error.
        self.outgoing.remove(index);
        self.remember_finished(transfer_id);
        if self.recently_refused.len() == RECENT_IDS {
            self.recently_refused.pop_front();
        }
        self.recently_refused.push_back((transfer_id, reason));
        self.events.push_back(Event::TransferRefused { transfer_id, reason });
    }

    /// Starts an outgoing transfer of `length` bytes; its segments then come from
    /// [`Session::segment`].
    pub fn start_transfer(&mut self, length: u64) -> Result<u64, SendError> {
        let negotiated = self.negotiated.as_ref().filter(|_| self.state == State::Established);
        let Some(negotiated) = negotiated else { return Err(SendError::NotEstablished) };
        if self.ending.is_some() {
            return Err(SendError::Ending);
        }
        if length == 0 {
            return Err(SendError::Empty);
        }
        if length > negotiated.transfer_mtu && !self.config.ignore_peer_transfer_mru {
            return Err(SendError::OverTransferMtu { length, mtu: negotiated.transfer_mtu });
        }
        if let Some(current) = self.outgoing.back().filter(|t| t.sent < t.total) {
            return Err(SendError::Interleaving(current.id));
        }
        let Some(id) = self.next_transfer_id else {
            // §5.2.1: the ID space is exhausted → end the session.
            self.terminate_with(
                SessTermReason::RESOURCE_EXHAUSTION,
                Some(SessionError::TransferIdsExhausted),
            );
            return Err(SendError::Ending);
        };
        self.next_transfer_id = id.checked_add(1);
        self.outgoing.push_back(Outgoing { id, total: length, sent: 0 });
        Ok(id)
    }

    /// The next segment of transfer `transfer_id`, carrying at most `available` bytes (what the
    /// driver has read of the bundle): `head` is to be written, then `data_length` bytes of the
    /// bundle, with nothing from the session in between.
    pub fn segment(&mut self, transfer_id: u64, available: u64) -> Result<SegmentToSend, SendError> {
        let negotiated = self.negotiated.as_ref().ok_or(SendError::NotEstablished)?;
        let max = negotiated.segment_mtu.min(self.config.max_segment_size).max(1);
        if let Some(&(_, reason)) = self.recently_refused.iter().find(|(id, _)| *id == transfer_id) {
            return Err(SendError::Refused { transfer_id, reason });
        }
        let transfer = self
            .outgoing
            .iter_mut()
            .find(|t| t.id == transfer_id && t.sent < t.total)
            .ok_or(SendError::UnknownTransfer(transfer_id))?;
        let left = transfer.total - transfer.sent;
        let data_length = left.min(available).min(max);
        let start = transfer.sent == 0;
        let end = data_length == left;
        let mut flags = 0;
        if start {
            flags |= segment_flags::START;
        }
        if end {
            flags |= segment_flags::END;
        }
        // §5.2.5.1: announce the length unless the transfer is one segment.
        let extensions =
            if start && !end { vec![ExtensionItem::transfer_length(transfer.total)] } else { Vec::new() };
        transfer.sent += data_length;
        encode_segment_header(flags, transfer_id, &extensions, data_length, &mut self.output);
        Ok(SegmentToSend { head: self.output.split().freeze(), data_length, end })
    }
}
