//! Small line charts drawn on the server as inline SVG: no script, no library.

use maud::{Markup, html};

const W: f64 = 300.0;
const H: f64 = 60.0;

/// A line over `values` (one per bucket; `None` draws nothing there), scaled to
/// the largest value. `label` is the chart's accessible name.
pub fn line(values: &[Option<f64>], label: &str, bad: bool) -> Markup {
    let max = values
        .iter()
        .flatten()
        .copied()
        .fold(0.0_f64, f64::max)
        .max(f64::MIN_POSITIVE);
    let step = if values.len() > 1 {
        W / (values.len() - 1) as f64
    } else {
        W
    };
    let mut path = String::new();
    // Points with no neighbour draw no line: they are marked with a dot.
    let mut dots = Vec::new();
    let point = |i: usize, v: f64| (i as f64 * step, H - 2.0 - (v / max) * (H - 4.0));
    for (i, v) in values.iter().enumerate() {
        let Some(v) = v else { continue };
        let (x, y) = point(i, *v);
        let before = i > 0 && values[i - 1].is_some();
        let after = values.get(i + 1).is_some_and(Option::is_some);
        match (before, after) {
            (false, false) => dots.push((x, y)),
            (false, true) => path.push_str(&format!("M{x:.1},{y:.1} ")),
            _ => path.push_str(&format!("L{x:.1},{y:.1} ")),
        }
    }
    let class = if bad { "line bad" } else { "line" };
    html! {
        svg.chart viewBox={ "0 0 " (W) " " (H) } preserveAspectRatio="none" role="img" aria-label=(label) {
            line.base x1="0" y1=(H - 1.0) x2=(W) y2=(H - 1.0) {}
            @if !path.is_empty() {
                path class=(class) d=(path.trim_end()) {}
            }
            @for (x, y) in &dots {
                circle class=(class) cx=(format!("{x:.1}")) cy=(format!("{y:.1}")) r="2.5" {}
            }
        }
    }
}
