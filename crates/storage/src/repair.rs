//! Rebuilding a lost or damaged manifest from the blocks on disk (docs/format/manifest.md,
//! "Repair"), for `tsq repair`.
//!
//! Blocks are self-describing: their sequence number is their file name, and every chunk,
//! the index and the footer carry checksums. Repair therefore lists every intact block in a
//! new manifest, moves damaged blocks out of `blocks/` (to `damaged/`, never deleted), keeps
//! the old manifest as `MANIFEST.damaged`, and reports what could not be recovered:
//! tombstones (deletions not yet compacted away) and metric metadata of the old manifest.
//! WAL segments are untouched: the next open replays them as usual, which re-declares the
//! metadata written since the last flush and re-adds their deletions.
//!
//! A compaction's source blocks and its output may both be present (a crash between the
//! manifest swap and the removal of the sources); listing both only duplicates samples,
//! which reads merge, and the next compaction removes.

use std::path::{Path, PathBuf};

use crate::block::Block;
use crate::error::{Error, Result};
use crate::manifest::{Manifest, MANIFEST};
use crate::vfs::Vfs;

/// What a repair did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepairReport {
    /// The manifest was readable and listed only existing blocks: nothing was changed.
    pub already_intact: bool,
    /// Blocks listed in the new manifest: (sequence number, file name, samples).
    pub kept: Vec<(u64, String, u64)>,
    /// Damaged blocks moved to `damaged/`, with the first problem found in each.
    pub moved: Vec<(String, String)>,
    /// Where the previous manifest was kept, if there was one.
    pub old_manifest: Option<PathBuf>,
}

fn block_seq(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(".blk")?;
    u64::from_str_radix(stem, 16).ok()
}

/// Rebuilds the manifest of the database at `dir`. The caller must hold the writer lock
/// (no writer may run meanwhile). With `force`, a readable manifest is rebuilt too (its
/// tombstones and metadata are then lost; the report says so).
pub fn repair_manifest(vfs: &dyn Vfs, dir: &Path, force: bool) -> Result<RepairReport> {
    let blocks_dir = dir.join("blocks");
    let mut names: Vec<String> = if vfs.exists(&blocks_dir) {
        vfs.list(&blocks_dir)
            .map_err(|e| Error::io("list", &blocks_dir, e))?
            .into_iter()
            .filter(|n| block_seq(n).is_some())
            .collect()
    } else {
        Vec::new()
    };
    names.sort_by_key(|n| block_seq(n));
    let current = Manifest::load(vfs, dir);
    if let Ok(Some(m)) = &current {
        let listed_exist = m.blocks.iter().all(|(_, n)| names.contains(n));
        if listed_exist && !force {
            return Ok(RepairReport {
                already_intact: true,
                ..RepairReport::default()
            });
        }
    }
    let mut report = RepairReport::default();
    let mut manifest = Manifest::default();
    let damaged_dir = dir.join("damaged");
    for name in names {
        let seq = block_seq(&name).unwrap_or(0);
        // The number of samples of an intact block, or its first problem.
        let outcome: std::result::Result<u64, String> = match Block::open(vfs, &blocks_dir, &name) {
            Ok(b) => match b.check().into_iter().next() {
                Some(p) => Err(p),
                None => Ok(b.stats().n_samples),
            },
            Err(e) => Err(e.to_string()),
        };
        match outcome {
            Ok(samples) => {
                manifest.blocks.push((seq, name.clone()));
                manifest.next_seq = manifest.next_seq.max(seq + 1);
                report.kept.push((seq, name, samples));
            }
            Err(p) => {
                vfs.create_dir_all(&damaged_dir)
                    .map_err(|e| Error::io("create", &damaged_dir, e))?;
                let from = blocks_dir.join(&name);
                let to = damaged_dir.join(&name);
                vfs.rename(&from, &to)
                    .map_err(|e| Error::io("rename", &from, e))?;
                report.moved.push((name, p));
            }
        }
    }
    vfs.sync_dir(&blocks_dir)
        .map_err(|e| Error::io("sync", &blocks_dir, e))?;
    if vfs.exists(&damaged_dir) {
        vfs.sync_dir(&damaged_dir)
            .map_err(|e| Error::io("sync", &damaged_dir, e))?;
    }
    let path = dir.join(MANIFEST);
    if vfs.exists(&path) {
        // Sequence numbers also count deletions: keep next-seq above the old one if it can
        // still be read.
        if let Ok(Some(m)) = &current {
            manifest.next_seq = manifest.next_seq.max(m.next_seq);
        }
        let keep = dir.join("MANIFEST.damaged");
        vfs.rename(&path, &keep)
            .map_err(|e| Error::io("rename", &path, e))?;
        report.old_manifest = Some(keep);
    }
    manifest.store(vfs, dir)?;
    Ok(report)
}
