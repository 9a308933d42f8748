//! Timestamp codecs. Every function here handles `n >= 1` timestamps; empty chunks have no
//! timestamp section at all.

use super::bitpack::{prefix_sum, read_for_block, read_for_header, ForStream, BLOCK};
use super::io::{put_varint, unzigzag, varint_len, zigzag, Reader};
use super::{Candidate, CodecError};

/// Raw: `n` × i64 little-endian.
pub const TS_RAW: u8 = 0;
/// Regular interval: first timestamp (i64 LE) and step (varint); O(1) bytes per chunk.
pub const TS_REGULAR: u8 = 1;
/// First timestamp, then the `n - 1` deltas as an unsigned FOR stream.
pub const TS_DELTA: u8 = 2;
/// First timestamp, first delta (varint), then the `n - 2` delta-of-deltas as a signed FOR
/// stream.
pub const TS_DOD: u8 = 3;
/// Jitter around a grid: first timestamp, step (varint), then the `n - 1` residuals
/// `t[i] - (t[0] + i*step)` as a signed FOR stream.
pub const TS_GRID: u8 = 4;
/// A grid with exceptions: first timestamp, step (varint), then the few timestamps off the
/// grid, each as a point (the grid goes on) or a shift (the grid restarts from it).
pub const TS_GRID_EXC: u8 = 5;

/// Name of a timestamp codec id (without the zstd flag).
pub(crate) fn ts_codec_name(id: u8) -> Option<&'static str> {
    Some(match id {
        TS_RAW => "raw",
        TS_REGULAR => "regular",
        TS_DELTA => "delta",
        TS_DOD => "delta-of-delta",
        TS_GRID => "grid-jitter",
        TS_GRID_EXC => "grid-exceptions",
        _ => return None,
    })
}

struct Raw<'a>(&'a [i64]);
impl Candidate for Raw<'_> {
    fn id(&self) -> u8 {
        TS_RAW
    }
    fn estimate(&self) -> Option<usize> {
        Some(self.0.len() * 8)
    }
    fn write(&self, out: &mut Vec<u8>) {
        for t in self.0 {
            out.extend_from_slice(&t.to_le_bytes());
        }
    }
}

struct Regular {
    t0: i64,
    step: u64,
}
impl Candidate for Regular {
    fn id(&self) -> u8 {
        TS_REGULAR
    }
    fn estimate(&self) -> Option<usize> {
        Some(8 + varint_len(self.step))
    }
    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.t0.to_le_bytes());
        put_varint(out, self.step);
    }
}

/// A prefix of fixed fields followed by one FOR stream.
struct Prefixed<'a> {
    id: u8,
    t0: i64,
    varint: Option<u64>,
    stream: ForStream<'a>,
}
impl Candidate for Prefixed<'_> {
    fn id(&self) -> u8 {
        self.id
    }
    fn estimate(&self) -> Option<usize> {
        Some(8 + self.varint.map_or(0, varint_len) + self.stream.len())
    }
    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.t0.to_le_bytes());
        if let Some(v) = self.varint {
            put_varint(out, v);
        }
        self.stream.write(out);
    }
}

/// `grid-exceptions`: the grid `g[0] = t[0]`, `g[i] = g[i-1] + step` gives every timestamp
/// but a few exceptions `t[i] = g[i] + r`; a *point* exception leaves the grid as it was, a
/// *shift* moves it (`g[i] = t[i]`). Scrapes on time but for a few late ones are points; a
/// scrape loop that slips by some milliseconds is a shift.
struct GridExceptions<'a> {
    ts: &'a [i64],
    step: u64,
    /// Exact section length; `None` when some residual is too large to encode or the
    /// section would not be shorter than the budget it was sized against.
    len: Option<usize>,
}

