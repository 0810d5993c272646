//! What a client told Hawser about itself in `initialize`, kept compactly (as the
//! JSON text it sent) and replayed to upstreams.

use serde_json::value::RawValue;

/// What a client can take from a server: the server→client requests Hawser may relay.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Declared {
    pub sampling: bool,
    pub elicitation: bool,
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
        let set = |v: Option<&RawValue>| v.is_some_and(|v| v.get().trim() != "null");
        Self {
            sampling: set(caps.sampling),
            elicitation: set(caps.elicitation),
            roots: set(caps.roots),
        }
    }

    /// Whether `capability` (`sampling`, `elicitation`, `roots`) was declared.
    pub fn has(&self, capability: &str) -> bool {
        match capability {
            "sampling" => self.sampling,
            "elicitation" => self.elicitation,
            "roots" => self.roots,
            _ => false,
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
        Self {
            protocol_version,
            capabilities,
            client_info,
            declared,
        }
    }

    /// The `initialize` params that replay this to an upstream at `version`.
    pub fn params(&self, version: &str) -> String {
        #[derive(serde::Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Params<'a> {
            protocol_version: &'a str,
            capabilities: &'a RawValue,
            client_info: &'a RawValue,
        }
        let empty =
            RawValue::from_string("{}".to_owned()).unwrap_or_else(|_| RawValue::NULL.to_owned());
        let hawser = crate::jsonrpc::raw_or_null(super::hawser_info().to_string());
        serde_json::to_string(&Params {
            protocol_version: version,
            capabilities: self.capabilities.as_deref().unwrap_or(&empty),
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
    fn replayed_params_carry_what_the_client_sent() {
        let init = ClientInit::new(
            "2025-06-18".into(),
            Some(raw(r#"{"roots":{"listChanged":true}}"#)),
            None,
        );
        let p: serde_json::Value = serde_json::from_str(&init.params("2025-06-18")).unwrap();
        assert_eq!(p["protocolVersion"], "2025-06-18");
        assert_eq!(p["capabilities"]["roots"]["listChanged"], true);
        assert_eq!(p["clientInfo"]["name"], "hawser");
        assert!(init.declared.roots);
    }
}
