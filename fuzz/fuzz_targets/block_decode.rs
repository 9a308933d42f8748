//! Fuzz target: arbitrary bytes written as a block file through `MemVfs`, then opened,
//! selected, decoded and checked. An error is fine; a panic, an abort or a hang is a bug
//! (docs/RELIABILITY.md, "Safe reads").
//!
//! Three ways in: the input as the whole file; the input with its version 1 framing
//! repaired (header and footer magics, the version, every chunk checksum named by the
//! chunk metas, the index and footer checksums), so that the fuzzer reaches the index
//! parser, the postings and the chunk decoders instead of stopping at a checksum; and the
//! input framed as version 3 (magics, version, index and footer checksums: the chunk metas
//! are inside the compressed index there, so chunk checksums are left as they are), which
//! takes mutations of a format 3 seed through the index decompression and parser.
//!
//! `cargo fuzz run block_decode` (from fuzz/).

#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use tsq_storage::block::Block;
use tsq_storage::vfs::Vfs;
use tsq_storage::{MatchOp, Matcher, MemVfs};

const FOOTER: usize = 64;
const META: usize = 80;

fn crc32(data: &[u8]) -> u32 {
    // CRC-32 (IEEE), as crc32fast computes it; bitwise is plenty for fuzz inputs.
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

fn u64_at(d: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(d[at..at + 8].try_into().unwrap())
}

fn u32_at(d: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(d[at..at + 4].try_into().unwrap())
}

/// Makes the framing valid: magics, version, chunk crcs, index crc, footer crc.
fn repair(mut d: Vec<u8>) -> Vec<u8> {
    if d.len() < 16 + FOOTER {
        d.resize(16 + FOOTER, 0);
    }
    d[..8].copy_from_slice(b"TSQBLOCK");
    d[8..12].copy_from_slice(&1u32.to_le_bytes());
    let len = d.len();
    let f = len - FOOTER;
    d[f + 56..].copy_from_slice(b"TSQBEND1");
    let index_off = u64_at(&d, f) as usize;
    let meta_off = u64_at(&d, f + 8) as usize;
    let n_chunks = u64_at(&d, f + 16) as usize;
    // Chunk checksums, for the metas that lie inside the file.
    if meta_off <= f {
        let n = n_chunks.min((f - meta_off) / META);
        for i in 0..n {
            let m = meta_off + i * META;
            let off = u64_at(&d, m + 16) as usize;
            let clen = u32_at(&d, m + 24) as usize;
            if let Some(chunk) = off.checked_add(clen).and_then(|end| d.get(off..end)) {
                let c = crc32(chunk);
                d[m + 72..m + 76].copy_from_slice(&c.to_le_bytes());
            }
        }
    }
    frame(d, 1)
}

/// Sets the magics and `version`, then the index and footer checksums.
fn frame(mut d: Vec<u8>, version: u32) -> Vec<u8> {
    if d.len() < 16 + FOOTER {
        d.resize(16 + FOOTER, 0);
    }
    d[..8].copy_from_slice(b"TSQBLOCK");
    d[8..12].copy_from_slice(&version.to_le_bytes());
    let f = d.len() - FOOTER;
    d[f + 56..].copy_from_slice(b"TSQBEND1");
    let index_off = u64_at(&d, f) as usize;
    if index_off <= f {
        let c = crc32(&d[index_off..f]);
        d[f + 48..f + 52].copy_from_slice(&c.to_le_bytes());
    }
    let c = crc32(&d[f..f + 52]);
    d[f + 52..f + 56].copy_from_slice(&c.to_le_bytes());
    d
}

fn exercise(bytes: &[u8]) {
    let vfs = MemVfs::new();
    let dir = Path::new("/db/blocks");
    vfs.create_dir_all(dir).unwrap();
    let mut f = vfs.create(&dir.join("x.blk")).unwrap();
    f.write_all(bytes).unwrap();
    f.sync().unwrap();
    let Ok(block) = Block::open(&vfs, dir, "x.blk") else {
        return;
    };
    let _ = block.stats();
    let _ = block.label_names();
    let _ = block.label_values("__name__");
    let _ = block.check();
    let matchers = [
        vec![],
        vec![Matcher::equal("__name__", "m")],
        vec![Matcher::new(MatchOp::Regex, "s", ".+", true).unwrap()],
        vec![Matcher::new(MatchOp::NotEqual, "a", "", true).unwrap()],
    ];
    for ms in &matchers {
        let Ok(series) = block.select(ms) else {
            continue;
        };
        for s in series {
            let (mut ts, mut vals) = (Vec::new(), Vec::new());
            for m in s.chunks {
                let _ = block.decode_chunk(m, &mut ts, &mut vals);
                assert_eq!(ts.len(), vals.len());
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    exercise(data);
    exercise(&repair(data.to_vec()));
    exercise(&frame(data.to_vec(), 3));
});
