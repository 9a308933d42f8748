//! Corruption table: each damaged artefact, what must be reported, and what must survive.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tsq_storage::{Db, Error, Labels, Matcher, MemVfs, Vfs};

fn open(vfs: &MemVfs) -> tsq_storage::Result<Db> {
    Db::builder().vfs(Arc::new(vfs.clone())).open("/db")
}

fn write_batches(db: &Db, series: &[&str], batches: i64) {
    for b in 0..batches {
        let mut app = db.appender();
        for s in series {
            let r = app.series_ref(&Labels::new([("__name__", *s)])).unwrap();
            for k in 0..10 {
                app.add(r, b * 100 + k, (b * 100 + k) as f64);
            }
        }
        app.commit().unwrap();
    }
}

fn count(db: &Db, name: &str) -> tsq_storage::Result<usize> {
    Ok(db
        .select(&[Matcher::equal("__name__", name)], i64::MIN, i64::MAX)?
        .iter()
        .map(|s| s.timestamps.len())
        .sum())
}

fn files(vfs: &MemVfs, dir: &str) -> Vec<PathBuf> {
    vfs.list(Path::new(dir))
        .unwrap()
        .into_iter()
        .map(|n| Path::new(dir).join(n))
        .collect()
}

#[test]
fn wal_record_damaged_in_the_middle_loses_that_batch_only() {
    let vfs = MemVfs::new();
    let db = open(&vfs).unwrap();
    write_batches(&db, &["a"], 5);
    drop(db);
    let seg = files(&vfs, "/db/wal").pop().unwrap();
    let len = vfs.len(&seg).unwrap();
    // The segment starts with an epoch record (a header and a checksum, no payload); the
    // batches after it are about equal-sized: damage the payload of the third.
    let epoch = tsq_storage::wal::epoch_record().len() as u64;
    let rec = (len - epoch) / 5;
    vfs.flip_bit(&seg, (epoch + 2 * rec + 40) * 8).unwrap();
    let db = open(&vfs).unwrap();
    assert_eq!(count(&db, "a").unwrap(), 40);
    let notices = db.recovery_notices();
    assert_eq!(notices.len(), 1, "{notices:?}");
    assert!(
        notices[0].message.contains("10 samples") && notices[0].message.contains("[200, 209]"),
        "{:?}",
        notices[0]
    );
}

#[test]
fn torn_wal_tail_is_truncated_with_a_notice() {
    let vfs = MemVfs::new();
    let db = open(&vfs).unwrap();
    write_batches(&db, &["a"], 3);
    drop(db);
    let seg = files(&vfs, "/db/wal").pop().unwrap();
    let len = vfs.len(&seg).unwrap();
    vfs.truncate(&seg, len - 7).unwrap();
    let db = open(&vfs).unwrap();
    assert_eq!(count(&db, "a").unwrap(), 20);
    assert!(db.recovery_notices()[0].message.contains("torn tail"));
    drop(db);
    // Truncated: the next open is clean.
    let db = open(&vfs).unwrap();
    assert!(
        db.recovery_notices().is_empty(),
        "{:?}",
        db.recovery_notices()
    );
    assert_eq!(count(&db, "a").unwrap(), 20);
}

#[test]
fn damaged_chunk_fails_queries_that_touch_it_and_spares_the_rest() {
    let vfs = MemVfs::new();
    let db = open(&vfs).unwrap();
    write_batches(&db, &["a", "b"], 3);
    db.flush().unwrap();
    drop(db);
    let block = files(&vfs, "/db/blocks").pop().unwrap();
    // The first chunk starts right after the 16-byte header and belongs to series "a".
    vfs.flip_bit(&block, 20 * 8).unwrap();
    let db = open(&vfs).unwrap();
    let err = count(&db, "a").unwrap_err();
    assert!(matches!(err, Error::ChecksumMismatch { .. }), "{err}");
    assert!(
        err.to_string().contains(&block.display().to_string()),
        "{err}"
    );
    assert_eq!(count(&db, "b").unwrap(), 30);
    let problems = db.check();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].contains("__name__=\"a\"") || problems[0].contains("a"),
        "{problems:?}"
    );
}

