//! The `/metrics` exposition (OpenMetrics text, as prometheus-client writes it) as
//! OTLP metrics: a counter is a cumulative monotonic sum named as its sample
//! (`hawser_requests_total`), a gauge a gauge, a histogram a cumulative histogram
//! with the same bounds (and its exemplars), an info metric a gauge of 1. Reading
//! the exposition rather than the registry's types keeps the names, label sets and
//! values the same as a scrape's by construction.

use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Exemplar, Gauge, Histogram, HistogramDataPoint, Metric,
    NumberDataPoint, Sum, exemplar, metric, number_data_point,
};

/// When the series started counting, and when they were read (Unix nanoseconds).
#[derive(Debug, Clone, Copy)]
pub struct Times {
    pub start: u64,
    pub now: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
    Info,
    /// Summaries, state sets, gauge histograms: prometheus-client's other kinds,
    /// which Hawser does not register.
    Other,
}

/// One sample line: `name{labels} value [timestamp] [# {exemplar labels} value [ts]]`.
struct Sample<'a> {
    name: &'a str,
    labels: Vec<(String, String)>,
    value: &'a str,
    exemplar: Option<Exemplar>,
}

/// A histogram's series with one label set, its buckets cumulative as exposed.
struct Series {
    labels: Vec<(String, String)>,
    buckets: Vec<(f64, u64)>,
    sum: Option<f64>,
    count: Option<u64>,
    exemplars: Vec<Exemplar>,
}

struct Family {
    name: String,
    help: String,
    kind: Kind,
    numbers: Vec<NumberDataPoint>,
    series: Vec<Series>,
}

/// The metrics of `text`; lines it cannot read are skipped (the exposition is
/// Hawser's own, so none is expected).
pub fn metrics(text: &str, times: Times) -> Vec<Metric> {
    let mut out = Vec::new();
    let mut family: Option<Family> = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            out.extend(family.take().and_then(|f| finish(f, times)));
            family = Some(Family {
                name: name.to_owned(),
                help: unescape(help),
                kind: Kind::Other,
                numbers: Vec::new(),
                series: Vec::new(),
            });
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, ""));
            let kind = match kind {
                "counter" => Kind::Counter,
                "gauge" | "unknown" => Kind::Gauge,
                "histogram" => Kind::Histogram,
                "info" => Kind::Info,
                _ => Kind::Other,
            };
            match &mut family {
                Some(f) if f.name == name => f.kind = kind,
                _ => {
                    out.extend(family.take().and_then(|f| finish(f, times)));
                    family = Some(Family {
                        name: name.to_owned(),
                        help: String::new(),
                        kind,
                        numbers: Vec::new(),
                        series: Vec::new(),
                    });
                }
            }
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (Some(f), Some(sample)) = (&mut family, sample(line)) else {
            continue;
        };
        add(f, sample, times);
    }
    out.extend(family.and_then(|f| finish(f, times)));
    out
}

fn add(f: &mut Family, mut s: Sample<'_>, times: Times) {
    let suffix = s.name.strip_prefix(f.name.as_str()).unwrap_or("?");
    match (f.kind, suffix) {
        (Kind::Counter, "_total") | (Kind::Gauge, "") | (Kind::Info, "_info") => {
            let value = if f.kind == Kind::Info {
                Some(number_data_point::Value::AsInt(1))
            } else {
                number(s.value)
            };
            if let Some(value) = value {
                f.numbers.push(NumberDataPoint {
                    attributes: attributes(s.labels),
                    start_time_unix_nano: times.start,
                    time_unix_nano: times.now,
                    value: Some(value),
                    ..NumberDataPoint::default()
                });
            }
        }
        (Kind::Histogram, "_bucket" | "_sum" | "_count") => {
            let le = s
                .labels
                .iter()
                .position(|(k, _)| k == "le")
                .map(|i| s.labels.remove(i).1);
            let at = match f.series.iter().position(|x| x.labels == s.labels) {
                Some(at) => at,
                None => {
                    f.series.push(Series {
                        labels: s.labels,
                        buckets: Vec::new(),
                        sum: None,
                        count: None,
                        exemplars: Vec::new(),
                    });
                    f.series.len() - 1
                }
            };
            let series = &mut f.series[at];
            match suffix {
                "_sum" => series.sum = s.value.parse().ok(),
                "_count" => series.count = s.value.parse::<f64>().ok().map(|c| c as u64),
                _ => {
                    let bound = le.as_deref().and_then(|le| match le {
                        "+Inf" => Some(f64::INFINITY),
                        finite => finite.parse::<f64>().ok(),
                    });
                    if let (Some(bound), Ok(count)) = (bound, s.value.parse::<f64>()) {
                        series.buckets.push((bound, count as u64));
                    }
                    series.exemplars.extend(s.exemplar);
                }
            }
        }
        // `_created` and kinds Hawser does not register.
        _ => {}
    }
}

