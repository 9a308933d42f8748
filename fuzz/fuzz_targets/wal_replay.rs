//! Fuzz target: arbitrary bytes as WAL segments, then `Db::open` on `MemVfs` (replay,
//! torn-tail truncation, damage skipping), a select of everything, `check`, a commit and a
//! flush, and a second open. Errors are fine; a panic, an abort or a hang is a bug.
//!
//! Two ways in: the input as one raw segment, and the input cut into records that are
//! framed with valid checksums (`[type][len lo][len hi] payload...`), so that the fuzzer
//! reaches the payload decoders and the replay logic behind the checksums. The framed
//! stream is split into two segments at an input-chosen record.
//!
//! `cargo fuzz run wal_replay` (from fuzz/).

#![no_main]

use std::path::Path;
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use tsq_storage::vfs::Vfs;
use tsq_storage::{wal, Db, Labels, MatchOp, Matcher, MemVfs};

fn write(vfs: &MemVfs, path: &Path, bytes: &[u8]) {
    let mut f = vfs.create(path).unwrap();
    f.write_all(bytes).unwrap();
    f.sync().unwrap();
}

fn replay(segments: &[Vec<u8>]) {
    let vfs = MemVfs::new();
    let wal_dir = Path::new("/db/wal");
    vfs.create_dir_all(wal_dir).unwrap();
    vfs.create_dir_all(Path::new("/db/blocks")).unwrap();
    for (i, s) in segments.iter().enumerate() {
        write(&vfs, &wal_dir.join(wal::segment_name(i as u64 + 1)), s);
    }
    vfs.sync_dir(wal_dir).unwrap();
    let open = || {
        Db::builder()
            .vfs(Arc::new(vfs.clone()))
            .chunk_samples(16)
            .block_range_ms(60_000)
            .open("/db")
    };
    let Ok(db) = open() else {
        return;
    };
    let _ = db.recovery_notices();
    let all = Matcher::new(MatchOp::Regex, "__name__", ".*", true).unwrap();
    let before = db.select(&[all.clone()], i64::MIN, i64::MAX);
    let _ = db.check();
    let _ = db.label_names();
    let _ = db.info();
    // The recovered database keeps working.
    let mut app = db.appender();
    if let Ok(r) = app.series_ref(&Labels::new([("__name__", "fuzz_after")])) {
        app.add(r, i64::MAX / 2, 1.0);
        let _ = app.commit();
    }
    let flushed = db.flush();
    drop(db);
    // A second open replays what the first one left (truncated tails, a new segment).
    if let Ok(db) = open() {
        let after = db.select(&[all], i64::MIN, i64::MAX);
        if let (Ok(b), Ok(a), Ok(())) = (&before, &after, &flushed) {
            // Everything readable before the flush is still there after it.
            for s in b {
                let found = a.iter().find(|x| x.labels == s.labels);
                assert!(
                    found.is_some(),
                    "series {} lost by flush + reopen",
                    s.labels
                );
                let found = found.unwrap();
                for t in &s.timestamps {
                    assert!(
                        found.timestamps.binary_search(t).is_ok(),
                        "{}@{t} lost by flush + reopen",
                        s.labels
                    );
                }
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    replay(&[data.to_vec()]);
    // Framed records: [type][len u16] payload.
    let mut framed = vec![Vec::new(), Vec::new()];
    let split = data.first().copied().unwrap_or(0) as usize % 4;
    let mut rest = data.get(1..).unwrap_or(&[]);
    let mut k = 0;
    while rest.len() >= 3 {
        let typ = rest[0] % 3; // 0 is an unknown type
        let len = (u16::from_le_bytes([rest[1], rest[2]]) as usize).min(rest.len() - 3);
        let payload = &rest[3..3 + len];
        let seg = usize::from(k >= split);
        wal::frame(&mut framed[seg], typ, payload, 0, 0, 0);
        rest = &rest[3 + len..];
        k += 1;
    }
    // The unframed remainder is a torn tail.
    framed[1].extend_from_slice(rest);
    replay(&framed);
});
