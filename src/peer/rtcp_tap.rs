//! The RTCP sender-report tap: an interceptor that hands the publisher's sender reports
//! (RFC 3550 §6.4.1: NTP and RTP timestamps of one instant) to the broadcast, which lines
//! up audio and video by them. It observes only and never waits: the report is a
//! `try_send`, and every packet goes on unchanged.

use std::time::Instant;

use rtc::interceptor::{Interceptor, Packet as IPacket, StreamInfo, TaggedPacket};
use tokio::sync::mpsc;

use super::PeerEvent;
use crate::media::SenderReport;

/// Hands the publisher's RTCP sender reports to the broadcast (the default interceptors
/// consume inbound RTCP). Observes only: every packet goes on unchanged. When the event
/// channel is full the report is dropped; the next one comes within seconds.
pub(super) struct SenderReportTap {
    events: mpsc::Sender<PeerEvent>,
    read: std::collections::VecDeque<TaggedPacket>,
    write: std::collections::VecDeque<TaggedPacket>,
}

impl SenderReportTap {
    /// A tap sending reports on `events`.
    pub(super) fn new(events: mpsc::Sender<PeerEvent>) -> Self {
        Self {
            events,
            read: Default::default(),
            write: Default::default(),
        }
    }
}

impl rtc::sansio::Protocol<TaggedPacket, TaggedPacket, ()> for SenderReportTap {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        if let IPacket::Rtcp(packets) = &msg.message.packet {
            for p in packets {
                if let Some(sr) = p
                    .as_any()
                    .downcast_ref::<rtc::rtcp::sender_report::SenderReport>()
                {
                    let _ = self.events.try_send(PeerEvent::SenderReport(SenderReport {
                        ssrc: sr.ssrc,
                        ntp: sr.ntp_time,
                        rtp: sr.rtp_time,
                    }));
                }
            }
        }
        self.read.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<TaggedPacket> {
        self.read.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.write.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<TaggedPacket> {
        self.write.pop_front()
    }
}

impl Interceptor for SenderReportTap {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}