fn finish(f: Family, times: Times) -> Option<Metric> {
    let cumulative = AggregationTemporality::Cumulative as i32;
    let (name, data) = match f.kind {
        Kind::Counter => (
            format!("{}_total", f.name),
            metric::Data::Sum(Sum {
                data_points: f.numbers,
                aggregation_temporality: cumulative,
                is_monotonic: true,
            }),
        ),
        Kind::Gauge => (
            f.name,
            metric::Data::Gauge(Gauge {
                data_points: f.numbers,
            }),
        ),
        Kind::Info => (
            format!("{}_info", f.name),
            metric::Data::Gauge(Gauge {
                data_points: f.numbers,
            }),
        ),
        Kind::Histogram => (
            f.name,
            metric::Data::Histogram(Histogram {
                data_points: f
                    .series
                    .into_iter()
                    .map(|s| histogram_point(s, times))
                    .collect(),
                aggregation_temporality: cumulative,
            }),
        ),
        Kind::Other => return None,
    };
    Some(Metric {
        name,
        description: f.help,
        data: Some(data),
        ..Metric::default()
    })
}

/// OTLP counts per bucket where Prometheus counts cumulatively, and leaves the
/// `+Inf` bound implicit.
fn histogram_point(mut s: Series, times: Times) -> HistogramDataPoint {
    s.buckets
        .sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
    let total = s
        .count
        .or_else(|| s.buckets.last().map(|b| b.1))
        .unwrap_or(0);
    let mut explicit_bounds = Vec::with_capacity(s.buckets.len());
    let mut bucket_counts = Vec::with_capacity(s.buckets.len() + 1);
    let mut below = 0u64;
    for (bound, cumulative) in &s.buckets {
        if bound.is_infinite() {
            break;
        }
        explicit_bounds.push(*bound);
        bucket_counts.push(cumulative.saturating_sub(below));
        below = (*cumulative).max(below);
    }
    bucket_counts.push(total.saturating_sub(below));
    HistogramDataPoint {
        attributes: attributes(s.labels),
        start_time_unix_nano: times.start,
        time_unix_nano: times.now,
        count: total,
        sum: s.sum,
        bucket_counts,
        explicit_bounds,
        exemplars: s.exemplars,
        ..HistogramDataPoint::default()
    }
}

fn number(text: &str) -> Option<number_data_point::Value> {
    match text.parse::<i64>() {
        Ok(i) => Some(number_data_point::Value::AsInt(i)),
        Err(_) => text
            .parse::<f64>()
            .ok()
            .map(number_data_point::Value::AsDouble),
    }
}

fn attributes(labels: Vec<(String, String)>) -> Vec<KeyValue> {
    labels
        .into_iter()
        .map(|(key, value)| KeyValue {
            key,
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(value)),
            }),
            ..KeyValue::default()
        })
        .collect()
}

