//! JWT bearer tokens (RFC 7519, sent as RFC 6750 bearer tokens): the signature (HS256
//! with `auth.jwt.secret`; RS256 / ES256 with a key of the JWKS, RFC 7517), `exp` and
//! `nbf` with `auth.jwt.leeway`, `aud` / `iss` when configured, then the grant.
//!
//! The grant is a private claim (RFC 7519 §4.3), `whipcast` unless `auth.jwt.claim` names
//! another, with one member per action, each a stream-name pattern or a list of them:
//!
//! ```json
//! {"exp": 1767225600, "whipcast": {"publish": "cam-*", "play": ["cam-*", "lobby"]}}
//! ```
//!
//! A token's algorithm picks its key family (RFC 8725 §3.1): HS256 only ever verifies
//! with the shared secret, RS256 / ES256 only with a JWKS key of that algorithm, so a
//! public key can never be used as an HMAC secret.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use super::error::{Refusal, TokenError};
use super::glob;
use super::jwks::Jwks;
use crate::config::JwtConfig;

/// Longest token read (RFC 7519 sets no limit; this one is far above real tokens).
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Most patterns read from one grant.
const MAX_PATTERNS: usize = 64;

/// What a token is checked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    /// `publish`.
    Publish,
    /// `play`.
    Play,
}

impl Grant {
    fn member(self) -> &'static str {
        match self {
            Grant::Publish => "publish",
            Grant::Play => "play",
        }
    }
}

/// Verifies tokens; one per server.
pub struct JwtVerifier {
    secret: Option<DecodingKey>,
    jwks: Option<Jwks>,
    validation: Validation,
    claim: String,
}

impl JwtVerifier {
    /// A verifier for `cfg` (its JWKS, if any, is fetched on first use).
    pub fn new(cfg: &JwtConfig, jwks: Option<Jwks>) -> Self {
        // The algorithm list is set per token (from its key); exp is required.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = cfg.leeway.as_secs();
        validation.validate_nbf = true;
        if cfg.audience.is_empty() {
            validation.validate_aud = false;
        } else {
            validation.set_audience(&[cfg.audience.as_str()]);
            validation.set_required_spec_claims(&["exp", "aud"]);
        }
        if !cfg.issuer.is_empty() {
            validation.set_issuer(&[cfg.issuer.as_str()]);
            validation.required_spec_claims.insert("iss".to_string());
        }
        Self {
            secret: (!cfg.secret.is_empty())
                .then(|| DecodingKey::from_secret(cfg.secret.as_bytes()).ok())
                .flatten(),
            jwks,
            validation,
            claim: cfg.claim.clone(),
        }
    }

    /// Checks `token` and that it grants `grant` on `stream`.
    pub async fn check(
        &self,
        token: Option<&str>,
        grant: Grant,
        stream: &str,
    ) -> Result<(), Refusal> {
        let claims = self.verify(token).await?;
        if granted(&claims, &self.claim, grant, stream) {
            Ok(())
        } else {
            Err(Refusal::NotGranted)
        }
    }

    /// The claims of a token whose signature and times verify.
    pub async fn verify(&self, token: Option<&str>) -> Result<Value, Refusal> {
        let invalid = |e| Refusal::InvalidToken(e);
        let token = token.ok_or(invalid(TokenError::Missing))?;
        if token.len() > MAX_TOKEN_BYTES {
            return Err(invalid(TokenError::TooLong(MAX_TOKEN_BYTES)));
        }
        let header =
            jsonwebtoken::decode_header(token).map_err(|_| invalid(TokenError::Malformed))?;
        let mut validation = self.validation.clone();
        validation.algorithms = vec![header.alg];
        match header.alg {
            Algorithm::HS256 => {
                let key = self
                    .secret
                    .as_ref()
                    .ok_or_else(|| invalid(TokenError::Algorithm("HS256".into())))?;
                decode(token, key, &validation)
            }
            Algorithm::RS256 | Algorithm::ES256 if self.jwks.is_some() => {
                let jwks = self.jwks.as_ref().ok_or(invalid(TokenError::Malformed))?;
                let keys = jwks.keys_for(header.kid.as_deref(), header.alg).await?;
                // With a `kid` there is one key; without one, any key of the algorithm.
                let mut last = invalid(TokenError::BadSignature);
                for k in keys {
                    match decode(token, &k.key, &validation) {
                        Err(Refusal::InvalidToken(TokenError::BadSignature)) => {}
                        other => return other,
                    }
                    last = invalid(TokenError::BadSignature);
                }
                Err(last)
            }
            other => Err(invalid(TokenError::Algorithm(format!("{other:?}")))),
        }
    }
}

