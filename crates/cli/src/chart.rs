//! Charts of query results: in the terminal (character grid) and as SVG.
//!
//! Series whose labels differ only by `band="lower"`/`band="upper"` are drawn as a shaded
//! band; `band="center"` as a line. An instant vector is drawn as horizontal bars.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write;

use anyhow::Result;
use tsq::exec::{QueryResult, Value};
use tsq::storage::Labels;

use crate::output::prom_float;
use crate::query::QuerySpec;

const GLYPHS: [char; 8] = ['*', '+', 'o', 'x', '#', '@', '%', '&'];
const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];
const MAX_LINES: usize = 8;

struct Line {
    name: String,
    points: Vec<(i64, f64)>,
}

struct Band {
    name: String,
    lower: Vec<(i64, f64)>,
    upper: Vec<(i64, f64)>,
}

/// Splits a matrix into lines and bands; a series without labels is named by the query.
fn split(res: &QueryResult, expr: &str) -> (Vec<Line>, Vec<Band>) {
    let Value::Matrix(m) = &res.value else {
        return (Vec::new(), Vec::new());
    };
    let mut lines = Vec::new();
    type Points = Vec<(i64, f64)>;
    let mut bands: BTreeMap<Labels, (Points, Points)> = BTreeMap::new();
    for s in m {
        let finite: Vec<(i64, f64)> = s
            .samples
            .iter()
            .copied()
            .filter(|(_, v)| v.is_finite())
            .collect();
        match s.labels.get("band") {
            Some("lower") | Some("upper") => {
                let mut key = s.labels.clone();
                key.remove("band");
                let e = bands.entry(key).or_default();
                if s.labels.get("band") == Some("lower") {
                    e.0 = finite;
                } else {
                    e.1 = finite;
                }
            }
            _ => lines.push(Line {
                name: if s.labels.is_empty() {
                    expr.to_string()
                } else {
                    s.labels.to_string()
                },
                points: finite,
            }),
        }
    }
    let bands = bands
        .into_iter()
        .map(|(k, (lower, upper))| Band {
            name: format!("{k} band"),
            lower,
            upper,
        })
        .collect();
    (lines, bands)
}

fn bounds(lines: &[Line], bands: &[Band], spec: &QuerySpec) -> Option<(i64, i64, f64, f64)> {
    let all = lines.iter().flat_map(|l| l.points.iter()).chain(
        bands
            .iter()
            .flat_map(|b| b.lower.iter().chain(b.upper.iter())),
    );
    let (mut t0, mut t1, mut lo, mut hi) = (i64::MAX, i64::MIN, f64::INFINITY, f64::NEG_INFINITY);
    for &(t, v) in all {
        t0 = t0.min(t);
        t1 = t1.max(t);
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if t0 > t1 {
        return None;
    }
    if let Some((s, e, _)) = spec.range {
        t0 = t0.min(s);
        t1 = t1.max(e);
    }
    if hi - lo < 1e-12 {
        hi += 1.0;
        lo -= 1.0;
    }
    Some((t0, t1.max(t0 + 1), lo, hi))
}

fn time_label(ms: i64, span: i64) -> String {
    let s = crate::timearg::fmt_time(ms); // 2026-01-01T12:34:56.000Z
    if span > 2 * 86_400_000 {
        s[5..16].replace('T', " ")
    } else {
        s[11..16].to_string()
    }
}

fn short(v: f64) -> String {
    let a = v.abs();
    if a != 0.0 && !(1e-3..1e6).contains(&a) {
        format!("{v:.3e}")
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.4}")
    }
}

/// Draws the result in the terminal.
pub fn render_terminal(out: &mut impl Write, res: &QueryResult, spec: &QuerySpec) -> Result<()> {
    if let Value::Vector(v) = &res.value {
        return bars(out, v);
    }
    if let Value::Scalar { v, .. } = &res.value {
        writeln!(out, "{}", prom_float(*v))?;
        return Ok(());
    }
    let (lines, bands) = split(res, &spec.expr);
    let Some((t0, t1, lo, hi)) = bounds(&lines, &bands, spec) else {
        writeln!(out, "(empty result)")?;
        return Ok(());
    };
    let width: usize = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(100)
        .clamp(40, 300)
        - 12;
    let height = 18usize;
    let mut grid = vec![vec![' '; width]; height];
    let col = |t: i64| (((t - t0) as f64 / (t1 - t0) as f64) * (width - 1) as f64).round() as usize;
    let row = |v: f64| {
        let r = ((hi - v) / (hi - lo) * (height - 1) as f64).round();
        r.clamp(0.0, (height - 1) as f64) as usize
    };
    for b in &bands {
        let upper: BTreeMap<usize, f64> = b.upper.iter().map(|&(t, v)| (col(t), v)).collect();
        for &(t, lv) in &b.lower {
            if let Some(&uv) = upper.get(&col(t)) {
                for cells in &mut grid[row(uv)..=row(lv)] {
                    cells[col(t)] = '░';
                }
            }
        }
    }
    for (i, l) in lines.iter().take(MAX_LINES).enumerate() {
        for &(t, v) in &l.points {
            grid[row(v)][col(t)] = GLYPHS[i % GLYPHS.len()];
        }
    }
    for (r, cells) in grid.iter().enumerate() {
        let label = if r == 0 {
            short(hi)
        } else if r == height - 1 {
            short(lo)
        } else if r == height / 2 {
            short((hi + lo) / 2.0)
        } else {
            String::new()
        };
        writeln!(out, "{label:>10} │{}", cells.iter().collect::<String>())?;
    }
    writeln!(out, "{:>10} └{}", "", "─".repeat(width))?;
    let (a, m, b) = (
        time_label(t0, t1 - t0),
        time_label((t0 + t1) / 2, t1 - t0),
        time_label(t1, t1 - t0),
    );
    let gap1 = (width / 2).saturating_sub(a.len() + m.len() / 2);
    let gap2 = width.saturating_sub(a.len() + gap1 + m.len() + b.len());
    writeln!(
        out,
        "{:>10}  {a}{}{m}{}{b}",
        "",
        " ".repeat(gap1),
        " ".repeat(gap2)
    )?;
    for (i, l) in lines.iter().take(MAX_LINES).enumerate() {
        writeln!(out, "  {} {}", GLYPHS[i % GLYPHS.len()], l.name)?;
    }
    if lines.len() > MAX_LINES {
        writeln!(
            out,
            "  ... and {} more series (not drawn)",
            lines.len() - MAX_LINES
        )?;
    }
    for b in &bands {
        writeln!(out, "  ░ {}", b.name)?;
    }
    Ok(())
}

