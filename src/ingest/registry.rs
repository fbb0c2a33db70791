//! The registry of sessions: which are still connecting (pending), which stream names are
//! live and by which session, and how to reach each session's broadcast task.
//!
//! A session is *pending* from its answer until its first video arrives; only then does
//! it claim its stream name. Pending sessions do not hold names (a publisher that never
//! connects cannot squat a name against its owner: the first session of a name to carry
//! media wins, the others end) and have their own small limits, global and per client,
//! apart from `server.max_streams`. One `std::sync::Mutex` over the maps, locked for a
//! lookup or an update and never held across `.await`.

use std::collections::HashMap;
use std::sync::MutexGuard;
use std::sync::atomic::Ordering;

use tokio::sync::mpsc;

use super::{Ingest, IngestError};
use crate::StreamKey;
use crate::broadcast::Command;
use crate::client::ClientId;

struct Session {
    stream: String,
    client: Option<ClientId>,
    /// Holds its stream name (media flowed); otherwise pending.
    live: bool,
    commands: Option<mpsc::Sender<Command>>,
}

#[derive(Default)]
pub(super) struct Registry {
    /// Live stream name → its session.
    streams: HashMap<String, String>,
    /// Every session, pending or live.
    sessions: HashMap<String, Session>,
    /// Pending sessions, in all and per client.
    pending: usize,
    pending_by_client: HashMap<ClientId, usize>,
    /// Each published session's ICE credentials, for PATCH (`patch`).
    pub(super) remote_ice: HashMap<String, super::patch::RemoteIce>,
}

impl Registry {
    fn unpend(&mut self, client: Option<ClientId>) {
        self.pending = self.pending.saturating_sub(1);
        if let Some(c) = client
            && let Some(n) = self.pending_by_client.get_mut(&c)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.pending_by_client.remove(&c);
            }
        }
    }

    /// Sessions live and connecting: what a new one would add to.
    pub(super) fn load(&self) -> usize {
        self.streams.len() + self.pending
    }

    /// Every session id, pending ones included.
    pub(super) fn session_ids(&self) -> Vec<String> {
        self.sessions.keys().cloned().collect()
    }
}

impl Ingest {
    pub(super) fn registry(&self) -> MutexGuard<'_, Registry> {
        self.inner
            .registry
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a pending session for `key`: refused when the name is live, the server is
    /// at its stream limit (a pending session could not go live), or too many sessions are
    /// connecting (in all, or from this client).
    pub(super) fn reserve(
        &self,
        key: &StreamKey,
        session_id: &str,
        client: Option<ClientId>,
    ) -> Result<Reservation<'_>, IngestError> {
        let limits = &self.inner.limits;
        let mut reg = self.registry();
        if self.inner.closing.load(Ordering::SeqCst) {
            return Err(IngestError::ShuttingDown);
        }
        if reg.streams.contains_key(key.as_str()) {
            return Err(IngestError::StreamInUse(key.to_string()));
        }
        if reg.streams.len() >= self.inner.max_streams {
            return Err(IngestError::TooManyStreams);
        }
        if reg.pending >= limits.max_pending_sessions {
            return Err(IngestError::TooManyPending);
        }
        if let Some(c) = client
            && reg.pending_by_client.get(&c).copied().unwrap_or(0)
                >= limits.max_pending_sessions_per_client
        {
            return Err(IngestError::ClientPendingLimit);
        }
        reg.pending += 1;
        if let Some(c) = client {
            *reg.pending_by_client.entry(c).or_insert(0) += 1;
        }
        reg.sessions.insert(
            session_id.to_string(),
            Session {
                stream: key.to_string(),
                client,
                live: false,
                commands: None,
            },
        );
        Ok(Reservation {
            ingest: self,
            session_id: session_id.to_string(),
            committed: false,
        })
    }

    /// Makes pending session `session_id` the owner of its stream name, now that its media
    /// flows: refused when another session got there first, the server is at its stream
    /// limit, or it is shutting down.
    pub(super) fn claim(&self, session_id: &str) -> Result<(), IngestError> {
        let mut reg = self.registry();
        if self.inner.closing.load(Ordering::SeqCst) {
            return Err(IngestError::ShuttingDown);
        }
        let (stream, client) = match reg.sessions.get(session_id) {
            Some(s) if s.live => return Ok(()),
            Some(s) => (s.stream.clone(), s.client),
            None => return Err(IngestError::SessionNotFound),
        };
        if reg.streams.contains_key(&stream) {
            return Err(IngestError::StreamInUse(stream));
        }
        if reg.streams.len() >= self.inner.max_streams {
            return Err(IngestError::TooManyStreams);
        }
        reg.unpend(client);
        reg.streams.insert(stream, session_id.to_string());
        if let Some(s) = reg.sessions.get_mut(session_id) {
            s.live = true;
        }
        Ok(())
    }

    /// Tells the live session of `stream`, if any, that its name is another node's now.
    pub(super) fn fence(&self, stream: &str) {
        let tx = {
            let reg = self.registry();
            reg.streams
                .get(stream)
                .and_then(|sid| reg.sessions.get(sid))
                .and_then(|s| s.commands.clone())
        };
        if let Some(tx) = tx
            && tx.try_send(Command::ClaimLost).is_err()
        {
            tracing::warn!(stream, "could not tell the broadcast its claim is lost");
        }
    }

    /// Whether `session_id` holds its stream name.
    pub(super) fn is_live(&self, session_id: &str) -> bool {
        self.registry()
            .sessions
            .get(session_id)
            .is_some_and(|s| s.live)
    }

    pub(super) fn release(&self, session_id: &str) {
        let mut reg = self.registry();
        reg.remote_ice.remove(session_id);
        let Some(s) = reg.sessions.remove(session_id) else {
            return;
        };
        if s.live {
            if reg
                .streams
                .get(&s.stream)
                .is_some_and(|id| id == session_id)
            {
                reg.streams.remove(&s.stream);
            }
        } else {
            reg.unpend(s.client);
        }
    }

    /// The stream a session belongs to.
    pub fn session_stream(&self, session_id: &str) -> Option<String> {
        self.registry()
            .sessions
            .get(session_id)
            .map(|s| s.stream.clone())
    }

    pub(super) fn commands(&self, session_id: &str) -> Result<mpsc::Sender<Command>, IngestError> {
        let reg = self.registry();
        let s = reg
            .sessions
            .get(session_id)
            .ok_or(IngestError::SessionNotFound)?;
        s.commands.clone().ok_or(IngestError::Busy)
    }
}

/// A registered pending session; released on drop unless committed.
pub(super) struct Reservation<'a> {
    ingest: &'a Ingest,
    session_id: String,
    committed: bool,
}

impl Reservation<'_> {
    /// Hands the session its broadcast task's command channel. Refused once shutdown began
    /// (a publish that was being answered when it did must not outlive it).
    pub(super) fn commit(mut self, commands: mpsc::Sender<Command>) -> Result<(), IngestError> {
        let open = {
            let mut reg = self.ingest.registry();
            let open = !self.ingest.inner.closing.load(Ordering::SeqCst);
            if open && let Some(s) = reg.sessions.get_mut(&self.session_id) {
                s.commands = Some(commands);
            }
            open
        };
        // Dropped uncommitted (after the lock is released): the session is forgotten.
        if !open {
            return Err(IngestError::ShuttingDown);
        }
        self.committed = true;
        Ok(())
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if !self.committed {
            self.ingest.release(&self.session_id);
        }
    }
}
