//! Signing keys, the JWKS, JWT access tokens (RFC 9068) and the tokens
//! `/control/mint` builds (good ones and deliberately bad ones).

use anyhow::{Context, anyhow, bail};
use base64::{
    Engine,
    engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD},
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rand::RngExt;
use ring::{
    hmac,
    rand::SystemRandom,
    signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair},
};
use serde_json::{Value, json};

use super::{
    JwtAlg, MintRequest, MintSign,
    provider::{Family, OAuthError, Provider, lock},
};

/// DER prefix of a P-256 SubjectPublicKeyInfo, before the 65-byte point.
const P256_SPKI_PREFIX: &[u8] = &[
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];
/// DER prefix of an Ed25519 SubjectPublicKeyInfo, before the 32-byte key.
const ED25519_SPKI_PREFIX: &[u8] = &[
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// `typ` of JWT access tokens (RFC 9068 §2.1).
pub(crate) const ACCESS_TOKEN_TYP: &str = "at+jwt";

/// One signing key pair.
pub(crate) struct SigningKey {
    kid: String,
    alg: JwtAlg,
    /// PKCS#8 private key (what `EncodingKey::from_*_der` expects).
    pkcs8: Vec<u8>,
    /// EC: the uncompressed point `04 || x || y`; Ed25519: the 32-byte key.
    public: Vec<u8>,
}

impl SigningKey {
    pub(crate) fn generate(alg: JwtAlg) -> anyhow::Result<Self> {
        let rng = SystemRandom::new();
        let failed = |_| anyhow!("generating a {} key failed", alg.as_str());
        let (pkcs8, public) = match alg {
            JwtAlg::Es256 => {
                let signing = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
                let document = EcdsaKeyPair::generate_pkcs8(signing, &rng).map_err(failed)?;
                let pair = EcdsaKeyPair::from_pkcs8(signing, document.as_ref(), &rng)
                    .map_err(|_| anyhow!("reading the generated ES256 key failed"))?;
                (
                    document.as_ref().to_vec(),
                    pair.public_key().as_ref().to_vec(),
                )
            }
            JwtAlg::EdDsa => {
                let document = Ed25519KeyPair::generate_pkcs8(&rng).map_err(failed)?;
                let pair = Ed25519KeyPair::from_pkcs8(document.as_ref())
                    .map_err(|_| anyhow!("reading the generated Ed25519 key failed"))?;
                (
                    document.as_ref().to_vec(),
                    pair.public_key().as_ref().to_vec(),
                )
            }
        };
        let expected = match alg {
            JwtAlg::Es256 => 65,
            JwtAlg::EdDsa => 32,
        };
        if public.len() != expected {
            bail!("unexpected {} public key length", alg.as_str());
        }
        Ok(Self {
            kid: random_id(),
            alg,
            pkcs8,
            public,
        })
    }

    pub(crate) fn kid(&self) -> &str {
        &self.kid
    }

    /// The public JWK.
    pub(crate) fn jwk(&self) -> Value {
        match self.alg {
            JwtAlg::Es256 => {
                let point = self.public.get(1..).unwrap_or_default();
                let (x, y) = point.split_at(point.len() / 2);
                json!({
                    "kty": "EC", "crv": "P-256",
                    "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y),
                    "kid": self.kid, "use": "sig", "alg": self.alg.as_str(),
                })
            }
            JwtAlg::EdDsa => json!({
                "kty": "OKP", "crv": "Ed25519",
                "x": URL_SAFE_NO_PAD.encode(&self.public),
                "kid": self.kid, "use": "sig", "alg": self.alg.as_str(),
            }),
        }
    }

    /// The public key as SPKI PEM, 64-character lines, trailing newline.
    pub(crate) fn public_pem(&self) -> String {
        let prefix = match self.alg {
            JwtAlg::Es256 => P256_SPKI_PREFIX,
            JwtAlg::EdDsa => ED25519_SPKI_PREFIX,
        };
        let der = [prefix, self.public.as_slice()].concat();
        let encoded = STANDARD.encode(der);
        let mut pem = String::from("-----BEGIN PUBLIC KEY-----\n");
        for line in encoded.as_bytes().chunks(64) {
            pem.push_str(&String::from_utf8_lossy(line));
            pem.push('\n');
        }
        pem.push_str("-----END PUBLIC KEY-----\n");
        pem
    }

    /// A compact JWS of `claims` with header `{typ, alg, kid}`.
    pub(crate) fn sign(&self, claims: &Value, typ: &str, kid: &str) -> anyhow::Result<String> {
        let (algorithm, key) = match self.alg {
            JwtAlg::Es256 => (Algorithm::ES256, EncodingKey::from_ec_der(&self.pkcs8)),
            JwtAlg::EdDsa => (Algorithm::EdDSA, EncodingKey::from_ed_der(&self.pkcs8)),
        };
        let mut header = Header::new(algorithm);
        header.typ = Some(typ.to_owned());
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, claims, &key).context("signing a JWT")
    }
}

/// The published keys; the last one signs.
pub(crate) struct KeyStore {
    alg: JwtAlg,
    keys: Vec<SigningKey>,
}

impl KeyStore {
    pub(crate) fn new(alg: JwtAlg) -> anyhow::Result<Self> {
        Ok(Self {
            alg,
            keys: vec![SigningKey::generate(alg)?],
        })
    }

    pub(crate) fn current(&self) -> anyhow::Result<&SigningKey> {
        self.keys.last().context("no signing key")
    }

