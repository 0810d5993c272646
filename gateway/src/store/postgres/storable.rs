//! Text that Postgres refuses, made storable: `text` columns reject the NUL
//! character, and `jsonb` rejects the escape `\u0000` and unpaired UTF-16 surrogates
//! (`\ud800`). Such input comes from clients (a tool name, arguments, `clientInfo`)
//! and must neither fail a write nor block the rows written with it.
//!
//! The rule is the same everywhere: what cannot be stored is written as its JSON
//! escape in plain characters (NUL becomes the six characters `\u0000`), and the
//! caller marks the row as escaped, so a reader knows those characters stand for
//! what could not be stored.

use std::borrow::Cow;

/// `text` with every NUL written as the six characters `\u0000`; whether any was.
pub fn text(s: &str) -> (Cow<'_, str>, bool) {
    if !s.contains('\0') {
        return (Cow::Borrowed(s), false);
    }
    (Cow::Owned(s.replace('\0', "\\u0000")), true)
}

/// [`text`] for an optional column, setting `escaped` when it changed anything.
pub fn opt_text<'a>(s: Option<&'a str>, escaped: &mut bool) -> Option<Cow<'a, str>> {
    s.map(|s| {
        let (t, changed) = text(s);
        *escaped |= changed;
        t
    })
}

/// JSON text `jsonb` accepts: the backslash of each `\u0000` and of each unpaired
/// surrogate escape is itself escaped, so the value holds those six characters
/// instead; whether anything changed. `json` must be valid JSON.
pub fn json(json: &str) -> (Cow<'_, str>, bool) {
    let bytes = json.as_bytes();
    // Fast path: no `\u` escape at all (the common case).
    if find_bytes!(bytes, b"\\u").is_none() {
        return (Cow::Borrowed(json), false);
    }
    let mut out: Option<String> = None;
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            i += 1;
            continue;
        }
        // Inside a string (a backslash appears nowhere else in valid JSON).
        if bytes.get(i + 1) != Some(&b'u') {
            i += 2;
            continue;
        }
        let code = hex4(bytes, i + 2);
        let bad = match code {
            Some(0) => true,
            Some(0xD800..=0xDBFF) => {
                // A high surrogate must be followed by a low one.
                let low = (bytes.get(i + 6) == Some(&b'\\') && bytes.get(i + 7) == Some(&b'u'))
                    .then(|| hex4(bytes, i + 8))
                    .flatten();
                if matches!(low, Some(0xDC00..=0xDFFF)) {
                    i += 12;
                    continue;
                }
                true
            }
            Some(0xDC00..=0xDFFF) => true,
            _ => false,
        };
        if bad {
            let o = out.get_or_insert_with(|| String::with_capacity(json.len() + 16));
            o.push_str(&json[copied..i]);
            o.push('\\');
            copied = i;
        }
        i += 6;
    }
    match out {
        Some(mut o) => {
            o.push_str(&json[copied..]);
            (Cow::Owned(o), true)
        }
        None => (Cow::Borrowed(json), false),
    }
}

fn hex4(bytes: &[u8], at: usize) -> Option<u32> {
    let digits = bytes.get(at..at + 4)?;
    let text = std::str::from_utf8(digits).ok()?;
    u32::from_str_radix(text, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_in_text_becomes_a_visible_escape() {
        assert_eq!(text("plain"), (Cow::Borrowed("plain"), false));
        let (t, escaped) = text("a\0b");
        assert_eq!(t, "a\\u0000b");
        assert!(escaped);
    }

    #[test]
    fn json_escapes_postgres_refuses_are_neutralized_and_the_rest_kept() {
        for (input, want, changed) in [
            (r#"{"a":"x"}"#, r#"{"a":"x"}"#, false),
            (r#"{"a":"\u00e9"}"#, r#"{"a":"\u00e9"}"#, false),
            (r#"{"a":"\u0000"}"#, r#"{"a":"\\u0000"}"#, true),
            (r#"{"\u0000":1}"#, r#"{"\\u0000":1}"#, true),
            // An escaped backslash followed by u0000 is text already.
            (r#"{"a":"\\u0000"}"#, r#"{"a":"\\u0000"}"#, false),
            (r#"{"a":"\ud83d\ude00"}"#, r#"{"a":"\ud83d\ude00"}"#, false),
            (r#"{"a":"\ud83d"}"#, r#"{"a":"\\ud83d"}"#, true),
            (r#"{"a":"\ude00x"}"#, r#"{"a":"\\ude00x"}"#, true),
            (r#"["\u0000\u0000"]"#, r#"["\\u0000\\u0000"]"#, true),
        ] {
            let (out, c) = json(input);
            assert_eq!(out, want, "{input}");
            assert_eq!(c, changed, "{input}");
            // What comes out is still valid JSON.
            serde_json::from_str::<serde_json::Value>(&out).unwrap();
        }
    }
}
