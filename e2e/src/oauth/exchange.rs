//! RFC 8693 token exchange at `/token`: a confidential client trades an
//! active access token of this provider for one aimed at another audience.

use serde_json::{Value, json};

use super::{
    ClientConfig,
    params::Params,
    provider::{Family, Inner, Issued, OAuthError, Provider, TokenLogEntry, check_resource_uri},
};
use crate::fixture::util::{now_ms, sha256_hex};

/// The token-exchange `grant_type`.
pub(crate) const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// The only token type accepted and issued.
pub(crate) const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

impl Provider {
    pub(super) fn token_exchange(
        &self,
        inner: &mut Inner,
        client: &ClientConfig,
        params: &Params,
        entry: &mut TokenLogEntry,
    ) -> Result<Issued, OAuthError> {
        if !client.is_confidential() {
            return Err(OAuthError::unauthorized_client(
                "token exchange needs a confidential client",
            ));
        }
        let subject_token = params.require("subject_token")?;
        match params.require("subject_token_type")? {
            ACCESS_TOKEN_TYPE => {}
            other => {
                return Err(OAuthError::invalid_request(format!(
                    "subject_token_type {other} is not supported; use {ACCESS_TOKEN_TYPE}"
                )));
            }
        }
        if params.get("actor_token").is_some() || params.get("actor_token_type").is_some() {
            return Err(OAuthError::invalid_request(
                "actor tokens are not supported",
            ));
        }
        if let Some(requested) = params.get("requested_token_type")
            && requested != ACCESS_TOKEN_TYPE
        {
            return Err(OAuthError::invalid_request(format!(
                "requested_token_type {requested} is not supported; use {ACCESS_TOKEN_TYPE}"
            )));
        }
        let resource = params.get("resource");
        if let Some(resource) = resource {
            check_resource_uri(resource)?;
        }
        let target = resource.or(params.get("audience")).ok_or_else(|| {
            OAuthError::invalid_target("token exchange needs an audience or a resource")
        })?;
        let Some((access, subject)) = inner.active_access(&sha256_hex(subject_token), now_ms())
        else {
            return Err(OAuthError::invalid_request(
                "subject_token is not an active access token issued by this provider",
            ));
        };
        let scope = if params.get("scope").is_some() {
            self.grant_scope(params.get("scope"))?
        } else {
            access.scope.clone()
        };
        let act = actor(&client.id, subject.act.as_ref());
        let sub = subject.sub.clone();
        let family = inner.new_family(Family {
            client_id: client.id.clone(),
            sub,
            scope: scope.clone(),
            resource: Some(target.to_owned()),
            act: Some(act),
            revoked: false,
        });
        entry.family = Some(family);
        tracing::info!(family, client = %client.id, "token exchanged");
        let mut issued = self.issue(inner, family, scope, false)?;
        issued.issued_token_type = Some(ACCESS_TOKEN_TYPE);
        Ok(issued)
    }
}

/// `act` naming the exchanging client, nesting a prior actor (RFC 8693 §4.1).
fn actor(client_id: &str, prior: Option<&Value>) -> Value {
    let mut act = json!({ "sub": client_id });
    if let Some(prior) = prior {
        act["act"] = prior.clone();
    }
    act
}
