//! Who is using the web worklist: local users with passwords (a stand-alone
//! workstation or a small hospital without single sign-on), signed in by a
//! session cookie; or bearer tokens from the hospital's OpenID Connect
//! provider, checked by the same [`cxr_auth::Authenticator`] as the gRPC
//! API (a sign-in proxy in front passes them on).
//!
//! Passwords are stored as PBKDF2-HMAC-SHA256 hashes
//! (`pbkdf2-sha256$ITERATIONS$SALT$HASH`, hex), made by
//! `cxr-triage web hash-password`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cxr_auth::Role;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Iterations of new password hashes (OWASP's figure for PBKDF2-SHA256).
pub const DEFAULT_ITERATIONS: u32 = 600_000;

/// A local user (`[[web.users]]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalUser {
    /// Sign-in name (recorded in the audit trail and as who holds a study).
    pub name: String,
    /// `pbkdf2-sha256$ITERATIONS$SALT$HASH`, from `cxr-triage web hash-password`.
    pub password: String,
    /// `reader` (reads and works the worklist) and/or `admin`.
    pub roles: Vec<Role>,
}

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(block.map(|b| b ^ 0x36));
    for p in parts {
        inner.update(p);
    }
    let mut outer = Sha256::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

fn pbkdf2_sha256(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut u = hmac_sha256(password, &[salt, &1u32.to_be_bytes()]);
    let mut out = u;
    for _ in 1..iterations {
        u = hmac_sha256(password, &[&u]);
        for (o, x) in out.iter_mut().zip(u) {
            *o ^= x;
        }
    }
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A stored hash of `password` with a random salt.
pub fn hash_password(password: &str, iterations: u32) -> String {
    let salt: [u8; 16] = rand::random();
    let hash = pbkdf2_sha256(password.as_bytes(), &salt, iterations.max(1));
    format!(
        "pbkdf2-sha256${}${}${}",
        iterations.max(1),
        hex(&salt),
        hex(&hash)
    )
}

/// Whether `password` matches `stored` (compared in constant time).
pub fn verify_password(stored: &str, password: &str) -> bool {
    let parts: Vec<&str> = stored.split('$').collect();
    let [scheme, iterations, salt, hash] = parts[..] else {
        return false;
    };
    let (Ok(iterations), Some(salt), Some(hash)) =
        (iterations.parse::<u32>(), unhex(salt), unhex(hash))
    else {
        return false;
    };
    if scheme != "pbkdf2-sha256" || hash.len() != 32 || iterations == 0 {
        return false;
    }
    let got = pbkdf2_sha256(password.as_bytes(), &salt, iterations);
    got.iter().zip(&hash).fold(0u8, |d, (a, b)| d | (a ^ b)) == 0
}

/// A signed-in browser.
#[derive(Debug, Clone)]
pub struct Session {
    /// The user.
    pub user: String,
    /// Their roles.
    pub roles: Vec<Role>,
    /// How they signed in: `password` or `oidc`.
    pub method: &'static str,
    expires: Instant,
}

/// Sessions by cookie value, in memory (a restart signs everyone out).
pub struct Sessions {
    by_token: Mutex<HashMap<String, Session>>,
    lifetime: Duration,
}

impl Sessions {
    /// Sessions that last `lifetime` from sign-in.
    pub fn new(lifetime: Duration) -> Sessions {
        Sessions {
            by_token: Mutex::default(),
            lifetime,
        }
    }

    /// Starts a session for `user` with `roles`, signed in by `method`;
    /// returns its token (the cookie value).
    pub fn start(&self, user: &str, roles: &[Role], method: &'static str) -> String {
        let token = hex(&rand::random::<[u8; 32]>());
        let mut map = self.by_token.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        map.retain(|_, s| s.expires > now);
        map.insert(
            token.clone(),
            Session {
                user: user.to_string(),
                roles: roles.to_vec(),
                method,
                expires: now + self.lifetime,
            },
        );
        token
    }

    /// The live session of `token`.
    pub fn get(&self, token: &str) -> Option<Session> {
        let map = self.by_token.lock().unwrap_or_else(|p| p.into_inner());
        map.get(token)
            .filter(|s| s.expires > Instant::now())
            .cloned()
    }

    /// Ends a session.
    pub fn end(&self, token: &str) {
        self.by_token
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(token);
    }
}

/// Failed sign-ins, counted per key (a user name, an address) over a
/// window; a key over its limit is refused until the window passes. Bounded:
/// at most `MAX_KEYS` keys are tracked (the oldest windows go first).
pub struct Throttle {
    failures: Mutex<HashMap<String, (u32, Instant)>>,
    limit: u32,
    window: Duration,
}

const MAX_KEYS: usize = 100_000;

impl Throttle {
    /// At most `limit` failures per key in `window`.
    pub fn new(limit: u32, window: Duration) -> Throttle {
        Throttle {
            failures: Mutex::default(),
            limit: limit.max(1),
            window,
        }
    }

    /// Seconds until `key` may try again; `None` when it may now.
    pub fn blocked(&self, key: &str) -> Option<u64> {
        let map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let (n, since) = map.get(key)?;
        let left = self.window.checked_sub(since.elapsed())?;
        (*n >= self.limit).then(|| left.as_secs().max(1))
    }

    /// Counts a failure of `key`.
    pub fn failed(&self, key: &str) {
        let mut map = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= MAX_KEYS {
            let window = self.window;
            map.retain(|_, (_, since)| since.elapsed() < window);
            if map.len() >= MAX_KEYS {
                if let Some(oldest) = map
                    .iter()
                    .min_by_key(|(_, (_, t))| *t)
                    .map(|(k, _)| k.clone())
                {
                    map.remove(&oldest);
                }
            }
        }
        let e = map.entry(key.to_string()).or_insert((0, Instant::now()));
        if e.1.elapsed() >= self.window {
            *e = (0, Instant::now());
        }
        e.0 += 1;
    }

    /// Forgets `key`'s failures (after a good sign-in).
    pub fn succeeded(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pbkdf2_matches_the_rfc_7914_vector_and_passwords_verify() {
        // RFC 7914 §11, PBKDF2-HMAC-SHA256, P="passwd", S="salt", c=1.
        let dk = pbkdf2_sha256(b"passwd", b"salt", 1);
        assert_eq!(
            hex(&dk),
            "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc"
        );
        let stored = hash_password("Mật khẩu 1", 1000);
        assert!(verify_password(&stored, "Mật khẩu 1"));
        assert!(!verify_password(&stored, "Mật khẩu 2"));
        assert!(!verify_password("plain", "plain"));
        assert_ne!(stored, hash_password("Mật khẩu 1", 1000), "salted");
    }

    #[test]
    fn the_throttle_refuses_after_the_limit_until_the_window_passes() {
        let t = Throttle::new(3, Duration::from_millis(300));
        for _ in 0..2 {
            t.failed("lan");
        }
        assert_eq!(t.blocked("lan"), None);
        t.failed("lan");
        assert!(t.blocked("lan").is_some());
        assert_eq!(t.blocked("khoa"), None, "per key");
        std::thread::sleep(Duration::from_millis(350));
        assert_eq!(t.blocked("lan"), None, "the window passed");
        t.failed("khoa");
        t.succeeded("khoa");
        t.failed("khoa");
        t.failed("khoa");
        assert_eq!(t.blocked("khoa"), None, "a good sign-in resets the count");
    }
}
