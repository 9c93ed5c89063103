//! `GET /openapi.json`: the OpenAPI 3.1 document generated from the handler
//! annotations and request types of [`crate::users`], so the document and the
//! validation cannot drift apart. No UI is bundled (no assets to download).

use axum::Json;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::users;

#[derive(OpenApi)]
#[openapi(
    info(title = "lambdaless api-gateway", description = "Async users API (seed 4); the GraphQL orders API is at POST /graphql."),
    paths(users::create_user, users::status, users::get_user),
    components(schemas(users::CreateUser, users::Accepted, users::Status, users::User, users::ErrorBody)),
    modifiers(&Security)
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("x-api-key"))),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("API key or HS256 JWT")
                    .build(),
            ),
        );
    }
}

pub async fn document() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_matches_validation() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let create = &doc["components"]["schemas"]["CreateUser"];
        assert_eq!(create["additionalProperties"], false, "{create}");
        assert_eq!(create["properties"]["name"]["minLength"], 5);
        assert_eq!(create["properties"]["name"]["maxLength"], 100);
        assert_eq!(create["properties"]["email"]["format"], "email");
        for path in ["/users", "/status/{messageId}", "/users/{userId}"] {
            assert!(doc["paths"][path].is_object(), "{path} missing");
        }
    }
}