fn sample(line: &str) -> Option<Sample<'_>> {
    let name_end = line.find(['{', ' '])?;
    let name = &line[..name_end];
    let (labels, rest) = if line[name_end..].starts_with('{') {
        label_set(&line[name_end + 1..])?
    } else {
        (Vec::new(), &line[name_end..])
    };
    let (main, exemplar) = match rest.split_once(" # ") {
        Some((main, exemplar)) => (main, Some(exemplar)),
        None => (rest, None),
    };
    let value = main.split_whitespace().next()?;
    Some(Sample {
        name,
        labels,
        value,
        exemplar: exemplar.and_then(exemplar_of),
    })
}

/// `k="v",…}` (after the opening brace): the labels and what follows the brace.
fn label_set(text: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    let mut rest = text;
    loop {
        rest = rest.trim_start_matches(',');
        if let Some(after) = rest.strip_prefix('}') {
            return Some((labels, after));
        }
        let (key, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                (_, c) => value.push(c),
            }
        };
        labels.push((key.trim().to_owned(), value));
        rest = &after[end + 1..];
    }
}

/// `{trace_id="…",span_id="…"} value [timestamp]`.
fn exemplar_of(text: &str) -> Option<Exemplar> {
    let (labels, rest) = label_set(text.strip_prefix('{')?)?;
    let mut parts = rest.split_whitespace();
    let value = parts.next()?.parse::<f64>().ok()?;
    let time_unix_nano = parts
        .next()
        .and_then(|t| t.parse::<f64>().ok())
        .map_or(0, |seconds| (seconds * 1e9) as u64);
    let mut exemplar = Exemplar {
        time_unix_nano,
        value: Some(exemplar::Value::AsDouble(value)),
        ..Exemplar::default()
    };
    let mut other = Vec::new();
    for (key, value) in labels {
        match key.as_str() {
            "trace_id" if value.len() == 32 => exemplar.trace_id = hex(&value)?,
            "span_id" if value.len() == 16 => exemplar.span_id = hex(&value)?,
            _ => other.push((key, value)),
        }
    }
    exemplar.filtered_attributes = attributes(other);
    Some(exemplar)
}

