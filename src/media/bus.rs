//! The pipeline's messages into async code: the bus watch (every `Error` is fatal to the
//! stream, EOS ends the drain) and upstream keyframe requests that become RTCP PLI.

use futures::StreamExt;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use tokio::sync::mpsc;
use tracing::warn;

use super::{MediaError, MediaEvent};

/// Every bus `Error` is fatal to this stream; warnings are logged; EOS ends the drain.
pub(super) async fn watch_bus(bus: gst::Bus, events: mpsc::Sender<MediaEvent>) {
    let mut stream = bus.stream();
    while let Some(msg) = stream.next().await {
        match msg.view() {
            gst::MessageView::Error(err) => {
                let element = msg
                    .src()
                    .map(|s| s.path_string().to_string())
                    .unwrap_or_else(|| "<unknown>".into());
                let e = MediaError::Element {
                    element,
                    message: err.error().to_string(),
                    debug: err.debug().map(|d| d.to_string()).unwrap_or_default(),
                };
                let _ = events.send(MediaEvent::Error(e)).await;
                return;
            }
            gst::MessageView::Warning(w) => {
                let element = msg.src().map(|s| s.path_string().to_string());
                warn!(element, warning = %w.error(), "pipeline warning");
            }
            gst::MessageView::Eos(_) => {
                let _ = events.send(MediaEvent::Eos).await;
                return;
            }
            _ => {}
        }
    }
}

/// Upstream force-key-unit events (from the depayloader on loss, the decoder on corrupt
/// input) reaching the appsrc become [`MediaEvent::KeyframeRequest`] → RTCP PLI.
pub(super) fn watch_keyframe_requests(appsrc: &gst_app::AppSrc, events: &mpsc::Sender<MediaEvent>) {
    let Some(pad) = appsrc.static_pad("src") else {
        return;
    };
    let events = events.clone();
    pad.add_probe(gst::PadProbeType::EVENT_UPSTREAM, move |_pad, info| {
        if let Some(gst::PadProbeData::Event(ev)) = &info.data
            && ev
                .structure()
                .is_some_and(|s| s.name() == "GstForceKeyUnit")
        {
            // Dropping a request when the channel is full is fine: one is pending.
            let _ = events.try_send(MediaEvent::KeyframeRequest);
        }
        gst::PadProbeReturn::Ok
    });
}
