//! Web sessions: a principal's token exchanged once for a signed session cookie (HttpOnly,
//! SameSite=Strict, Secure behind HTTPS), the CSRF token every form carries, and sign-out.
//!
//! The cookie holds no secret of the principal: its name, an HMAC binding to the principal's
//! current token (so that revoking the principal, or giving the name a new token, ends every
//! session at once), an expiry and a random nonce, all signed with the session key. The session
//! key is derived from the callback key, which every server of one store shares, so a session
//! opened through one server works on all of them. Cookies are signed rather than stored
//! server-side so that signing in writes nothing to the log; the price is that sign-out is
//! remembered by the server that was asked (the cookie is also deleted in the browser), so a
//! stolen cookie stays valid on the other servers until it expires ([`LIFETIME`]) or its principal
//! is revoked.

use crate::http::AppState;
use crate::http::auth::Caller;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::HashMap;
use std::sync::Mutex;

/// The cookie's name. The `__Host-` prefix would forbid it on plain HTTP, which a
/// development server serves.
pub const COOKIE: &str = "ledger_session";

/// How long a session lasts after sign-in (a reviewer's working day).
pub const LIFETIME: chrono::Duration = chrono::Duration::hours(12);

/// The key sessions are signed with, and the sessions signed out through this server.
pub struct Sessions {
    key: [u8; 32],
    /// Signed-out nonces and when their cookies would have expired (pruned as they do).
    signed_out: Mutex<HashMap<String, i64>>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("Sessions")
    }
}

impl Default for Sessions {
    /// A random key: sessions of this process only (servers built without a callback key).
    fn default() -> Self {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).expect("the OS's random generator");
        Sessions::with_key(key)
    }
}

/// A verified session: its principal and the CSRF token its forms carry.
#[derive(Debug, Clone)]
pub struct Session {
    pub caller: Caller,
    pub csrf: String,
    nonce: String,
}

fn mac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    for part in parts {
        mac.update(&(part.len() as u64).to_be_bytes());
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

impl Sessions {
    /// Sessions keyed by `callback_key` (derived: the callback key itself is never used twice).
    pub fn from_callback_key(callback_key: &[u8; 32]) -> Sessions {
        Sessions::with_key(mac(callback_key, &[b"ledger web sessions v1"]))
    }

    fn with_key(key: [u8; 32]) -> Sessions {
        Sessions {
            key,
            signed_out: Mutex::new(HashMap::new()),
        }
    }

    /// The binding of a session to its principal's current token hash.
    fn binding(&self, token_hash: &str) -> String {
        B64.encode(&mac(&self.key, &[b"token", token_hash.as_bytes()])[..16])
    }

    fn csrf_of(&self, nonce: &str) -> String {
        hex::encode(&mac(&self.key, &[b"csrf", nonce.as_bytes()])[..16])
    }

    /// A new session cookie's value for `principal`, valid until `now + LIFETIME`.
    pub fn open(&self, name: &str, token_hash: &str, now: chrono::DateTime<chrono::Utc>) -> String {
        let mut nonce = [0u8; 16];
        getrandom::fill(&mut nonce).expect("the OS's random generator");
        let body = format!(
            "v1.{}.{}.{}.{}",
            B64.encode(name),
            self.binding(token_hash),
            (now + LIFETIME).timestamp(),
            B64.encode(nonce)
        );
        let signature = B64.encode(mac(&self.key, &[body.as_bytes()]));
        format!("{body}.{signature}")
    }

    /// The principal's name, binding, expiry and nonce of a cookie whose signature holds.
    fn parse<'a>(&self, value: &'a str) -> Option<(String, &'a str, i64, &'a str)> {
        let (body, signature) = value.rsplit_once('.')?;
        let signature = B64.decode(signature).ok()?;
        let mut check = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        check.update(&(body.len() as u64).to_be_bytes());
        check.update(body.as_bytes());
        check.verify_slice(&signature).ok()?;
        let mut parts = body.split('.');
        let (Some("v1"), Some(name), Some(binding), Some(expires), Some(nonce), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return None;
        };
        let name = String::from_utf8(B64.decode(name).ok()?).ok()?;
        Some((name, binding, expires.parse().ok()?, nonce))
    }

    /// The session a cookie value names, if it is signed here, live, not signed out, and its
    /// principal still holds the token it signed in with.
    pub async fn verify(&self, state: &AppState, value: &str) -> Option<Session> {
        let (name, binding, expires, nonce) = self.parse(value)?;
        let now = chrono::Utc::now().timestamp();
        if expires <= now {
            return None;
        }
        if let Some(&until) = self.signed_out.lock().expect("not poisoned").get(nonce)
            && until > now
        {
            return None;
        }
        let find = |state: &AppState| {
            let models = state.projector.read();
            let principal = models.principals.get(&name)?;
            let shared = models
                .principals
                .shared_by_token_hash(&principal.token_hash)?;
            (self.binding(&shared.token_hash) == binding).then(|| shared.clone())
        };
        let principal = match find(state) {
            Some(principal) => principal,
            None => {
                // Perhaps added a moment ago through another server of the store.
                state.caught_up().await.ok()?;
                find(state)?
            }
        };
        Some(Session {
            caller: Caller(principal),
            csrf: self.csrf_of(nonce),
            nonce: nonce.to_owned(),
        })
    }

    /// The session a request's cookie opens, if any.
    pub async fn of_request(
        &self,
        state: &AppState,
        headers: &axum::http::HeaderMap,
    ) -> Option<Session> {
        self.verify(state, cookie_value(headers)?).await
    }

    /// Remembers that `session` signed out: its cookie no longer opens a session here.
    pub fn sign_out(&self, session: &Session) {
        let now = chrono::Utc::now().timestamp();
        let mut signed_out = self.signed_out.lock().expect("not poisoned");
        signed_out.retain(|_, until| *until > now);
        signed_out.insert(session.nonce.clone(), now + LIFETIME.num_seconds());
    }
}

