//! A WebSocket text message from a publisher: `ingest::ws::ClientMessage` (JSON), then
//! what the session does with it: an offer goes to `peer::inspect_offer`, a candidate to
//! the WebRTC stack's candidate parser.
//!
//! Asserts, beyond "returns":
//! - its heap is linear in the message (frames are admitted up to 256 KiB);
//! - it accepts only a JSON object whose `type` is `offer` or `candidate` with exactly that
//!   variant's fields (`deny_unknown_fields`), and never a message that is not JSON;
//! - the parsed message, written back as JSON, parses to the same message;
//! - what the session does next with it returns (the offer target checks the offer).
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};
use whipcast::ingest::ws::ClientMessage;
use whipcast_fuzz::{assert_linear_heap, metered, stack_parses_candidate};

/// Heap per message byte: the strings it holds (at most the message) and serde_json's
/// buffers for escapes.
const HEAP_PER_BYTE: usize = 8;

fuzz_target!(|data: &[u8]| {
    // Text frames are UTF-8 (RFC 6455 §5.6); axum refuses others before they get here.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (parsed, heap) = metered(|| serde_json::from_str::<ClientMessage>(text));
    assert_linear_heap(heap, text.len(), HEAP_PER_BYTE, "ClientMessage");
    let Ok(msg) = parsed else {
        return;
    };
    let value: Value = serde_json::from_str(text).expect("accepted a message that is not JSON");
    let obj = value
        .as_object()
        .expect("accepted a message that is not an object");
    let ty = obj.get("type").and_then(Value::as_str);
    let written = match &msg {
        ClientMessage::Offer { sdp } => {
            assert_eq!(ty, Some("offer"));
            assert!(obj.keys().all(|k| k == "type" || k == "sdp"), "{obj:?}");
            let _ = whipcast::peer::inspect_offer(sdp);
            json!({"type": "offer", "sdp": sdp})
        }
        ClientMessage::Candidate { candidate } => {
            assert_eq!(ty, Some("candidate"));
            assert!(
                obj.keys().all(|k| k == "type" || k == "candidate"),
                "{obj:?}"
            );
            if let Some(c) = candidate {
                stack_parses_candidate(&c.candidate);
            }
            json!({"type": "candidate", "candidate": candidate})
        }
    };
    let again: ClientMessage =
        serde_json::from_value(written.clone()).expect("our own JSON parses");
    assert_eq!(again, msg, "round trip through {written}");
});
