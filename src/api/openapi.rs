//! The OpenAPI document: info, security schemes and servers around the paths the routes declare.

use utoipa::{
    Modify, OpenApi,
    openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme},
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "cache-reserve control API",
        description = "A self-hosted Cache Reserve, wire-compatible with Cloudflare's v4 API for these endpoints. \
                       Every answer is in Cloudflare's envelope.",
    ),
    servers((url = "/client/v4")),
    modifiers(&SecuritySchemes),
    security(("api_token" = []), ("api_email" = [], "api_key" = [])),
)]
pub struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components
            .add_security_scheme("api_email", SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-Auth-Email"))));
        components
            .add_security_scheme("api_key", SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-Auth-Key"))));
    }
}
