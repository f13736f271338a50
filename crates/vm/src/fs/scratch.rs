//! The per-VM scratch filesystem: an in-memory tree behind the configured scratch paths
//! (`VmConfig::scratch_paths`, e.g. /tmp and the runner's DENO_DIR). It is process data:
//! a reset brings back the snapshot's tree, so nothing a request writes survives it, and
//! nothing ever reaches a host file. File contents are `Arc` chunks copied on write, so
//! the snapshot clone costs pointers and a request pays only for the chunks it changes.
//! Space is counted in whole chunks against `VmConfig::max_scratch_bytes` (ENOSPC).

use super::{lock, CloneMap, DirEntry, File, Kind, Stat, SysResult, SYNTH_DEV};
use std::any::Any;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// Bytes per copy-on-write chunk.
pub const CHUNK: usize = 64 << 10;

/// Most files and directories the tree holds. Names cost host memory that
/// `max_scratch_bytes` (file contents) does not count, so they have limits of their own.
pub const MAX_NODES: usize = 1 << 16;
/// Most bytes of full paths the tree holds (see [`MAX_NODES`]): with PATH_MAX-long paths,
/// the node count alone would allow 256 MiB of names.
pub const MAX_NAME_BYTES: u64 = 16 << 20;

/// Why a scratch operation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ScratchError {
    /// No such file or directory.
    #[error("no such file or directory in the scratch filesystem")]
    NotFound,
    /// The name exists (O_EXCL, mkdir).
    #[error("the name already exists")]
    Exists,
    /// A path component is not a directory.
    #[error("a path component is not a directory")]
    NotDir,
    /// A directory where a file is needed.
    #[error("is a directory")]
    IsDir,
    /// rmdir of a non-empty directory.
    #[error("directory not empty")]
    NotEmpty,
    /// The byte limit is reached: raise `max_scratch_bytes` to allow more.
    #[error("the scratch filesystem is full; raise max_scratch_bytes")]
    NoSpace,
    /// A file larger than the whole scratch limit.
    #[error("file larger than max_scratch_bytes")]
    TooBig,
    /// The roots themselves cannot be removed or renamed.
    #[error("a scratch root cannot be removed or renamed")]
    Busy,
}

impl ScratchError {
    /// The errno a syscall returns.
    pub fn errno(self) -> i32 {
        match self {
            ScratchError::NotFound => libc::ENOENT,
            ScratchError::Exists => libc::EEXIST,
            ScratchError::NotDir => libc::ENOTDIR,
            ScratchError::IsDir => libc::EISDIR,
            ScratchError::NotEmpty => libc::ENOTEMPTY,
            ScratchError::NoSpace => libc::ENOSPC,
            ScratchError::TooBig => libc::EFBIG,
            ScratchError::Busy => libc::EBUSY,
        }
    }
}

impl From<ScratchError> for i32 {
    fn from(e: ScratchError) -> i32 {
        e.errno()
    }
}

type Result<T> = std::result::Result<T, ScratchError>;

/// Bytes in use and the limit, shared by the tree and every open file.
#[derive(Clone, Copy, Debug, Default)]
struct Usage {
    used: u64,
    limit: u64,
}

/// File contents. Returns its chunks' bytes to the usage when freed (unlinked and closed,
/// or the whole tree dropped), so unlinked-but-open files keep counting until closed.
#[derive(Debug)]
struct Data {
    /// Chunk index -> bytes; a missing chunk is a hole (zeros, no space).
    chunks: BTreeMap<u64, Arc<Vec<u8>>>,
    len: u64,
    usage: Arc<Mutex<Usage>>,
}

impl Drop for Data {
    fn drop(&mut self) {
        let bytes = self.chunks.len() as u64 * CHUNK as u64;
        let mut u = lock(&self.usage);
        u.used = u.used.saturating_sub(bytes);
    }
}

#[derive(Debug)]
enum Body {
    Dir,
    File(Data),
}

#[derive(Debug)]
struct Inode {
    ino: u64,
    mode: u32,
    mtime: (i64, i64),
    body: Body,
}

fn now() -> (i64, i64) {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (d.as_secs() as i64, i64::from(d.subsec_nanos()))
}

