//! Authentication: reads Cloudflare's two credential schemes from the headers and resolves the caller.

use axum::{
    extract::FromRequestParts,
    http::{HeaderMap, header::AUTHORIZATION, request::Parts},
};

use super::{ApiError, AppState};
use crate::{
    domain::{
        Principal, Timestamp,
        secret::{Secret, is_email_shaped, is_global_key_shaped, is_token_shaped},
    },
    storage::StoredToken,
};

/// Credentials as presented, checked for shape but not yet for validity.
#[derive(Debug, PartialEq, Eq)]
pub enum Presented {
    Token(Secret),
    GlobalKey { email: String, key: Secret },
}

/// Reads the credentials. `Authorization` wins when both schemes are sent.
pub fn presented(headers: &HeaderMap) -> Result<Presented, ApiError> {
    if let Some(value) = headers.get(AUTHORIZATION) {
        let value = value.to_str().map_err(|_| ApiError::MalformedAuthorization)?;
        let (scheme, token) = value.split_once(' ').ok_or(ApiError::MalformedAuthorization)?;
        let token = token.trim();
        if !scheme.eq_ignore_ascii_case("bearer") || !is_token_shaped(token) {
            return Err(ApiError::MalformedAuthorization);
        }
        return Ok(Presented::Token(Secret::from_presented(token)));
    }
    match (headers.get("x-auth-email"), headers.get("x-auth-key")) {
        (Some(email), Some(key)) => {
            let email =
                email.to_str().ok().map(str::trim).filter(|e| is_email_shaped(e)).ok_or(ApiError::MalformedEmail)?;
            let key =
                key.to_str().ok().map(str::trim).filter(|k| is_global_key_shaped(k)).ok_or(ApiError::MalformedKey)?;
            Ok(Presented::GlobalKey { email: email.to_ascii_lowercase(), key: Secret::from_presented(key) })
        }
        _ => Err(ApiError::MissingCredentials),
    }
}

impl AppState {
    /// The stored token for a presented secret, if it is known, not revoked and not expired.
    pub async fn active_token(&self, secret: &Secret) -> Result<StoredToken, ApiError> {
        let hash = secret.hash();
        match self.control.token_by_hash(&hash).await? {
            Some(t) if t.hash.matches(&hash) && t.is_active(Timestamp::now()) => Ok(t),
            _ => Err(ApiError::AuthenticationError),
        }
    }

    /// Resolves presented credentials to a principal.
    pub async fn authenticate(&self, presented: Presented) -> Result<Principal, ApiError> {
        match presented {
            Presented::Token(secret) => {
                let t = self.active_token(&secret).await?;
                Ok(Principal::Token { id: t.id, permissions: t.permissions, scope: t.scope })
            }
            Presented::GlobalKey { email, key } => match self.control.user_by_email(&email).await? {
                Some(u) if u.key_hash.matches(&key.hash()) => Ok(Principal::User(u.id)),
                _ => Err(ApiError::UnknownGlobalKey),
            },
        }
    }
}

/// The authenticated caller of a request.
pub struct Caller(pub Principal);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let presented = presented(&parts.headers)?;
        Ok(Caller(state.authenticate(presented).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn classifies_header_shapes() {
        assert_eq!(presented(&headers(&[])), Err(ApiError::MissingCredentials));
        assert_eq!(presented(&headers(&[("x-auth-email", "a@b.co")])), Err(ApiError::MissingCredentials));
        assert_eq!(presented(&headers(&[("x-auth-key", &"a".repeat(37))])), Err(ApiError::MissingCredentials));
        assert_eq!(presented(&headers(&[("authorization", "Basic abc")])), Err(ApiError::MalformedAuthorization));
        assert_eq!(presented(&headers(&[("authorization", "Bearer")])), Err(ApiError::MalformedAuthorization));
        assert_eq!(presented(&headers(&[("authorization", "Bearer a b")])), Err(ApiError::MalformedAuthorization));
        assert!(matches!(presented(&headers(&[("authorization", "bearer abc_-9")])), Ok(Presented::Token(_))));
        assert_eq!(
            presented(&headers(&[("x-auth-email", "nope"), ("x-auth-key", &"a".repeat(37))])),
            Err(ApiError::MalformedEmail)
        );
        assert_eq!(
            presented(&headers(&[("x-auth-email", "a@b.co"), ("x-auth-key", "short")])),
            Err(ApiError::MalformedKey)
        );
    }
}
