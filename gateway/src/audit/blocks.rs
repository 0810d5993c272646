//! What an audited response says of itself: how many content blocks a tools/call,
//! prompts/get or resources/read result holds (`content`, `messages`, `contents`), and
//! whether a tool result says `isError`.
//!
//! Read on every audited call, so the common shape is read directly: the envelope's
//! members by name, values skipped without being decoded, the blocks counted, not
//! read. Whatever that reading is not sure of (a member name with an escape, a member
//! given twice, a value of an unexpected type, text that is not well-formed JSON) is
//! left to serde, whose answer is the definition: both agree on every input (see the
//! property test below).

/// Number of content blocks and whether the result says `isError`; `None` when the
/// response is no result (an error, malformed) or its members have the wrong types.
pub fn inspect(response: &[u8]) -> Option<(Option<i32>, bool)> {
    match scan(response) {
        Ok(found) => found,
        Err(Unsure) => by_serde(response),
    }
}

/// The definition: serde reading the members the audit log keeps.
fn by_serde(response: &[u8]) -> Option<(Option<i32>, bool)> {
    #[derive(serde::Deserialize)]
    struct Envelope {
        result: Option<Counted>,
    }
    #[derive(serde::Deserialize)]
    struct Counted {
        content: Option<Vec<serde::de::IgnoredAny>>,
        messages: Option<Vec<serde::de::IgnoredAny>>,
        contents: Option<Vec<serde::de::IgnoredAny>>,
        #[serde(rename = "isError", default)]
        is_error: bool,
    }
    let c = serde_json::from_slice::<Envelope>(response).ok()?.result?;
    let blocks = c
        .content
        .or(c.messages)
        .or(c.contents)
        .map(|v| i32::try_from(v.len()).unwrap_or(i32::MAX));
    Some((blocks, c.is_error))
}

/// The direct reading could not decide; serde will.
#[derive(Debug, PartialEq)]
struct Unsure;

/// Nesting deeper than this is left to serde: the scanner recurses into each level,
/// serde skips a value without recursing.
const MAX_DEPTH: usize = 100;

/// Member names are read only when ASCII (serde decodes them as UTF-8); other strings
/// are skipped, bytes unchecked, as serde skips them.
fn scan(response: &[u8]) -> Result<Option<(Option<i32>, bool)>, Unsure> {
    let mut c = Cursor {
        b: response,
        i: 0,
        depth: 0,
    };
    let mut result = None;
    c.object(|c, name| {
        if name == b"result" {
            if result.is_some() {
                return Err(Unsure);
            }
            result = Some(if c.null()? { None } else { Some(c.counted()?) });
        } else {
            c.value()?;
        }
        Ok(())
    })?;
    c.end()?;
    Ok(result.flatten())
}

struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
    depth: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&mut self) -> Result<u8, Unsure> {
        while let Some(&b) = self.b.get(self.i) {
            if !matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
                return Ok(b);
            }
            self.i += 1;
        }
        Err(Unsure)
    }

    fn eat(&mut self, want: u8) -> Result<(), Unsure> {
        if self.peek()? != want {
            return Err(Unsure);
        }
        self.i += 1;
        Ok(())
    }

    /// Only white space left.
    fn end(&mut self) -> Result<(), Unsure> {
        match self.peek() {
            Err(Unsure) => Ok(()),
            Ok(_) => Err(Unsure),
        }
    }

    /// An object, each member's name handed to `member`, which must read its value.
    fn object(
        &mut self,
        mut member: impl FnMut(&mut Self, &'a [u8]) -> Result<(), Unsure>,
    ) -> Result<(), Unsure> {
        self.eat(b'{')?;
        self.nest()?;
        if self.peek()? == b'}' {
            self.i += 1;
            self.depth -= 1;
            return Ok(());
        }
        loop {
            let name = self.name()?;
            self.eat(b':')?;
            member(self, name)?;
            match self.peek()? {
                b',' => self.i += 1,
                b'}' => {
                    self.i += 1;
                    self.depth -= 1;
                    return Ok(());
                }
                _ => return Err(Unsure),
            }
        }
    }

    /// A member name without escapes, in ASCII.
    fn name(&mut self) -> Result<&'a [u8], Unsure> {
        self.eat(b'"')?;
        let start = self.i;
        loop {
            match self.b.get(self.i) {
                Some(b'"') => break,
                Some(&b) if b >= 0x20 && b != b'\\' && b.is_ascii() => self.i += 1,
                _ => return Err(Unsure),
            }
        }
        let name = &self.b[start..self.i];
        self.i += 1;
        Ok(name)
    }

    fn nest(&mut self) -> Result<(), Unsure> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(Unsure);
        }
        Ok(())
    }

    /// Reads a `null` if one is next.
    fn null(&mut self) -> Result<bool, Unsure> {
        if self.peek()? == b'n' {
            self.literal(b"null")?;
            return Ok(true);
        }
        Ok(false)
    }

    /// The members of a result the audit log keeps.
    fn counted(&mut self) -> Result<(Option<i32>, bool), Unsure> {
        let mut lists: [Option<Option<usize>>; 3] = [None; 3];
        let mut is_error = None;
        self.object(|c, name| {
            let slot = match name {
                b"content" => 0,
                b"messages" => 1,
                b"contents" => 2,
                b"isError" => {
                    if is_error.is_some() {
                        return Err(Unsure);
                    }
                    is_error = Some(match c.peek()? {
                        b't' => c.literal(b"true").map(|()| true)?,
                        b'f' => c.literal(b"false").map(|()| false)?,
                        _ => return Err(Unsure),
                    });
                    return Ok(());
                }
                _ => return c.value(),
            };
            if lists[slot].is_some() {
                return Err(Unsure);
            }
            lists[slot] = Some(if c.null()? { None } else { Some(c.count()?) });
            Ok(())
        })?;
        let blocks = lists
            .into_iter()
            .flatten()
            .flatten()
            .next()
            .map(|n| i32::try_from(n).unwrap_or(i32::MAX));
        Ok((blocks, is_error.unwrap_or(false)))
    }

    /// The number of values in an array, each skipped.
    fn count(&mut self) -> Result<usize, Unsure> {
        self.eat(b'[')?;
        self.nest()?;
        let mut n = 0;
        if self.peek()? == b']' {
            self.i += 1;
            self.depth -= 1;
            return Ok(0);
        }
        loop {
            self.value()?;
            n += 1;
            match self.peek()? {
                b',' => self.i += 1,
                b']' => {
                    self.i += 1;
                    self.depth -= 1;
                    return Ok(n);
                }
                _ => return Err(Unsure),
            }
        }
    }

    /// Skips any value, checking it is well-formed.
    fn value(&mut self) -> Result<(), Unsure> {
        match self.peek()? {
            b'"' => self.string(),
            b'{' => self.object(|c, _| c.value()),
            b'[' => self.count().map(drop),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => Err(Unsure),
        }
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), Unsure> {
        if !self.b[self.i..].starts_with(word) {
            return Err(Unsure);
        }
        self.i += word.len();
        Ok(())
    }

    /// A string: escapes must be well-formed, and `\u` escapes of surrogates are left
    /// to serde.
    fn string(&mut self) -> Result<(), Unsure> {
        self.i += 1;
        loop {
            let rest = &self.b[self.i..];
            let Some(at) = rest
                .iter()
                .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
            else {
                return Err(Unsure);
            };
            self.i += at;
            match self.b[self.i] {
                b'"' => {
                    self.i += 1;
                    return Ok(());
                }
                b'\\' => match self.b.get(self.i + 1) {
                    Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => self.i += 2,
                    Some(b'u') => {
                        let hex = self.b.get(self.i + 2..self.i + 6).ok_or(Unsure)?;
                        if !hex.iter().all(u8::is_ascii_hexdigit)
                            || matches!(hex[0], b'd' | b'D')
                                && matches!(hex[1], b'8'..=b'9' | b'a'..=b'f' | b'A'..=b'F')
                        {
                            return Err(Unsure);
                        }
                        self.i += 6;
                    }
                    _ => return Err(Unsure),
                },
                _ => return Err(Unsure),
            }
        }
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
    fn number(&mut self) -> Result<(), Unsure> {
        let digits = |c: &mut Self| {
            let start = c.i;
            while c.b.get(c.i).is_some_and(u8::is_ascii_digit) {
                c.i += 1;
            }
            if c.i == start { Err(Unsure) } else { Ok(()) }
        };
        if self.b.get(self.i) == Some(&b'-') {
            self.i += 1;
        }
        match self.b.get(self.i) {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => digits(self)?,
            _ => return Err(Unsure),
        }
        if self.b.get(self.i) == Some(&b'.') {
            self.i += 1;
            digits(self)?;
        }
        if matches!(self.b.get(self.i), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.b.get(self.i), Some(b'+' | b'-')) {
                self.i += 1;
            }
            digits(self)?;
        }
        // What follows (a delimiter, or something malformed like the `1` of `01`) is
        // the container's to check.
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use proptest::test_runner::Config;

    use super::*;

    #[test]
    fn counts_content_blocks() {
        assert_eq!(
            inspect(
                br#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"a"},{"type":"image"}]}}"#
            ),
            Some((Some(2), false))
        );
        assert_eq!(
            inspect(br#"{"jsonrpc":"2.0","id":1,"result":{"messages":[{}]}}"#),
            Some((Some(1), false))
        );
        assert_eq!(
            inspect(br#"{"jsonrpc":"2.0","id":1,"result":{"content":[],"isError":true}}"#),
            Some((Some(0), true))
        );
        assert_eq!(
            inspect(br#"{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"x"}}"#),
            None
        );
    }

    #[test]
    fn the_common_shapes_are_read_directly() {
        for text in [
            r#"{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"line\none \"q\" \u00e9"}],"structuredContent":{"a":[1,-2.5e3,null,true]}}}"#,
            r#" { "result" : { "contents" : [ ] , "isError" : false } , "id" : "x" } "#,
            r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"no"}}"#,
            r#"{"result":null}"#,
        ] {
            assert!(scan(text.as_bytes()).is_ok(), "{text}");
            assert_eq!(
                inspect(text.as_bytes()),
                by_serde(text.as_bytes()),
                "{text}"
            );
        }
    }

    #[test]
    fn what_the_direct_reading_is_unsure_of_serde_decides() {
        for (text, want) in [
            // An escaped member name is still the member.
            (
                r#"{"result":{"con\u0074ent":[1,2]}}"#,
                Some((Some(2), false)),
            ),
            // A member given twice is an error to serde.
            (r#"{"result":{"content":[1],"content":[1,2]}}"#, None),
            (r#"{"result":{},"result":{}}"#, None),
            // serde reads a struct from an array, field by field.
            (
                r#"{"result":[[1,2,3],null,null,false]}"#,
                Some((Some(3), false)),
            ),
            (r#"{"result":{"isError":null}}"#, None),
            (r#"{"result":{"content":{}}}"#, None),
            (r#"{"result":{"content":[01]}}"#, None),
            // serde skips a lone surrogate in a string it ignores.
            (
                r#"{"result":{"content":["\ud800"]}}"#,
                Some((Some(1), false)),
            ),
            (r#"{"result":{}} x"#, None),
        ] {
            assert_eq!(scan(text.as_bytes()), Err(Unsure), "{text}");
            assert_eq!(inspect(text.as_bytes()), want, "{text}");
        }
    }

    #[test]
    fn bytes_that_are_not_utf_8_are_skipped_in_values_as_serde_skips_them() {
        let value = b"{\"result\":{\"content\":[\"\xff\xfe\"],\"x\":\"\xc3\"}}";
        assert_eq!(scan(value), Ok(Some((Some(1), false))));
        assert_eq!(by_serde(value), Some((Some(1), false)));
        // In a member name serde decodes them, and refuses.
        let name = b"{\"result\":{\"\xff\":1}}";
        assert_eq!(scan(name), Err(Unsure));
        assert_eq!(inspect(name), None);
    }

    #[test]
    fn the_generated_texts_reach_the_direct_reading() {
        // The agreement property only says something about texts the direct reading
        // answers: a good share of what the generator makes must be one (about a
        // fifth; the rest exercises the way to serde).
        use proptest::strategy::ValueTree;
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let texts = text();
        let answered = (0..1000)
            .filter_map(|_| texts.new_tree(&mut runner).ok())
            .filter(|t| scan(t.current().as_bytes()).is_ok())
            .count();
        assert!(answered >= 150, "{answered} of 1000");
    }

    /// JSON text built to hit the members the audit log reads, in every shape and type,
    /// with escapes, repeats, odd numbers and stray bytes.
    fn text() -> impl Strategy<Value = String> {
        let scalar = prop_oneof![
            3 => Just("null".to_owned()),
            2 => Just("true".to_owned()),
            2 => Just("false".to_owned()),
            4 => "-?(0|[1-9][0-9]{0,3})(\\.[0-9]{1,3})?([eE][+-]?[0-9]{1,2})?",
            4 => "\"([a-z ]|\\\\[\"\\\\/bfnrt]|\\\\u00[0-7][0-9a-f]|é)*\"",
            1 => "0[0-9]|1\\.|\\.5|-|1e|tru|nul",
            1 => "\"([a-z\"]|\\\\u[dD][89abAB][0-9a-f]{2}|\\\\x|\\n|\\t)*\"",
        ];
        let name = || {
            prop_oneof![
                3 => Just("\"content\"".to_owned()),
                3 => Just("\"messages\"".to_owned()),
                3 => Just("\"contents\"".to_owned()),
                3 => Just("\"isError\"".to_owned()),
                2 => Just("\"result\"".to_owned()),
                3 => Just("\"x\"".to_owned()),
                1 => Just("\"con\\u0074ent\"".to_owned()),
                1 => Just("\"é\"".to_owned()),
            ]
        };
        let object = move |value: BoxedStrategy<String>| {
            proptest::collection::vec((name(), value), 0..5).prop_map(|m| {
                let members: Vec<String> = m.into_iter().map(|(k, v)| format!("{k}:{v}")).collect();
                format!("{{{}}}", members.join(" , "))
            })
        };
        let value = scalar.prop_recursive(4, 24, 4, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4)
                    .prop_map(|v| format!("[{}]", v.join(","))),
                object(inner),
            ]
        });
        let result = prop_oneof![6 => object(value.clone().boxed()), 1 => value];
        let tail = prop_oneof![8 => Just(""), 1 => Just("x"), 1 => Just(","), 1 => Just("}")];
        (result, "[ \n]{0,2}", tail).prop_map(|(result, pad, tail)| {
            format!("{pad}{{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{result}}}{pad}{tail}")
        })
    }

    proptest! {
        #![proptest_config(Config { cases: 2048, failure_persistence: None, ..Config::default() })]

        #[test]
        fn the_direct_reading_agrees_with_serde(text in text()) {
            let bytes = text.as_bytes();
            if let Ok(found) = scan(bytes) {
                prop_assert_eq!(found, by_serde(bytes), "{}", text);
            }
        }

        #[test]
        fn any_bytes_give_serdes_answer(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            prop_assert_eq!(inspect(&bytes), by_serde(&bytes));
        }
    }
}
