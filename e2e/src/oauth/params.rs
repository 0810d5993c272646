//! Request parameter parsing shared by the endpoints: form/query decoding
//! with duplicate detection (RFC 6749 §3.1) and client credentials
//! (RFC 6749 §2.3.1: HTTP Basic or form body).

use std::collections::{BTreeSet, HashMap, hash_map::Entry};

use axum::http::{HeaderMap, header};
use base64::{Engine, engine::general_purpose::STANDARD};

use super::{AuthMethod, error::OAuthError};

/// Decoded `application/x-www-form-urlencoded` parameters. Parameters sent
/// without a value are treated as omitted (RFC 6749 §3.1); names sent more
/// than once are listed in `duplicates`.
#[derive(Debug, Default)]
pub(crate) struct Params {
    values: HashMap<String, String>,
    duplicates: BTreeSet<String>,
}

impl Params {
    pub(crate) fn parse(input: &[u8]) -> Self {
        let mut params = Self::default();
        for (name, value) in url::form_urlencoded::parse(input) {
            if value.is_empty() {
                continue;
            }
            match params.values.entry(name.into_owned()) {
                Entry::Occupied(entry) => {
                    params.duplicates.insert(entry.key().clone());
                }
                Entry::Vacant(entry) => {
                    entry.insert(value.into_owned());
                }
            }
        }
        params
    }

    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    pub(crate) fn is_duplicated(&self, name: &str) -> bool {
        self.duplicates.contains(name)
    }

    /// `invalid_request` if any parameter was sent more than once.
    pub(crate) fn reject_duplicates(&self) -> Result<(), OAuthError> {
        match self.duplicates.iter().next() {
            Some(name) => Err(OAuthError::invalid_request(format!(
                "parameter {name} was sent more than once"
            ))),
            None => Ok(()),
        }
    }

    /// The parameter, or `invalid_request` naming it.
    pub(crate) fn require(&self, name: &str) -> Result<&str, OAuthError> {
        self.get(name)
            .ok_or_else(|| OAuthError::invalid_request(format!("missing parameter {name}")))
    }
}

/// Whether the request body is declared as a form.
pub(crate) fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|mime| {
            mime.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// Client credentials as presented in one request.
#[derive(Debug)]
pub(crate) enum Credentials {
    /// A secret by HTTP Basic or in the form.
    Secret {
        id: String,
        secret: String,
        method: AuthMethod,
    },
    /// `client_id` alone in the form (public client).
    Public { id: String },
    /// Nothing identifies the client.
    Anonymous,
}

impl Credentials {
    /// The client id the caller claims, authenticated or not.
    pub(crate) fn claimed_id(&self) -> Option<&str> {
        match self {
            Self::Secret { id, .. } | Self::Public { id } => Some(id),
            Self::Anonymous => None,
        }
    }
}

/// Reads the client credentials of a request. More than one method in one
/// request is `invalid_request` (RFC 6749 §2.3).
pub(crate) fn credentials(headers: &HeaderMap, params: &Params) -> Result<Credentials, OAuthError> {
    let basic = basic_credentials(headers)?;
    let form_id = params.get("client_id");
    let form_secret = params.get("client_secret");
    if params.is_duplicated("client_id") || params.is_duplicated("client_secret") {
        return Err(OAuthError::invalid_request(
            "client_id/client_secret sent more than once",
        ));
    }
    match (basic, form_id, form_secret) {
        (Some(_), _, Some(_)) => Err(OAuthError::invalid_request(
            "use one client authentication method, not HTTP Basic and client_secret together",
        )),
        (Some((id, _)), Some(form_id), None) if form_id != id => Err(OAuthError::invalid_request(
            "client_id differs from the HTTP Basic user",
        )),
        (Some((id, secret)), _, None) => Ok(Credentials::Secret {
            id,
            secret,
            method: AuthMethod::ClientSecretBasic,
        }),
        (None, Some(id), Some(secret)) => Ok(Credentials::Secret {
            id: id.to_owned(),
            secret: secret.to_owned(),
            method: AuthMethod::ClientSecretPost,
        }),
        (None, None, Some(_)) => Err(OAuthError::invalid_request(
            "client_secret without client_id",
        )),
        (None, Some(id), None) => Ok(Credentials::Public { id: id.to_owned() }),
        (None, None, None) => Ok(Credentials::Anonymous),
    }
}

/// HTTP Basic credentials, form-urlencoded inside as RFC 6749 §2.3.1 requires.
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, OAuthError> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(OAuthError::invalid_request(
            "more than one Authorization header",
        ));
    }
    let bad = || OAuthError::invalid_client("malformed HTTP Basic credentials");
    let value = value.to_str().map_err(|_| bad())?;
    let (scheme, encoded) = value.split_once(' ').ok_or_else(bad)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(OAuthError::invalid_client(
            "unsupported client authentication scheme (use Basic)",
        ));
    }
    let decoded = STANDARD.decode(encoded.trim()).map_err(|_| bad())?;
    let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(bad)?;
    let id = form_decode(id).ok_or_else(bad)?;
    let secret = form_decode(secret).ok_or_else(bad)?;
    if id.is_empty() {
        return Err(bad());
    }
    Ok(Some((id, secret)))
}

