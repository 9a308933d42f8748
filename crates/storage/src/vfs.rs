//! The one I/O seam: every file operation of the engine goes through [`Vfs`].
//!
//! [`OsVfs`] is the real file system. [`MemVfs`] keeps files in memory and models what a
//! crash keeps: file contents become durable at `sync`, directory entries (creations,
//! renames, removals) at `sync_dir` of their parent. [`MemVfs::crash_image`] returns what a
//! machine would find after power loss at that moment, optionally with a torn unsynced tail,
//! and [`MemVfs::fail_at`] makes a chosen call fail with ENOSPC or EIO.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

/// Read-only bytes of a whole file: a memory map for [`OsVfs`], a shared vector for [`MemVfs`].
pub type Bytes = Arc<dyn AsRef<[u8]> + Send + Sync>;

/// A file opened for writing.
pub trait VfsFile: Send {
    /// Appends all of `buf`.
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()>;
    /// Makes everything written so far durable (fdatasync).
    fn sync(&mut self) -> io::Result<()>;
    /// A second handle on the same file that can only sync it, so that a sync can run
    /// while other threads keep appending through this one (group commit).
    fn syncer(&self) -> io::Result<Box<dyn VfsFile>>;
}

/// The file-system operations the engine uses.
pub trait Vfs: Send + Sync + 'static {
    /// Creates a directory and its parents.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Names of the entries of a directory (files and directories), sorted.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Creates (truncating) a file for writing.
    fn create(&self, path: &Path) -> io::Result<Box<dyn VfsFile>>;
    /// Opens an existing file for appending.
    fn append(&self, path: &Path) -> io::Result<Box<dyn VfsFile>>;
    /// Reads a whole file into memory.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Maps a whole file read-only.
    fn map(&self, path: &Path) -> io::Result<Bytes>;
    /// Size of a file.
    fn len(&self, path: &Path) -> io::Result<u64>;
    /// Cuts a file to `len` bytes (and syncs it).
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()>;
    /// Renames a file, replacing the target.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Makes the directory's entries durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// True when the path exists.
    fn exists(&self, path: &Path) -> bool;
    /// Takes the exclusive writer lock of a database directory. The lock lives as long as
    /// the returned guard and dies with the process.
    fn lock(&self, path: &Path) -> io::Result<Box<dyn Send + Sync>>;
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct OsVfs;

struct OsFile(fs::File);

impl VfsFile for OsFile {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.write_all(buf)
    }
    fn sync(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn syncer(&self) -> io::Result<Box<dyn VfsFile>> {
        Ok(Box::new(OsFile(self.0.try_clone()?)))
    }
}

struct Mapped(memmap2::Mmap);

impl AsRef<[u8]> for Mapped {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

struct FileLock(#[allow(dead_code)] fs::File);

impl Vfs for OsVfs {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        fs::create_dir_all(path)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut v = Vec::new();
        for e in fs::read_dir(dir)? {
            v.push(e?.file_name().to_string_lossy().into_owned());
        }
        v.sort();
        Ok(v)
    }
    fn create(&self, path: &Path) -> io::Result<Box<dyn VfsFile>> {
        Ok(Box::new(OsFile(fs::File::create(path)?)))
    }
    fn append(&self, path: &Path) -> io::Result<Box<dyn VfsFile>> {
        Ok(Box::new(OsFile(
            fs::OpenOptions::new().append(true).open(path)?,
        )))
    }
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let mut v = Vec::new();
        fs::File::open(path)?.read_to_end(&mut v)?;
        Ok(v)
    }
    fn map(&self, path: &Path) -> io::Result<Bytes> {
        let f = fs::File::open(path)?;
        if f.metadata()?.len() == 0 {
            return Ok(Arc::new(Vec::<u8>::new()));
        }
        // SAFETY: block files are immutable once renamed into place and are never written
        // again; they are only removed (unlinking keeps existing maps valid). A file changed
        // behind our back by another program is outside the engine's contract, and every
        // byte read from the map is bounds-checked and checksummed before use.
        let m = unsafe { memmap2::Mmap::map(&f)? };
        Ok(Arc::new(Mapped(m)))
    }
    fn len(&self, path: &Path) -> io::Result<u64> {
        Ok(fs::metadata(path)?.len())
    }
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let f = fs::OpenOptions::new().write(true).open(path)?;
        f.set_len(len)?;
        f.sync_all()
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        fs::File::open(dir)?.sync_all()
    }
    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }
    fn lock(&self, path: &Path) -> io::Result<Box<dyn Send + Sync>> {
        use std::os::unix::io::AsRawFd;
        let mut f = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        // SAFETY: flock on a file descriptor we own; no memory is involved.
        let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = io::Error::last_os_error();
            let mut holder = String::new();
            let _ = f.read_to_string(&mut holder);
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!("{} (held by {})", err, holder.trim()),
            ));
        }
        f.set_len(0)?;
        write!(f, "pid {}", std::process::id())?;
        Ok(Box::new(FileLock(f)))
    }
}