impl<'a> GridExceptions<'a> {
    /// Sizes the section for `step`, giving up (`len: None`) as soon as it reaches `budget`
    /// bytes: mostly, another codec is already that short.
    fn new(ts: &'a [i64], step: u64, budget: usize) -> GridExceptions<'a> {
        let mut len = 8 + varint_len(step);
        let mut count = 0u64;
        let ok = grid_exceptions(ts, step, |gap, v| {
            let Some(v) = v else { return false };
            len += varint_len(gap) + varint_len(v);
            count += 1;
            len < budget
        });
        len += varint_len(count);
        GridExceptions {
            ts,
            step,
            len: (ok && len < budget).then_some(len),
        }
    }
}

/// Walks the exceptions of `ts` on the grid of `step`, calling `f(gap, v)` for each (`gap`:
/// samples since the previous exception, `v = zigzag(r) << 1 | shift`, `None` when the
/// residual's zigzag needs all 64 bits and cannot be shifted) until it returns false;
/// returns false if it did.
fn grid_exceptions(ts: &[i64], step: u64, mut f: impl FnMut(u64, Option<u64>) -> bool) -> bool {
    let n = ts.len();
    let mut g = ts[0];
    let mut prev = 0usize;
    for i in 1..n {
        g = g.wrapping_add(step as i64);
        let t = ts[i];
        if t == g {
            continue;
        }
        // A point when the next timestamp is back on the grid (or there is none).
        let shift = i + 1 < n && ts[i + 1] != g.wrapping_add(step as i64);
        let z = zigzag(t.wrapping_sub(g));
        let v = (z >> 63 == 0).then_some((z << 1) | u64::from(shift));
        if !f((i - prev - 1) as u64, v) {
            return false;
        }
        prev = i;
        if shift {
            g = t;
        }
    }
    true
}

impl Candidate for GridExceptions<'_> {
    fn id(&self) -> u8 {
        TS_GRID_EXC
    }
    fn estimate(&self) -> Option<usize> {
        self.len
    }
    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.ts[0].to_le_bytes());
        put_varint(out, self.step);
        let mut body = Vec::new();
        let mut count = 0u64;
        grid_exceptions(self.ts, self.step, |gap, v| {
            // Sized before: every residual fits.
            put_varint(&mut body, gap);
            put_varint(&mut body, v.unwrap_or(0));
            count += 1;
            true
        });
        put_varint(out, count);
        out.extend_from_slice(&body);
    }
}

/// The most common of up to 32 deltas sampled evenly (the first of equally common ones),
/// and how many of the sample equal it.
fn sampled_mode(deltas: &[u64]) -> (u64, usize) {
    let k = deltas.len().min(32);
    if k == 0 {
        return (0, 0);
    }
    let sample: Vec<u64> = (0..k).map(|i| deltas[i * deltas.len() / k]).collect();
    let mut best = (0usize, sample[0]);
    for &d in &sample {
        let c = sample.iter().filter(|&&x| x == d).count();
        if c > best.0 {
            best = (c, d);
        }
    }
    (best.1, best.0)
}