impl Inode {
    fn stat(&self) -> Stat {
        let (kind, size, blocks) = match &self.body {
            Body::Dir => (Kind::Directory, 4096, 8),
            Body::File(d) => (
                Kind::Regular,
                d.len,
                d.chunks.len() as u64 * (CHUNK as u64 / 512),
            ),
        };
        Stat {
            dev: SYNTH_DEV + 1,
            ino: self.ino,
            mode: kind.mode_bits() | (self.mode & 0o7777),
            nlink: 1,
            size,
            blocks,
            mtime: self.mtime,
            ..Stat::default()
        }
    }

    fn deep_clone(&self, map: &mut CloneMap) -> Inode {
        let body = match &self.body {
            Body::Dir => Body::Dir,
            Body::File(d) => Body::File(Data {
                chunks: d.chunks.clone(),
                len: d.len,
                usage: map.share(&d.usage, |_| Arc::new(Mutex::new(*lock(&d.usage)))),
            }),
        };
        Inode {
            ino: self.ino,
            mode: self.mode,
            mtime: self.mtime,
            body,
        }
    }
}

type Node = Arc<Mutex<Inode>>;

/// The tree: every file and directory by full guest path (the roots are implicit
/// directories).
#[derive(Debug)]
pub struct ScratchFs {
    nodes: BTreeMap<String, Node>,
    /// Sum of the lengths of `nodes`' keys (see [`MAX_NAME_BYTES`]).
    name_bytes: u64,
    usage: Arc<Mutex<Usage>>,
    next_ino: u64,
}

impl Default for ScratchFs {
    fn default() -> Self {
        ScratchFs {
            nodes: BTreeMap::new(),
            name_bytes: 0,
            usage: Arc::new(Mutex::new(Usage::default())),
            next_ino: 0x10_0000,
        }
    }
}

fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) | None => "/",
        Some(i) => &path[..i],
    }
}

/// Options of [`ScratchFs::open`].
#[derive(Clone, Copy, Debug, Default)]
pub struct OpenHow {
    /// O_CREAT.
    pub create: bool,
    /// O_EXCL.
    pub exclusive: bool,
    /// O_TRUNC.
    pub truncate: bool,
    /// O_DIRECTORY.
    pub directory: bool,
    /// Mode for a new file (umask applied).
    pub mode: u32,
}

impl ScratchFs {
    /// A copy sharing no mutable state, through `map` (see [`crate::fs`]).
    pub fn deep_clone(&self, map: &mut CloneMap) -> ScratchFs {
        let usage = map.share(&self.usage, |_| Arc::new(Mutex::new(*lock(&self.usage))));
        let nodes = self
            .nodes
            .iter()
            .map(|(p, n)| {
                let n2 = map.share(n, |m| Arc::new(Mutex::new(lock(n).deep_clone(m))));
                (p.clone(), n2)
            })
            .collect();
        ScratchFs {
            nodes,
            name_bytes: self.name_bytes,
            usage,
            next_ino: self.next_ino,
        }
    }

    /// ENOSPC when one more name `path` would pass [`MAX_NODES`] or [`MAX_NAME_BYTES`].
    fn room_for(&self, path: &str) -> Result<()> {
        if self.nodes.len() >= MAX_NODES || self.name_bytes + path.len() as u64 > MAX_NAME_BYTES {
            return Err(ScratchError::NoSpace);
        }
        Ok(())
    }

    /// Adds (or replaces) the node at `path`, keeping `name_bytes`.
    fn insert_node(&mut self, path: String, n: Node) {
        let len = path.len() as u64;
        if self.nodes.insert(path, n).is_none() {
            self.name_bytes += len;
        }
    }

    /// Removes the node at `path`, keeping `name_bytes`.
    fn remove_node(&mut self, path: &str) -> Option<Node> {
        let n = self.nodes.remove(path)?;
        self.name_bytes = self.name_bytes.saturating_sub(path.len() as u64);
        Some(n)
    }

    /// Bytes the tree's file contents take (whole chunks), including open unlinked files.
    pub fn used(&self) -> u64 {
        lock(&self.usage).used
    }

    /// Whether the tree is as at boot: no file or directory made, none open. Snapshot
    /// files (crate::persist) only hold such a tree.
    pub fn is_pristine(&self) -> bool {
        let fresh = ScratchFs::default();
        self.nodes.is_empty() && self.used() == 0 && self.next_ino == fresh.next_ino
    }

