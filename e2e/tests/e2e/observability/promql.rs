//! The metric names a PromQL expression reads, found by a small lexer: enough to tell
//! them from functions, aggregations, keywords, label names, strings, durations,
//! numbers and Grafana's `$variables`.

use std::collections::BTreeSet;

/// Aggregation operators and functions of PromQL (Prometheus 2.x).
const FUNCTIONS: &[&str] = &[
    // aggregations
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
    // functions
    "abs",
    "absent",
    "absent_over_time",
    "acos",
    "acosh",
    "asin",
    "asinh",
    "atan",
    "atanh",
    "avg_over_time",
    "ceil",
    "changes",
    "clamp",
    "clamp_max",
    "clamp_min",
    "cos",
    "cosh",
    "count_over_time",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "days_in_month",
    "deg",
    "delta",
    "deriv",
    "double_exponential_smoothing",
    "exp",
    "floor",
    "histogram_avg",
    "histogram_count",
    "histogram_fraction",
    "histogram_quantile",
    "histogram_stddev",
    "histogram_stdvar",
    "histogram_sum",
    "holt_winters",
    "hour",
    "idelta",
    "increase",
    "irate",
    "label_join",
    "label_replace",
    "last_over_time",
    "ln",
    "log10",
    "log2",
    "mad_over_time",
    "max_over_time",
    "min_over_time",
    "minute",
    "month",
    "pi",
    "predict_linear",
    "present_over_time",
    "quantile_over_time",
    "rad",
    "rate",
    "resets",
    "round",
    "scalar",
    "sgn",
    "sin",
    "sinh",
    "sort",
    "sort_by_label",
    "sort_by_label_desc",
    "sort_desc",
    "sqrt",
    "stddev_over_time",
    "stdvar_over_time",
    "sum_over_time",
    "tan",
    "tanh",
    "time",
    "timestamp",
    "vector",
    "year",
];

/// Keywords followed by a parenthesised list of label names.
const LABEL_LISTS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// Other keywords and literals.
const KEYWORDS: &[&str] = &[
    "and", "or", "unless", "bool", "offset", "atan2", "inf", "nan", "start", "end",
];

/// The metric names `expr` reads; Err for a call of a function PromQL does not have.
pub fn metric_names(expr: &str) -> Result<BTreeSet<String>, String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '#' => i = skip_while(&chars, i, |c| c != '\n'),
            '"' | '\'' | '`' => i = skip_string(&chars, i),
            // Label matchers: label names and quoted values only.
            '{' => i = skip_group(&chars, i, '}'),
            // Ranges and subqueries: durations (or a Grafana variable standing for one).
            '[' => i = skip_group(&chars, i, ']'),
            '$' => i = skip_while(&chars, i + 1, |c| c.is_alphanumeric() || "_{}".contains(c)),
            c if c.is_ascii_digit()
                || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) =>
            {
                i = skip_while(&chars, i, |c| c.is_alphanumeric() || c == '.' || c == '_')
            }
            c if c.is_ascii_alphabetic() || c == '_' || c == ':' => {
                let end = skip_while(&chars, i, |c| {
                    c.is_ascii_alphanumeric() || c == '_' || c == ':'
                });
                let word: String = chars[i..end].iter().collect();
                let lower = word.to_ascii_lowercase();
                let next = skip_while(&chars, end, char::is_whitespace);
                let called = chars.get(next) == Some(&'(');
                i = end;
                let known =
                    KEYWORDS.contains(&lower.as_str()) || FUNCTIONS.contains(&lower.as_str());
                if LABEL_LISTS.contains(&lower.as_str()) {
                    if called {
                        i = skip_group(&chars, next, ')');
                    }
                } else if !known {
                    if called {
                        return Err(format!("unknown function {word}( in {expr}"));
                    }
                    names.insert(word);
                }
            }
            _ => i += 1,
        }
    }
    Ok(names)
}

/// Index of the first char from `i` on that is not `keep`.
fn skip_while(chars: &[char], mut i: usize, keep: impl Fn(char) -> bool) -> usize {
    while i < chars.len() && keep(chars[i]) {
        i += 1;
    }
    i
}

/// Past the string opening at `i` (backslash escapes, except in raw strings).
fn skip_string(chars: &[char], i: usize) -> usize {
    let quote = chars[i];
    let mut j = i + 1;
    while j < chars.len() && chars[j] != quote {
        j += if quote != '`' && chars[j] == '\\' {
            2
        } else {
            1
        };
    }
    j + 1
}

/// Past the `close` ending the group opening at `i`, skipping strings inside.
fn skip_group(chars: &[char], i: usize, close: char) -> usize {
    let mut j = i + 1;
    while j < chars.len() && chars[j] != close {
        j = if "\"'`".contains(chars[j]) {
            skip_string(chars, j)
        } else {
            j + 1
        };
    }
    j + 1
}

#[cfg(test)]
mod tests {
    use super::metric_names;

    fn names(expr: &str) -> Vec<String> {
        metric_names(expr)
            .unwrap_or_else(|e| panic!("{e}"))
            .into_iter()
            .collect()
    }

    #[test]
    fn finds_names_not_labels_functions_or_durations() {
        assert_eq!(
            names(
                "sum by (namespace, le) (rate(a_bucket{x=\"}{\", y=~'b|c'}[5m])) > on (namespace) group_left (pod) b offset 15m"
            ),
            ["a_bucket", "b"]
        );
        assert_eq!(
            names("sum(rate(c_total[$__rate_interval])) BY (d) / ignoring(e) f:recorded"),
            ["c_total", "f:recorded"]
        );
        assert_eq!(
            names("count(max without (pod) (g{s=\"ready\"}) == 0) or vector(0)"),
            ["g"]
        );
        assert_eq!(
            names(
                "label_replace(h, \"connection\", \"(gateway)\", \"connection\", \"\") # not_a_metric"
            ),
            ["h"]
        );
        assert_eq!(
            names("histogram_quantile(0.99, i) * 1e3 + .5 unless j @ start()"),
            ["i", "j"]
        );
    }

    #[test]
    fn refuses_unknown_functions() {
        assert!(metric_names("rates(x_total[5m])").is_err());
    }
}
