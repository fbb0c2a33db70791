//! The connection's transport as `[ice]` configures it: one UDP socket per configured
//! address, on an ephemeral port or the first free port of the range; NAT 1:1 addresses;
//! no mDNS; the interceptor chain (with the sender-report tap) and the media engine.
//! Runs once per publish, before the answer; probing a port is one `bind` call, which
//! returns at once.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use rtc::ice::mdns::MulticastDnsMode;
use rtc::interceptor::Slot;
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCIceCandidateType, Registry, SettingEngineBuilder, register_default_interceptors,
};

use super::PeerError;
use super::codecs::media_engine;
use super::rtcp_tap::SenderReportTap;
use super::session::Handler;
use crate::config::IceConfig;

/// Builds the connection, binding one UDP socket per configured address: on an ephemeral
/// port, or on the first free port of the configured range.
pub(super) async fn build(
    ice: &IceConfig,
    handler: Arc<Handler>,
) -> Result<Arc<dyn PeerConnection>, PeerError> {
    let ports: Vec<u16> = if ice.port_min == 0 {
        vec![0]
    } else {
        // Start at a random offset so concurrent publishers do not all race for port_min.
        let span = u32::from(ice.port_max - ice.port_min) + 1;
        let start = rand::random::<u32>() % span;
        (0..span)
            .map(|i| ice.port_min + ((start + i) % span) as u16)
            .collect()
    };
    let mut last_err = String::from("no port tried");
    for port in ports {
        let addrs: Vec<SocketAddr> = ice
            .udp_addrs
            .iter()
            .map(|ip: &IpAddr| SocketAddr::new(*ip, port))
            .collect();
        if port != 0 && addrs.iter().any(|a| std::net::UdpSocket::bind(a).is_err()) {
            // Probe first: cheaper than building a whole connection on a taken port.
            last_err = format!("port {port} in use");
            continue;
        }
        let mut me = media_engine()?;
        // Application-most (after the receiver-report interceptor has read the same
        // reports for its own statistics): a slot above the jitter buffer's, 13 000.
        let registry = register_default_interceptors(Registry::new(), &mut me)
            .map_err(|e| PeerError::Setup(e.to_string()))?
            .with(
                Slot::from(14_000),
                SenderReportTap::new(handler.events.clone()),
            );
        let mut se = SettingEngineBuilder::new()
            // No mDNS: resolving `.local` candidates sends multicast queries off the box;
            // browsers' real addresses are learnt as peer-reflexive from their checks.
            .with_multicast_dns_mode(MulticastDnsMode::Disabled);
        if !ice.nat_1to1_ips.is_empty() {
            se = se.with_nat_1to1_ips(ice.nat_1to1_ips.clone(), RTCIceCandidateType::Host);
        }
        let config = RTCConfigurationBuilder::new().build();
        let built = PeerConnectionBuilder::new()
            .with_configuration(config)
            .with_media_engine(me)
            .with_setting_engine(se.build())
            .with_interceptor_registry(registry)
            .with_handler(Arc::clone(&handler) as Arc<dyn PeerConnectionEventHandler>)
            .with_udp_addrs(addrs)
            .build()
            .await;
        match built {
            Ok(pc) => return Ok(Arc::new(pc)),
            Err(e) => last_err = e.to_string(),
        }
    }
    Err(PeerError::Setup(format!(
        "cannot bind a UDP port: {last_err}"
    )))
}
