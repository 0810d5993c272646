//! A caller without a usable upstream token of their own on a connection with
//! per-user tokens: the answer hands them a consent link, in the form their client
//! can act on.
//!
//! - a 2026-07-28 client that declared URL elicitation gets `input_required` with a
//!   URL-mode `elicitation/create`; its retry (carrying the answer) runs the call;
//! - a 2025-11-25 client that declared URL elicitation gets the error -32042
//!   (`URLElicitationRequired`) carrying the same request, and retries after;
//! - any other client gets, for `tools/call`, a tool error whose text carries the
//!   link (a model can show it), else the error -32042 with the link in its message.

use bytes::Bytes;
use serde_json::json;
use serde_json::value::RawValue;

use super::error::Error;
use super::session::ClientSession;
use super::state::Front;
use crate::jsonrpc::{self, Id, RawParams, code};
use crate::upstream::UpstreamError;

/// The key of Hawser's consent request in `inputRequests` (and of the client's answer
/// in `inputResponses`).
pub const INPUT_KEY: &str = "hawser-consent";

/// The answer to request `id` of `session` that needs `subject`'s consent on
/// `connection`; `why` says what is missing. Also returns the text for the audit row.
pub fn answer(
    front: &Front,
    session: &ClientSession,
    connection: &str,
    method: &str,
    id: &Id,
    why: &str,
) -> (Bytes, String) {
    let offer = match front.oauth.consent_offer(connection, &session.subject) {
        Ok(offer) => offer,
        Err(error) => {
            // No public URL: nobody could open a link.
            let error = Error::upstream(
                connection,
                UpstreamError::NotAuthorized(format!("{why}; consent is unavailable: {error}")),
            );
            let text = error.to_string();
            return (error.to_message(Some(id)), text);
        }
    };
    let audit = format!("{why}; consent link issued");
    let capabilities = session.envelope().capabilities;
    let url_mode = declares_url_elicitation(capabilities.as_deref());
    let body = match (url_mode, session.is_modern()) {
        (true, true) => {
            let result = json!({
                "resultType": "input_required",
                "inputRequests": { INPUT_KEY: {
                    "method": "elicitation/create",
                    "params": {"mode": "url", "message": offer.message, "url": offer.url.as_str()},
                }},
            });
            jsonrpc::result(id.json(), &result.to_string())
        }
        (true, false) => jsonrpc::error(
            Some(id.json()),
            code::URL_ELICITATION_REQUIRED,
            &offer.message,
            Some(&json!({"elicitations": [{
                "mode": "url",
                "elicitationId": offer.id,
                "message": offer.message,
                "url": offer.url.as_str(),
            }]})),
        ),
        (false, _) if method == "tools/call" => {
            let result = json!({
                "content": [{"type": "text", "text": format!("{} {}", offer.message, offer.url)}],
                "isError": true,
            });
            jsonrpc::result(id.json(), &result.to_string())
        }
        (false, _) => jsonrpc::error(
            Some(id.json()),
            code::URL_ELICITATION_REQUIRED,
            &format!("{} {}", offer.message, offer.url),
            Some(&json!({"connection": connection, "url": offer.url.as_str()})),
        ),
    };
    (body, audit)
}

/// Whether `capabilities` declare URL-mode elicitation (`elicitation.url`).
fn declares_url_elicitation(capabilities: Option<&RawValue>) -> bool {
    let Some(raw) = capabilities else {
        return false;
    };
    serde_json::from_str::<serde_json::Value>(raw.get())
        .ok()
        .is_some_and(|c| c["elicitation"]["url"].is_object())
}

/// What a 2026-07-28 retry answered to Hawser's consent request, and its params
/// without that answer (the upstream never sees it). `None` when it carries none.
pub fn take_answer(params: Option<&RawValue>) -> Option<(bool, Box<RawValue>)> {
    let params = params?;
    find_bytes!(params.get().as_bytes(), INPUT_KEY.as_bytes())?;
    let mut members = RawParams::parse(Some(params)).ok()?;
    let responses = members.0.get("inputResponses")?;
    let mut responses = RawParams::parse(Some(responses)).ok()?;
    let ours = responses.0.get(INPUT_KEY)?;
    let accepted = serde_json::from_str::<serde_json::Value>(ours.get())
        .ok()
        .is_some_and(|a| a["action"] == "accept");
    responses.0.0.retain(|(k, _)| k != INPUT_KEY);
    if responses.0.0.is_empty() {
        members.0.0.retain(|(k, _)| k != "inputResponses");
    } else {
        members.0.set("inputResponses", responses.to_raw());
    }
    Some((accepted, members.to_raw()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_owned()).unwrap()
    }

    #[test]
    fn url_elicitation_is_read_from_the_capabilities() {
        assert!(declares_url_elicitation(Some(&raw(
            r#"{"elicitation":{"form":{},"url":{}}}"#
        ))));
        assert!(!declares_url_elicitation(Some(&raw(
            r#"{"elicitation":{}}"#
        ))));
        assert!(!declares_url_elicitation(None));
    }

    #[test]
    fn the_consent_answer_is_taken_out_of_a_retry() {
        let params = raw(
            r#"{"name":"t","arguments":{"a":1},"inputResponses":{"hawser-consent":{"action":"accept"}}}"#,
        );
        let (accepted, rest) = take_answer(Some(&params)).unwrap();
        assert!(accepted);
        let rest: serde_json::Value = serde_json::from_str(rest.get()).unwrap();
        assert_eq!(rest, json!({"name": "t", "arguments": {"a": 1}}));

        let declined = raw(
            r#"{"name":"t","inputResponses":{"hawser-consent":{"action":"decline"},"other":{}}}"#,
        );
        let (accepted, rest) = take_answer(Some(&declined)).unwrap();
        assert!(!accepted);
        let rest: serde_json::Value = serde_json::from_str(rest.get()).unwrap();
        assert_eq!(rest, json!({"name": "t", "inputResponses": {"other": {}}}));

        assert!(take_answer(Some(&raw(r#"{"name":"t"}"#))).is_none());
    }
}