/// Chooses the smallest timestamp codec for `ts` (`ts.len() >= 1`), or the codec `force`
/// names if it is eligible, appends its section to `out` and returns its id (`None`: the
/// forced codec is not eligible, nothing was written). Timestamps that are not strictly
/// increasing only get the raw codec, so that whatever the caller passed decodes back.
pub(crate) fn encode_ts(ts: &[i64], force: Option<u8>, out: &mut Vec<u8>) -> Option<u8> {
    let n = ts.len();
    let t0 = ts[0];
    let pick = |c: &dyn Candidate, out: &mut Vec<u8>| match force {
        Some(f) if f != c.id() => None,
        _ => {
            c.estimate()?;
            Some(write_cand(c, out))
        }
    };
    if force == Some(TS_RAW) || !ts.windows(2).all(|w| w[0] < w[1]) {
        return pick(&Raw(ts), out);
    }
    // Deltas as u64 are exact: the span of strictly increasing i64s is below 2^64.
    let deltas: Vec<u64> = ts
        .windows(2)
        .map(|w| w[1].wrapping_sub(w[0]) as u64)
        .collect();
    let d0 = deltas.first().copied().unwrap_or(0);
    if deltas.iter().all(|&d| d == d0) && (force.is_none() || force == Some(TS_REGULAR)) {
        return pick(&Regular { t0, step: d0 }, out);
    }
    let dods: Vec<u64> = deltas.windows(2).map(|w| w[1].wrapping_sub(w[0])).collect();
    let span = (i128::from(ts[n - 1]) - i128::from(t0)) as u128;
    let steps = (n as u128 - 1).max(1);
    // Rounded to the nearest; fits u64 because span < 2^64.
    let step = ((span + steps / 2) / steps) as u64;
    let mut grid_t = t0;
    let resid: Vec<u64> = ts[1..]
        .iter()
        .map(|&t| {
            grid_t = grid_t.wrapping_add(step as i64);
            t.wrapping_sub(grid_t) as u64
        })
        .collect();
    let cands: [&dyn Candidate; 4] = [
        &Raw(ts),
        &Prefixed {
            id: TS_DELTA,
            t0,
            varint: None,
            stream: ForStream::new(&deltas, false),
        },
        &Prefixed {
            id: TS_DOD,
            t0,
            varint: Some(d0),
            stream: ForStream::new(&dods, true),
        },
        &Prefixed {
            id: TS_GRID,
            t0,
            varint: Some(step),
            stream: ForStream::new(&resid, true),
        },
    ];
    // `grid-exceptions` only has to beat the others (never raw): sizing it stops at their
    // best. Its grid: the usual step (most deltas equal it when scrapes are mostly on
    // time), or the mean step when that is shorter.
    let best = match force {
        None => super::smallest(&cands),
        Some(TS_GRID_EXC) => cands[0],
        Some(f) => {
            return cands
                .iter()
                .find(|c| c.id() == f)
                .and_then(|c| pick(*c, out))
        }
    };
    let (mode, agree) = sampled_mode(&deltas);
    // Each exception takes two bytes or more, and a late scrape makes two deltas differ
    // from the step: unless most deltas equal it, the other codecs win anyway.
    if force.is_none() && agree * 2 < deltas.len().min(32) {
        return pick(best, out);
    }
    let mut budget = best.estimate().unwrap_or(usize::MAX).min(8 * n + 1);
    let mut grid_exc = GridExceptions::new(ts, mode, budget);
    if step != grid_exc.step {
        if let Some(l) = grid_exc.len {
            budget = l;
        }
        let other = GridExceptions::new(ts, step, budget);
        if other.len.is_some() {
            grid_exc = other;
        }
    }
    match (force, grid_exc.len) {
        (None, Some(_)) | (Some(_), _) => pick(&grid_exc, out),
        (None, None) => pick(best, out),
    }
}

fn write_cand(c: &dyn Candidate, out: &mut Vec<u8>) -> u8 {
    c.write(out);
    c.id()
}

