//! External authorization and lifecycle webhooks, as operators of MediaMTX, OvenMediaEngine
//! and SRS expect: JWT bearer tokens (RFC 7519) with HS256 or JWKS keys (RFC 7517), an
//! HTTP callback to the operator's service, and signed webhooks on publish and recording
//! events. Configured under `[auth]` (`config::AuthConfig`).
//!
//! The static token of `auth.token` / `auth.streams` stays with the ingest (a synchronous
//! comparison before any body is read); this module holds the checks that may wait on the
//! network, run after it: first the JWT (local, unless an unknown `kid` needs the JWKS),
//! then the callback. A publish passes when every configured check allows; a play request
//! (an HLS playlist) likewise, with the callback's answers cached briefly.
//!
//! One concern per file: `error` (why a check refused), `jwt` and `glob` (tokens and their
//! grants), `jwks` (the key set cache), `callback` (asking the operator), `cache` (play
//! decisions), `webhook` (lifecycle events). Nothing here names an HTTP server type: the
//! ingest and the origin translate a [`Refusal`] into their own errors.

pub mod cache;
mod callback;
pub mod error;
mod glob;
mod jwks;
mod jwt;
pub mod webhook;

use std::net::SocketAddr;
use std::sync::Arc;

use tracing::{debug, info, warn};

pub use error::{Refusal, SetupError, TokenError, Unavailable};
pub use webhook::{Hooks, RecordingDone};

use crate::config::AuthConfig;
use crate::metrics::{AuthAction, AuthCheck, AuthCounters, AuthResult, Metrics};
use callback::{Callback, Question};
use jwt::{Grant, JwtVerifier};

/// What a request wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Publish a stream.
    Publish,
    /// Read a stream's playlists.
    Play,
}

impl Action {
    /// `publish` or `play`.
    pub fn name(self) -> &'static str {
        match self {
            Action::Publish => "publish",
            Action::Play => "play",
        }
    }

    fn label(self) -> AuthAction {
        match self {
            Action::Publish => AuthAction::publish,
            Action::Play => AuthAction::play,
        }
    }
}

/// Publish options the operator's callback set; `None` leaves the publisher's choice.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Overrides {
    /// Record this broadcast (or not), whatever `?record=` and `record.allow_request` say.
    pub record: Option<bool>,
    /// The capture height to plan the ladder for.
    pub height: Option<u32>,
}

/// One request to authorize. No `Debug`: it holds a token.
#[derive(Clone, Copy)]
pub struct Request<'a> {
    /// The stream name (validated).
    pub stream: &'a str,
    /// The client's address, when the server knows it.
    pub client: Option<SocketAddr>,
    /// `whip` or `websocket` for a publish; `None` for play.
    pub signaling: Option<&'static str>,
    /// The bearer token, if any.
    pub token: Option<&'a str>,
    /// The request URL's query, without `?`.
    pub query: Option<&'a str>,
}

struct Inner {
    config: AuthConfig,
    jwt: Option<JwtVerifier>,
    callback: Option<Callback>,
    play_cache: cache::DecisionCache,
    hooks: Hooks,
    counters: AuthCounters,
}

/// The configured checks and webhooks; cheap to clone.
#[derive(Clone)]
pub struct Authorizer(Arc<Inner>);

