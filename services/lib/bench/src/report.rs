//! What every benchmark returns, and how the results become markdown and
//! SVG charts (`docs/benchmarks.md`, `docs/bench-*.svg`). Each row pairs a
//! lambdaless figure with the raw emulator calls (or other baseline) measured
//! in the same run; the ratio is what compares across noisy machines.

use std::fmt::Write as _;
use std::time::Duration;

/// One figure.
#[derive(Debug, Clone, Copy)]
pub enum Measure {
    Latency {
        p50: Duration,
        p99: Duration,
    },
    /// Per second (items, messages, requests); higher is better.
    Rate(f64),
    /// Bytes of memory; lower is better.
    Bytes(u64),
    /// A count (emulator calls per query); lower is better.
    Count(f64),
}

impl Measure {
    fn cell(&self) -> String {
        match self {
            Self::Latency { p50, p99 } => format!("p50 {} / p99 {} ms", ms(*p50), ms(*p99)),
            Self::Rate(r) => format!("{r:.0}/s"),
            Self::Bytes(b) => format!("{:.1} MiB", *b as f64 / (1024.0 * 1024.0)),
            Self::Count(c) => format!("{c:.0}"),
        }
    }
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

/// One compared figure.
#[derive(Debug, Clone)]
pub struct Row {
    pub what: String,
    pub ours: Measure,
    pub raw: Option<Measure>,
    pub goal: String,
}

impl Row {
    pub fn new(
        what: impl Into<String>,
        ours: Measure,
        raw: Option<Measure>,
        goal: impl Into<String>,
    ) -> Self {
        Self {
            what: what.into(),
            ours,
            raw,
            goal: goal.into(),
        }
    }

    /// lambdaless ÷ baseline: for latencies p50 and p99, otherwise one value.
    pub fn ratios(&self) -> Option<(f64, Option<f64>)> {
        let div = |a: f64, b: f64| (b > 0.0).then(|| a / b);
        match (self.ours, self.raw?) {
            (Measure::Latency { p50, p99 }, Measure::Latency { p50: r50, p99: r99 }) => Some((
                div(p50.as_secs_f64(), r50.as_secs_f64())?,
                div(p99.as_secs_f64(), r99.as_secs_f64()),
            )),
            (Measure::Rate(a), Measure::Rate(b)) => Some((div(a, b)?, None)),
            (Measure::Bytes(a), Measure::Bytes(b)) => Some((div(a as f64, b as f64)?, None)),
            (Measure::Count(a), Measure::Count(b)) => Some((div(a, b)?, None)),
            _ => None,
        }
    }

    fn ratio_cell(&self) -> String {
        match self.ratios() {
            Some((a, Some(b))) => format!("{a:.2}× / {b:.2}×"),
            Some((a, None)) => format!("{a:.2}×"),
            None => "–".to_owned(),
        }
    }
}

/// The result of one benchmark.
#[derive(Debug, Clone)]
pub struct Section {
    /// Short name, used for file names.
    pub key: &'static str,
    pub title: String,
    /// The command that reproduces this section alone.
    pub command: String,
    /// What the baseline column is.
    pub baseline: String,
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
}

impl Section {
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "### {}\n", self.title);
        let _ = writeln!(out, "`{}` — baseline: {}.\n", self.command, self.baseline);
        let _ = writeln!(out, "| measured | lambdaless | baseline | ratio | goal |");
        let _ = writeln!(out, "|---|---|---|---|---|");
        for r in &self.rows {
            let raw = r.raw.map(|m| m.cell()).unwrap_or_else(|| "–".to_owned());
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                r.what,
                r.ours.cell(),
                raw,
                r.ratio_cell(),
                r.goal
            );
        }
        for n in &self.notes {
            let _ = writeln!(out, "\n{n}");
        }
        out
    }

    /// Prints the section as markdown (the single-benchmark commands).
    pub fn print(&self) {
        println!("\n{}", self.markdown());
    }
}

