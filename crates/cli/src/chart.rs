//! Charts of query results: in the terminal (character grid) and as SVG.
//!
//! Series whose labels differ only by `band="lower"`/`band="upper"` are drawn as a shaded
//! band; `band="center"` as a line. An instant vector is drawn as horizontal bars. An
//! episodes value is drawn as a timeline: one row per label set, one bar per episode. Episodes
//! given as a shade (`tsq query --shade`) are drawn over the series: shaded columns and one
//! marker row per label set in the terminal, translucent rectangles in SVG.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write;

use anyhow::Result;
use tsq::exec::{Episode, QueryResult, Value};
use tsq::storage::Labels;

use crate::output::prom_float;
use crate::query::QuerySpec;

const GLYPHS: [char; 8] = ['*', '+', 'o', 'x', '#', '@', '%', '&'];
const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf",
];
const MAX_LINES: usize = 8;
/// Label sets drawn as rows of an episodes timeline.
const MAX_ROWS: usize = 30;
/// Widest row label of an episodes timeline, in characters.
const MAX_LABEL: usize = 48;
/// Fill of the shade rectangles over an SVG chart, one per label set.
const SHADE_COLORS: [&str; 4] = ["#ff7f0e", "#9467bd", "#2ca02c", "#e377c2"];
const BAR: char = '█';
const ONGOING: char = '▶';
const TRUNCATED: char = '◀';
/// Background of the plot's columns inside a shade episode.
const SHADED: char = '·';

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

/// Columns of the terminal chart (without the 12 of the y axis), from `COLUMNS`.
fn term_width() -> usize {
    std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(100)
        .clamp(40, 300)
        - 12
}

/// The column of time `t` on a `width`-column axis over `[t0, t1]` (the nearest one).
fn col_of(t: i64, t0: i64, t1: i64, width: usize) -> usize {
    let f = (t.clamp(t0, t1) - t0) as f64 / (t1 - t0).max(1) as f64;
    (f * (width - 1) as f64).round() as usize
}

/// The columns an episode covers on a `width`-column axis over `[t0, t1]`, where column `c`
/// stands for the time `t0 + c * (t1 - t0) / (width - 1)`: from the column nearest to its
/// start to the last column before its (exclusive) end, or the column of its end when it is
/// ongoing (it holds at the evaluation time). At least one column, so that a short episode
/// stays visible; `None` when it lies outside the axis.
fn episode_cols(e: &Episode, t0: i64, t1: i64, width: usize) -> Option<(usize, usize)> {
    if width == 0 || e.end < t0 || (e.end == t0 && !e.ongoing) || e.start > t1 {
        return None;
    }
    let first = col_of(e.start, t0, t1, width);
    let last = if e.ongoing || e.end > t1 {
        col_of(e.end, t0, t1, width)
    } else {
        let f = (e.end - t0) as f64 / (t1 - t0).max(1) as f64 * (width - 1) as f64;
        (f.ceil() as usize).saturating_sub(1)
    };
    Some((first, last.max(first)))
}

/// One row of an episodes timeline: a bar per episode, the first column of a truncated start
/// as `◀`, the last column of an ongoing episode as `▶`.
fn timeline_row(eps: &[&Episode], t0: i64, t1: i64, width: usize) -> Vec<char> {
    let mut row = vec![' '; width];
    for e in eps {
        let Some((a, b)) = episode_cols(e, t0, t1, width) else {
            continue;
        };
        for c in &mut row[a..=b] {
            *c = BAR;
        }
        if e.truncated_start {
            row[a] = TRUNCATED;
        }
        if e.ongoing {
            row[b] = ONGOING;
        }
    }
    row
}

/// Episodes grouped by label set, in the order given (episodes come sorted by labels).
fn by_labels(eps: &[Episode]) -> Vec<(String, Vec<&Episode>)> {
    let mut groups: Vec<(String, Vec<&Episode>)> = Vec::new();
    for e in eps {
        let name = e.labels.to_string();
        match groups.last_mut() {
            Some((n, v)) if *n == name => v.push(e),
            _ => groups.push((name, vec![e])),
        }
    }
    groups
}