/// Which call a [`MemVfs`] should fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// No space left on device.
    NoSpace,
    /// Input/output error.
    Io,
}

#[derive(Default)]
struct Inode {
    live: Vec<u8>,
    durable: Vec<u8>,
}

#[derive(Default)]
struct MemState {
    live: BTreeMap<PathBuf, Arc<Mutex<Inode>>>,
    durable: BTreeMap<PathBuf, Arc<Mutex<Inode>>>,
    dirs: std::collections::BTreeSet<PathBuf>,
    ops: u64,
    syncs: u64,
    fail_at: Option<(u64, FaultKind)>,
    locked: std::collections::BTreeSet<PathBuf>,
}

/// An in-memory file system that models durability and injects faults. Cloning shares it.
#[derive(Clone, Default)]
pub struct MemVfs {
    state: Arc<Mutex<MemState>>,
}

impl std::fmt::Debug for MemVfs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.state.lock();
        write!(
            f,
            "MemVfs({} files, {} ops, {} syncs)",
            s.live.len(),
            s.ops,
            s.syncs
        )
    }
}

impl MemVfs {
    /// An empty file system.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of mutating calls (writes, syncs, creations, renames, ...) so far.
    pub fn ops(&self) -> u64 {
        self.state.lock().ops
    }

    /// Number of file and directory syncs so far.
    pub fn syncs(&self) -> u64 {
        self.state.lock().syncs
    }

    /// Makes mutating call number `op` (counting from the current [`MemVfs::ops`] total) and
    /// every later one fail with `kind`, as a full or failing disk keeps failing.
    pub fn fail_at(&self, op: u64, kind: FaultKind) {
        self.state.lock().fail_at = Some((op, kind));
    }

    /// Stops failing calls.
    pub fn clear_fault(&self) {
        self.state.lock().fail_at = None;
    }

    /// What a power loss now would leave: synced contents of durable directory entries.
    /// With `torn = Some(seed)`, each file also keeps a seed-chosen prefix of its unsynced
    /// appended bytes, as a disk that wrote part of its cache would.
    pub fn crash_image(&self, torn: Option<u64>) -> MemVfs {
        let s = self.state.lock();
        let mut out = MemState {
            dirs: s.dirs.clone(),
            ..Default::default()
        };
        let mut rng = torn.unwrap_or(0);
        for (path, inode) in &s.durable {
            let ino = inode.lock();
            let mut data = ino.durable.clone();
            if torn.is_some() && ino.live.len() > data.len() && ino.live.starts_with(&data) {
                rng = rng
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let extra = (rng >> 33) as usize % (ino.live.len() - data.len() + 1);
                data.extend_from_slice(&ino.live[ino.durable.len()..ino.durable.len() + extra]);
            }
            let new = Arc::new(Mutex::new(Inode {
                live: data.clone(),
                durable: data,
            }));
            out.live.insert(path.clone(), new.clone());
            out.durable.insert(path.clone(), new);
        }
        MemVfs {
            state: Arc::new(Mutex::new(out)),
        }
    }

    /// Flips one bit of a file (live and durable copies), for corruption tests.
    pub fn flip_bit(&self, path: &Path, bit: u64) -> io::Result<()> {
        let s = self.state.lock();
        let ino = s.live.get(path).ok_or_else(|| not_found(path))?;
        let mut ino = ino.lock();
        let byte = (bit / 8) as usize;
        if byte >= ino.live.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "bit beyond end of file",
            ));
        }
        ino.live[byte] ^= 1 << (bit % 8);
        if byte < ino.durable.len() {
            ino.durable[byte] ^= 1 << (bit % 8);
        }
        Ok(())
    }

    fn mutate(&self) -> io::Result<parking_lot::MutexGuard<'_, MemState>> {
        let mut s = self.state.lock();
        let n = s.ops;
        s.ops += 1;
        if let Some((at, kind)) = s.fail_at {
            if n >= at {
                return Err(match kind {
                    FaultKind::NoSpace => io::Error::from_raw_os_error(libc::ENOSPC),
                    FaultKind::Io => io::Error::from_raw_os_error(libc::EIO),
                });
            }
        }
        Ok(s)
    }
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: no such file", path.display()),
    )
}

struct MemFile {
    vfs: MemVfs,
    inode: Arc<Mutex<Inode>>,
}

impl VfsFile for MemFile {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        let _s = self.vfs.mutate()?;
        self.inode.lock().live.extend_from_slice(buf);
        Ok(())
    }
    fn sync(&mut self) -> io::Result<()> {
        let mut s = self.vfs.mutate()?;
        s.syncs += 1;
        let mut ino = self.inode.lock();
        ino.durable = ino.live.clone();
        Ok(())
    }
    fn syncer(&self) -> io::Result<Box<dyn VfsFile>> {
        Ok(Box::new(MemFile {
            vfs: self.vfs.clone(),
            inode: self.inode.clone(),
        }))
    }
}

