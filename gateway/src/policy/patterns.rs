//! A rule's list of name globs (subjects, groups, tools, …), matched without the
//! glob machinery for the patterns policies almost always use: `*`, an exact name,
//! and a name with one `*` at its start or end (`*.ext` excepted, below). The rest
//! go to `globset`, which stays the definition of what a pattern means: every
//! pattern is parsed by it (an invalid one is refused as before), and the shortcuts
//! match exactly what it would (a property test below checks both on generated
//! patterns).
//!
//! Why: `globset` prepares each name for path matching (its file name, its
//! extension) and answers `*` with a regular expression. A call through a connection
//! governed by a policy of 20 rules matched 40 such sets, half of its policy cost.

use globset::{Glob, GlobSet, GlobSetBuilder};

/// Characters that make a pattern more than a plain name (`globset`'s syntax, with
/// `\` escapes, which `Glob::new` allows on Unix).
const SPECIAL: &[char] = &['*', '?', '[', ']', '{', '}', '\\'];

/// Up to this many plain names are compared one by one rather than searched.
const FEW: usize = 8;

#[derive(Debug, Default)]
pub struct Patterns {
    /// A `*` is in the list: every name matches.
    any: bool,
    /// Plain names, sorted (searched in order when there are few: a length that
    /// differs settles most comparisons at once).
    exact: Vec<String>,
    /// `name*`: the part before the `*`.
    prefixes: Vec<String>,
    /// `*name`: the part after the `*`. Not `*.name`: `globset` answers that by the
    /// name's extension, which it finds by its own rules for paths (`..` has none).
    suffixes: Vec<String>,
    /// Every other pattern, as `globset` builds them.
    globs: Option<GlobSet>,
}

impl Patterns {
    /// Compiles `patterns`; on failure, the index of the invalid pattern (none when
    /// the set as a whole cannot be built) and why.
    pub fn new(patterns: &[String]) -> Result<Self, (Option<usize>, String)> {
        let mut out = Self::default();
        let mut rest = GlobSetBuilder::new();
        let mut has_rest = false;
        for (i, pattern) in patterns.iter().enumerate() {
            let glob = Glob::new(pattern).map_err(|e| (Some(i), e.kind().to_string()))?;
            let plain = |s: &str| !s.contains(SPECIAL);
            if pattern == "*" {
                out.any = true;
            } else if plain(pattern) {
                out.exact.push(pattern.clone());
            } else if let Some(prefix) = pattern.strip_suffix('*').filter(|p| plain(p)) {
                out.prefixes.push(prefix.to_owned());
            } else if let Some(suffix) = pattern
                .strip_prefix('*')
                .filter(|s| plain(s) && !s.starts_with('.'))
            {
                out.suffixes.push(suffix.to_owned());
            } else {
                rest.add(glob);
                has_rest = true;
            }
        }
        out.exact.sort_unstable();
        if has_rest {
            out.globs = Some(rest.build().map_err(|e| (None, e.to_string()))?);
        }
        Ok(out)
    }

    pub fn is_match(&self, name: &str) -> bool {
        self.any
            || if self.exact.len() <= FEW {
                self.exact.iter().any(|e| e == name)
            } else {
                self.exact
                    .binary_search_by(|e| e.as_str().cmp(name))
                    .is_ok()
            }
            || self.prefixes.iter().any(|p| name.starts_with(p.as_str()))
            || self.suffixes.iter().any(|s| name.ends_with(s.as_str()))
            || self.globs.as_ref().is_some_and(|g| g.is_match(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_usual_patterns_take_the_shortcuts() {
        let p = Patterns::new(&["*".into()]).expect("valid");
        assert!(p.any && p.globs.is_none());
        assert!(p.is_match("") && p.is_match("a/b") && p.is_match("echo"));
        let p =
            Patterns::new(&["echo".into(), "github_*".into(), "*_admin".into()]).expect("valid");
        assert!(p.globs.is_none(), "{p:?}");
        assert!(p.is_match("echo") && !p.is_match("echo2") && !p.is_match("ech"));
        assert!(p.is_match("github_") && p.is_match("github_issues"));
        assert!(p.is_match("db_admin") && !p.is_match("db_admins"));
        // `*.` is globset's: by extension, and `..` has none.
        let p = Patterns::new(&["*.".into()]).expect("valid");
        assert!(p.suffixes.is_empty() && p.globs.is_some());
        assert!(!p.is_match(".."));
        let p = Patterns::new(&["a?c".into(), "{x,y}".into()]).expect("valid");
        assert!(p.globs.is_some());
        assert!(p.is_match("abc") && p.is_match("y") && !p.is_match("ac"));
        assert_eq!(
            Patterns::new(&["ok".into(), "[".into()]).err().map(|e| e.0),
            Some(Some(1))
        );
        // Past a few plain names they are searched, not scanned.
        let many: Vec<String> = (0..20).rev().map(|i| format!("n{i}")).collect();
        let p = Patterns::new(&many).expect("valid");
        assert!(p.exact.len() > FEW);
        assert!(many.iter().all(|n| p.is_match(n)));
        assert!(!p.is_match("n20") && !p.is_match("n") && !p.is_match(""));
    }

    fn piece() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "a", "b", "ab", "_", "/", ".", "*", "**", "?", "[ab]", "[!a]", "{a,b}", "\\*", "-",
            "é", "",
        ])
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

        /// Whatever shortcut a pattern takes, the answer is `globset`'s.
        #[test]
        fn the_shortcuts_answer_as_globset_does(
            patterns in prop::collection::vec(prop::collection::vec(piece(), 0..4), 1..14),
            names in prop::collection::vec(
                prop::collection::vec(prop::sample::select(vec!["a", "b", "_", "/", ".", "*", "-", "é", "ab"]), 0..5),
                1..8,
            ),
        ) {
            let patterns: Vec<String> = patterns.iter().map(|p| p.concat()).collect();
            let Ok(fast) = Patterns::new(&patterns) else {
                // Invalid somewhere: globset refuses the list too.
                prop_assert!(patterns.iter().any(|p| Glob::new(p).is_err()));
                return Ok(());
            };
            let mut builder = GlobSetBuilder::new();
            for p in &patterns {
                builder.add(Glob::new(p).expect("valid, as Patterns::new found"));
            }
            let reference = builder.build().expect("builds");
            for name in names.iter().map(|n| n.concat()) {
                prop_assert_eq!(fast.is_match(&name), reference.is_match(&name), "{:?} on {:?}", patterns, name);
            }
        }
    }
}