/// `application/x-www-form-urlencoded` decoding of one value (`+` is a
/// space); `None` for a malformed escape or invalid UTF-8.
fn form_decode(input: &str) -> Option<String> {
    let mut out = Vec::with_capacity(input.len());
    let mut bytes = input.bytes();
    while let Some(byte) = bytes.next() {
        match byte {
            b'+' => out.push(b' '),
            b'%' => {
                let high = hex_value(bytes.next()?)?;
                let low = hex_value(bytes.next()?)?;
                out.push(high << 4 | low);
            }
            other => out.push(other),
        }
    }
    String::from_utf8(out).ok()
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

/// `Basic` header value for `id`/`secret`, form-urlencoded as RFC 6749 §2.3.1 requires.
pub fn basic_header(id: &str, secret: &str) -> String {
    let id: String = url::form_urlencoded::byte_serialize(id.as_bytes()).collect();
    let secret: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
    format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn params_drop_empty_values_and_flag_duplicates() {
        let params = Params::parse(b"a=1&b=&c=x%20y&a=2");
        assert_eq!(params.get("a"), Some("1"));
        assert_eq!(params.get("b"), None);
        assert_eq!(params.get("c"), Some("x y"));
        assert!(params.is_duplicated("a"));
        assert!(params.reject_duplicates().is_err());
        assert!(Params::parse(b"a=1").reject_duplicates().is_ok());
    }

    #[test]
    fn basic_round_trip_with_reserved_characters() {
        let mut headers = HeaderMap::new();
        let value = basic_header("my client", "p@ss:w+rd");
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&value).expect("ascii"),
        );
        let creds = credentials(&headers, &Params::default()).expect("valid");
        match creds {
            Credentials::Secret { id, secret, method } => {
                assert_eq!(id, "my client");
                assert_eq!(secret, "p@ss:w+rd");
                assert_eq!(method, AuthMethod::ClientSecretBasic);
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn two_methods_are_rejected() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&basic_header("a", "b")).expect("ascii"),
        );
        let params = Params::parse(b"client_id=a&client_secret=b");
        let error = credentials(&headers, &params).expect_err("rejected");
        assert_eq!(error.code, "invalid_request");
    }

    #[test]
    fn malformed_basic_is_invalid_client() {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic !!!"));
        let error = credentials(&headers, &Params::default()).expect_err("rejected");
        assert_eq!(error.code, "invalid_client");
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer x"));
        let error = credentials(&headers, &Params::default()).expect_err("rejected");
        assert_eq!(error.code, "invalid_client");
    }

    #[test]
    fn form_decoding() {
        assert_eq!(form_decode("a%2Bb+c").as_deref(), Some("a+b c"));
        assert_eq!(form_decode("%zz"), None);
        assert_eq!(form_decode("%4"), None);
    }
}
