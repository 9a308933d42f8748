//! Encodes samples built from the fuzz input with the automatic codec choice and with each
//! forced codec, and checks that decoding gives back the same timestamps and value bits.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tsq_storage::codec::{decode_chunk, encode_chunk, encode_chunk_forced, ForceCodecs};

fn u64_at(data: &[u8], i: usize) -> u64 {
    let mut a = [0u8; 8];
    for (k, b) in a.iter_mut().enumerate() {
        *b = data.get(i + k).copied().unwrap_or(0);
    }
    u64::from_le_bytes(a)
}

fn check(ts: &[i64], vals: &[f64], chunk: &[u8]) {
    let (mut t2, mut v2) = (Vec::new(), Vec::new());
    decode_chunk(chunk, &mut t2, &mut v2).expect("own chunk decodes");
    assert_eq!(t2, ts);
    assert!(v2.iter().zip(vals).all(|(a, b)| a.to_bits() == b.to_bits()));
    assert_eq!(v2.len(), vals.len());
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    // data[0]: timestamp shape, data[1]: value shape, data[2]: forced codecs; then 9 bytes a
    // sample (one for the timestamp step, eight for the value).
    let (ts_shape, val_shape, force) = (data[0], data[1], data[2]);
    let body = &data[3..];
    let n = body.len() / 9;
    let mut ts = Vec::with_capacity(n);
    let mut vals = Vec::with_capacity(n);
    let mut t = i64::from_le_bytes(u64_at(body, 0).to_le_bytes()) >> (ts_shape % 64);
    let mut prev = 0.0f64;
    for i in 0..n {
        let s = &body[i * 9..i * 9 + 9];
        let step = match ts_shape % 4 {
            0 => 15_000,
            1 => 15_000 + i64::from(s[0] % 11) - 5,
            2 => 1 + i64::from(s[0]),
            _ => 1 + (i64::from(s[0]) << (ts_shape % 48)),
        };
        if i > 0 {
            match t.checked_add(step) {
                Some(x) => t = x,
                None => break,
            }
        }
        let bits = u64_at(s, 1);
        let v = match val_shape % 5 {
            0 => f64::from_bits(bits),
            1 => (bits % 1_000_000) as f64 / 10f64.powi(i32::from(val_shape % 8)),
            2 => prev + (bits % 1000) as f64,
            3 => prev + f64::from_bits(bits & 0x3fff_ffff_ffff_ffff).min(1e3) * 1e-3,
            _ => [
                0.0,
                -0.0,
                f64::NAN,
                f64::INFINITY,
                f64::from_bits(0x7ff0_0000_0000_0002),
            ][(bits % 5) as usize],
        };
        prev = if v.is_finite() { v } else { 0.0 };
        ts.push(t);
        vals.push(v);
    }
    let mut chunk = Vec::new();
    encode_chunk(&ts, &vals, &mut chunk);
    check(&ts, &vals, &chunk);
    let forced = ForceCodecs {
        ts: (force & 0x08 != 0).then_some(force % 8),
        values: (force & 0x80 != 0).then_some((force >> 4) % 8),
        zstd: [None, Some(false), Some(true), None][usize::from(force >> 6) % 4],
    };
    let mut chunk = Vec::new();
    if encode_chunk_forced(&ts, &vals, forced, &mut chunk).is_ok() {
        check(&ts, &vals, &chunk);
    }
});
