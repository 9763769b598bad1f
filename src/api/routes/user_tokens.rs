//! `GET /user/tokens/verify`: whether the presented API token is valid.

use axum::{extract::State, http::HeaderMap};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    api::{
        ApiError, AppState,
        auth::{Presented, presented},
        envelope::Envelope,
        error::Failure,
    },
    domain::Timestamp,
};

#[derive(Serialize, ToSchema)]
struct VerifyView {
    /// The token's identifier.
    id: String,
    /// Always `active` (an inactive token gets 403).
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    expires_on: Option<Timestamp>,
}

/// Verify the presented API token.
#[utoipa::path(get, path = "/user/tokens/verify", tag = "User API Tokens",
    responses((status = 200, body = Envelope<VerifyView>), (status = 400, body = Failure), (status = 403, body = Failure)))]
async fn verify(State(state): State<AppState>, headers: HeaderMap) -> Result<Envelope<VerifyView>, ApiError> {
    let Presented::Token(secret) = presented(&headers)? else {
        return Err(ApiError::TokenRequired);
    };
    let token = state.active_token(&secret).await?;
    Ok(Envelope::ok(VerifyView { id: token.id.to_string(), status: "active", expires_on: token.expires_on }))
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(verify))
}