/// The time axis of a timeline: from the earliest start to the latest end.
fn episode_bounds(eps: &[Episode]) -> Option<(i64, i64)> {
    let t0 = eps.iter().map(|e| e.start).min()?;
    let t1 = eps.iter().map(|e| e.end).max()?;
    Some((t0, t1.max(t0 + 1)))
}

/// `name` cut to `w` characters, with `…` when cut.
fn fit(name: &str, w: usize) -> String {
    if name.chars().count() <= w {
        name.to_string()
    } else {
        let mut s: String = name.chars().take(w.saturating_sub(1)).collect();
        s.push('…');
        s
    }
}

/// The x axis line and the start/middle/end time labels, after `indent` columns.
fn time_axis(out: &mut impl Write, indent: usize, width: usize, t0: i64, t1: i64) -> Result<()> {
    writeln!(out, "{:>indent$} └{}", "", "─".repeat(width))?;
    let (a, m, b) = (
        time_label(t0, t1 - t0),
        time_label((t0 + t1) / 2, t1 - t0),
        time_label(t1, t1 - t0),
    );
    let gap1 = (width / 2).saturating_sub(a.len() + m.len() / 2);
    let gap2 = width.saturating_sub(a.len() + gap1 + m.len() + b.len());
    writeln!(
        out,
        "{:>indent$}  {a}{}{m}{}{b}",
        "",
        " ".repeat(gap1),
        " ".repeat(gap2)
    )?;
    Ok(())
}

/// Draws an episodes value as a timeline: one row per label set.
fn timeline(out: &mut impl Write, eps: &[Episode]) -> Result<()> {
    let Some((t0, t1)) = episode_bounds(eps) else {
        writeln!(out, "(no episodes)")?;
        return Ok(());
    };
    let groups = by_labels(eps);
    let w = groups
        .iter()
        .map(|(n, _)| n.chars().count())
        .max()
        .unwrap_or(0)
        .clamp(6, MAX_LABEL);
    let width = (term_width() + 10).saturating_sub(w).max(20);
    for (name, g) in groups.iter().take(MAX_ROWS) {
        let row: String = timeline_row(g, t0, t1, width).into_iter().collect();
        writeln!(out, "{:<w$} │{row}", fit(name, w))?;
    }
    time_axis(out, w, width, t0, t1)?;
    if groups.len() > MAX_ROWS {
        writeln!(
            out,
            "  ... and {} more series (not drawn)",
            groups.len() - MAX_ROWS
        )?;
    }
    writeln!(out, "  {BAR} episode{}", flag_legend(eps))?;
    writeln!(
        out,
        "  {} in {} series",
        plural(eps.len(), "episode"),
        groups.len()
    )?;
    Ok(())
}

/// Draws the result in the terminal, with `shade` episodes over the series (if any): their
/// columns get a `·` background, and one marker row per label set under the plot shows
/// where they are.
pub fn render_terminal(
    out: &mut impl Write,
    res: &QueryResult,
    spec: &QuerySpec,
    shade: &[Episode],
) -> Result<()> {
    if let Value::Vector(v) = &res.value {
        return bars(out, v);
    }
    if let Value::Scalar { v, .. } = &res.value {
        writeln!(out, "{}", prom_float(*v))?;
        return Ok(());
    }
    if let Value::Episodes(eps) = &res.value {
        return timeline(out, eps);
    }
    let (lines, bands) = split(res, &spec.expr);
    let Some((t0, t1, lo, hi)) = bounds(&lines, &bands, spec) else {
        writeln!(out, "(empty result)")?;
        return Ok(());
    };
    let width = term_width();
    let height = 18usize;
    let mut grid = vec![vec![' '; width]; height];
    let col = |t: i64| col_of(t, t0, t1, width);
    let row = |v: f64| {
        let r = ((hi - v) / (hi - lo) * (height - 1) as f64).round();
        r.clamp(0.0, (height - 1) as f64) as usize
    };
    let shade_groups = by_labels(shade);
    for e in shade {
        if let Some((a, b)) = episode_cols(e, t0, t1, width) {
            for cells in &mut grid {
                for c in &mut cells[a..=b] {
                    *c = SHADED;
                }
            }
        }
    }
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
    for (i, (_, g)) in shade_groups.iter().take(MAX_LINES).enumerate() {
        let row: String = timeline_row(g, t0, t1, width).into_iter().collect();
        writeln!(out, "{:>10} │{row}", format!("episodes{}", i + 1))?;
    }
    time_axis(out, 10, width, t0, t1)?;
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
    for (i, (name, g)) in shade_groups.iter().take(MAX_LINES).enumerate() {
        writeln!(
            out,
            "  {SHADED} episodes{}: {name} ({})",
            i + 1,
            plural(g.len(), "episode")
        )?;
    }
    if shade_groups.len() > MAX_LINES {
        writeln!(
            out,
            "  ... and {} more episode series (shaded, no marker row)",
            shade_groups.len() - MAX_LINES
        )?;
    }
    let flags = flag_legend(shade);
    if !flags.is_empty() {
        writeln!(out, " {flags}")?;
    }
    Ok(())
}

