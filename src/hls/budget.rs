//! The per-stream memory budget (`hls.stream_memory_mib`): past it, the oldest segments go
//! to the disk (`hls.dvr_overflow = "disk"`, through the spill writer) or are dropped.

use std::sync::Arc;

use tracing::warn;

use super::spill::{Job, SpillKey, Spiller, Written};
use super::stream::StreamState;

impl StreamState {
    /// renamed, so a CDN that cached one keeps serving it; only the origin forgets it.
    pub(super) fn enforce_budget(&mut self, stream: &str, budget: usize, spill: Option<&Spiller>) {
        let st = self;
        let mut held: usize = st.renditions.values().map(|r| r.window.bytes()).sum();
        if held <= budget {
            return;
        }
        if let Some(sp) = spill.filter(|sp| !sp.failed()) {
            let mut pending: usize = st
                .renditions
                .values()
                .map(|r| r.window.pending_bytes())
                .sum();
            while held - pending > budget {
                let oldest = st
                    .renditions
                    .iter_mut()
                    .filter_map(|(name, r)| {
                        r.window
                            .oldest_in_memory()
                            .map(|(seq, t)| (t, seq, name, r))
                    })
                    .min_by_key(|(t, ..)| *t);
                let Some((_, seq, name, r)) = oldest else {
                    break;
                };
                let key = SpillKey {
                    stream: stream.to_string(),
                    epoch: st.epoch.clone(),
                    rendition: name.clone(),
                    seq,
                };
                let Some(data) = r.window.spill_begin(seq) else {
                    break;
                };
                let len = data.len();
                let path = Arc::new(sp.path(&key));
                if !sp.send(Job::Write { key, path, data }) {
                    // The disk is behind: keep it in memory for now, retry on the next publish.
                    r.window.spill_failed(seq);
                    break;
                }
                pending += len;
            }
            return;
        }
        let mut trimmed = 0usize;
        while held > budget {
            let oldest = st
                .renditions
                .values_mut()
                .filter_map(|r| r.window.oldest_wallclock().map(|t| (t, r)))
                .min_by_key(|(t, _)| *t);
            let Some((_, r)) = oldest else { break };
            let Some(freed) = r.window.trim_oldest() else {
                // Down to the minimum listed segments in the oldest rendition: try no further
                // (a budget this small is a configuration problem, logged below).
                break;
            };
            held -= freed;
            trimmed += 1;
        }
        if trimmed > 0 {
            st.trimmed_segments += trimmed as u64;
            if st.trimmed_segments == trimmed as u64 {
                warn!(
                    budget_mib = budget >> 20,
                    "stream memory budget reached: dropping the oldest segments (hls.stream_memory_mib)"
                );
            }
        }
    }

    /// The spill writer's report for one segment; returns whether the store still wants the
    /// file. Runs on the writer thread, under this stream's lock.
    pub(super) fn spilled(&mut self, key: &SpillKey, result: Written) -> bool {
        let st = self;
        if st.epoch != key.epoch {
            return false;
        }
        let Some(r) = st.renditions.get_mut(&key.rendition) else {
            return false;
        };
        match result {
            Written::To(path) => {
                let kept = r.window.spill_done(key.seq, path).is_some();
                if kept {
                    st.spilled_segments += 1;
                }
                kept
            }
            Written::Failed => {
                r.window.spill_failed(key.seq);
                false
            }
        }
    }

    /// Hands the files of spilled segments that left a window to the writer for deletion.
    pub(super) fn delete_dropped(&mut self, spill: Option<&Spiller>) {
        let st = self;
        let Some(sp) = spill else { return };
        for r in st.renditions.values_mut() {
            for path in r.window.take_dropped_files() {
                if !sp.send(Job::Delete(Arc::clone(&path))) {
                    warn!(path = %path.display(), "spill queue full: file left behind");
                }
            }
        }
    }
}
