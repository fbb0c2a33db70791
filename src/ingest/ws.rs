//! WebSocket signalling at `GET /ws/{stream}[?token=…]`: JSON text messages.
//!
//! Client → server: `{"type":"offer","sdp":…}`, `{"type":"candidate","candidate":{…}}`.
//! Server → client: `{"type":"answer","sdp":…}`, `{"type":"candidate",…}`,
//! `{"type":"error","message":…}`, `{"type":"ended","reason":…}`.
//! Anything wrong gets an `error` message and the socket stays usable; closing the socket
//! ends the broadcast. Browsers cannot set headers on a WebSocket, hence `?token=`.

use std::net::SocketAddr;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tracing::{Instrument, info, info_span, warn};

use super::{
    Admission, Candidate, Ingest, PublishOptions, PublishRequest, Signaling, SignalingState,
};
use crate::client::ClientId;

/// Largest accepted frame: an SDP offer plus JSON framing.
const MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// Client candidates held until the offer is answered (browsers trickle early).
const MAX_PENDING_CANDIDATES: usize = 64;

/// Server candidates waiting to be written to the socket.
const CANDIDATE_CHANNEL_CAPACITY: usize = 16;

/// Messages from the publisher.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "camelCase", deny_unknown_fields)]
pub enum ClientMessage {
    /// The SDP offer.
    Offer {
        /// SDP text.
        sdp: String,
    },
    /// A trickled candidate.
    Candidate {
        /// The candidate; `null` means end of candidates.
        candidate: Option<Candidate>,
    },
}

/// Messages to the publisher.
#[derive(Debug, Serialize, PartialEq)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum ServerMessage {
    /// The SDP answer.
    Answer {
        /// SDP text.
        sdp: String,
    },
    /// A server candidate.
    Candidate {
        /// The candidate.
        candidate: Candidate,
    },
    /// Something was wrong with the last message (or the publish).
    Error {
        /// Human-readable reason.
        message: String,
        /// HTTP-equivalent status, for clients that branch on it (401, 409, …).
        status: u16,
    },
    /// The broadcast ended (server side).
    Ended {
        /// Why.
        reason: String,
    },
    /// Publish on this WebSocket URL instead (a node of the cluster with room); the
    /// server closes this socket. Browsers do not follow HTTP redirects on a WebSocket
    /// upgrade, so the bundled page follows this message.
    Redirect {
        /// `ws://` or `wss://` URL, query included.
        url: String,
    },
}

/// `GET /ws/{stream}`
pub async fn upgrade(
    State(state): State<SignalingState>,
    Path(stream): Path<String>,
    super::whip::Client(client): super::whip::Client,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let token = query
        .as_deref()
        .and_then(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "token")
                .map(|(_, v)| v.into_owned())
        })
        .or_else(|| super::whip::bearer(&headers));
    // The rate and bad options are refused before the upgrade, as plain HTTP.
    if let Err(e) = state.ingest.attempt(client.map(|a| ClientId::of(a.ip()))) {
        state.ingest.refused(&e);
        return e.into_response();
    }
    let options = match super::options::publish_options(query.as_deref()) {
        Ok(o) => o,
        Err(e) => {
            state.ingest.refused(&e);
            return e.into_response();
        }
    };
    let ingest = state.ingest.clone();
    ws.max_message_size(MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| {
            let span = info_span!("ws", %stream);
            session(socket, ingest, stream, token, options, client, query).instrument(span)
        })
}

async fn send(socket: &mut WebSocket, msg: &ServerMessage) -> bool {
    match serde_json::to_string(msg) {
        Ok(text) => socket.send(Message::Text(text.into())).await.is_ok(),
        Err(_) => false,
    }
}

async fn send_error(socket: &mut WebSocket, message: String, status: u16) -> bool {
    warn!(status, %message, "signalling error");
    send(socket, &ServerMessage::Error { message, status }).await
}

/// Sends a close frame (RFC 6455 §5.5.1) with `code`; the socket may already be gone.
async fn close(socket: &mut WebSocket, code: u16, reason: &'static str) {
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        })))
        .await;
}

struct Live {
    session_id: String,
    ended: oneshot::Receiver<String>,
}