    fn is_dir(&self, root: &str, path: &str) -> Result<()> {
        if path == root {
            return Ok(());
        }
        match self.nodes.get(path) {
            Some(n) if matches!(lock(n).body, Body::Dir) => Ok(()),
            Some(_) => Err(ScratchError::NotDir),
            None => Err(ScratchError::NotFound),
        }
    }

    fn new_inode(&mut self, mode: u32, body: Body) -> Node {
        self.next_ino += 1;
        Arc::new(Mutex::new(Inode {
            ino: self.next_ino,
            mode,
            mtime: now(),
            body,
        }))
    }

    /// Opens (or creates) `path` below scratch root `root`; `limit` is the byte limit.
    pub fn open(
        &mut self,
        root: &str,
        path: &str,
        how: OpenHow,
        limit: u64,
    ) -> Result<Arc<dyn File>> {
        lock(&self.usage).limit = limit;
        if path == root {
            return Ok(Arc::new(ScratchDir {
                path: path.into(),
                entries: self.entries(root, path)?,
            }));
        }
        let node = match self.nodes.get(path) {
            Some(_) if how.create && how.exclusive => return Err(ScratchError::Exists),
            Some(n) => n.clone(),
            None if how.create => {
                self.is_dir(root, parent(path))?;
                self.room_for(path)?;
                let data = Data {
                    chunks: BTreeMap::new(),
                    len: 0,
                    usage: self.usage.clone(),
                };
                let n = self.new_inode(how.mode, Body::File(data));
                self.insert_node(path.to_string(), n.clone());
                n
            }
            None => {
                self.is_dir(root, parent(path))?;
                return Err(ScratchError::NotFound);
            }
        };
        let is_dir = matches!(lock(&node).body, Body::Dir);
        if is_dir {
            if how.create || how.truncate {
                return Err(ScratchError::IsDir);
            }
            return Ok(Arc::new(ScratchDir {
                path: path.into(),
                entries: self.entries(root, path)?,
            }));
        }
        if how.directory {
            return Err(ScratchError::NotDir);
        }
        let f = ScratchFile {
            node,
            path: path.into(),
        };
        if how.truncate {
            f.resize(0)?;
        }
        Ok(Arc::new(f))
    }

    /// Facts of `path`.
    pub fn stat(&self, root: &str, path: &str) -> Result<Stat> {
        if path == root {
            return Ok(Stat {
                dev: SYNTH_DEV + 1,
                ..Stat::synthetic(Kind::Directory, 0o1777, 0x10_0000, 4096)
            });
        }
        self.nodes
            .get(path)
            .map(|n| lock(n).stat())
            .ok_or(ScratchError::NotFound)
    }

    /// mkdir.
    pub fn mkdir(&mut self, root: &str, path: &str, mode: u32) -> Result<()> {
        if path == root || self.nodes.contains_key(path) {
            return Err(ScratchError::Exists);
        }
        self.is_dir(root, parent(path))?;
        self.room_for(path)?;
        let n = self.new_inode(mode, Body::Dir);
        self.insert_node(path.to_string(), n);
        Ok(())
    }

    fn children<'a>(&'a self, path: &'a str) -> impl Iterator<Item = (&'a String, &'a Node)> + 'a {
        let prefix = format!("{}/", path.trim_end_matches('/'));
        self.nodes
            .range(prefix.clone()..)
            .take_while(move |(p, _)| p.starts_with(&prefix))
    }

    /// unlink (`dir` false) or rmdir (`dir` true).
    pub fn remove(&mut self, root: &str, path: &str, dir: bool) -> Result<()> {
        if path == root {
            return Err(ScratchError::Busy);
        }
        let n = self.nodes.get(path).ok_or(ScratchError::NotFound)?;
        let is_dir = matches!(lock(n).body, Body::Dir);
        match (dir, is_dir) {
            (false, true) => return Err(ScratchError::IsDir),
            (true, false) => return Err(ScratchError::NotDir),
            (true, true) if self.children(path).next().is_some() => {
                return Err(ScratchError::NotEmpty)
            }
            _ => {}
        }
        self.remove_node(path);
        Ok(())
    }

