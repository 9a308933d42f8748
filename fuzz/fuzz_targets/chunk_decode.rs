//! Feeds arbitrary bytes to every chunk decoder: an error is fine, a panic, an abort or an
//! allocation beyond the documented bound is a bug.
//!
//! Two ways in: the input as a whole chunk, and the input framed as a version-1 chunk whose
//! codec ids and count come from the first bytes, so that the fuzzer reaches each timestamp
//! and value decoder (plain and zstd-wrapped) without having to discover the framing.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tsq_storage::codec::{
    chunk_info, decode_chunk, decode_timestamps, FORMAT_V1, MAX_CHUNK_SAMPLES,
};

fn put_varint(out: &mut Vec<u8>, mut x: u64) {
    while x >= 0x80 {
        out.push((x as u8) | 0x80);
        x >>= 7;
    }
    out.push(x as u8);
}

fn check(chunk: &[u8]) {
    let (mut ts, mut vals) = (Vec::new(), Vec::new());
    match decode_chunk(chunk, &mut ts, &mut vals) {
        Ok(()) => {
            assert_eq!(ts.len(), vals.len());
            let info = chunk_info(chunk).expect("a chunk that decodes has a header");
            assert_eq!(info.count, ts.len());
            let mut ts2 = Vec::new();
            decode_timestamps(chunk, &mut ts2).expect("timestamps decode too");
            assert_eq!(ts, ts2);
        }
        Err(_) => assert!(
            ts.is_empty() && vals.is_empty(),
            "outputs restored on error"
        ),
    }
    let _ = chunk_info(chunk);
}

fuzz_target!(|data: &[u8]| {
    check(data);
    if data.len() < 4 {
        return;
    }
    // [ts codec][value codec][count lo][count hi] then the two sections, split in the middle.
    let count = usize::from(u16::from_le_bytes([data[2], data[3]])) % (MAX_CHUNK_SAMPLES + 1);
    let rest = &data[4..];
    let (ts_sec, val_sec) = rest.split_at(rest.len() / 2);
    let mut chunk = vec![FORMAT_V1];
    put_varint(&mut chunk, count as u64);
    chunk.push(data[0]);
    put_varint(&mut chunk, ts_sec.len() as u64);
    chunk.extend_from_slice(ts_sec);
    chunk.push(data[1]);
    chunk.extend_from_slice(val_sec);
    check(&chunk);
});