impl Authorizer {
    /// The checks of `cfg` (webhooks start their sender task on the current runtime).
    pub fn new(cfg: &AuthConfig, metrics: &Metrics) -> Result<Self, SetupError> {
        let counters = metrics.auth.clone();
        // No redirects: a callback's 3xx is no answer, and a JWKS must be where it is said
        // to be.
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("whipcast/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(SetupError::Client)?;
        let jwt = cfg.jwt.enabled().then(|| {
            let jwks = (!cfg.jwt.jwks_url.is_empty()).then(|| {
                jwks::Jwks::new(
                    &cfg.jwt.jwks_url,
                    client.clone(),
                    &cfg.jwt,
                    counters.clone(),
                )
            });
            JwtVerifier::new(&cfg.jwt, jwks)
        });
        let callback = (!cfg.callback.url.is_empty())
            .then(|| Callback::new(&cfg.callback.url, client.clone(), cfg.callback.timeout));
        let hooks = Hooks::start(&cfg.webhooks, client, counters.clone())?;
        Ok(Self(Arc::new(Inner {
            config: cfg.clone(),
            jwt,
            callback,
            play_cache: cache::DecisionCache::new(cfg.callback.play_cache),
            hooks,
            counters,
        })))
    }

    /// The `[auth]` configuration (the static tokens are compared by the ingest).
    pub fn config(&self) -> &AuthConfig {
        &self.0.config
    }

    /// The lifecycle webhooks.
    pub fn hooks(&self) -> &Hooks {
        &self.0.hooks
    }

    /// Whether playlist requests are checked.
    pub fn checks_play(&self) -> bool {
        let c = &self.0.config;
        (c.jwt.on_play && self.0.jwt.is_some()) || (c.callback.on_play && self.0.callback.is_some())
    }

    /// Checks a publish (after the static token): the JWT's `publish` grant, then the
    /// callback. The callback's overrides come back on success.
    pub async fn admit_publish(&self, r: &Request<'_>) -> Result<Overrides, Refusal> {
        if let Some(jwt) = &self.0.jwt {
            self.jwt(jwt, r, Grant::Publish).await?;
        }
        match &self.0.callback {
            Some(cb) => {
                let d = self.ask(cb, r, Action::Publish).await;
                self.on_outage(r, Action::Publish, d)
            }
            None => Ok(Overrides::default()),
        }
    }

    /// Checks a playlist request, when [`Authorizer::checks_play`]: the JWT's `play` grant
    /// (verified every time: cheap, and an expired token stops at once), then the
    /// callback, whose decisions are cached per stream and token.
    pub async fn admit_play(&self, r: &Request<'_>) -> Result<(), Refusal> {
        let c = &self.0.config;
        if c.jwt.on_play
            && let Some(jwt) = &self.0.jwt
        {
            self.jwt(jwt, r, Grant::Play).await?;
        }
        let Some(cb) = self.0.callback.as_ref().filter(|_| c.callback.on_play) else {
            return Ok(());
        };
        if let Some(d) = self.0.play_cache.get(r.stream, r.token) {
            self.0.counters.play_cache_hits.inc();
            return d;
        }
        let d = self.ask(cb, r, Action::Play).await.map(|_| ());
        // Answers are kept; "no answer" is not (nor, then, a fail-open allow).
        self.0.play_cache.put(r.stream, r.token, &d);
        self.on_outage(r, Action::Play, d)
    }

    async fn jwt(&self, jwt: &JwtVerifier, r: &Request<'_>, grant: Grant) -> Result<(), Refusal> {
        let action = match grant {
            Grant::Publish => Action::Publish,
            Grant::Play => Action::Play,
        };
        let d = jwt.check(r.token, grant, r.stream).await;
        let result = match &d {
            Ok(()) => AuthResult::allow,
            Err(Refusal::Unavailable(u)) => {
                warn!(stream = r.stream, error = %u, "JWT not checked: the JWKS is unavailable");
                AuthResult::unavailable
            }
            Err(e) => {
                debug!(stream = r.stream, action = action.name(), client = ?r.client,
                    error = %crate::error_chain(e), "JWT refused");
                AuthResult::deny
            }
        };
        self.0
            .counters
            .decided(AuthCheck::jwt, action.label(), result);
        d
    }

    /// The callback's answer; "no answer" is counted and logged by [`Self::on_outage`].
    async fn ask(
        &self,
        cb: &Callback,
        r: &Request<'_>,
        action: Action,
    ) -> Result<Overrides, Refusal> {
        let q = Question::new(action, r.stream, r.client, r.signaling, r.token, r.query);
        let d = cb.ask(&q).await;
        let result = match &d {
            Ok(_) => AuthResult::allow,
            Err(Refusal::Unavailable(_)) => return d,
            Err(e) => {
                info!(stream = r.stream, action = action.name(), client = ?r.client,
                    refusal = %e, "authorization callback refused");
                AuthResult::deny
            }
        };
        self.0
            .counters
            .decided(AuthCheck::callback, action.label(), result);
        d
    }

    /// No answer from the callback: an allow with `auth.callback.fail_open`, else 503.
    fn on_outage<T: Default>(
        &self,
        r: &Request<'_>,
        action: Action,
        d: Result<T, Refusal>,
    ) -> Result<T, Refusal> {
        let Err(Refusal::Unavailable(u)) = d else {
            return d;
        };
        let (result, d) = if self.0.config.callback.fail_open {
            warn!(stream = r.stream, action = action.name(), error = %u,
                "authorization callback unavailable: allowed (auth.callback.fail_open)");
            (AuthResult::fail_open, Ok(T::default()))
        } else {
            warn!(stream = r.stream, action = action.name(), error = %u,
                "authorization callback unavailable: refused with 503");
            (AuthResult::unavailable, Err(Refusal::Unavailable(u)))
        };
        self.0
            .counters
            .decided(AuthCheck::callback, action.label(), result);
        d
    }
}

/// Reads at most `cap` bytes of a response body.
async fn read_capped(mut resp: reqwest::Response, cap: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| crate::error_chain(&e))? {
        if out.len() + chunk.len() > cap {
            return Err(format!("body over {cap} bytes"));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}