#[test]
fn damaged_block_index_is_an_error_not_data() {
    let vfs = MemVfs::new();
    let db = open(&vfs).unwrap();
    write_batches(&db, &["a", "b"], 3);
    db.flush().unwrap();
    drop(db);
    let block = files(&vfs, "/db/blocks").pop().unwrap();
    let len = vfs.len(&block).unwrap();
    // Inside the chunk-meta section, just before the 64-byte footer.
    vfs.flip_bit(&block, (len - 64 - 30) * 8).unwrap();
    let db = open(&vfs).unwrap();
    assert!(count(&db, "a").is_err());
    assert!(!db.check().is_empty());
}

#[test]
fn damaged_manifest_refuses_to_open_with_a_clear_error() {
    let vfs = MemVfs::new();
    let db = open(&vfs).unwrap();
    write_batches(&db, &["a"], 2);
    db.flush().unwrap();
    drop(db);
    vfs.flip_bit(Path::new("/db/MANIFEST"), 3 * 8).unwrap();
    let err = open(&vfs).err().expect("must fail");
    assert!(err.to_string().contains("MANIFEST"), "{err}");
}

#[test]
fn missing_manifest_with_blocks_refuses_to_open_instead_of_deleting_them() {
    let vfs = MemVfs::new();
    let db = open(&vfs).unwrap();
    write_batches(&db, &["a"], 2);
    db.flush().unwrap();
    drop(db);
    vfs.remove_file(Path::new("/db/MANIFEST")).unwrap();
    let blocks_before = files(&vfs, "/db/blocks");
    assert!(!blocks_before.is_empty());
    let err = open(&vfs).err().expect("must fail");
    assert!(err.to_string().contains("MANIFEST"), "{err}");
    assert_eq!(
        files(&vfs, "/db/blocks"),
        blocks_before,
        "blocks must be left alone"
    );
}

/// RELIABILITY.md bug 4: a checksum-valid WAL record declaring series id 4,000,000,000 made
/// replay allocate ~500 GB of placeholder series and abort. Since WAL ids are only keys of a
/// map during replay (series-id epochs, docs/format/wal.md), such an id allocates nothing:
/// the record replays like any other.
#[test]
fn hostile_series_id_in_a_valid_wal_record_allocates_nothing() {
    use tsq_storage::wal;
    let vfs = MemVfs::new();
    drop(open(&vfs).unwrap());
    let mut payload = Vec::new();
    let (c, a, b) = wal::encode_batch(
        &mut payload,
        &[(4_000_000_000, Labels::new([("__name__", "x")]))],
        &[],
        &[(4_000_000_000, 1, 1.0)],
    );
    let mut rec = Vec::new();
    wal::frame(&mut rec, wal::REC_BATCH, &payload, c, a, b);
    let seg = Path::new("/db/wal").join(wal::segment_name(99));
    let mut f = vfs.create(&seg).unwrap();
    f.write_all(&rec).unwrap();
    f.sync().unwrap();
    drop(f);
    let db = open(&vfs).unwrap();
    assert_eq!(count(&db, "x").unwrap(), 1);
    assert!(db.recovery_notices().is_empty());
}