async fn session(
    mut socket: WebSocket,
    ingest: Ingest,
    stream: String,
    token: Option<String>,
    options: PublishOptions,
    client: Option<SocketAddr>,
    query: Option<String>,
) {
    // In a cluster, a full or draining node sends the publisher to the node with the most
    // room (the target checks the name and the token).
    if let Some(key) = crate::StreamKey::parse(&stream)
        && let Some(node) = ingest.elsewhere().await
    {
        let base = match node.strip_prefix("https://") {
            Some(rest) => format!("wss://{rest}"),
            None => format!("ws://{}", node.trim_start_matches("http://")),
        };
        let url = match &query {
            Some(q) => format!("{base}/ws/{key}?{q}"),
            None => format!("{base}/ws/{key}"),
        };
        info!(stream = %key, node = %node, "publish redirected to another node");
        ingest.redirected(Signaling::WebSocket);
        send(&mut socket, &ServerMessage::Redirect { url }).await;
        close(&mut socket, 1000, "redirected").await;
        return;
    }
    // Refuse early when the name or token is wrong, or the operator's checks (JWT,
    // callback) refuse: nothing else could succeed.
    let who = Admission {
        client,
        signaling: Signaling::WebSocket,
        token: token.as_deref(),
        query: query.as_deref(),
    };
    let options = match ingest.admit(&stream, &who, options).await {
        Ok(o) => o,
        Err(e) => {
            ingest.refused(&e);
            let code = e.status();
            send_error(&mut socket, e.to_string(), code).await;
            let _ = socket
                .send(Message::Close(Some(CloseFrame {
                    code: 4000 + code,
                    reason: e.to_string().chars().take(100).collect::<String>().into(),
                })))
                .await;
            return;
        }
    };
    let (cand_tx, mut cand_rx) = mpsc::channel::<Candidate>(CANDIDATE_CHANNEL_CAPACITY);
    let mut live: Option<Live> = None;
    let mut pending: Vec<Candidate> = Vec::new();
    let limits = ingest.limits();
    let offer_deadline = tokio::time::sleep(limits.ws_offer_timeout);
    tokio::pin!(offer_deadline);
    let mut offered = false;
    let mut ping = tokio::time::interval_at(
        tokio::time::Instant::now() + limits.ws_ping_interval,
        limits.ws_ping_interval,
    );
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut awaiting_pong = false;
    loop {
        tokio::select! {
            msg = socket.recv() => {
                let msg = match msg {
                    Some(Ok(m)) => m,
                    Some(Err(e)) => {
                        // RFC 6455 §7.4.1: 1009 for a message too big to process; other
                        // read errors (a protocol violation, a reset) end the socket.
                        let too_big = e
                            .into_inner()
                            .downcast_ref::<tungstenite::Error>()
                            .is_some_and(|e| matches!(e, tungstenite::Error::Capacity(_)));
                        if too_big {
                            warn!(limit = MAX_MESSAGE_BYTES, "message too big; closing");
                            close(&mut socket, 1009, "message too big").await;
                        }
                        break;
                    }
                    None => break,
                };
                let text = match msg {
                    Message::Text(t) => t,
                    Message::Binary(_) => {
                        if !send_error(&mut socket, "binary frames are not supported; send JSON text".into(), 400).await { break; }
                        continue;
                    }
                    Message::Close(_) => break,
                    Message::Pong(_) => {
                        awaiting_pong = false;
                        continue;
                    }
                    Message::Ping(_) => continue,
                };
                let parsed: Result<ClientMessage, _> = serde_json::from_str(text.as_str());
                match parsed {
                    Err(e) => {
                        if !send_error(&mut socket, format!("invalid message: {e}"), 400).await { break; }
                    }
                    Ok(ClientMessage::Offer { sdp }) => {
                        offered = true;
                        if live.is_some() {
                            if !send_error(&mut socket, "already publishing on this socket".into(), 409).await { break; }
                            continue;
                        }
                        let req = PublishRequest {
                            stream: stream.clone(),
                            token: token.clone(),
                            offer: sdp,
                            signaling: Signaling::WebSocket,
                            candidates: Some(cand_tx.clone()),
                            options,
                            client: client.map(|a| ClientId::of(a.ip())),
                        };
                        match ingest.publish(req).await {
                            Ok(p) => {
                                info!(session = %&p.session_id[..8], "WebSocket publish started");
                                let ok = send(&mut socket, &ServerMessage::Answer { sdp: p.answer }).await;
                                for c in pending.drain(..) {
                                    if let Err(e) = ingest.add_candidate(&p.session_id, c).await {
                                        warn!(error = %e, "queued candidate refused");
                                    }
                                }
                                live = Some(Live { session_id: p.session_id, ended: p.ended });
                                if !ok { break; }
                            }
                            Err(e) => {
                                let code = e.status();
                                if !send_error(&mut socket, e.to_string(), code).await { break; }
                            }
                        }
                    }
                    Ok(ClientMessage::Candidate { candidate: None }) => {}
                    Ok(ClientMessage::Candidate { candidate: Some(c) }) => match &live {
                        Some(l) => {
                            if let Err(e) = ingest.add_candidate(&l.session_id, c).await {
                                let code = e.status();
                                if !send_error(&mut socket, e.to_string(), code).await { break; }
                            }
                        }
                        None if pending.len() < MAX_PENDING_CANDIDATES => pending.push(c),
                        None => {
                            if !send_error(&mut socket, "too many candidates before the offer".into(), 400).await { break; }
                        }
                    },
                }
            }
            () = &mut offer_deadline, if !offered => {
                send_error(&mut socket, format!("no offer within {:?} of connecting", limits.ws_offer_timeout), 408).await;
                close(&mut socket, 1008, "no offer").await;
                break;
            }
            _ = ping.tick() => {
                if awaiting_pong {
                    warn!("no pong to the last ping; closing");
                    close(&mut socket, 1001, "no pong").await;
                    break;
                }
                awaiting_pong = true;
                if socket.send(Message::Ping(Default::default())).await.is_err() { break; }
            }
            Some(c) = cand_rx.recv() => {
                if !send(&mut socket, &ServerMessage::Candidate { candidate: c }).await { break; }
            }
            reason = ended(&mut live) => {
                let _ = send(&mut socket, &ServerMessage::Ended { reason }).await;
                live = None;
                let _ = socket.send(Message::Close(Some(CloseFrame { code: 1000, reason: "broadcast ended".into() }))).await;
                break;
            }
        }
    }
    if let Some(l) = live {
        if let Err(e) = ingest.unpublish(&l.session_id).await {
            warn!(error = %e, "unpublish on socket close");
        }
        info!("WebSocket closed; broadcast ended");
    }
}

