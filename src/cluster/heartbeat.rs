//! The heartbeat: every third of `cluster.claim_ttl`, the node renews its registration
//! (URL, load, draining) and each claim it holds, claims in Redis the names that went live
//! while Redis was down, and hands the names it lost to the ingest. One task per node; the
//! broadcasts never wait on it.

use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::scripts::{ClaimResult, Renewal};
use super::{Cluster, Held, NodeInfo};

impl Cluster {
    /// Starts the heartbeat (the first beat at once); abort the handle to stop it.
    pub fn spawn_heartbeat(&self) -> JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(this.inner.ttl / 3);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                this.beat().await;
            }
        })
    }

    async fn beat(&self) {
        self.register().await;
        if let Ok(nodes) = self.nodes().await {
            self.inner.metrics.nodes.set(nodes.len() as i64);
        }
        let held: Vec<(String, Held)> = self
            .held()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (stream, was) in held {
            match was {
                Held::Claimed(owner) => {
                    let mut conn = self.inner.conn.clone();
                    let progress = (self.inner.progress)(&stream);
                    let inv = self.inner.scripts.renew(
                        &self.inner.keys,
                        &stream,
                        &owner,
                        self.inner.ttl,
                        progress,
                    );
                    // Redis down: keep streaming; the claim is renewed (or put back) when
                    // it answers again.
                    let Ok(reply) = self
                        .call(
                            "renew",
                            async move { inv.invoke_async::<i64>(&mut conn).await },
                        )
                        .await
                    else {
                        continue;
                    };
                    match Renewal::from_reply(reply) {
                        Renewal::Renewed => {}
                        Renewal::Restored => {
                            info!(%stream, token = owner.token, "cluster: claim put back after Redis lost it");
                            // Released while this beat ran: take it away again.
                            if !self.held().contains_key(&stream) {
                                self.held().insert(stream.clone(), Held::Claimed(owner));
                                self.release(&stream).await;
                            }
                        }
                        Renewal::Lost => self.lose(&stream, &Held::Claimed(owner)).await,
                    }
                }
                Held::LocalOnly => match self.claim_in_redis(&stream).await {
                    Ok(ClaimResult::Claimed(owner, _)) => {
                        info!(%stream, token = owner.token, "cluster: claimed after Redis came back");
                        let mut held = self.held();
                        if held.get(&stream) == Some(&Held::LocalOnly) {
                            held.insert(stream.clone(), Held::Claimed(owner));
                        }
                    }
                    Ok(ClaimResult::Taken(owner)) if owner.node == self.inner.node => {
                        let mut held = self.held();
                        if held.get(&stream) == Some(&Held::LocalOnly) {
                            held.insert(stream.clone(), Held::Claimed(owner));
                        }
                    }
                    Ok(ClaimResult::Taken(_)) => self.lose(&stream, &Held::LocalOnly).await,
                    Err(_) => {}
                },
            }
        }
        let held = self.held().len();
        self.inner.metrics.claims.set(held as i64);
    }

    /// Another node holds `stream`: forget it and tell the ingest, which ends that
    /// broadcast (its playlists get ENDLIST here; the other node's are the stream now).
    async fn lose(&self, stream: &str, was: &Held) {
        {
            let mut held = self.held();
            if held.get(stream) != Some(was) {
                return;
            }
            held.remove(stream);
        }
        warn!(
            stream,
            "cluster: claim lost to another node; ending the stream here"
        );
        let _ = self.inner.lost.send(stream.to_string()).await;
    }

    async fn register(&self) {
        let info = NodeInfo {
            id: self.inner.node.clone(),
            url: self.inner.url.clone(),
            streams: self.held().len(),
            capacity: self.inner.capacity,
            draining: self
                .inner
                .draining
                .load(std::sync::atomic::Ordering::Relaxed),
        };
        let Ok(json) = serde_json::to_string(&info) else {
            return;
        };
        let mut conn = self.inner.conn.clone();
        let keys = self.inner.keys.clone();
        let node = self.inner.node.clone();
        let ttl = u64::try_from(self.inner.ttl.as_millis()).unwrap_or(u64::MAX);
        let _ = self
            .call("register", async move {
                redis::pipe()
                    .cmd("SET")
                    .arg(keys.node(&node))
                    .arg(json)
                    .arg("PX")
                    .arg(ttl)
                    .ignore()
                    .cmd("SADD")
                    .arg(keys.nodes())
                    .arg(&node)
                    .ignore()
                    .query_async::<()>(&mut conn)
                    .await
            })
            .await;
    }
}