impl Vfs for MemVfs {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut s = self.mutate()?;
        let mut p = Some(path);
        while let Some(d) = p {
            if d.as_os_str().is_empty() {
                break;
            }
            s.dirs.insert(d.to_path_buf());
            p = d.parent();
        }
        Ok(())
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let s = self.state.lock();
        let mut v: Vec<String> = s
            .live
            .keys()
            .chain(s.dirs.iter())
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        v.sort();
        v.dedup();
        Ok(v)
    }
    fn create(&self, path: &Path) -> io::Result<Box<dyn VfsFile>> {
        let mut s = self.mutate()?;
        let inode = Arc::new(Mutex::new(Inode::default()));
        s.live.insert(path.to_path_buf(), inode.clone());
        Ok(Box::new(MemFile {
            vfs: self.clone(),
            inode,
        }))
    }
    fn append(&self, path: &Path) -> io::Result<Box<dyn VfsFile>> {
        let s = self.state.lock();
        let inode = s.live.get(path).cloned().ok_or_else(|| not_found(path))?;
        Ok(Box::new(MemFile {
            vfs: self.clone(),
            inode,
        }))
    }
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let s = self.state.lock();
        let ino = s.live.get(path).ok_or_else(|| not_found(path))?;
        let data = ino.lock().live.clone();
        Ok(data)
    }
    fn map(&self, path: &Path) -> io::Result<Bytes> {
        Ok(Arc::new(self.read(path)?))
    }
    fn len(&self, path: &Path) -> io::Result<u64> {
        let s = self.state.lock();
        let ino = s.live.get(path).ok_or_else(|| not_found(path))?;
        let len = ino.lock().live.len() as u64;
        Ok(len)
    }
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let mut s = self.mutate()?;
        s.syncs += 1;
        let ino = s.live.get(path).cloned().ok_or_else(|| not_found(path))?;
        let mut ino = ino.lock();
        ino.live.truncate(len as usize);
        ino.durable = ino.live.clone();
        Ok(())
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut s = self.mutate()?;
        let ino = s.live.remove(from).ok_or_else(|| not_found(from))?;
        s.live.insert(to.to_path_buf(), ino);
        Ok(())
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut s = self.mutate()?;
        s.live.remove(path).ok_or_else(|| not_found(path))?;
        Ok(())
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.mutate()?;
        s.syncs += 1;
        let s = &mut *s;
        s.durable.retain(|p, _| p.parent() != Some(dir));
        for (p, ino) in &s.live {
            if p.parent() == Some(dir) {
                s.durable.insert(p.clone(), ino.clone());
            }
        }
        Ok(())
    }
    fn exists(&self, path: &Path) -> bool {
        let s = self.state.lock();
        s.live.contains_key(path) || s.dirs.contains(path)
    }
    fn lock(&self, path: &Path) -> io::Result<Box<dyn Send + Sync>> {
        let mut s = self.state.lock();
        if !s.locked.insert(path.to_path_buf()) {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "held by this process",
            ));
        }
        Ok(Box::new(MemLock {
            vfs: self.clone(),
            path: path.to_path_buf(),
        }))
    }
}

struct MemLock {
    vfs: MemVfs,
    path: PathBuf,
}

impl Drop for MemLock {
    fn drop(&mut self) {
        self.vfs.state.lock().locked.remove(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsynced_data_and_entries_are_lost_in_a_crash() {
        let vfs = MemVfs::new();
        let dir = Path::new("/db");
        vfs.create_dir_all(dir).unwrap();
        let mut f = vfs.create(&dir.join("a")).unwrap();
        f.write_all(b"hello").unwrap();
        f.sync().unwrap();
        // File synced but its directory entry not: gone after a crash.
        assert!(!vfs.crash_image(None).exists(&dir.join("a")));
        vfs.sync_dir(dir).unwrap();
        f.write_all(b" world").unwrap();
        let img = vfs.crash_image(None);
        assert_eq!(img.read(&dir.join("a")).unwrap(), b"hello");
        // A torn image keeps a prefix of the unsynced tail.
        let torn = vfs.crash_image(Some(7)).read(&dir.join("a")).unwrap();
        assert!(torn.starts_with(b"hello") && b"hello world".starts_with(&torn[..]));
    }

    #[test]
    fn faults_fail_the_chosen_call_and_later_ones() {
        let vfs = MemVfs::new();
        let mut f = vfs.create(Path::new("/x")).unwrap();
        vfs.fail_at(vfs.ops() + 1, FaultKind::NoSpace);
        f.write_all(b"ok").unwrap();
        let err = f.write_all(b"no").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ENOSPC));
        assert!(f.sync().is_err());
        vfs.clear_fault();
        assert_eq!(vfs.read(Path::new("/x")).unwrap(), b"ok");
    }
}