    /// rename(2) within the scratch filesystem: replaces a file at `to`, moves a
    /// directory with everything below it.
    pub fn rename(&mut self, root_from: &str, from: &str, root_to: &str, to: &str) -> Result<()> {
        if from == root_from || to == root_to {
            return Err(ScratchError::Busy);
        }
        let n = self.nodes.get(from).ok_or(ScratchError::NotFound)?.clone();
        self.is_dir(root_to, parent(to))?;
        if from == to {
            return Ok(());
        }
        let src_dir = matches!(lock(&n).body, Body::Dir);
        if src_dir && to.starts_with(&format!("{from}/")) {
            return Err(ScratchError::Busy); // into itself: Linux says EINVAL
        }
        if let Some(dst) = self.nodes.get(to) {
            let dst_dir = matches!(lock(dst).body, Body::Dir);
            match (src_dir, dst_dir) {
                (false, true) => return Err(ScratchError::IsDir),
                (true, false) => return Err(ScratchError::NotDir),
                (true, true) if self.children(to).next().is_some() => {
                    return Err(ScratchError::NotEmpty)
                }
                _ => {}
            }
        }
        let moved: Vec<(String, Node)> = self
            .children(from)
            .map(|(p, n)| (p.clone(), n.clone()))
            .collect();
        // A longer name lengthens every path below it.
        let growth = (to.len().saturating_sub(from.len()) as u64) * (moved.len() as u64 + 1);
        if self.name_bytes + growth > MAX_NAME_BYTES {
            return Err(ScratchError::NoSpace);
        }
        self.remove_node(from);
        self.insert_node(to.to_string(), n);
        for (p, n) in moved {
            self.remove_node(&p);
            self.insert_node(format!("{to}{}", &p[from.len()..]), n);
        }
        Ok(())
    }

    /// The entries of directory `path` (with . and ..).
    pub fn entries(&self, root: &str, path: &str) -> Result<Vec<DirEntry>> {
        self.is_dir(root, path)?;
        let mut out = vec![
            DirEntry {
                ino: 0x10_0000,
                kind: libc::DT_DIR,
                name: ".".into(),
            },
            DirEntry {
                ino: 1,
                kind: libc::DT_DIR,
                name: "..".into(),
            },
        ];
        let prefix_len = path.trim_end_matches('/').len() + 1;
        for (p, n) in self.children(path) {
            let name = &p[prefix_len..];
            if name.contains('/') {
                continue;
            }
            let n = lock(n);
            let kind = if matches!(n.body, Body::Dir) {
                libc::DT_DIR
            } else {
                libc::DT_REG
            };
            out.push(DirEntry {
                ino: n.ino,
                kind,
                name: name.to_string(),
            });
        }
        Ok(out)
    }

    /// chmod.
    pub fn chmod(&self, path: &str, mode: u32) -> Result<()> {
        let n = self.nodes.get(path).ok_or(ScratchError::NotFound)?;
        lock(n).mode = mode & 0o7777;
        Ok(())
    }
}

/// An open scratch file.
#[derive(Debug)]
pub struct ScratchFile {
    node: Node,
    path: String,
}

impl ScratchFile {
    /// Identifies the inode behind this open file (two opens of one file, or of its
    /// renamed name, give the same key) for as long as the inode lives.
    pub fn inode_key(&self) -> usize {
        Arc::as_ptr(&self.node).cast::<()>() as usize
    }

    /// fchmod: changes the open file's own inode, whatever name (if any) it has now.
    pub fn set_mode(&self, mode: u32) {
        lock(&self.node).mode = mode & 0o7777;
    }

    fn resize(&self, len: u64) -> Result<()> {
        let mut n = lock(&self.node);
        let Body::File(d) = &mut n.body else {
            return Err(ScratchError::IsDir);
        };
        if len > lock(&d.usage).limit {
            return Err(ScratchError::TooBig);
        }
        let keep = len.div_ceil(CHUNK as u64);
        let freed = d.chunks.split_off(&keep).len() as u64 * CHUNK as u64;
        if freed > 0 {
            let mut u = lock(&d.usage);
            u.used = u.used.saturating_sub(freed);
        }
        // Zero the tail of the last chunk so growing again reads zeros.
        let tail = (len % CHUNK as u64) as usize;
        if tail != 0 && len < d.len {
            if let Some(c) = d.chunks.get_mut(&(keep - 1)) {
                Arc::make_mut(c)[tail..].fill(0);
            }
        }
        d.len = len;
        n.mtime = now();
        Ok(())
    }
}