fn bars(out: &mut impl Write, v: &[tsq::exec::Sample]) -> Result<()> {
    if v.is_empty() {
        writeln!(out, "(empty result)")?;
        return Ok(());
    }
    let names: Vec<String> = v.iter().map(|s| s.labels.to_string()).collect();
    let w = names
        .iter()
        .map(|n| n.chars().count())
        .max()
        .unwrap_or(0)
        .min(60);
    let max = v
        .iter()
        .map(|s| s.v.abs())
        .filter(|x| x.is_finite())
        .fold(0.0, f64::max);
    for (n, s) in names.iter().zip(v) {
        let len = if max > 0.0 && s.v.is_finite() {
            (s.v.abs() / max * 40.0).round() as usize
        } else {
            0
        };
        let n: String = n.chars().take(60).collect();
        writeln!(out, "{n:<w$} │{} {}", "█".repeat(len), prom_float(s.v))?;
    }
    Ok(())
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The same chart as an SVG document.
pub fn render_svg(res: &QueryResult, spec: &QuerySpec) -> Result<String> {
    let (lines, bands) = split(res, &spec.expr);
    let legend = lines.len().min(MAX_LINES) + bands.len();
    let (w, left, top, plot_w, plot_h) = (960.0, 80.0, 20.0, 860.0, 300.0);
    let h = top + plot_h + 40.0 + 14.0 * legend as f64;
    let mut s = String::new();
    writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    )?;
    writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#)?;
    let Some((t0, t1, lo, hi)) = bounds(&lines, &bands, spec) else {
        writeln!(s, r#"<text x="20" y="40">empty result</text></svg>"#)?;
        return Ok(s);
    };
    let x = |t: i64| left + (t - t0) as f64 / (t1 - t0) as f64 * plot_w;
    let y = |v: f64| top + (hi - v) / (hi - lo) * plot_h;
    writeln!(
        s,
        r##"<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#888"/>"##
    )?;
    for k in 0..=4 {
        let v = lo + (hi - lo) * k as f64 / 4.0;
        writeln!(
            s,
            r##"<text x="{}" y="{:.1}" text-anchor="end">{}</text><line x1="{left}" x2="{}" y1="{:.1}" y2="{:.1}" stroke="#eee"/>"##,
            left - 6.0,
            y(v) + 4.0,
            esc(&short(v)),
            left + plot_w,
            y(v),
            y(v)
        )?;
        let t = t0 + (t1 - t0) * k / 4;
        writeln!(
            s,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">{}</text>"#,
            x(t),
            top + plot_h + 16.0,
            esc(&time_label(t, t1 - t0))
        )?;
    }
    for (i, b) in bands.iter().enumerate() {
        let mut pts: Vec<String> = b
            .upper
            .iter()
            .map(|&(t, v)| format!("{:.1},{:.1}", x(t), y(v)))
            .collect();
        pts.extend(
            b.lower
                .iter()
                .rev()
                .map(|&(t, v)| format!("{:.1},{:.1}", x(t), y(v))),
        );
        writeln!(
            s,
            r#"<polygon points="{}" fill="{}" fill-opacity="0.2" stroke="none"/>"#,
            pts.join(" "),
            COLORS[i % COLORS.len()]
        )?;
    }
    for (i, l) in lines.iter().enumerate() {
        let pts: Vec<String> = l
            .points
            .iter()
            .map(|&(t, v)| format!("{:.1},{:.1}", x(t), y(v)))
            .collect();
        writeln!(
            s,
            r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="1.5"/>"#,
            pts.join(" "),
            COLORS[i % COLORS.len()]
        )?;
    }
    let mut ly = top + plot_h + 36.0;
    for (i, l) in lines.iter().take(MAX_LINES).enumerate() {
        writeln!(
            s,
            r#"<rect x="{left}" y="{:.1}" width="12" height="3" fill="{}"/><text x="{}" y="{:.1}">{}</text>"#,
            ly - 4.0,
            COLORS[i % COLORS.len()],
            left + 18.0,
            ly,
            esc(&l.name)
        )?;
        ly += 14.0;
    }
    for (i, b) in bands.iter().enumerate() {
        writeln!(
            s,
            r#"<rect x="{left}" y="{:.1}" width="12" height="8" fill="{}" fill-opacity="0.3"/><text x="{}" y="{:.1}">{}</text>"#,
            ly - 8.0,
            COLORS[i % COLORS.len()],
            left + 18.0,
            ly,
            esc(&b.name)
        )?;
        ly += 14.0;
    }
    writeln!(s, "</svg>")?;
    Ok(s)
}
