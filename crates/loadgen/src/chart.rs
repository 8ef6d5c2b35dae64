//! `chart`: draws the headline figure of every result line as an SVG bar chart (one bar
//! per scenario, from its newest line, scaled within its unit), and under it the
//! fan-out latency curve: send->deliver p50 and p99 against deliveries per second, one
//! point per step of the newest fan-out run that has several steps (`--search`).

use std::path::PathBuf;

use serde_json::Value;

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Result lines (JSON, one per line), as written with `--out`.
    #[arg(long, default_value = "bench-results.jsonl")]
    pub input: PathBuf,
    /// Where to write the SVG.
    #[arg(long, default_value = "BENCHMARKS.svg")]
    pub output: PathBuf,
}

/// A bar: label, value, unit.
fn headline(v: &Value) -> Option<(String, f64, &'static str)> {
    let name = v["scenario"].as_str()?.to_owned();
    let pick = |k: &str| v[k].as_f64();
    match name.as_str() {
        "fanout" | "bigroom" => Some((name, pick("deliveries_per_s")?, "deliveries/s")),
        n if n.starts_with("persist") => Some((name, pick("messages_per_s")?, "messages/s")),
        "history" => Some((name, pick("pages_per_s")?, "pages/s")),
        "idle" => {
            Some((format!("idle ({} conns)", v["connections"]), pick("bytes_per_connection")? / 1024.0, "KiB/conn"))
        }
        _ => None,
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

pub fn draw(args: &Args) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.input)?;
    // The newest line of each label: the file keeps every run, the chart shows the latest.
    let mut bars: Vec<(String, f64, &str)> = Vec::new();
    for bar in text.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).filter_map(|v| headline(&v)) {
        match bars.iter_mut().find(|b| b.0 == bar.0) {
            Some(old) => *old = bar,
            None => bars.push(bar),
        }
    }
    anyhow::ensure!(!bars.is_empty(), "no results in {}", args.input.display());
    // The newest fan-out run with several steps: its curve.
    let curve: Vec<(f64, f64, f64)> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .rfind(|v| v["scenario"] == "fanout" && v["steps"].as_array().is_some_and(|s| s.len() > 1))
        .map(|v| {
            v["steps"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| {
                    Some((
                        s["deliveries_per_s"].as_f64()?,
                        s["latency"]["p50_ms"].as_f64()?,
                        s["latency"]["p99_ms"].as_f64()?,
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    let (w, row, left, right) = (900.0, 34.0, 230.0, 170.0);
    let bars_h = 60.0 + row * bars.len() as f64;
    let curve_h = if curve.len() > 1 { 360.0 } else { 0.0 };
    let h = bars_h + curve_h;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"13\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"10\" y=\"24\" font-size=\"16\" font-weight=\"bold\">chat backend benchmarks (bars scaled within each unit)</text>\n"
    );
    for (i, (label, value, unit)) in bars.iter().enumerate() {
        let max = bars.iter().filter(|b| b.2 == *unit).map(|b| b.1).fold(0.0, f64::max).max(1e-9);
        let y = 44.0 + row * i as f64;
        let len = (w - left - right) * value / max;
        svg.push_str(&format!(
            "<text x=\"10\" y=\"{}\">{}</text>\n<rect x=\"{left}\" y=\"{y}\" width=\"{len:.1}\" height=\"{}\" fill=\"#3b82f6\"/>\n\
             <text x=\"{}\" y=\"{}\">{} {}</text>\n",
            y + 18.0,
            escape(label),
            row - 10.0,
            left + len + 6.0,
            y + 18.0,
            format_value(*value),
            unit
        ));
    }
    if curve.len() > 1 {
        svg.push_str(&latency_curve(&curve, bars_h, w));
    }
    svg.push_str("</svg>\n");
    std::fs::write(&args.output, svg)?;
    eprintln!("wrote {}", args.output.display());
    Ok(())
}

fn format_value(v: f64) -> String {
    if v >= 100.0 { format!("{:.0}", v) } else { format!("{:.1}", v) }
}

/// The fan-out curve: p50 and p99 (log scale, ms) against deliveries/s, with the 50 ms
/// line of the fan-out target.
fn latency_curve(points: &[(f64, f64, f64)], top: f64, w: f64) -> String {
    let (left, right, height) = (90.0, 40.0, 280.0);
    let (x0, y0) = (left, top + 40.0 + height);
    let max_x = points.iter().map(|p| p.0).fold(0.0, f64::max).max(1.0) * 1.05;
    let min_ms = points.iter().map(|p| p.1).fold(f64::MAX, f64::min).max(0.01);
    let max_ms = points.iter().map(|p| p.2).fold(0.0, f64::max).max(60.0);
    let (lo, hi) = (min_ms.log10().floor(), max_ms.log10().ceil());
    let x = |d: f64| x0 + (w - left - right) * d / max_x;
    let y = |ms: f64| y0 - height * (ms.max(min_ms).log10() - lo) / (hi - lo).max(1.0);
    let mut svg = format!(
        "<text x=\"10\" y=\"{}\" font-size=\"16\" font-weight=\"bold\">fan-out: send->deliver latency against deliveries/s</text>\n\
         <line x1=\"{x0}\" y1=\"{y0}\" x2=\"{}\" y2=\"{y0}\" stroke=\"black\"/>\n\
         <line x1=\"{x0}\" y1=\"{y0}\" x2=\"{x0}\" y2=\"{}\" stroke=\"black\"/>\n",
        top + 24.0,
        w - right,
        y0 - height
    );
    let mut decade = lo;
    while decade <= hi {
        let ms = 10f64.powf(decade);
        svg.push_str(&format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{} ms</text>\n<line x1=\"{x0}\" y1=\"{yy}\" x2=\"{}\" y2=\"{yy}\" stroke=\"#ddd\"/>\n",
            x0 - 6.0,
            y(ms) + 4.0,
            format_value(ms),
            w - right,
            yy = y(ms)
        ));
        decade += 1.0;
    }
    svg.push_str(&format!(
        "<line x1=\"{x0}\" y1=\"{t}\" x2=\"{}\" y2=\"{t}\" stroke=\"#dc2626\" stroke-dasharray=\"6 4\"/>\n\
         <text x=\"{}\" y=\"{}\" fill=\"#dc2626\" text-anchor=\"end\">p99 target 50 ms</text>\n",
        w - right,
        w - right,
        y(50.0) - 4.0,
        t = y(50.0)
    ));
    for (i, (label, color)) in [("p50", "#3b82f6"), ("p99", "#f59e0b")].into_iter().enumerate() {
        let pts: Vec<String> =
            points.iter().map(|p| format!("{:.1},{:.1}", x(p.0), y(if i == 0 { p.1 } else { p.2 }))).collect();
        svg.push_str(&format!(
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2\" points=\"{}\"/>\n",
            pts.join(" ")
        ));
        for pt in &pts {
            let (px, py) = pt.split_once(',').unwrap_or(("0", "0"));
            svg.push_str(&format!("<circle cx=\"{px}\" cy=\"{py}\" r=\"3\" fill=\"{color}\"/>\n"));
        }
        svg.push_str(&format!(
            "<text x=\"{}\" y=\"{}\" fill=\"{color}\">{label}</text>\n",
            x0 + 10.0 + 50.0 * i as f64,
            top + 56.0
        ));
    }
    for p in points {
        svg.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\" font-size=\"11\">{}</text>\n",
            x(p.0),
            y0 + 16.0,
            format_value(p.0)
        ));
    }
    svg.push_str(&format!(
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">deliveries/s</text>\n",
        (x0 + w - right) / 2.0,
        y0 + 34.0
    ));
    svg
}
