//! The registry of live sessions: which stream names are taken, by which session, and how
//! to reach each session's broadcast task. One `std::sync::Mutex` over two maps, locked
//! for a lookup or an insert and never held across `.await`. A name is reserved before the
//! answer is built and released by the [`Reservation`]'s drop if publishing fails midway.

use std::collections::HashMap;
use std::sync::MutexGuard;

use tokio::sync::mpsc;

use super::{Ingest, IngestError};
use crate::StreamKey;
use crate::broadcast::Command;

struct Entry {
    session_id: String,
    commands: Option<mpsc::Sender<Command>>,
}

#[derive(Default)]
pub(super) struct Registry {
    streams: HashMap<String, Entry>,
    pub(super) sessions: HashMap<String, String>,
    /// Each published session's ICE credentials, for PATCH (`patch`).
    pub(super) remote_ice: HashMap<String, super::patch::RemoteIce>,
}

impl Ingest {
    pub(super) fn registry(&self) -> MutexGuard<'_, Registry> {
        self.inner
            .registry
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn reserve(
        &self,
        key: &StreamKey,
        session_id: &str,
    ) -> Result<Reservation<'_>, IngestError> {
        let mut reg = self.registry();
        if self.inner.closing.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(IngestError::ShuttingDown);
        }
        if reg.streams.contains_key(key.as_str()) {
            return Err(IngestError::StreamInUse(key.to_string()));
        }
        if reg.streams.len() >= self.inner.max_streams {
            return Err(IngestError::TooManyStreams);
        }
        reg.streams.insert(
            key.to_string(),
            Entry {
                session_id: session_id.to_string(),
                commands: None,
            },
        );
        reg.sessions.insert(session_id.to_string(), key.to_string());
        Ok(Reservation {
            ingest: self,
            session_id: session_id.to_string(),
            committed: false,
        })
    }

    pub(super) fn release(&self, session_id: &str) {
        let mut reg = self.registry();
        reg.remote_ice.remove(session_id);
        if let Some(stream) = reg.sessions.remove(session_id)
            && reg
                .streams
                .get(&stream)
                .is_some_and(|e| e.session_id == session_id)
        {
            reg.streams.remove(&stream);
        }
    }

    /// The stream a session belongs to.
    pub fn session_stream(&self, session_id: &str) -> Option<String> {
        self.registry().sessions.get(session_id).cloned()
    }

    pub(super) fn commands(&self, session_id: &str) -> Result<mpsc::Sender<Command>, IngestError> {
        let reg = self.registry();
        let stream = reg
            .sessions
            .get(session_id)
            .ok_or(IngestError::SessionNotFound)?;
        reg.streams
            .get(stream)
            .and_then(|e| e.commands.clone())
            .ok_or(IngestError::Busy)
    }
}

/// A reserved stream name; released on drop unless committed.
pub(super) struct Reservation<'a> {
    ingest: &'a Ingest,
    session_id: String,
    committed: bool,
}

impl Reservation<'_> {
    pub(super) fn commit(mut self, commands: mpsc::Sender<Command>) {
        let mut reg = self.ingest.registry();
        if let Some(stream) = reg.sessions.get(&self.session_id).cloned()
            && let Some(e) = reg.streams.get_mut(&stream)
        {
            e.commands = Some(commands);
        }
        self.committed = true;
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if !self.committed {
            self.ingest.release(&self.session_id);
        }
    }
}
