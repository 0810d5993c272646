//! Text as a sealed value read back from the store (`enc:v1:<kid>:<base64>`), with a
//! fixed keyring: the part before the first newline is the context (associated data),
//! the rest the value. Unsealing refuses or succeeds, never panics; what unseals seals
//! again to a value that unseals to the same bytes.
#![no_main]

use std::sync::OnceLock;

use hawser_gateway::crypto::{Keyring, is_sealed};
use libfuzzer_sys::fuzz_target;

/// Two keys, so both the sealing key and an older one are looked up.
fn keys() -> &'static Keyring {
    static KEYS: OnceLock<Keyring> = OnceLock::new();
    KEYS.get_or_init(|| {
        match Keyring::parse(
            "k1:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=,k0:Hx4dHBsaGRgXFhUUExIREA8ODQwLCgkIBwYFBAMCAQA=",
        ) {
            Ok(k) => k,
            Err(e) => panic!("fixed keyring: {e}"),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (context, sealed) = text.split_once('\n').unwrap_or(("ctx", &text));
    let keys = keys();
    let _ = is_sealed(sealed);
    let _ = keys.needs_reseal(sealed);
    let _ = keys.unseal_string(sealed, context);
    if let Ok(plain) = keys.unseal(sealed, context) {
        let again = keys.seal(&plain, context);
        assert_eq!(keys.unseal(&again, context).ok(), Some(plain));
        assert!(keys.reseal(sealed, context).is_ok());
    }
    let _ = Keyring::parse(sealed);
});
