//! Which text `/metrics` answers with. prometheus-client writes OpenMetrics only;
//! a scraper that does not accept it (an older agent, `curl`) gets the same series
//! as Prometheus text: no exemplars, and a counter's `# HELP`/`# TYPE` naming its
//! `_total` sample, as Prometheus text has it (`# EOF` stays, a comment there).

/// The exposition format a scraper gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0 text, with exemplars.
    OpenMetrics,
    /// Prometheus text 0.0.4: the same series, no exemplars.
    Prometheus,
}

impl Format {
    /// OpenMetrics when the `Accept` header names it (with a non-zero weight), as
    /// Prometheus's own scrapes do.
    pub fn accepted(accept: Option<&str>) -> Self {
        let names_it = accept.is_some_and(|accept| {
            accept.split(',').any(|range| {
                let mut parts = range.split(';').map(str::trim);
                let media = parts.next().unwrap_or_default();
                let refused = parts.any(|p| {
                    p.strip_prefix("q=")
                        .and_then(|q| q.parse::<f32>().ok())
                        .is_some_and(|q| q <= 0.0)
                });
                media.eq_ignore_ascii_case("application/openmetrics-text") && !refused
            })
        });
        if names_it {
            Self::OpenMetrics
        } else {
            Self::Prometheus
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Self::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

/// `text` (OpenMetrics) as Prometheus text: each sample's exemplar
/// (` # {…} value [timestamp]`) cut off, and counters' metadata under the name of
/// their sample (`x_total`, where OpenMetrics says `x`).
pub fn prometheus_text(text: &str) -> String {
    let counters: std::collections::HashSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let metadata = ["# HELP ", "# TYPE "]
            .into_iter()
            .find(|p| line.starts_with(p));
        match metadata {
            Some(prefix) => {
                let rest = &line[prefix.len()..];
                let name = rest.split(' ').next().unwrap_or_default();
                out.push_str(prefix);
                out.push_str(name);
                if counters.contains(name) {
                    out.push_str("_total");
                }
                out.push_str(&rest[name.len()..]);
            }
            None if line.starts_with('#') => out.push_str(line),
            // An exemplar starts at the first `#` outside a quoted label value.
            None => out.push_str(line[..exemplar_start(line).unwrap_or(line.len())].trim_end()),
        }
        out.push('\n');
    }
    out
}

fn exemplar_start(line: &str) -> Option<usize> {
    let (mut quoted, mut escaped) = (false, false);
    for (i, c) in line.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            '#' if !quoted => return Some(i),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openmetrics_only_when_the_scraper_accepts_it() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::accepted(Some(prometheus)), Format::OpenMetrics);
        assert_eq!(
            Format::accepted(Some("Application/OpenMetrics-Text")),
            Format::OpenMetrics
        );
        for other in [
            None,
            Some("*/*"),
            Some("text/plain"),
            Some("application/openmetrics-text; q=0, text/plain"),
        ] {
            assert_eq!(Format::accepted(other), Format::Prometheus, "{other:?}");
        }
    }

    #[test]
    fn exemplars_are_cut_and_label_values_kept() {
        let text = concat!(
            "# HELP x_seconds Time # with a hash.\n",
            "# TYPE x_seconds histogram\n",
            "x_seconds_bucket{le=\"0.1\",c=\"a \\\" # {b}\"} 3 # {trace_id=\"ab\"} 0.05 1.7e9\n",
            "x_seconds_count{c=\"a\"} 3\n",
            "# EOF\n",
        );
        assert_eq!(
            prometheus_text(text),
            concat!(
                "# HELP x_seconds Time # with a hash.\n",
                "# TYPE x_seconds histogram\n",
                "x_seconds_bucket{le=\"0.1\",c=\"a \\\" # {b}\"} 3\n",
                "x_seconds_count{c=\"a\"} 3\n",
                "# EOF\n",
            )
        );
    }

    #[test]
    fn counters_are_described_under_their_sample_name() {
        let text = "# HELP x Things.\n# TYPE x counter\nx_total 2 # {a=\"b\"} 1.0\n# HELP y Level.\n# TYPE y gauge\ny 1\n# EOF\n";
        assert_eq!(
            prometheus_text(text),
            "# HELP x_total Things.\n# TYPE x_total counter\nx_total 2\n# HELP y Level.\n# TYPE y gauge\ny 1\n# EOF\n"
        );
    }
}
