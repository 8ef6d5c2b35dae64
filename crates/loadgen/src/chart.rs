//! `chart`: draws the headline figure of every result line as an SVG bar chart
//! (one bar per scenario, from its newest line, scaled within its unit).

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
    let (w, row, left, right) = (900.0, 34.0, 230.0, 170.0);
    let h = 60.0 + row * bars.len() as f64;
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
    svg.push_str("</svg>\n");
    std::fs::write(&args.output, svg)?;
    eprintln!("wrote {}", args.output.display());
    Ok(())
}

fn format_value(v: f64) -> String {
    if v >= 100.0 { format!("{:.0}", v) } else { format!("{:.1}", v) }
}