    /// Adds a new current key (dropping the others if `retire`); its kid.
    fn rotate(&mut self, retire: bool) -> anyhow::Result<String> {
        let key = SigningKey::generate(self.alg)?;
        let kid = key.kid.clone();
        if retire {
            self.keys.clear();
        }
        self.keys.push(key);
        Ok(kid)
    }

    /// `{"keys": [...]}`, newest first.
    fn jwks(&self) -> Value {
        json!({ "keys": self.keys.iter().rev().map(SigningKey::jwk).collect::<Vec<_>>() })
    }
}

impl Provider {
    /// The JWT access token for a `family` token (claims of RFC 9068 §2.2).
    pub(super) fn access_jwt(
        &self,
        family: &Family,
        scope: &[String],
        issued_ms: u64,
        expires_ms: u64,
    ) -> Result<String, OAuthError> {
        let iat = issued_ms / 1000;
        let mut claims = json!({
            "iss": self.issuer,
            "sub": family.sub,
            "aud": family.resource.as_deref().unwrap_or(&family.client_id),
            "exp": expires_ms / 1000,
            "iat": iat,
            "nbf": iat,
            "jti": random_id(),
            "client_id": family.client_id,
            "scope": scope.join(" "),
        });
        let groups = self.groups_for(&family.sub);
        if !groups.is_empty() {
            claims["groups"] = json!(groups);
        }
        if let Some(act) = &family.act {
            claims["act"] = act.clone();
        }
        let keys = lock(&self.keys);
        keys.current()
            .and_then(|key| key.sign(&claims, ACCESS_TOKEN_TYP, key.kid()))
            .map_err(|error| OAuthError::server_error(format!("{error:#}")))
    }

    /// The OpenID Connect ID token of a code flow with the `openid` scope, for
    /// `client_id` (OIDC Core §2: `aud` is the client, `nonce` echoed).
    pub(super) fn id_token(
        &self,
        client_id: &str,
        code: &super::provider::CodeRecord,
    ) -> Result<String, OAuthError> {
        let now = crate::fixture::util::now_ms() / 1000;
        let mut claims = json!({
            "iss": self.issuer,
            "sub": code.sub,
            "aud": client_id,
            "exp": now + self.config.access_ttl.as_secs().max(60),
            "iat": now,
        });
        if let Some(nonce) = &code.nonce {
            claims["nonce"] = json!(nonce);
        }
        let groups = self.groups_for(&code.sub);
        if !groups.is_empty() {
            claims["groups"] = json!(groups);
        }
        let keys = lock(&self.keys);
        keys.current()
            .and_then(|key| key.sign(&claims, "JWT", key.kid()))
            .map_err(|error| OAuthError::server_error(format!("{error:#}")))
    }

    pub(crate) fn rotate_key(&self, retire: bool) -> anyhow::Result<String> {
        let kid = lock(&self.keys).rotate(retire)?;
        tracing::info!(%kid, retire, "signing key rotated");
        Ok(kid)
    }

    pub(crate) fn jwks(&self) -> Value {
        lock(&self.keys).jwks()
    }

    pub(crate) fn current_kid(&self) -> String {
        lock(&self.keys)
            .current()
            .map(|key| key.kid.clone())
            .unwrap_or_default()
    }

    pub(crate) fn public_key_pem(&self) -> String {
        lock(&self.keys)
            .current()
            .map(SigningKey::public_pem)
            .unwrap_or_default()
    }

    /// A token from verbatim claims, signed as `request.sign` says.
    pub(crate) fn mint(&self, request: &MintRequest) -> anyhow::Result<String> {
        if !request.claims.is_object() {
            bail!("claims must be a JSON object");
        }
        let keys = lock(&self.keys);
        let current = keys.current()?;
        let kid = request.kid.as_deref();
        let typ = request.typ.as_deref();
        match request.sign {
            MintSign::Current => current.sign(
                &request.claims,
                typ.unwrap_or(ACCESS_TOKEN_TYP),
                kid.unwrap_or(current.kid()),
            ),
            MintSign::UnknownKey => {
                let unknown = SigningKey::generate(current.alg)?;
                unknown.sign(
                    &request.claims,
                    typ.unwrap_or(ACCESS_TOKEN_TYP),
                    kid.unwrap_or(unknown.kid()),
                )
            }
            MintSign::None => {
                let header = json!({
                    "alg": "none",
                    "typ": typ.unwrap_or("JWT"),
                    "kid": kid.unwrap_or(current.kid()),
                });
                Ok(format!("{}.", signing_input(&header, &request.claims)?))
            }
            MintSign::Hs256PublicKey => {
                let header = json!({
                    "alg": "HS256",
                    "typ": typ.unwrap_or(ACCESS_TOKEN_TYP),
                    "kid": kid.unwrap_or(current.kid()),
                });
                let input = signing_input(&header, &request.claims)?;
                let secret = hmac::Key::new(hmac::HMAC_SHA256, current.public_pem().as_bytes());
                let tag = hmac::sign(&secret, input.as_bytes());
                Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref())))
            }
        }
    }
}

/// `base64url(header) . base64url(claims)`.
fn signing_input(header: &Value, claims: &Value) -> anyhow::Result<String> {
    let header = serde_json::to_vec(header).context("encoding the header")?;
    let claims = serde_json::to_vec(claims).context("encoding the claims")?;
    Ok(format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    ))
}

/// 128 random bits, base64url: key ids and `jti`s.
pub(crate) fn random_id() -> String {
    let bytes: [u8; 16] = rand::rng().random();
    URL_SAFE_NO_PAD.encode(bytes)
}
