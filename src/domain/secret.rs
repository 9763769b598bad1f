//! Credential secrets: API token secrets and global API keys, generated here and stored only as hashes.

use std::fmt;

use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A secret shown once to its owner. Its `Debug` does not print it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// A new API token secret: 256 random bits, base64url without padding (43 characters).
    pub fn new_token() -> Self {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).expect("the operating system's random source failed");
        Self(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
    }

    /// A new global API key: 37 lowercase hex characters, the shape of Cloudflare's keys.
    pub fn new_global_key() -> Self {
        let mut bytes = [0u8; 19];
        getrandom::fill(&mut bytes).expect("the operating system's random source failed");
        let mut s = hex::encode(bytes);
        s.truncate(37);
        Self(s)
    }

    /// Wraps a presented secret.
    pub fn from_presented(s: &str) -> Self {
        Self(s.to_owned())
    }

    /// The secret's text, for showing it once.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The stored form: SHA-256, hex.
    pub fn hash(&self) -> SecretHash {
        SecretHash(hex::encode(Sha256::digest(self.0.as_bytes())))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// The SHA-256 of a secret, hex-encoded: what the store keeps and looks up by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretHash(pub String);

impl SecretHash {
    /// Compares two hashes in constant time.
    pub fn matches(&self, other: &SecretHash) -> bool {
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

/// Whether a presented token has the characters a token can have (Cloudflare's are base64url-like).
pub fn is_token_shaped(s: &str) -> bool {
    !s.is_empty() && s.len() <= 256 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Whether a presented global API key has the shape of one: 37 lowercase hex characters.
pub fn is_global_key_shaped(s: &str) -> bool {
    s.len() == 37 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Whether a presented e-mail address is plausible: one `@`, something on each side, no spaces or controls.
pub fn is_email_shaped(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && s.len() <= 254
        && s.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_have_their_shapes() {
        assert!(is_token_shaped(Secret::new_token().expose()));
        assert_eq!(Secret::new_token().expose().len(), 43);
        assert!(is_global_key_shaped(Secret::new_global_key().expose()));
    }

    #[test]
    fn hash_matches_only_same_secret() {
        let a = Secret::new_token();
        assert!(a.hash().matches(&Secret::from_presented(a.expose()).hash()));
        assert!(!a.hash().matches(&Secret::new_token().hash()));
    }

    #[test]
    fn debug_hides_secret() {
        let s = Secret::new_token();
        assert!(!format!("{s:?}").contains(s.expose()));
    }

    #[test]
    fn email_shapes() {
        assert!(is_email_shaped("ops@example.com"));
        for bad in ["", "ops", "@example.com", "ops@", "ops@example", "o ps@example.com", "a@b@c.com"] {
            assert!(!is_email_shaped(bad), "{bad}");
        }
    }
}
