//! Small server-rendered SVG charts (SVG 1.1), drawn here so no plotting or script
//! library is needed: stacked bars, lines and horizontal bars. Colours come from the
//! style sheet through class names, so charts follow the page's palette.

use maud::{Markup, html};

/// One data series: a name for the legend, a CSS class, and one value per label.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub class: &'static str,
    pub values: Vec<f64>,
}

const W: f64 = 720.0;
const H: f64 = 220.0;
const LEFT: f64 = 44.0;
const BOTTOM: f64 = 28.0;
const TOP: f64 = 10.0;

/// A "nice" axis maximum at or above `v` (1, 2 or 5 times a power of ten).
#[must_use]
pub fn nice_max(v: f64) -> f64 {
    if v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let p = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if m * p >= v {
            return m * p;
        }
    }
    10.0 * p
}

fn frame(y_max: f64, labels: &[String], fmt: &dyn Fn(f64) -> String) -> Markup {
    let plot_h = H - TOP - BOTTOM;
    let step = (labels.len() / 12).max(1);
    let bw = (W - LEFT) / labels.len().max(1) as f64;
    html! {
        @for i in 0..=4 {
            @let y = TOP + plot_h * (1.0 - f64::from(i) / 4.0);
            line.grid x1=(LEFT) x2=(W) y1=(y) y2=(y) {}
            text.axis x=(LEFT - 4.0) y=(y + 4.0) text-anchor="end" { (fmt(y_max * f64::from(i) / 4.0)) }
        }
        @for (i, lab) in labels.iter().enumerate() {
            @if i % step == 0 {
                text.axis x=(LEFT + bw * (i as f64 + 0.5)) y=(H - 10.0) text-anchor="middle" { (lab) }
            }
        }
    }
}

fn legend(series: &[Series]) -> Markup {
    html! {
        p.legend { @for s in series { span class={"key " (s.class)} {} (s.name) " " } }
    }
}

/// Stacked bars, one bar per label.
#[must_use]
pub fn stacked_bars(title: &str, labels: &[String], series: &[Series]) -> Markup {
    let totals: Vec<f64> = (0..labels.len())
        .map(|i| {
            series
                .iter()
                .map(|s| s.values.get(i).copied().unwrap_or(0.0))
                .sum()
        })
        .collect();
    let y_max = nice_max(totals.iter().copied().fold(0.0, f64::max));
    let plot_h = H - TOP - BOTTOM;
    let bw = (W - LEFT) / labels.len().max(1) as f64;
    let mut rects = Vec::new();
    for (i, lab) in labels.iter().enumerate() {
        let mut y = TOP + plot_h;
        for s in series {
            let v = s.values.get(i).copied().unwrap_or(0.0);
            if v > 0.0 {
                let h = plot_h * v / y_max;
                y -= h;
                let x = LEFT + bw * i as f64 + bw * 0.1;
                rects.push((x, y, bw * 0.8, h, s.class, format!("{lab} {}: {v}", s.name)));
            }
        }
    }
    html! {
        figure.chart {
            figcaption { (title) }
            svg viewBox={"0 0 " (W) " " (H)} role="img" aria-label=(title) xmlns="http://www.w3.org/2000/svg" {
                (frame(y_max, labels, &|v| format!("{v:.0}")))
                @for (x, y, w, h, class, tip) in &rects {
                    rect class={"bar " (class)} x=(x) y=(y) width=(w) height=(h) { title { (tip) } }
                }
            }
            (legend(series))
        }
    }
}

/// Lines over the labels, values in `0..=y_max`, axis labels with `fmt`.
#[must_use]
pub fn lines(
    title: &str,
    labels: &[String],
    series: &[Series],
    y_max: f64,
    fmt: &dyn Fn(f64) -> String,
) -> Markup {
    let plot_h = H - TOP - BOTTOM;
    let bw = (W - LEFT) / labels.len().max(1) as f64;
    let y_max = if y_max > 0.0 { y_max } else { 1.0 };
    html! {
        figure.chart {
            figcaption { (title) }
            svg viewBox={"0 0 " (W) " " (H)} role="img" aria-label=(title) xmlns="http://www.w3.org/2000/svg" {
                (frame(y_max, labels, fmt))
                @for s in series {
                    @let pts: Vec<String> = s.values.iter().enumerate().map(|(i, v)| {
                        format!("{:.1},{:.1}", LEFT + bw * (i as f64 + 0.5), TOP + plot_h * (1.0 - v.clamp(0.0, y_max) / y_max))
                    }).collect();
                    polyline class={"line " (s.class)} points=(pts.join(" ")) {}
                    @for (i, v) in s.values.iter().enumerate() {
                        circle class={"pt " (s.class)} cx=(LEFT + bw * (i as f64 + 0.5)) cy=(TOP + plot_h * (1.0 - v.clamp(0.0, y_max) / y_max)) r="2.5" {
                            title { (labels.get(i).map_or("", String::as_str)) " " (s.name) ": " (fmt(*v)) }
                        }
                    }
                }
            }
            (legend(series))
        }
    }
}

/// Horizontal bars, one per row: `(label, value, class)`; values in `0..=max`.
#[must_use]
pub fn hbars(
    title: &str,
    rows: &[(String, f64, &'static str)],
    max: f64,
    fmt: &dyn Fn(f64) -> String,
) -> Markup {
    // Narrower than the time charts: these sit three abreast.
    const HW: f64 = 420.0;
    let row_h = 26.0;
    let h = row_h * rows.len().max(1) as f64 + 8.0;
    let label_w = 80.0;
    let max = if max > 0.0 { max } else { 1.0 };
    html! {
        figure.chart {
            figcaption { (title) }
            svg viewBox={"0 0 " (HW) " " (h)} role="img" aria-label=(title) xmlns="http://www.w3.org/2000/svg" {
                @for (i, (lab, v, class)) in rows.iter().enumerate() {
                    @let y = 4.0 + row_h * i as f64;
                    @let w = (HW - label_w - 70.0) * v.clamp(0.0, max) / max;
                    text.axis x=(label_w - 6.0) y=(y + 16.0) text-anchor="end" { (lab) }
                    rect class={"bar " (class)} x=(label_w) y=(y + 3.0) width=(w) height=(row_h - 8.0) { title { (lab) ": " (fmt(*v)) } }
                    text.value x=(label_w + w + 6.0) y=(y + 16.0) { (fmt(*v)) }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_maximum_is_round_and_not_below_the_data() {
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(nice_max(7.0), 10.0);
        assert_eq!(nice_max(12.0), 20.0);
        assert_eq!(nice_max(40.0), 50.0);
        assert_eq!(nice_max(100.0), 100.0);
    }

    #[test]
    fn stacked_bars_draw_one_rect_per_nonzero_value() {
        let labels = vec!["10h".to_owned(), "11h".to_owned()];
        let series = vec![
            Series {
                name: "FAST".into(),
                class: "fast",
                values: vec![3.0, 0.0],
            },
            Series {
                name: "INSPECT".into(),
                class: "inspect",
                values: vec![1.0, 2.0],
            },
        ];
        let svg = stacked_bars("t", &labels, &series).into_string();
        assert_eq!(svg.matches("<rect").count(), 3, "{svg}");
        assert!(svg.contains("INSPECT: 2"));
    }
}
