//! Cloudflare's success envelope: `{"success":true,"errors":[],"messages":[],"result":...}`.

use axum::{
    Json,
    response::{IntoResponse, Response},
};
use serde::Serialize;

use super::error::ErrorItem;

/// A successful answer with a single result.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Envelope<T> {
    /// Always `true`.
    pub success: bool,
    pub errors: Vec<ErrorItem>,
    pub messages: Vec<ErrorItem>,
    pub result: T,
    /// Present on list endpoints.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result_info: Option<ResultInfo>,
}

/// Pagination of a list.
#[derive(Serialize, utoipa::ToSchema, Debug, Clone, Copy)]
pub struct ResultInfo {
    pub page: u32,
    pub per_page: u32,
    /// Items on this page.
    pub count: u64,
    pub total_count: u64,
    pub total_pages: u64,
}

impl<T: Serialize> Envelope<T> {
    pub fn ok(result: T) -> Self {
        Self { success: true, errors: vec![], messages: vec![], result, result_info: None }
    }

    pub fn list(result: T, info: ResultInfo) -> Self {
        Self { success: true, errors: vec![], messages: vec![], result, result_info: Some(info) }
    }
}

impl<T: Serialize> IntoResponse for Envelope<T> {
    fn into_response(self) -> Response {
        Json(self).into_response()
    }
}
