//! The authorization and webhook figures: each decision of the JWT check and of the
//! operator's callback, JWKS fetches, play decisions served from the cache, and each
//! webhook delivery by event and outcome. Written by [`crate::auth`]; a clone shares them.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

/// Which check decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)] // the label values as operators read them
pub enum AuthCheck {
    /// `[auth.jwt]`.
    jwt,
    /// `[auth.callback]`.
    callback,
}

/// What was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum AuthAction {
    /// A publish (WHIP POST, WebSocket).
    publish,
    /// An HLS playlist request.
    play,
}

/// What a check decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum AuthResult {
    /// Allowed.
    allow,
    /// Refused (401 / 403).
    deny,
    /// The check could not be made and the request was refused with 503.
    unavailable,
    /// The callback could not be asked and `fail_open` allowed the request.
    fail_open,
}

/// A lifecycle event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum HookEvent {
    /// A broadcast started.
    publish_started,
    /// A broadcast ended.
    publish_ended,
    /// A recording wrote its last file (or stopped on an error).
    recording_finished,
}

impl HookEvent {
    /// Every event.
    pub const ALL: [HookEvent; 3] = [
        HookEvent::publish_started,
        HookEvent::publish_ended,
        HookEvent::recording_finished,
    ];
}

/// How a webhook delivery ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Delivery {
    /// The receiver answered 2xx.
    delivered,
    /// Given up: a 4xx, or `max_attempts` failed attempts.
    failed,
    /// Never sent: the queue was full.
    dropped,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DecisionLabels {
    check: AuthCheck,
    action: AuthAction,
    result: AuthResult,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct FetchLabels {
    result: AuthResult,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DeliveryLabels {
    event: HookEvent,
    result: Delivery,
}

/// The counters; cheap to clone (handles on shared atomics).
#[derive(Debug, Clone)]
pub struct AuthCounters {
    decisions: Family<DecisionLabels, Counter>,
    jwks_fetches: Family<FetchLabels, Counter>,
    /// Play decisions answered from the cache.
    pub play_cache_hits: Counter,
    deliveries: Family<DeliveryLabels, Counter>,
    /// Webhook attempts that failed and were retried.
    pub webhook_retries: Counter,
}

impl Default for AuthCounters {
    fn default() -> Self {
        let c = AuthCounters {
            decisions: Family::default(),
            jwks_fetches: Family::default(),
            play_cache_hits: Counter::default(),
            deliveries: Family::default(),
            webhook_retries: Counter::default(),
        };
        // Closed label sets exist from the start, at 0 (see `Counters::default`).
        let results = [
            AuthResult::allow,
            AuthResult::deny,
            AuthResult::unavailable,
            AuthResult::fail_open,
        ];
        for check in [AuthCheck::jwt, AuthCheck::callback] {
            for action in [AuthAction::publish, AuthAction::play] {
                for result in results {
                    c.decisions.get_or_create_owned(&DecisionLabels {
                        check,
                        action,
                        result,
                    });
                }
            }
        }
        for result in [AuthResult::allow, AuthResult::unavailable] {
            c.jwks_fetches.get_or_create_owned(&FetchLabels { result });
        }
        for event in HookEvent::ALL {
            for result in [Delivery::delivered, Delivery::failed, Delivery::dropped] {
                c.deliveries
                    .get_or_create_owned(&DeliveryLabels { event, result });
            }
        }
        c
    }
}

impl AuthCounters {
    /// Counts a decision of `check`.
    pub fn decided(&self, check: AuthCheck, action: AuthAction, result: AuthResult) {
        self.decisions
            .get_or_create(&DecisionLabels {
                check,
                action,
                result,
            })
            .inc();
    }

    /// Decisions of `check` with `result` so far.
    pub fn decisions(&self, check: AuthCheck, action: AuthAction, result: AuthResult) -> u64 {
        self.decisions
            .get(&DecisionLabels {
                check,
                action,
                result,
            })
            .map_or(0, |c| c.get())
    }

    /// Counts a JWKS fetch: `allow` when it gave keys, `unavailable` when it failed.
    pub fn jwks_fetched(&self, ok: bool) {
        let result = if ok {
            AuthResult::allow
        } else {
            AuthResult::unavailable
        };
        self.jwks_fetches
            .get_or_create(&FetchLabels { result })
            .inc();
    }

    /// Counts the end of one webhook delivery.
    pub fn delivery(&self, event: HookEvent, result: Delivery) {
        self.deliveries
            .get_or_create(&DeliveryLabels { event, result })
            .inc();
    }

    /// Deliveries of `event` that ended with `result` so far.
    pub fn deliveries(&self, event: HookEvent, result: Delivery) -> u64 {
        self.deliveries
            .get(&DeliveryLabels { event, result })
            .map_or(0, |c| c.get())
    }

    pub(super) fn register(&self, r: &mut Registry) {
        r.register(
            "whipcast_auth_decisions",
            "Authorization decisions by check (jwt, callback), action (publish, play) and result (allow, deny, unavailable: refused with 503, fail_open: allowed without an answer)",
            self.decisions.clone(),
        );
        r.register(
            "whipcast_auth_jwks_fetches",
            "JWKS fetches: allow (keys read) or unavailable (failed)",
            self.jwks_fetches.clone(),
        );
        r.register(
            "whipcast_auth_play_cache_hits",
            "Play decisions answered from the cache without asking the callback",
            self.play_cache_hits.clone(),
        );
        r.register(
            "whipcast_webhook_deliveries",
            "Webhook events by event and outcome: delivered (2xx), failed (4xx or max_attempts), dropped (queue full)",
            self.deliveries.clone(),
        );
        r.register(
            "whipcast_webhook_retries",
            "Webhook attempts that failed (5xx, 408, 429, timeout, unreachable) and were retried",
            self.webhook_retries.clone(),
        );
    }
}