/// A horizontal bar chart as a standalone SVG: one group per label, one bar
/// per series, a dashed reference line (e.g. ratio 1.0) when given.
pub fn bar_chart(
    title: &str,
    unit: &str,
    series: &[&str],
    groups: &[(String, Vec<f64>)],
    reference: Option<f64>,
) -> String {
    const COLOURS: [&str; 4] = ["#2b6cb0", "#a0aec0", "#dd6b20", "#718096"];
    let label_w = 360.0;
    let plot_w = 420.0;
    let bar_h = 14.0;
    let gap = 10.0;
    let top = 48.0;
    let group_h = bar_h * series.len().max(1) as f64 + gap;
    let height = top + group_h * groups.len() as f64 + 40.0;
    let width = label_w + plot_w + 90.0;
    let max = groups
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .chain(reference)
        .filter(|v| v.is_finite())
        .fold(0.0_f64, f64::max)
        .max(f64::MIN_POSITIVE);
    let x = |v: f64| label_w + plot_w * (v / max).clamp(0.0, 1.0);
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0}" height="{height:.0}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        svg,
        r#"<rect width="100%" height="100%" fill="white"/><text x="10" y="20" font-size="15" font-weight="bold">{}</text>"#,
        escape(title)
    );
    for (i, s) in series.iter().enumerate() {
        let lx = label_w + i as f64 * 140.0;
        let _ = writeln!(
            svg,
            r#"<rect x="{lx:.0}" y="28" width="12" height="12" fill="{}"/><text x="{:.0}" y="38">{}</text>"#,
            COLOURS[i % COLOURS.len()],
            lx + 16.0,
            escape(s)
        );
    }
    for (g, (label, values)) in groups.iter().enumerate() {
        let gy = top + g as f64 * group_h;
        let _ = writeln!(
            svg,
            r#"<text x="{:.0}" y="{:.1}" text-anchor="end">{}</text>"#,
            label_w - 8.0,
            gy + group_h / 2.0,
            escape(label)
        );
        for (i, v) in values.iter().enumerate() {
            let v = &if v.is_finite() { *v } else { 0.0 };
            let y = gy + i as f64 * bar_h;
            let _ = writeln!(
                svg,
                r#"<rect x="{label_w:.0}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{}"/><text x="{:.1}" y="{:.1}">{}</text>"#,
                x(*v) - label_w,
                bar_h - 2.0,
                COLOURS[i % COLOURS.len()],
                x(*v) + 4.0,
                y + bar_h - 4.0,
                format_value(*v, unit)
            );
        }
    }
    if let Some(r) = reference {
        let rx = x(r);
        let _ = writeln!(
            svg,
            r#"<line x1="{rx:.1}" y1="{:.0}" x2="{rx:.1}" y2="{:.0}" stroke="black" stroke-dasharray="4 3"/><text x="{rx:.1}" y="{:.0}" text-anchor="middle">{}</text>"#,
            top - 4.0,
            height - 28.0,
            height - 14.0,
            format_value(r, unit)
        );
    }
    svg.push_str("</svg>\n");
    svg
}