fn hex(text: &str) -> Option<Vec<u8>> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A `# HELP` text: `\\` and `\n` escaped.
fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match (c, c == '\\') {
            (_, true) => match chars.next() {
                Some('n') => out.push('\n'),
                Some(other) => out.push(other),
                None => out.push('\\'),
            },
            (c, false) => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{Metrics, TraceLabels};

    const TIMES: Times = Times { start: 1, now: 2 };

    fn find<'a>(metrics: &'a [Metric], name: &str) -> &'a Metric {
        metrics
            .iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("no {name} in {:?}", names(metrics)))
    }

    fn names(metrics: &[Metric]) -> Vec<&str> {
        metrics.iter().map(|m| m.name.as_str()).collect()
    }

    fn labels(attributes: &[KeyValue]) -> Vec<(String, String)> {
        attributes
            .iter()
            .map(|kv| {
                let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                    Some(any_value::Value::StringValue(s)) => s.clone(),
                    other => format!("{other:?}"),
                };
                (kv.key.clone(), v)
            })
            .collect()
    }

    #[test]
    fn the_registry_becomes_the_same_series() {
        let m = Metrics::with_exemplars(true);
        m.request("tools/call", "gh", "ok", 0.00015, None);
        m.request("tools/call", "gh", "ok", 0.003, None);
        m.request(
            "tools/call",
            "gh",
            "upstream",
            0.5,
            Some(TraceLabels {
                trace_id: format!("{:032x}", 7),
                span_id: format!("{:016x}", 9),
            }),
        );
        m.set_state("gh", hawser_crds::ConnectionState::Ready);
        let out = metrics(&m.render(), TIMES);

        let requests = find(&out, "hawser_requests_total");
        assert!(requests.description.starts_with("MCP requests"));
        let Some(metric::Data::Sum(sum)) = &requests.data else {
            panic!("{requests:?}")
        };
        assert!(sum.is_monotonic);
        assert_eq!(
            sum.aggregation_temporality,
            AggregationTemporality::Cumulative as i32
        );
        let ok = sum
            .data_points
            .iter()
            .find(|p| labels(&p.attributes).contains(&("outcome".into(), "ok".into())))
            .unwrap_or_else(|| panic!("{sum:?}"));
        assert_eq!(
            labels(&ok.attributes),
            [
                ("method", "tools/call"),
                ("connection", "gh"),
                ("outcome", "ok")
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
        assert_eq!(ok.value, Some(number_data_point::Value::AsInt(2)));
        assert_eq!((ok.start_time_unix_nano, ok.time_unix_nano), (1, 2));

        let state = find(&out, "hawser_upstream_state");
        let Some(metric::Data::Gauge(gauge)) = &state.data else {
            panic!("{state:?}")
        };
        assert_eq!(gauge.data_points.len(), 5, "one series per state");
        let build = find(&out, "hawser_build_info");
        assert!(matches!(build.data, Some(metric::Data::Gauge(_))));

        let durations = find(&out, "hawser_request_duration_seconds");
        let Some(metric::Data::Histogram(h)) = &durations.data else {
            panic!("{durations:?}")
        };
        let ok = h
            .data_points
            .iter()
            .find(|p| labels(&p.attributes).contains(&("outcome".into(), "ok".into())))
            .unwrap_or_else(|| panic!("{h:?}"));
        assert!(
            !labels(&ok.attributes).iter().any(|(k, _)| k == "le"),
            "le is a bound, not a label"
        );
        assert_eq!(ok.count, 2);
        assert_eq!(ok.explicit_bounds.len(), 21);
        assert_eq!(ok.bucket_counts.len(), 22);
        assert_eq!(ok.bucket_counts.iter().sum::<u64>(), 2);
        // 0.00015 in (0.0001, 0.0002], 0.003 in (0.0025…, 0.0051…]
        assert_eq!(ok.bucket_counts[1], 1);
        assert!((ok.sum.unwrap_or_default() - 0.00315).abs() < 1e-9);
        let failed = h
            .data_points
            .iter()
            .find(|p| labels(&p.attributes).contains(&("outcome".into(), "upstream".into())))
            .unwrap_or_else(|| panic!("{h:?}"));
        assert_eq!(failed.exemplars.len(), 1);
        assert_eq!(failed.exemplars[0].trace_id[15], 7);
        assert_eq!(failed.exemplars[0].span_id[7], 9);
        assert_eq!(
            failed.exemplars[0].value,
            Some(exemplar::Value::AsDouble(0.5))
        );
    }

    #[test]
    fn escaped_label_values_and_odd_lines() {
        let text = concat!(
            "# HELP x Things \\\\ and\\nmore.\n",
            "# TYPE x counter\n",
            "x_total{a=\"q\\\"uote\\\\d\",b=\"new\\nline\"} 1.5\n",
            "x_created{a=\"q\"} 1.7e9\n",
            "garbage\n",
            "# TYPE s summary\n",
            "s{quantile=\"0.5\"} 1\n",
            "# TYPE g gauge\n",
            "g -3\n",
            "# EOF\n",
        );
        let out = metrics(text, TIMES);
        assert_eq!(names(&out), ["x_total", "g"]);
        assert_eq!(out[0].description, "Things \\ and\nmore.");
        let Some(metric::Data::Sum(sum)) = &out[0].data else {
            panic!("{out:?}")
        };
        assert_eq!(sum.data_points.len(), 1);
        assert_eq!(
            labels(&sum.data_points[0].attributes),
            [("a", "q\"uote\\d"), ("b", "new\nline")].map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
        assert_eq!(
            sum.data_points[0].value,
            Some(number_data_point::Value::AsDouble(1.5))
        );
        let Some(metric::Data::Gauge(g)) = &out[1].data else {
            panic!("{out:?}")
        };
        assert_eq!(
            g.data_points[0].value,
            Some(number_data_point::Value::AsInt(-3))
        );
    }
}
