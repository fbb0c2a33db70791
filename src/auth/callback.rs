//! The HTTP authorization callback (`[auth.callback]`), as MediaMTX's `authHTTPAddress`,
//! OvenMediaEngine's admission webhooks and SRS's `on_publish` ask theirs: a JSON POST
//! describing the request, answered 2xx (allow, optionally with a JSON body of publish
//! overrides such as `{"record": true}`), 401 or 403 (deny with that status; another 4xx
//! denies with 403). A 3xx, 5xx, timeout or connection failure is no answer: 503 with
//! `Retry-After`, or an allow when `fail_open` says so (the caller decides; this file
//! only asks). Redirects are not followed.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::{Refusal, Unavailable};
use super::{Action, Overrides};

/// Largest answer body read.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// The JSON body POSTed to the callback. No `Debug`: it holds a token.
#[derive(Serialize)]
pub struct Question<'a> {
    /// `publish` or `play`.
    pub action: &'static str,
    /// The stream name (already validated: `[A-Za-z0-9_-]{1,64}`).
    pub stream: &'a str,
    /// The client's address and port, e.g. `"192.0.2.7:53012"`.
    pub client: Option<String>,
    /// The client's IP address alone.
    pub client_ip: Option<String>,
    /// How the publisher signals: `whip` or `websocket`; `null` for play.
    pub signaling: Option<&'static str>,
    /// The bearer token (`Authorization: Bearer`, or `?token=`), if any.
    pub token: Option<&'a str>,
    /// The raw query string of the request URL, without `?` (empty if none).
    pub query: &'a str,
}

impl<'a> Question<'a> {
    /// The question for one request.
    pub fn new(
        action: Action,
        stream: &'a str,
        client: Option<SocketAddr>,
        signaling: Option<&'static str>,
        token: Option<&'a str>,
        query: Option<&'a str>,
    ) -> Self {
        Self {
            action: action.name(),
            stream,
            client: client.map(|a| a.to_string()),
            client_ip: client.map(|a| a.ip().to_string()),
            signaling,
            token,
            query: query.unwrap_or(""),
        }
    }
}

/// The overrides a 2xx answer may carry. Members it does not know are ignored, so a
/// service written for another server's callback still works.
#[derive(Debug, Default, Deserialize)]
struct Answer {
    record: Option<bool>,
    height: Option<u32>,
}

/// Asks the configured service.
pub struct Callback {
    url: String,
    client: reqwest::Client,
    timeout: Duration,
}

impl Callback {
    /// A callback to `url`; `client` must not follow redirects.
    pub fn new(url: &str, client: reqwest::Client, timeout: Duration) -> Self {
        Self {
            url: url.to_string(),
            client,
            timeout,
        }
    }

    /// The service's decision: overrides on allow, a refusal (401 / 403), or no answer
    /// ([`Refusal::Unavailable`]).
    pub async fn ask(&self, q: &Question<'_>) -> Result<Overrides, Refusal> {
        let unavailable = |u| Refusal::Unavailable(u);
        let body = serde_json::to_vec(q)
            .map_err(|e| unavailable(Unavailable::CallbackBody(e.to_string())))?;
        let resp = self
            .client
            .post(&self.url)
            .timeout(self.timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| {
                if e.is_timeout() {
                    unavailable(Unavailable::CallbackTimeout(self.timeout))
                } else {
                    unavailable(Unavailable::CallbackUnreachable(crate::error_chain(&e)))
                }
            })?;
        let status = resp.status().as_u16();
        match status {
            200..=299 => {}
            401 => return Err(Refusal::CallbackUnauthorized),
            400..=499 if status != 408 && status != 429 => {
                return Err(Refusal::CallbackForbidden);
            }
            _ => return Err(unavailable(Unavailable::CallbackStatus(status))),
        }
        let json = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|m| {
                let m = m.trim().to_ascii_lowercase();
                m == "application/json" || m.ends_with("+json")
            });
        // The body is read (within the timeout) either way, so the connection is reusable.
        let body = tokio::time::timeout(self.timeout, super::read_capped(resp, MAX_ANSWER_BYTES))
            .await
            .map_err(|_| unavailable(Unavailable::CallbackTimeout(self.timeout)))?
            .map_err(|e| unavailable(Unavailable::CallbackUnreachable(e)))?;
        if !json || body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Overrides::default());
        }
        overrides(&body).map_err(|e| unavailable(Unavailable::CallbackBody(e)))
    }
}

/// The overrides of a JSON answer; a value out of range makes the answer unusable.
fn overrides(body: &[u8]) -> Result<Overrides, String> {
    let a: Answer = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    if let Some(h) = a.height
        && !(90..=4320).contains(&h)
    {
        return Err(format!("height {h} is not 90 to 4320"));
    }
    Ok(Overrides {
        record: a.record,
        height: a.height,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_and_questions() {
        assert_eq!(
            overrides(br#"{"record": true, "other": [1]}"#),
            Ok(Overrides {
                record: Some(true),
                height: None
            })
        );
        assert_eq!(
            overrides(br#"{"height": 720}"#).map(|o| o.height),
            Ok(Some(720))
        );
        assert!(overrides(br#"{"height": 5}"#).is_err());
        assert!(overrides(br#"{"record": "yes"}"#).is_err());
        let q = Question::new(
            Action::Publish,
            "cam",
            Some(SocketAddr::from(([192, 0, 2, 7], 5000))),
            Some("whip"),
            Some("t"),
            Some("record=1"),
        );
        let v = serde_json::to_value(&q).expect("json");
        assert_eq!(
            v,
            serde_json::json!({"action": "publish", "stream": "cam", "client": "192.0.2.7:5000",
                "client_ip": "192.0.2.7", "signaling": "whip", "token": "t", "query": "record=1"})
        );
    }
}