fn decode(token: &str, key: &DecodingKey, validation: &Validation) -> Result<Value, Refusal> {
    jsonwebtoken::decode::<Value>(token, key, validation)
        .map(|d| d.claims)
        .map_err(|e| Refusal::InvalidToken(token_error(e.kind())))
}

/// The library's error as what went wrong with the token.
fn token_error(kind: &ErrorKind) -> TokenError {
    match kind {
        ErrorKind::InvalidSignature => TokenError::BadSignature,
        ErrorKind::ExpiredSignature => TokenError::Expired,
        ErrorKind::ImmatureSignature => TokenError::NotYetValid,
        ErrorKind::InvalidAudience => TokenError::Audience,
        ErrorKind::InvalidIssuer => TokenError::Issuer,
        ErrorKind::MissingRequiredClaim(c) | ErrorKind::InvalidClaimFormat(c) => {
            TokenError::Claim(match c.as_str() {
                "exp" => "exp",
                "nbf" => "nbf",
                "aud" => "aud",
                "iss" => "iss",
                _ => "(registered)",
            })
        }
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
            TokenError::Algorithm("(mismatch)".into())
        }
        _ => TokenError::Malformed,
    }
}

/// Whether `claims[claim][grant]` (a pattern or a list of them) matches `stream`.
pub fn granted(claims: &Value, claim: &str, grant: Grant, stream: &str) -> bool {
    let Some(g) = claims.get(claim).and_then(|c| c.get(grant.member())) else {
        return false;
    };
    match g {
        Value::String(p) => glob::matches(p, stream),
        Value::Array(ps) => ps
            .iter()
            .take(MAX_PATTERNS)
            .filter_map(Value::as_str)
            .any(|p| glob::matches(p, stream)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;
    use std::time::Duration;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn verifier() -> JwtVerifier {
        let cfg = JwtConfig {
            secret: SECRET.into(),
            leeway: Duration::from_secs(5),
            ..JwtConfig::default()
        };
        JwtVerifier::new(&cfg, None)
    }

    fn hs256(claims: &Value, secret: &str) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(secret.as_bytes()).expect("key"),
        )
        .expect("encodes")
    }

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    #[tokio::test]
    async fn hs256_grants_by_pattern() {
        let v = verifier();
        let t = hs256(
            &json!({"exp": now() + 60, "whipcast": {"publish": "cam-*", "play": ["a", "b*"]}}),
            SECRET,
        );
        assert_eq!(v.check(Some(&t), Grant::Publish, "cam-1").await, Ok(()));
        assert_eq!(
            v.check(Some(&t), Grant::Publish, "other").await,
            Err(Refusal::NotGranted)
        );
        assert_eq!(v.check(Some(&t), Grant::Play, "bee").await, Ok(()));
        assert_eq!(
            v.check(Some(&t), Grant::Play, "cam-1").await,
            Err(Refusal::NotGranted)
        );
    }

    #[tokio::test]
    async fn bad_tokens_say_why() {
        let v = verifier();
        let err = |e| Err(Refusal::InvalidToken(e));
        let grant = json!({"publish": "*"});
        let cases = [
            (
                hs256(&json!({"exp": now() - 60, "whipcast": grant}), SECRET),
                TokenError::Expired,
            ),
            // Within the leeway: still valid.
            (
                hs256(
                    &json!({"exp": now() + 60, "nbf": now() + 60, "whipcast": grant}),
                    SECRET,
                ),
                TokenError::NotYetValid,
            ),
            (
                hs256(
                    &json!({"exp": now() + 60, "whipcast": grant}),
                    "another-secret-of-32-bytes-.....",
                ),
                TokenError::BadSignature,
            ),
            (
                hs256(&json!({"whipcast": grant}), SECRET),
                TokenError::Claim("exp"),
            ),
            ("a.b".to_string(), TokenError::Malformed),
        ];
        for (token, why) in cases {
            assert_eq!(v.check(Some(&token), Grant::Publish, "x").await, err(why));
        }
        assert_eq!(
            v.check(None, Grant::Publish, "x").await,
            err(TokenError::Missing)
        );
        let ok = hs256(&json!({"exp": now() - 2, "whipcast": grant}), SECRET);
        assert_eq!(v.check(Some(&ok), Grant::Publish, "x").await, Ok(()));
        // RS256 without a JWKS: refused, not verified with the secret.
        let rs = format!("{}.{}.sig", "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9", "e30");
        assert!(matches!(
            v.check(Some(&rs), Grant::Publish, "x").await,
            Err(Refusal::InvalidToken(TokenError::Algorithm(_)))
        ));
    }
}