async fn ended(live: &mut Option<Live>) -> String {
    match live {
        Some(l) => (&mut l.ended).await.unwrap_or_else(|_| "ended".into()),
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_messages_parse() {
        let m: ClientMessage =
            serde_json::from_str(r#"{"type":"offer","sdp":"v=0"}"#).expect("offer");
        assert_eq!(m, ClientMessage::Offer { sdp: "v=0".into() });
        let m: ClientMessage = serde_json::from_str(
            r#"{"type":"candidate","candidate":{"candidate":"candidate:1 1 udp 1 127.0.0.1 5 typ host","sdpMid":"0","sdpMLineIndex":0}}"#,
        )
        .expect("candidate");
        let ClientMessage::Candidate { candidate: Some(c) } = m else {
            panic!("candidate expected");
        };
        assert_eq!(c.sdp_mline_index, Some(0));
        let m: ClientMessage =
            serde_json::from_str(r#"{"type":"candidate","candidate":null}"#).expect("eoc");
        assert_eq!(m, ClientMessage::Candidate { candidate: None });
        assert!(serde_json::from_str::<ClientMessage>(r#"{"type":"hello"}"#).is_err());
        assert!(serde_json::from_str::<ClientMessage>("not json").is_err());
    }

    #[test]
    fn server_messages_serialize() {
        let s = serde_json::to_string(&ServerMessage::Error {
            message: "x".into(),
            status: 409,
        })
        .expect("json");
        assert_eq!(s, r#"{"type":"error","message":"x","status":409}"#);
        let s = serde_json::to_string(&ServerMessage::Answer { sdp: "v=0".into() }).expect("json");
        assert_eq!(s, r#"{"type":"answer","sdp":"v=0"}"#);
    }
}
