//! Reading an offer with the WebRTC stack's own SDP parser, into the [`OfferSection`]s
//! that [`sdp`] judges. Pure: text in, summary out; runs before any connection exists.

use super::sdp::{self, Direction, OfferSection, OfferSummary, SdpError};
use super::{candidates, sdp_numbers};

/// The text of an offer as it is inspected and negotiated: without a leading byte-order
/// mark or white space, which some clients send and the stack's parser refuses (RFC 8866
/// §5: a description starts with `v=`). [`inspect_offer`] and
/// [`PeerSession::answer`](super::PeerSession::answer) both read this text, so an offer
/// that passes inspection is one the stack parses.
pub fn offer_text(text: &str) -> &str {
    text.trim_start_matches('\u{feff}').trim_start()
}

/// The id of an `a=rid` line that sends (RFC 8851 §10: `a=rid:<rid-id> send|recv
/// [restrictions]`), `None` for a `recv` one. An id must be `1*(ALPHA / DIGIT / "-" /
/// "_")` (RFC 8851 §10); it also has to fit the RtpStreamId header extension of a one-byte
/// header (16 bytes, RFC 8285 §4.2), which carries it on every packet.
fn send_rid(value: &str) -> Result<Option<String>, SdpError> {
    let mut words = value.split_ascii_whitespace();
    let (Some(id), Some(direction)) = (words.next(), words.next()) else {
        return Err(SdpError::Malformed(format!("a=rid:{value}")));
    };
    let valid = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    if id.len() > 16 || !id.chars().all(valid) {
        return Err(SdpError::Malformed(format!("a=rid id {id:?}")));
    }
    match direction {
        "send" => Ok(Some(id.to_string())),
        "recv" => Ok(None),
        _ => Err(SdpError::Malformed(format!(
            "a=rid direction {direction:?}"
        ))),
    }
}

/// Reads an offer with the WebRTC stack's own SDP parser (the one `set_remote_description`
/// uses, so what we inspect is what will be negotiated) and applies [`sdp`]'s rules.
pub fn inspect_offer(text: &str) -> Result<OfferSummary, SdpError> {
    let text = offer_text(text);
    let desc = rtc::sdp::SessionDescription::unmarshal(&mut std::io::Cursor::new(text))
        .map_err(|e| SdpError::Malformed(e.to_string()))?;
    // RFC 4566 §6: a direction attribute at session level applies to every section that
    // has none of its own (OBS puts some attributes only there).
    let session_direction = desc
        .attributes
        .iter()
        .find_map(|a| Direction::from_attribute(&a.key));
    // Candidates anywhere must be RFC 8839 candidates: the session filters them by what
    // they name (peer::candidates), and the stack refuses the offer for one it cannot read.
    let all_attributes = desc.attributes.iter().chain(
        desc.media_descriptions
            .iter()
            .flat_map(|m| m.attributes.iter()),
    );
    for a in all_attributes.filter(|a| a.key == "candidate") {
        candidates::parse(a.value.as_deref().unwrap_or(""))
            .map_err(|e| SdpError::Malformed(e.to_string()))?;
    }
    let sections = desc
        .media_descriptions
        .iter()
        .map(|m| {
            let port = u16::try_from(m.media_name.port.value).map_err(|_| {
                SdpError::Malformed(format!("m={} port out of range", m.media_name.media))
            })?;
            if m.media_name.protos.iter().any(|p| p == "RTP") {
                for f in &m.media_name.formats {
                    sdp_numbers::check_rtp_format(&m.media_name.media, f)?;
                }
                for a in &m.attributes {
                    sdp_numbers::check_rtp_attribute(&a.key, a.value.as_deref())?;
                }
            }
            let mut codecs: Vec<(u8, String)> = m
                .codecs()
                .into_values()
                .filter(|c| !c.name.is_empty())
                .map(|c| (c.payload_type, c.name))
                .collect();
            // Offer order is the order of the m= line's format list (RFC 8866 §5.14). The
            // stack hands the codecs over in a HashMap's order, so payload types the list
            // lacks are ordered by number: the same offer always gives the same summary.
            // Each payload type's first position, found in one pass over the list: the
            // list is as long as the offer allows, so it is not searched once per codec.
            let mut first = [usize::MAX; 256];
            for (i, f) in m.media_name.formats.iter().enumerate().rev() {
                if let Ok(pt) = f.parse::<u8>() {
                    first[usize::from(pt)] = i;
                }
            }
            codecs.sort_by_key(|(pt, _)| (first[usize::from(*pt)], *pt));
            let mut send_rids = Vec::new();
            for a in m.attributes.iter().filter(|a| a.key == "rid") {
                if let Some(rid) = send_rid(a.value.as_deref().unwrap_or(""))?
                    && !send_rids.contains(&rid)
                {
                    send_rids.push(rid);
                }
            }
            Ok(OfferSection {
                media: m.media_name.media.clone(),
                send_rids,
                port,
                bundle_only: m.has_attribute("bundle-only"),
                direction: m
                    .attributes
                    .iter()
                    .find_map(|a| Direction::from_attribute(&a.key))
                    .or(session_direction),
                codecs,
            })
        })
        .collect::<Result<Vec<_>, SdpError>>()?;
    let mut summary = sdp::summarize(&sections)?;
    // Where the stack reads the ICE credentials (RFC 8839 §5.4): session level, else the
    // first section that is not inactive.
    let media_attr = |key: &str| {
        desc.media_descriptions
            .iter()
            .filter(|m| !m.has_attribute("inactive"))
            .find_map(|m| m.attribute(key).flatten().map(str::to_string))
    };
    summary.ice_ufrag = desc
        .attribute("ice-ufrag")
        .map(|s| s.to_string())
        .or_else(|| media_attr("ice-ufrag"));
    summary.ice_pwd = desc
        .attribute("ice-pwd")
        .map(|s| s.to_string())
        .or_else(|| media_attr("ice-pwd"));
    Ok(summary)
}
