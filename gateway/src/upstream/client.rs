//! What a client told Hawser about itself in `initialize`, kept compactly (as the
//! JSON text it sent) and replayed to upstreams.

use serde_json::value::RawValue;

/// What a client can take from a server: the server→client requests Hawser may relay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Declared {
    pub sampling: bool,
    /// Form-mode elicitation (what an empty `elicitation` object means).
    pub elicitation: bool,
    /// URL-mode elicitation (`elicitation.url`).
    pub elicitation_url: bool,
    pub roots: bool,
}

impl Declared {
    /// The capabilities an object of client capabilities declares (a member that is
    /// present and not `null`).
    pub fn of(capabilities: Option<&RawValue>) -> Self {
        #[derive(serde::Deserialize, Default)]
        struct Caps<'a> {
            #[serde(borrow)]
            sampling: Option<&'a RawValue>,
            #[serde(borrow)]
            elicitation: Option<&'a RawValue>,
            #[serde(borrow)]
            roots: Option<&'a RawValue>,
        }
        let caps: Caps<'_> = capabilities
            .and_then(|c| serde_json::from_str(c.get()).ok())
            .unwrap_or_default();
        #[derive(serde::Deserialize, Default)]
        struct Modes<'a> {
            #[serde(borrow)]
            form: Option<&'a RawValue>,
            #[serde(borrow)]
            url: Option<&'a RawValue>,
        }
        let set = |v: Option<&RawValue>| v.is_some_and(|v| v.get().trim() != "null");
        let modes: Option<Modes<'_>> = caps
            .elicitation
            .filter(|v| v.get().trim() != "null")
            .map(|v| serde_json::from_str(v.get()).unwrap_or_default());
        // An elicitation object naming no mode means form mode (2025-06-18).
        let (form, url) = match &modes {
            None => (false, false),
            Some(m) if !set(m.form) && !set(m.url) => (true, false),
            Some(m) => (set(m.form), set(m.url)),
        };
        Self {
            sampling: set(caps.sampling),
            elicitation: form,
            elicitation_url: url,
            roots: set(caps.roots),
        }
    }

    /// Whether `capability` (`sampling`, `elicitation`, `elicitation.url`, `roots`)
    /// was declared.
    pub fn has(&self, capability: &str) -> bool {
        match capability {
            "sampling" => self.sampling,
            "elicitation" => self.elicitation,
            "elicitation.url" => self.elicitation_url,
            "roots" => self.roots,
            _ => false,
        }
    }

    /// The capability a server→client request (or 2026-07-28 input request) needs.
    pub fn needed_by(method: &str, params: Option<&RawValue>) -> Option<&'static str> {
        match method {
            "sampling/createMessage" => Some("sampling"),
            "roots/list" => Some("roots"),
            "elicitation/create" => {
                #[derive(serde::Deserialize)]
                struct Mode {
                    mode: Option<String>,
                }
                let url = params
                    .and_then(|p| serde_json::from_str::<Mode>(p.get()).ok())
                    .and_then(|m| m.mode)
                    .is_some_and(|m| m == "url");
                Some(if url {
                    "elicitation.url"
                } else {
                    "elicitation"
                })
            }
            _ => None,
        }
    }
}

/// A client's `initialize`: its revision, and its capabilities and info as sent.
#[derive(Debug, Clone, Default)]
pub struct ClientInit {
    pub protocol_version: String,
    pub capabilities: Option<Box<RawValue>>,
    pub client_info: Option<Box<RawValue>>,
    pub declared: Declared,
}

impl ClientInit {
    pub fn new(
        protocol_version: String,
        capabilities: Option<Box<RawValue>>,
        client_info: Option<Box<RawValue>>,
    ) -> Self {
        let declared = Declared::of(capabilities.as_deref());
        Self::declared(protocol_version, capabilities, client_info, declared)
    }

    /// As [`Self::new`], with what `capabilities` declare already read.
    pub fn declared(
        protocol_version: String,
        capabilities: Option<Box<RawValue>>,
        client_info: Option<Box<RawValue>>,
        declared: Declared,
    ) -> Self {
        Self {
            protocol_version,
            capabilities,
            client_info,
            declared,
        }
    }

    /// The `initialize` params that open an upstream session for this client at
    /// `version`: its info, and as capabilities everything Hawser can relay (plus the
    /// client's `experimental` and `extensions`). Upstreams then offer every tool; when
    /// one asks what this client cannot answer, the client is told at that moment.
    pub fn params(&self, version: &str) -> String {
        #[derive(serde::Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Params<'a> {
            protocol_version: &'a str,
            capabilities: &'a RawValue,
            client_info: &'a RawValue,
        }
        let mut caps: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(super::era::RELAYABLE_CAPABILITIES).unwrap_or_default();
        if let Some(own) = self.capabilities.as_deref().and_then(|c| {
            serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(c.get()).ok()
        }) {
            for key in ["experimental", "extensions"] {
                if let Some(v) = own.get(key) {
                    caps.insert(key.to_owned(), v.clone());
                }
            }
        }
        let caps = crate::jsonrpc::raw_or_null(serde_json::Value::Object(caps).to_string());
        let hawser = crate::jsonrpc::raw_or_null(super::hawser_info().to_string());
        serde_json::to_string(&Params {
            protocol_version: version,
            capabilities: &caps,
            client_info: self.client_info.as_deref().unwrap_or(&hawser),
        })
        .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.to_owned()).unwrap()
    }

    #[test]
    fn declared_capabilities_are_the_present_non_null_members() {
        let d = Declared::of(Some(&raw(r#"{"sampling":{},"elicitation":null,"x":1}"#)));
        assert!(d.sampling && !d.elicitation && !d.roots);
        assert_eq!(Declared::of(None), Declared::default());
        assert_eq!(Declared::of(Some(&raw("[1,2]"))), Declared::default());
    }

    #[test]
    fn upstream_sessions_declare_what_hawser_can_relay() {
        let init = ClientInit::new(
            "2025-06-18".into(),
            Some(raw(
                r#"{"roots":{"listChanged":true},"experimental":{"x":{}}}"#,
            )),
            None,
        );
        let p: serde_json::Value = serde_json::from_str(&init.params("2025-06-18")).unwrap();
        assert_eq!(p["protocolVersion"], "2025-06-18");
        assert_eq!(p["capabilities"]["roots"]["listChanged"], true);
        assert_eq!(
            p["capabilities"]["elicitation"]["url"],
            serde_json::json!({})
        );
        assert_eq!(p["capabilities"]["sampling"], serde_json::json!({}));
        assert_eq!(
            p["capabilities"]["experimental"]["x"],
            serde_json::json!({})
        );
        assert_eq!(p["clientInfo"]["name"], "hawser");
        assert!(init.declared.roots && !init.declared.sampling);
    }

    #[test]
    fn elicitation_modes_and_what_requests_need() {
        let form = Declared::of(Some(&raw(r#"{"elicitation":{}}"#)));
        assert!(form.elicitation && !form.elicitation_url);
        let url = Declared::of(Some(&raw(r#"{"elicitation":{"url":{}}}"#)));
        assert!(!url.elicitation && url.elicitation_url);
        let p = raw(r#"{"mode":"url","url":"https://x"}"#);
        assert_eq!(
            Declared::needed_by("elicitation/create", Some(&p)),
            Some("elicitation.url")
        );
        assert_eq!(
            Declared::needed_by("elicitation/create", None),
            Some("elicitation")
        );
        assert_eq!(Declared::needed_by("ping", None), None);
    }
}
