//! RFC 7591 dynamic client registration (`POST /register`) and the registry
//! of registered clients.

use axum::http::{HeaderMap, StatusCode, header};
use serde_json::{Map, Value, json};

use super::{
    AuthMethod, ClientConfig,
    exchange::TOKEN_EXCHANGE,
    provider::{OAuthError, Provider, check_redirect_uri, lock, random_token, split_scope},
};
use crate::fixture::util::now_ms;

/// Grant types a client may register.
const GRANT_TYPES: [&str; 4] = [
    "authorization_code",
    "refresh_token",
    "client_credentials",
    TOKEN_EXCHANGE,
];

/// Grant types of a registration or metadata document that names none.
pub(crate) const DEFAULT_GRANT_TYPES: [&str; 2] = ["authorization_code", "refresh_token"];

/// One registered client.
struct Registered {
    client: ClientConfig,
    /// Its metadata as answered (without the secret).
    metadata: Value,
}

/// Clients registered at `/register`, in registration order.
#[derive(Default)]
pub(crate) struct Registry {
    clients: Vec<Registered>,
}

impl Registry {
    pub(crate) fn client(&self, id: &str) -> Option<ClientConfig> {
        self.clients
            .iter()
            .find(|registered| registered.client.id == id)
            .map(|registered| registered.client.clone())
    }
}

fn invalid_metadata(description: impl Into<String>) -> OAuthError {
    OAuthError::new(
        StatusCode::BAD_REQUEST,
        "invalid_client_metadata",
        description,
    )
}

fn invalid_redirect(description: impl Into<String>) -> OAuthError {
    OAuthError::new(StatusCode::BAD_REQUEST, "invalid_redirect_uri", description)
}

/// A list of strings, or `error` naming `field`.
fn strings(
    body: &Map<String, Value>,
    field: &str,
    error: fn(String) -> OAuthError,
) -> Result<Option<Vec<String>>, OAuthError> {
    let Some(value) = body.get(field) else {
        return Ok(None);
    };
    value
        .as_array()
        .and_then(|items| {
            items
                .iter()
                .map(|item| item.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
        })
        .map(Some)
        .ok_or_else(|| error(format!("{field} must be an array of strings")))
}

fn optional_string<'a>(
    body: &'a Map<String, Value>,
    field: &str,
) -> Result<Option<&'a str>, OAuthError> {
    match body.get(field) {
        None => Ok(None),
        Some(Value::String(value)) => Ok(Some(value)),
        Some(_) => Err(invalid_metadata(format!("{field} must be a string"))),
    }
}

impl Provider {
    /// Registers a client; the 201 body (RFC 7591 §3.2.1).
    pub(crate) fn register(&self, headers: &HeaderMap, body: &[u8]) -> Result<Value, OAuthError> {
        let json_body = headers
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(';').next())
            .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
        if !json_body {
            return Err(invalid_metadata("the body must be application/json"));
        }
        let body: Value = serde_json::from_slice(body)
            .map_err(|_| invalid_metadata("the body is not valid JSON"))?;
        let body = body
            .as_object()
            .ok_or_else(|| invalid_metadata("the body must be a JSON object"))?;

        let redirect_uris = strings(body, "redirect_uris", invalid_redirect)?
            .filter(|uris| !uris.is_empty())
            .ok_or_else(|| invalid_redirect("redirect_uris is required and must not be empty"))?;
        for uri in &redirect_uris {
            check_redirect_uri(uri)
                .map_err(|reason| invalid_redirect(format!("redirect URI {uri} {reason}")))?;
        }
        let method = match optional_string(body, "token_endpoint_auth_method")? {
            None | Some("client_secret_basic") => AuthMethod::ClientSecretBasic,
            Some("client_secret_post") => AuthMethod::ClientSecretPost,
            Some("none") => AuthMethod::None,
            Some(other) => {
                return Err(invalid_metadata(format!(
                    "token_endpoint_auth_method {other} is not supported"
                )));
            }
        };
        let grant_types = strings(body, "grant_types", invalid_metadata)?
            .unwrap_or_else(|| DEFAULT_GRANT_TYPES.map(str::to_owned).to_vec());
        if let Some(unknown) = grant_types
            .iter()
            .find(|g| !GRANT_TYPES.contains(&g.as_str()))
        {
            return Err(invalid_metadata(format!(
                "grant type {unknown} is not supported"
            )));
        }
        if method == AuthMethod::None
            && let Some(grant) = grant_types
                .iter()
                .find(|g| *g == "client_credentials" || *g == TOKEN_EXCHANGE)
        {
            return Err(invalid_metadata(format!(
                "grant type {grant} needs a confidential client"
            )));
        }
        let code_flow = grant_types.iter().any(|g| g == "authorization_code");
        let response_types =
            strings(body, "response_types", invalid_metadata)?.unwrap_or_else(|| {
                if code_flow {
                    vec!["code".to_owned()]
                } else {
                    Vec::new()
                }
            });
        if let Some(other) = response_types.iter().find(|r| *r != "code") {
            return Err(invalid_metadata(format!(
                "response type {other} is not supported"
            )));
        }
        if code_flow == response_types.is_empty() {
            return Err(invalid_metadata(
                "response_types code goes with grant type authorization_code",
            ));
        }
        let client_name = optional_string(body, "client_name")?;
        let scope = optional_string(body, "scope")?;
        if let Some(scope) = scope
            && !self.config.scopes.is_empty()
            && let Some(unknown) = split_scope(Some(scope))
                .iter()
                .find(|s| !self.config.scopes.contains(s))
        {
            return Err(invalid_metadata(format!("unknown scope {unknown}")));
        }

        let secret = (method != AuthMethod::None).then(|| random_token("mcs_"));
        let client = ClientConfig {
            id: random_token("dcr_"),
            secret: secret.clone(),
            auth_methods: vec![method],
            redirect_uris: redirect_uris.clone(),
            grant_types: grant_types.clone(),
        };
        let mut metadata = json!({
            "client_id": client.id,
            "client_id_issued_at": now_ms() / 1000,
            "redirect_uris": redirect_uris,
            "token_endpoint_auth_method": method.as_str(),
            "grant_types": grant_types,
            "response_types": response_types,
        });
        if let Some(name) = client_name {
            metadata["client_name"] = json!(name);
        }
        if let Some(scope) = scope {
            metadata["scope"] = json!(scope);
        }
        let mut answer = metadata.clone();
        if let Some(secret) = secret {
            answer["client_secret"] = json!(secret);
            answer["client_secret_expires_at"] = json!(0);
        }
        tracing::info!(client = %client.id, method = method.as_str(), "client registered");
        lock(&self.registry)
            .clients
            .push(Registered { client, metadata });
        Ok(answer)
    }

    /// `GET /control/clients`: `{count, clients: [metadata without secrets]}`.
    pub(crate) fn registered_clients(&self) -> Value {
        let registry = lock(&self.registry);
        let clients: Vec<&Value> = registry.clients.iter().map(|r| &r.metadata).collect();
        json!({ "count": clients.len(), "clients": clients })
    }

    pub(crate) fn registered_client_ids(&self) -> Vec<String> {
        lock(&self.registry)
            .clients
            .iter()
            .map(|registered| registered.client.id.clone())
            .collect()
    }
}