fn format_value(v: f64, unit: &str) -> String {
    if v >= 100.0 {
        format!("{v:.0}{unit}")
    } else {
        format!("{v:.2}{unit}")
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The whole report: headline ratios, every section, the charts.
pub fn document(sections: &[Section], header: &str) -> (String, Vec<(String, String)>) {
    let mut ratio_groups = Vec::new();
    let mut latency_groups = Vec::new();
    for s in sections {
        for r in &s.rows {
            if let Some((a, b)) = r.ratios() {
                let mut v = vec![a];
                v.extend(b);
                ratio_groups.push((format!("{}: {}", s.key, short(&r.what)), v));
            }
            if let (Measure::Latency { p50, p99 }, Some(Measure::Latency { p50: r50, p99: r99 })) =
                (r.ours, r.raw)
            {
                latency_groups.push((
                    format!("{}: {}", s.key, short(&r.what)),
                    vec![
                        p50.as_secs_f64() * 1e3,
                        r50.as_secs_f64() * 1e3,
                        p99.as_secs_f64() * 1e3,
                        r99.as_secs_f64() * 1e3,
                    ],
                ));
            }
        }
    }
    let charts = vec![
        (
            "bench-ratios.svg".to_owned(),
            bar_chart(
                "lambdaless ÷ baseline (latency: p50, p99; throughput: higher is better)",
                "×",
                &["p50 / single figure", "p99"],
                &ratio_groups,
                Some(1.0),
            ),
        ),
        (
            "bench-latency.svg".to_owned(),
            bar_chart(
                "Latency (ms)",
                "",
                &[
                    "lambdaless p50",
                    "baseline p50",
                    "lambdaless p99",
                    "baseline p99",
                ],
                &latency_groups,
                None,
            ),
        ),
    ];
    let mut md = String::new();
    md.push_str(header);
    md.push_str("\n![ratios](bench-ratios.svg)\n\n![latency](bench-latency.svg)\n\n");
    for s in sections {
        md.push_str(&s.markdown());
        md.push('\n');
    }
    (md, charts)
}

/// Row labels shortened for chart axes.
fn short(what: &str) -> String {
    let s: String = what.chars().take(44).collect();
    if s.len() < what.len() {
        format!("{s}…")
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lat(a: u64, b: u64) -> Measure {
        Measure::Latency {
            p50: Duration::from_millis(a),
            p99: Duration::from_millis(b),
        }
    }

    #[test]
    fn ratios_divide_ours_by_the_baseline() {
        let r = Row::new("x", lat(3, 10), Some(lat(2, 5)), "");
        assert_eq!(r.ratios(), Some((1.5, Some(2.0))));
        assert_eq!(r.ratio_cell(), "1.50× / 2.00×");
        let t = Row::new("t", Measure::Rate(90.0), Some(Measure::Rate(100.0)), "");
        assert_eq!(t.ratios(), Some((0.9, None)));
        assert_eq!(Row::new("m", Measure::Bytes(1), None, "").ratio_cell(), "–");
        let mixed = Row::new("m", Measure::Rate(1.0), Some(lat(1, 1)), "");
        assert_eq!(mixed.ratios(), None);
        let zero = Row::new("z", Measure::Rate(1.0), Some(Measure::Rate(0.0)), "");
        assert_eq!(zero.ratios(), None);
    }

    #[test]
    fn markdown_has_one_line_per_row() {
        let s = Section {
            key: "k",
            title: "T".into(),
            command: "lambdaless bench k".into(),
            baseline: "raw".into(),
            rows: vec![
                Row::new("a", lat(1, 2), Some(lat(1, 1)), "≤ 1.2×"),
                Row::new("b", Measure::Rate(5.0), None, ""),
            ],
            notes: vec!["note".into()],
        };
        let md = s.markdown();
        assert!(
            md.contains(
                "| a | p50 1.00 / p99 2.00 ms | p50 1.00 / p99 1.00 ms | 1.00× / 2.00× | ≤ 1.2× |"
            ),
            "{md}"
        );
        assert!(md.contains("| b | 5/s | – | – |  |"), "{md}");
        assert!(md.ends_with("note\n"));
    }

    #[test]
    fn charts_are_well_formed_and_escape_labels() {
        let svg = bar_chart(
            "a < b",
            "×",
            &["one", "two"],
            &[
                ("x & y".into(), vec![1.0, 2.0]),
                ("z".into(), vec![0.5, f64::NAN]),
            ],
            Some(1.0),
        );
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert!(svg.contains("a &lt; b") && svg.contains("x &amp; y"));
        assert_eq!(svg.matches("<rect").count(), 1 + 2 + 4);
        assert!(!svg.contains("NaN\""), "no NaN coordinates");
    }
}