/// `1 episode`, `2 episodes`.
fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// The legend of the `◀`/`▶` marks, for the flags that some episode has ("" if none).
fn flag_legend(eps: &[Episode]) -> String {
    let mut s = String::new();
    if eps.iter().any(|e| e.truncated_start) {
        s.push_str(&format!(
            "   {TRUNCATED} truncated start (already holding at the first step looked at)"
        ));
    }
    if eps.iter().any(|e| e.ongoing) {
        s.push_str(&format!("   {ONGOING} ongoing at the evaluation time"));
    }
    s
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

/// The tooltip of an episode: its bounds, duration and flags.
fn episode_title(e: &Episode) -> String {
    let flags = e.flags();
    format!(
        "{} {} - {} ({}){}",
        e.labels,
        crate::timearg::fmt_time(e.start),
        crate::timearg::fmt_time(e.end),
        crate::output::fmt_duration(e.duration_ms()),
        if flags.is_empty() {
            String::new()
        } else {
            format!(" {}", flags.join(", "))
        }
    )
}

/// An episodes value as an SVG timeline: one row per label set, one `rect` per episode; a
/// triangle marks an ongoing end (right) or a truncated start (left).
fn svg_timeline(eps: &[Episode]) -> Result<String> {
    let groups = by_labels(eps);
    let rows = groups.len().min(MAX_ROWS);
    let longest = groups
        .iter()
        .map(|(n, _)| n.chars().count())
        .max()
        .unwrap_or(0)
        .min(MAX_LABEL);
    let (w, top, row_h) = (960.0, 20.0, 20.0);
    let left = (12.0 + 6.5 * longest as f64).max(80.0);
    let plot_w = w - left - 20.0;
    let plot_h = row_h * rows.max(1) as f64;
    let h = top + plot_h + 60.0;
    let mut s = String::new();
    writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    )?;
    writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#)?;
    let Some((t0, t1)) = episode_bounds(eps) else {
        writeln!(s, r#"<text x="20" y="40">no episodes</text></svg>"#)?;
        return Ok(s);
    };
    let x = |t: i64| left + (t.clamp(t0, t1) - t0) as f64 / (t1 - t0) as f64 * plot_w;
    writeln!(
        s,
        r##"<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#888"/>"##
    )?;
    for k in 0..=4 {
        let t = t0 + (t1 - t0) * k / 4;
        writeln!(
            s,
            r##"<line x1="{:.1}" x2="{:.1}" y1="{top}" y2="{}" stroke="#eee"/><text x="{:.1}" y="{}" text-anchor="middle">{}</text>"##,
            x(t),
            x(t),
            top + plot_h,
            x(t),
            top + plot_h + 16.0,
            esc(&time_label(t, t1 - t0))
        )?;
    }
    for (i, (name, g)) in groups.iter().take(MAX_ROWS).enumerate() {
        let y = top + row_h * i as f64;
        let color = COLORS[i % COLORS.len()];
        writeln!(
            s,
            r#"<text x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
            left - 6.0,
            y + row_h / 2.0 + 4.0,
            esc(&fit(name, MAX_LABEL))
        )?;
        for e in g {
            let (x0, x1) = (x(e.start), x(e.end).max(x(e.start) + 1.0));
            let (y0, y1) = (y + 4.0, y + row_h - 4.0);
            writeln!(
                s,
                r#"<rect class="episode" x="{x0:.1}" y="{y0:.1}" width="{:.1}" height="{:.1}" fill="{color}"><title>{}</title></rect>"#,
                x1 - x0,
                y1 - y0,
                esc(&episode_title(e))
            )?;
            if e.ongoing {
                writeln!(
                    s,
                    r#"<polygon class="ongoing" points="{:.1},{:.1} {:.1},{:.1} {:.1},{:.1}" fill="{color}"/>"#,
                    x1,
                    y0 - 2.0,
                    x1 + 6.0,
                    (y0 + y1) / 2.0,
                    x1,
                    y1 + 2.0
                )?;
            }
            if e.truncated_start {
                writeln!(
                    s,
                    r#"<polygon class="truncated" points="{:.1},{:.1} {:.1},{:.1} {:.1},{:.1}" fill="{color}"/>"#,
                    x0,
                    y0 - 2.0,
                    x0 - 6.0,
                    (y0 + y1) / 2.0,
                    x0,
                    y1 + 2.0
                )?;
            }
        }
    }
    let mut note = format!(
        "{} in {} series",
        plural(eps.len(), "episode"),
        groups.len()
    );
    if groups.len() > MAX_ROWS {
        note.push_str(&format!(" ({} not drawn)", groups.len() - MAX_ROWS));
    }
    note.push_str(
        "; right triangle: ongoing at the evaluation time; left triangle: truncated start",
    );
    writeln!(
        s,
        r#"<text x="{left}" y="{}">{}</text>"#,
        top + plot_h + 40.0,
        esc(&note)
    )?;
    writeln!(s, "</svg>")?;
    Ok(s)
}

/// The same chart as an SVG document, with `shade` episodes drawn as translucent rectangles
/// over the series (one `rect` per episode, a colour per label set).
pub fn render_svg(res: &QueryResult, spec: &QuerySpec, shade: &[Episode]) -> Result<String> {
    if let Value::Episodes(eps) = &res.value {
        return svg_timeline(eps);
    }
    let (lines, bands) = split(res, &spec.expr);
    let shade_groups = by_labels(shade);
    let legend = lines.len().min(MAX_LINES) + bands.len() + shade_groups.len().min(MAX_LINES);
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
    for (i, (_, g)) in shade_groups.iter().enumerate() {
        for e in g {
            let (a, b) = (e.start.max(t0), e.end.min(t1));
            if b < a || e.end <= t0 {
                continue;
            }
            writeln!(
                s,
                r#"<rect class="episode" x="{:.1}" y="{top}" width="{:.1}" height="{plot_h}" fill="{}" fill-opacity="0.18"><title>{}</title></rect>"#,
                x(a),
                (x(b) - x(a)).max(1.0),
                SHADE_COLORS[i % SHADE_COLORS.len()],
                esc(&episode_title(e))
            )?;
        }
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
    for (i, (name, g)) in shade_groups.iter().take(MAX_LINES).enumerate() {
        writeln!(
            s,
            r#"<rect x="{left}" y="{:.1}" width="12" height="8" fill="{}" fill-opacity="0.4"/><text x="{}" y="{:.1}">{}</text>"#,
            ly - 8.0,
            SHADE_COLORS[i % SHADE_COLORS.len()],
            left + 18.0,
            ly,
            esc(&format!("episodes {name} ({})", plural(g.len(), "episode")))
        )?;
        ly += 14.0;
    }
    writeln!(s, "</svg>")?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tsq::exec::Series;

    const MIN: i64 = 60_000;

    fn ep(labels: &[(&str, &str)], start: i64, end: i64, ongoing: bool, trunc: bool) -> Episode {
        Episode {
            labels: Labels::new(labels.iter().copied()),
            start,
            end,
            ongoing,
            truncated_start: trunc,
            measures: vec![("held_since".into(), (start / 1000) as f64)],
        }
    }

    fn spec(range: Option<(i64, i64, i64)>, time: i64) -> QuerySpec {
        QuerySpec {
            expr: "x".into(),
            range,
            time,
        }
    }

    fn result(value: Value) -> QueryResult {
        QueryResult {
            value,
            warnings: vec![],
            infos: vec![],
        }
    }

    /// The characters of the plot part of a chart row (after `│`).
    fn cells(line: &str) -> Vec<char> {
        line.split_once('│').unwrap().1.chars().collect()
    }

    #[test]
    fn episode_columns_cover_the_episode() {
        // 100 minutes on 101 columns: column c stands for minute c.
        let (t0, t1, w) = (0, 100 * MIN, 101);
        let cols = |s, e, ongoing| episode_cols(&ep(&[], s, e, ongoing, false), t0, t1, w);
        // Steps 20..=29 held; the end is exclusive.
        assert_eq!(cols(20 * MIN, 30 * MIN, false), Some((20, 29)));
        // An ongoing episode holds at the evaluation time: it reaches the right edge.
        assert_eq!(cols(90 * MIN, t1, true), Some((90, 100)));
        assert_eq!(cols(90 * MIN, t1, false), Some((90, 99)));
        // Outside the axis: nothing; partly outside: clipped.
        assert_eq!(cols(-20 * MIN, 0, false), None);
        assert_eq!(cols(200 * MIN, 210 * MIN, false), None);
        assert_eq!(cols(-20 * MIN, 5 * MIN, false), Some((0, 4)));
        assert_eq!(cols(95 * MIN, 120 * MIN, false), Some((95, 100)));
        // A very short episode still gets a column.
        assert_eq!(cols(50 * MIN, 50 * MIN + 1, false), Some((50, 50)));
    }

    #[test]
    fn timeline_row_marks_bars_ongoing_and_truncated_starts() {
        let a = ep(&[], 0, 10 * MIN, false, true);
        let b = ep(&[], 20 * MIN, 30 * MIN, false, false);
        let c = ep(&[], 90 * MIN, 100 * MIN, true, false);
        let row = timeline_row(&[&a, &b, &c], 0, 100 * MIN, 101);
        let s: String = row.iter().collect();
        assert_eq!(row[0], TRUNCATED);
        assert!(row[1..=9].iter().all(|&c| c == BAR), "{s}");
        assert_eq!(row[10], ' ');
        assert!(row[20..=29].iter().all(|&c| c == BAR), "{s}");
        assert!(row[30..90].iter().all(|&c| c == ' '), "{s}");
        assert!(row[90..100].iter().all(|&c| c == BAR), "{s}");
        assert_eq!(
            row[100], ONGOING,
            "an ongoing episode reaches the right edge: {s}"
        );
    }

    #[test]
    fn terminal_timeline_has_one_row_per_label_set() {
        let eps = vec![
            ep(&[("job", "a")], 0, 10 * MIN, false, true),
            ep(&[("job", "a")], 50 * MIN, 60 * MIN, false, false),
            ep(&[("job", "b")], 30 * MIN, 100 * MIN, true, false),
        ];
        let mut out = Vec::new();
        render_terminal(
            &mut out,
            &result(Value::Episodes(eps)),
            &spec(None, 100 * MIN),
            &[],
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("{job=\"a\"}"), "{text}");
        assert!(lines[1].starts_with("{job=\"b\"}"), "{text}");
        let (a, b) = (cells(lines[0]), cells(lines[1]));
        let w = a.len();
        assert_eq!(b.len(), w);
        assert_eq!(a[0], TRUNCATED, "{text}");
        // job b runs from 30 % of the axis to its end, ongoing.
        let start = (0.3 * (w - 1) as f64).round() as usize;
        assert_eq!(b[start - 1], ' ', "{text}");
        assert_eq!(b[start], BAR, "{text}");
        assert_eq!(b[w - 1], ONGOING, "{text}");
        assert!(lines[2].contains('└'), "{text}");
        assert!(text.contains("3 episodes in 2 series"), "{text}");
    }

    #[test]
    fn empty_episodes_say_so() {
        let mut out = Vec::new();
        let res = result(Value::Episodes(vec![]));
        render_terminal(&mut out, &res, &spec(None, 0), &[]).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "(no episodes)\n");
        assert!(render_svg(&res, &spec(None, 0), &[])
            .unwrap()
            .contains("no episodes"));
    }

    #[test]
    fn svg_timeline_has_one_rect_per_episode_and_marks() {
        let eps = vec![
            ep(&[("job", "a")], 0, 10 * MIN, false, true),
            ep(&[("job", "a")], 50 * MIN, 60 * MIN, false, false),
            ep(&[("job", "b<&>")], 30 * MIN, 100 * MIN, true, false),
        ];
        let svg = render_svg(&result(Value::Episodes(eps)), &spec(None, 100 * MIN), &[]).unwrap();
        assert_eq!(svg.matches(r#"class="episode""#).count(), 3, "{svg}");
        assert_eq!(svg.matches(r#"class="ongoing""#).count(), 1, "{svg}");
        assert_eq!(svg.matches(r#"class="truncated""#).count(), 1, "{svg}");
        assert!(svg.contains("{job=&quot;b&lt;&amp;&gt;&quot;}"), "{svg}");
        assert!(svg.trim_end().ends_with("</svg>"));
    }

    fn series_result() -> QueryResult {
        let samples: Vec<(i64, f64)> = (0..=100).map(|k| (k * MIN, (k % 7) as f64)).collect();
        result(Value::Matrix(vec![Series {
            labels: Labels::new([("job", "a")]),
            samples,
        }]))
    }

    #[test]
    fn shade_marks_the_episode_columns_under_and_in_the_plot() {
        let shade = vec![
            ep(&[("job", "a")], 20 * MIN, 30 * MIN, false, false),
            ep(&[("job", "a")], 90 * MIN, 100 * MIN, true, false),
        ];
        let mut out = Vec::new();
        let sp = spec(Some((0, 100 * MIN, MIN)), 100 * MIN);
        render_terminal(&mut out, &series_result(), &sp, &shade).unwrap();
        let text = String::from_utf8(out).unwrap();
        let marker = text
            .lines()
            .find(|l| l.trim_start().starts_with("episodes1 │"))
            .unwrap_or_else(|| panic!("no marker row: {text}"));
        let m = cells(marker);
        let w = m.len();
        let col = |t: i64| col_of(t, 0, 100 * MIN, w);
        // Steps 20..=29 of 0..=100: the columns from 0.2 of the axis to before 0.3; the
        // ongoing one from 0.9 to the end.
        let last = ((0.3 * (w - 1) as f64).ceil() as usize) - 1;
        for (c, &ch) in m.iter().enumerate() {
            let inside = (col(20 * MIN)..=last).contains(&c) || c >= col(90 * MIN);
            assert_eq!(ch != ' ', inside, "column {c}: {marker}");
        }
        assert_eq!(m[w - 1], ONGOING);
        // In the plot, the shaded columns have a background where no point is drawn, and
        // the others none.
        let plot: Vec<Vec<char>> = text.lines().take(18).map(cells).collect();
        let c_in = col(25 * MIN);
        let c_out = col(50 * MIN);
        assert!(plot.iter().any(|r| r[c_in] == SHADED), "{text}");
        assert!(plot.iter().all(|r| r[c_out] != SHADED), "{text}");
        assert!(
            text.contains("episodes1: {job=\"a\"} (2 episodes)"),
            "{text}"
        );
        assert!(text.contains("▶ ongoing"), "{text}");
        assert!(!text.contains("◀ truncated"), "{text}");
    }

    #[test]
    fn svg_shade_draws_one_translucent_rect_per_episode() {
        let shade = vec![
            ep(&[("job", "a")], 20 * MIN, 30 * MIN, false, false),
            ep(&[("job", "b")], 90 * MIN, 100 * MIN, true, false),
            // Outside the chart's range: not drawn.
            ep(&[("job", "b")], 200 * MIN, 210 * MIN, false, false),
        ];
        let sp = spec(Some((0, 100 * MIN, MIN)), 100 * MIN);
        let svg = render_svg(&series_result(), &sp, &shade).unwrap();
        let rects: Vec<&str> = svg
            .lines()
            .filter(|l| l.contains(r#"class="episode""#))
            .collect();
        assert_eq!(rects.len(), 2, "{svg}");
        assert!(rects.iter().all(|r| r.contains("fill-opacity")), "{svg}");
        // The first covers a tenth of the 860-pixel plot from x = 80 + 172.
        assert!(
            rects[0].contains(r#"x="252.0""#) && rects[0].contains(r#"width="86.0""#),
            "{}",
            rects[0]
        );
        assert!(svg.contains("polyline"), "{svg}");
        assert!(
            svg.contains("episodes {job=&quot;b&quot;} (2 episodes)"),
            "{svg}"
        );
    }
}