/// Series whose declaration was lost to damage are dropped (their samples reported); a flush
/// starts a new epoch, and the database reopens with everything else intact. (Before
/// epochs, the lost ids were kept as placeholders that every checkpoint re-declared.)
#[test]
fn placeholders_for_lost_declarations_survive_flush_and_reopen() {
    let vfs = MemVfs::new();
    let db = open(&vfs).unwrap();
    write_batches(&db, &["a"], 1);
    // One batch declaring 1,000 series, then one declaring "c".
    let names: Vec<String> = (0..1000).map(|i| format!("lost_{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    write_batches(&db, &refs, 1);
    write_batches(&db, &["c"], 1);
    drop(db);
    // Damage the middle record (the big one): its declarations are lost.
    let seg = files(&vfs, "/db/wal").pop().unwrap();
    let len = vfs.len(&seg).unwrap();
    vfs.flip_bit(&seg, (len / 2) * 8).unwrap();
    let db = open(&vfs).unwrap();
    assert_eq!(count(&db, "a").unwrap(), 10);
    assert_eq!(count(&db, "c").unwrap(), 10);
    assert_eq!(count(&db, "lost_7").unwrap(), 0);
    // Checkpoint: blocks written, old segments removed, a new segment re-declares series.
    db.flush().unwrap();
    write_batches(&db, &["d"], 1);
    drop(db);
    let db = open(&vfs).unwrap();
    assert_eq!(count(&db, "c").unwrap(), 10);
    assert_eq!(count(&db, "d").unwrap(), 10);
    // The damaged segment went away with the flush: nothing left to report.
    assert_eq!(db.check(), Vec::<String>::new());
}

/// The repair path of docs/format/manifest.md: a damaged manifest is rebuilt from the blocks,
/// which are all intact; the old one is kept aside; what the WAL holds replays as usual.
#[test]
fn repair_rebuilds_a_damaged_manifest_from_the_blocks() {
    let vfs = MemVfs::new();
    let db = open(&vfs).unwrap();
    write_batches(&db, &["a", "b"], 3);
    db.flush().unwrap();
    write_batches(&db, &["c"], 1); // stays in the WAL
    drop(db);
    vfs.flip_bit(Path::new("/db/MANIFEST"), 3 * 8).unwrap();
    assert!(open(&vfs).is_err());
    let report = Db::repair_with(Arc::new(vfs.clone()), Path::new("/db"), false).unwrap();
    assert!(!report.already_intact);
    assert_eq!(report.kept.len(), 1);
    assert_eq!(report.kept[0].2, 60, "{report:?}");
    assert!(report.moved.is_empty());
    assert!(vfs.exists(Path::new("/db/MANIFEST.damaged")));
    let db = open(&vfs).unwrap();
    assert_eq!(count(&db, "a").unwrap(), 30);
    assert_eq!(count(&db, "b").unwrap(), 30);
    assert_eq!(count(&db, "c").unwrap(), 10);
    assert_eq!(db.check(), Vec::<String>::new());
    drop(db);
    // Repairing an intact database changes nothing.
    let before = vfs.read(Path::new("/db/MANIFEST")).unwrap();
    let report = Db::repair_with(Arc::new(vfs.clone()), Path::new("/db"), false).unwrap();
    assert!(report.already_intact);
    assert_eq!(vfs.read(Path::new("/db/MANIFEST")).unwrap(), before);
}

/// A lost manifest and a damaged block: the block is moved to `damaged/` (not deleted), the
/// other blocks come back, and the repaired database checks clean.
#[test]
fn repair_moves_damaged_blocks_aside_and_keeps_the_rest() {
    let vfs = MemVfs::new();
    let db = open(&vfs).unwrap();
    // Two 2-hour block ranges: samples at 0.. and at 3h...
    for (name, base) in [("early", 0i64), ("late", 3 * 3_600_000)] {
        let mut app = db.appender();
        let r = app.series_ref(&Labels::new([("__name__", name)])).unwrap();
        for k in 0..50 {
            app.add(r, base + k * 1000, k as f64);
        }
        app.commit().unwrap();
    }
    db.flush().unwrap();
    drop(db);
    let mut blocks = files(&vfs, "/db/blocks");
    blocks.sort();
    assert_eq!(blocks.len(), 2, "{blocks:?}");
    vfs.remove_file(Path::new("/db/MANIFEST")).unwrap();
    // Damage the later block's chunk data (just after its 16-byte header).
    vfs.flip_bit(&blocks[1], 20 * 8).unwrap();
    let report = Db::repair_with(Arc::new(vfs.clone()), Path::new("/db"), false).unwrap();
    assert_eq!(report.kept.len(), 1, "{report:?}");
    assert_eq!(report.moved.len(), 1, "{report:?}");
    assert_eq!(report.old_manifest, None);
    let moved = Path::new("/db/damaged").join(blocks[1].file_name().unwrap());
    assert!(
        vfs.exists(&moved),
        "the damaged block is kept for inspection"
    );
    let db = open(&vfs).unwrap();
    assert_eq!(count(&db, "early").unwrap(), 50);
    assert_eq!(count(&db, "late").unwrap(), 0);
    assert_eq!(db.check(), Vec::<String>::new());
}

/// An epoch record is the first record of a segment the writer starts afresh; if damage
/// takes it, replay must not read the next epoch's ids with the previous epoch's meaning.
/// Here the two processes name the same series by different ids (the first created an
/// unused series first): with the second segment's epoch record damaged, the database
/// still opens, reports the damage, and returns every sample under its own series.
#[test]
fn damaged_epoch_record_does_not_mix_up_series_ids() {
    let write = |db: &Db, order: &[&str], t0: i64| {
        let mut app = db.appender();
        for name in order {
            let r = app.series_ref(&Labels::new([("__name__", *name)])).unwrap();
            let base = if *name == "a" { 1000.0 } else { 2000.0 };
            for k in 0..10 {
                app.add(r, t0 + k, base + (t0 + k) as f64);
            }
        }
        app.commit().unwrap();
    };
    let vfs = MemVfs::new();
    let db = open(&vfs).unwrap();
    db.series_ref(&Labels::new([("__name__", "unused")]))
        .unwrap();
    write(&db, &["a", "b"], 0);
    drop(db);
    let db = open(&vfs).unwrap();
    write(&db, &["b", "a"], 100);
    drop(db);
    let segs = files(&vfs, "/db/wal");
    assert_eq!(segs.len(), 2);
    vfs.flip_bit(&segs[1], 3 * 8).unwrap();
    let db = open(&vfs).unwrap();
    assert!(!db.recovery_notices().is_empty());
    for (name, base) in [("a", 1000.0), ("b", 2000.0)] {
        let got = db
            .select(&[Matcher::equal("__name__", name)], i64::MIN, i64::MAX)
            .unwrap();
        assert_eq!(got.len(), 1, "{name}");
        let want: Vec<i64> = (0..10).chain(100..110).collect();
        assert_eq!(got[0].timestamps, want, "{name}");
        let want: Vec<f64> = want.iter().map(|&t| base + t as f64).collect();
        assert_eq!(got[0].values, want, "{name}");
    }
}

/// Bug (found by the `block_decode` fuzz target with debug assertions, session 5): a block
/// whose checksums are valid but whose series table lists a series' labels out of name
/// order was accepted, and the labels built from it broke the sorted-labels invariant
/// (a debug assertion; in release, lookups by label name could miss). The index loader
/// now refuses such a block as damaged.
#[test]
fn block_with_labels_out_of_name_order_is_refused_as_damaged() {
    let bytes = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/fuzz-block-unsorted-labels.blk"),
    )
    .unwrap();
    let vfs = MemVfs::new();
    let dir = std::path::Path::new("/db/blocks");
    vfs.create_dir_all(dir).unwrap();
    let mut f = vfs.create(&dir.join("x.blk")).unwrap();
    f.write_all(&bytes).unwrap();
    f.sync().unwrap();
    let block = tsq_storage::block::Block::open(&vfs, dir, "x.blk").unwrap();
    let Err(e) = block.select(&[]) else {
        panic!("a block with unsorted labels was accepted")
    };
    assert!(matches!(e, Error::Corrupted { .. }), "{e}");
    assert!(e.to_string().contains("not sorted"), "{e}");
}
