//! Text as the gateway's YAML config file: parsed the way `config::file::parse` does
//! (serde-saphyr with field paths; that function is private), then resolved with
//! `Settings::from_raw`, section by section. Refused or accepted, never a panic: a
//! panic here is a replica that does not start with a useful message.
#![no_main]

use std::collections::BTreeMap;
use std::sync::OnceLock;

use hawser_gateway::config::{Flags, RawConfig, Settings};
use libfuzzer_sys::fuzz_target;

fn env() -> &'static BTreeMap<String, String> {
    static ENV: OnceLock<BTreeMap<String, String>> = OnceLock::new();
    ENV.get_or_init(|| {
        BTreeMap::from([
            ("ADMIN".to_owned(), "an-admin-token-long-enough".to_owned()),
            ("TOKEN".to_owned(), "t".to_owned()),
        ])
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let raw: Result<RawConfig, _> = if text.trim().is_empty() {
        Ok(RawConfig::default())
    } else {
        serde_saphyr::with_deserializer_from_str(text, |de| {
            serde_path_to_error::deserialize(de).map_err(|e| {
                let _ = e.path().to_string();
                e.into_inner()
            })
        })
    };
    match raw {
        Ok(raw) => {
            if let Err(e) = Settings::from_raw(raw, None, &Flags::default(), env()) {
                let _ = e.to_string();
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