/// Decodes a timestamp section of `n >= 1` samples, appending to `out`.
pub(crate) fn decode_ts(
    id: u8,
    sec: &[u8],
    n: usize,
    out: &mut Vec<i64>,
) -> Result<(), CodecError> {
    let mut r = Reader::new(sec);
    let start = out.len();
    match id {
        TS_RAW => {
            if sec.len() != n * 8 {
                return Err(CodecError(
                    "raw timestamp section has the wrong length".into(),
                ));
            }
            out.extend(sec.chunks_exact(8).map(|c| {
                let mut a = [0u8; 8];
                a.copy_from_slice(c);
                i64::from_le_bytes(a)
            }));
            return Ok(());
        }
        TS_REGULAR => {
            let t0 = r.u64_le()? as i64;
            let step = r.varint()?;
            r.finish()?;
            if n > 1 {
                let last = i128::from(t0) + i128::from(step) * (n as i128 - 1);
                if step == 0 || last > i128::from(i64::MAX) {
                    return Err(CodecError("regular timestamps out of range".into()));
                }
            }
            let step = step as i64;
            // Offsets of a block once, then one vector add per value of each block.
            let mut offs = [0i64; BLOCK];
            let mut acc = 0i64;
            for o in offs.iter_mut() {
                *o = acc;
                acc = acc.wrapping_add(step);
            }
            out.reserve(n);
            let mut base = t0;
            let mut left = n;
            while left > 0 {
                let len = left.min(BLOCK);
                out.extend(offs[..len].iter().map(|&o| base.wrapping_add(o)));
                base = base.wrapping_add((BLOCK as i64).wrapping_mul(step));
                left -= len;
            }
            return Ok(());
        }
        TS_GRID_EXC => {
            let t0 = r.u64_le()? as i64;
            let step = r.varint()? as i64;
            let x = r.varint()?;
            // Every exception takes at least two bytes.
            if x > (n as u64).saturating_sub(1) || x > (r.remaining() / 2) as u64 {
                return Err(CodecError("grid-exceptions: too many exceptions".into()));
            }
            out.reserve(n);
            out.push(t0);
            let (mut g, mut i) = (t0, 1usize);
            for _ in 0..x {
                let at = usize::try_from(r.varint()?)
                    .ok()
                    .and_then(|gap| i.checked_add(gap))
                    .filter(|&at| at < n)
                    .ok_or_else(|| CodecError("grid-exceptions: index out of range".into()))?;
                while i < at {
                    g = g.wrapping_add(step);
                    out.push(g);
                    i += 1;
                }
                let v = r.varint()?;
                g = g.wrapping_add(step);
                let t = g.wrapping_add(unzigzag(v >> 1));
                out.push(t);
                if v & 1 != 0 {
                    g = t;
                }
                i += 1;
            }
            while i < n {
                g = g.wrapping_add(step);
                out.push(g);
                i += 1;
            }
            r.finish()?;
            if !strictly_increasing(&out[start..]) {
                return Err(CodecError(
                    "decoded timestamps are not strictly increasing".into(),
                ));
            }
            return Ok(());
        }
        TS_DELTA | TS_DOD | TS_GRID => {}
        _ => return Err(CodecError(format!("unknown timestamp codec {id}"))),
    }
    let t0 = r.u64_le()? as i64;
    out.resize(start + n, 0);
    let dst = &mut out[start..];
    dst[0] = t0;
    let mut buf = [0u64; BLOCK];
    match id {
        TS_DELTA => {
            let g = read_for_header(&mut r)?;
            let mut t = t0;
            for block in dst[1..].chunks_mut(BLOCK) {
                let b = &mut buf[..block.len()];
                read_for_block(&mut r, false, g, b)?;
                for (o, &d) in block.iter_mut().zip(b.iter()) {
                    *o = d as i64;
                }
                prefix_sum(block, &mut t);
            }
        }
        TS_DOD => {
            let mut d = r.varint()? as i64;
            let mut t = t0;
            if n >= 2 {
                t = t.wrapping_add(d);
                dst[1] = t;
            } else if d != 0 {
                return Err(CodecError("delta-of-delta: stray first delta".into()));
            }
            let g = read_for_header(&mut r)?;
            if n > 2 {
                for block in dst[2..].chunks_mut(BLOCK) {
                    let b = &mut buf[..block.len()];
                    read_for_block(&mut r, true, g, b)?;
                    for (o, &dd) in block.iter_mut().zip(b.iter()) {
                        *o = dd as i64;
                    }
                    prefix_sum(block, &mut d);
                    prefix_sum(block, &mut t);
                }
            }
        }
        _ => {
            let step = r.varint()? as i64;
            let g = read_for_header(&mut r)?;
            // Grid offsets of a block once: t = base + (i + 1) * step + residual.
            let mut offs = [0i64; BLOCK];
            let mut acc = 0i64;
            for o in offs.iter_mut() {
                acc = acc.wrapping_add(step);
                *o = acc;
            }
            let mut base = t0;
            for block in dst[1..].chunks_mut(BLOCK) {
                let b = &mut buf[..block.len()];
                read_for_block(&mut r, true, g, b)?;
                for ((o, &res), &off) in block.iter_mut().zip(b.iter()).zip(offs.iter()) {
                    *o = base.wrapping_add(off).wrapping_add(res as i64);
                }
                base = base.wrapping_add((BLOCK as i64).wrapping_mul(step));
            }
        }
    }
    r.finish()?;
    if !strictly_increasing(&out[start..]) {
        return Err(CodecError(
            "decoded timestamps are not strictly increasing".into(),
        ));
    }
    Ok(())
}

fn strictly_increasing(ts: &[i64]) -> bool {
    // Branch-free fold so that it vectorises.
    ts.windows(2).fold(true, |ok, w| ok & (w[0] < w[1]))
}