impl Session {
    /// Whether `token` (from a form, or the `X-CSRF-Token` header) is this session's.
    pub fn csrf_matches(&self, token: &str) -> bool {
        use subtle::ConstantTimeEq;
        token.len() == self.csrf.len() && bool::from(token.as_bytes().ct_eq(self.csrf.as_bytes()))
    }
}

/// The session cookie's value in a request's `Cookie` headers.
pub fn cookie_value(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .find_map(|pair| {
            let (name, value) = pair.trim().split_once('=')?;
            (name == COOKIE).then_some(value)
        })
}

/// Whether the request came over HTTPS (through a proxy that terminates TLS and says so).
pub fn over_https(headers: &axum::http::HeaderMap) -> bool {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_ascii_lowercase)
    };
    header("x-forwarded-proto").is_some_and(|proto| proto.trim() == "https")
        || header("forwarded").is_some_and(|forwarded| forwarded.contains("proto=https"))
}

/// The `Set-Cookie` value of a new session (`value`) or of its deletion (`None`).
pub fn set_cookie(value: Option<&str>, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    match value {
        Some(value) => format!(
            "{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
            LIFETIME.num_seconds()
        ),
        None => format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cookie_parses_only_with_its_signature_intact() {
        let sessions = Sessions::default();
        let value = sessions.open("rev.iewer", "ab", chrono::Utc::now());
        let (name, _, _, _) = sessions.parse(&value).expect("a fresh cookie parses");
        assert_eq!(name, "rev.iewer");
        // One character of the body changed: the signature no longer holds.
        let mut forged = value.clone().into_bytes();
        forged[4] = if forged[4] == b'A' { b'B' } else { b'A' };
        assert!(
            sessions
                .parse(std::str::from_utf8(&forged).unwrap())
                .is_none()
        );
        // Another server's key (another store) does not accept it.
        assert!(Sessions::default().parse(&value).is_none());
    }

    #[test]
    fn the_csrf_token_differs_per_session_and_compares_exactly() {
        let sessions = Sessions::default();
        assert_ne!(sessions.csrf_of("a"), sessions.csrf_of("b"));
        assert_eq!(sessions.csrf_of("a").len(), 32);
    }
}