impl File for ScratchFile {
    fn kind(&self) -> Kind {
        Kind::Regular
    }

    fn read(&self, buf: &mut [u8], offset: u64, _nonblock: bool) -> SysResult<usize> {
        let n = lock(&self.node);
        let Body::File(d) = &n.body else {
            return Err(libc::EISDIR);
        };
        let end = d.len.min(offset.saturating_add(buf.len() as u64));
        let mut at = offset;
        while at < end {
            let (ci, co) = (at / CHUNK as u64, (at % CHUNK as u64) as usize);
            let take = (CHUNK - co).min((end - at) as usize);
            let dst = &mut buf[(at - offset) as usize..][..take];
            match d.chunks.get(&ci) {
                Some(c) => dst.copy_from_slice(&c[co..co + take]),
                None => dst.fill(0),
            }
            at += take as u64;
        }
        Ok(end.saturating_sub(offset) as usize)
    }

    fn write(&self, buf: &[u8], offset: u64, append: bool) -> SysResult<(usize, u64)> {
        if buf.is_empty() {
            // Linux: no effect (no length change, no mtime). Below, an empty write past the
            // end would both grow the file and count a chunk it never stores.
            return Ok((0, offset));
        }
        let mut n = lock(&self.node);
        n.mtime = now();
        let Body::File(d) = &mut n.body else {
            return Err(libc::EISDIR);
        };
        let start = if append { d.len } else { offset };
        let end = start.checked_add(buf.len() as u64).ok_or(libc::EFBIG)?;
        let (limit, used) = {
            let u = lock(&d.usage);
            (u.limit, u.used)
        };
        if end > limit {
            return Err(libc::EFBIG);
        }
        let first = start / CHUNK as u64;
        let last = end.div_ceil(CHUNK as u64);
        // At most MAX_IO / CHUNK + 1 chunks: `buf` is bounded by the syscall layer.
        let missing = (first..last).filter(|i| !d.chunks.contains_key(i)).count() as u64;
        if used + missing * CHUNK as u64 > limit {
            return Err(libc::ENOSPC);
        }
        lock(&d.usage).used += missing * CHUNK as u64;
        let mut at = start;
        while at < end {
            let (ci, co) = (at / CHUNK as u64, (at % CHUNK as u64) as usize);
            let take = (CHUNK - co).min((end - at) as usize);
            let c = d
                .chunks
                .entry(ci)
                .or_insert_with(|| Arc::new(vec![0; CHUNK]));
            Arc::make_mut(c)[co..co + take].copy_from_slice(&buf[(at - start) as usize..][..take]);
            at += take as u64;
        }
        d.len = d.len.max(end);
        Ok((buf.len(), end))
    }

    fn stat(&self) -> SysResult<Stat> {
        Ok(lock(&self.node).stat())
    }

    fn truncate(&self, len: u64) -> SysResult<()> {
        self.resize(len).map_err(ScratchError::errno)
    }

    fn path(&self) -> Option<&str> {
        Some(&self.path)
    }

    fn deep_clone(&self, map: &mut CloneMap) -> Arc<dyn File> {
        let node = map.share(&self.node, |m| {
            Arc::new(Mutex::new(lock(&self.node).deep_clone(m)))
        });
        Arc::new(ScratchFile {
            node,
            path: self.path.clone(),
        })
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// An open scratch directory: its entries as of open, and its path for *at() calls.
#[derive(Debug)]
pub struct ScratchDir {
    path: String,
    entries: Vec<DirEntry>,
}

impl File for ScratchDir {
    fn kind(&self) -> Kind {
        Kind::Directory
    }

    fn stat(&self) -> SysResult<Stat> {
        Ok(Stat {
            dev: SYNTH_DEV + 1,
            ..Stat::synthetic(Kind::Directory, 0o755, 0x10_0000, 4096)
        })
    }

    fn entries(&self) -> SysResult<Vec<DirEntry>> {
        Ok(self.entries.clone())
    }

    fn path(&self) -> Option<&str> {
        Some(&self.path)
    }

    fn deep_clone(&self, _: &mut CloneMap) -> Arc<dyn File> {
        Arc::new(ScratchDir {
            path: self.path.clone(),
            entries: self.entries.clone(),
        })
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests;
