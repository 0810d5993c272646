//! The era bridge, towards 2026-07-28 upstreams: such an upstream answers a call that
//! needs the client's input with `input_required` (input requests and an opaque
//! `requestState`) instead of asking mid-call. A legacy client is asked the same
//! questions as ordinary server→client requests on its stream; Hawser then retries
//! the upstream call with the answers (`inputResponses`) and the `requestState`.

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::jsonrpc::{Message, RawParams, raw_or_null};

/// An upstream's `input_required` result.
#[derive(Debug)]
pub struct InputRequired {
    /// Key, method and params of each input request, in the upstream's order.
    pub requests: Vec<(String, String, Box<RawValue>)>,
    /// The upstream's `requestState`, handed back unchanged.
    pub state: Option<Box<RawValue>>,
}

/// The `input_required` result a response carries, if it is one.
pub fn of(response: &[u8]) -> Option<InputRequired> {
    #[derive(Deserialize)]
    struct Result<'a> {
        #[serde(rename = "resultType", borrow)]
        result_type: Option<&'a RawValue>,
        #[serde(rename = "inputRequests", borrow)]
        input_requests: Option<&'a RawValue>,
        #[serde(rename = "requestState", borrow)]
        request_state: Option<&'a RawValue>,
    }
    #[derive(Deserialize)]
    struct Request<'a> {
        method: String,
        #[serde(borrow)]
        params: Option<&'a RawValue>,
    }
    let msg = Message::parse(response).ok()?;
    let result: Result<'_> = serde_json::from_str(msg.result?.get()).ok()?;
    if result.result_type?.get().trim() != r#""input_required""# {
        return None;
    }
    let members = RawParams::parse(result.input_requests).ok()?;
    let mut requests = Vec::with_capacity(members.0.0.len());
    for (key, raw) in members.0.0 {
        let request: Request<'_> = serde_json::from_str(raw.get()).ok()?;
        let params = request
            .params
            .map_or_else(|| raw_or_null("{}".to_owned()), ToOwned::to_owned);
        requests.push((key, request.method, params));
    }
    Some(InputRequired {
        requests,
        state: result.request_state.map(ToOwned::to_owned),
    })
}

/// The client capability an input request needs.
pub fn capability(method: &str) -> Option<&'static str> {
    match method {
        "sampling/createMessage" => Some("sampling"),
        "elicitation/create" => Some("elicitation"),
        "roots/list" => Some("roots"),
        _ => None,
    }
}

/// The params of the retry: the original params with `inputResponses` and the
/// upstream's `requestState`.
pub fn retry_params(
    original: Option<&RawValue>,
    responses: &[(String, Box<RawValue>)],
    state: Option<&RawValue>,
) -> Box<RawValue> {
    let mut params = RawParams::parse(original).unwrap_or_default();
    let mut answers = RawParams::default();
    for (key, value) in responses {
        answers.0.set(key, value.clone());
    }
    params.0.set("inputResponses", answers.to_raw());
    match state {
        Some(state) => params.0.set("requestState", state.to_owned()),
        None => params.0.0.retain(|(k, _)| k != "requestState"),
    }
    params.to_raw()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_input_required_result_is_read_in_order_and_retried_with_the_answers() {
        let response = br#"{"jsonrpc":"2.0","id":3,"result":{"resultType":"input_required","inputRequests":{"name":{"method":"elicitation/create","params":{"message":"Who?"}},"answer":{"method":"sampling/createMessage","params":{"maxTokens":5}}},"requestState":"opaque-1"}}"#;
        let input = of(response).unwrap();
        let keys: Vec<_> = input
            .requests
            .iter()
            .map(|(k, m, _)| (k.as_str(), m.as_str()))
            .collect();
        assert_eq!(
            keys,
            [
                ("name", "elicitation/create"),
                ("answer", "sampling/createMessage")
            ]
        );
        assert_eq!(input.requests[0].2.get(), r#"{"message":"Who?"}"#);
        assert_eq!(
            input.state.as_deref().map(RawValue::get),
            Some(r#""opaque-1""#)
        );

        let original =
            RawValue::from_string(r#"{"name":"elicit","arguments":{"a":1}}"#.into()).unwrap();
        let answer = RawValue::from_string(r#"{"action":"accept"}"#.into()).unwrap();
        let retry = retry_params(
            Some(&original),
            &[("name".into(), answer)],
            input.state.as_deref(),
        );
        let v: serde_json::Value = serde_json::from_str(retry.get()).unwrap();
        assert_eq!(v["name"], "elicit");
        assert_eq!(v["arguments"]["a"], 1);
        assert_eq!(v["inputResponses"]["name"]["action"], "accept");
        assert_eq!(v["requestState"], "opaque-1");
    }

    #[test]
    fn complete_results_and_errors_are_not_input_required() {
        assert!(
            of(br#"{"jsonrpc":"2.0","id":1,"result":{"resultType":"complete","content":[]}}"#)
                .is_none()
        );
        assert!(of(br#"{"jsonrpc":"2.0","id":1,"result":{"content":[]}}"#).is_none());
        assert!(of(br#"{"jsonrpc":"2.0","id":1,"error":{"code":-1,"message":"x"}}"#).is_none());
        assert_eq!(capability("elicitation/create"), Some("elicitation"));
        assert_eq!(capability("tools/list"), None);
    }
}
