//! A program file mapped read-only: a 100 MB program (deno) costs the host only the pages
//! the loader reads, not a heap copy (which would count in RSS, once per booted program).

/// A file mapped read-only (private), unmapped on drop.
pub struct MappedFile {
    ptr: *mut libc::c_void,
    len: usize,
    file: std::sync::Arc<std::fs::File>,
}

impl MappedFile {
    /// Maps `path` (an empty file is an error).
    pub fn open(path: &std::path::Path) -> std::io::Result<MappedFile> {
        use std::os::fd::AsRawFd;
        let f = std::fs::File::open(path)?;
        let len = usize::try_from(f.metadata()?.len())
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::FileTooLarge))?;
        if len == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the file is empty",
            ));
        }
        // SAFETY: a fresh private read-only mapping of an open file; nothing aliases it
        // mutably. (Truncating the program while it runs raises SIGBUS, as it would for
        // any process executing it.)
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                f.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(MappedFile {
            ptr,
            len,
            file: std::sync::Arc::new(f),
        })
    }

    /// The open file the bytes are mapped from.
    pub fn file(&self) -> &std::sync::Arc<std::fs::File> {
        &self.file
    }

    /// The file's bytes.
    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `ptr` is a live read-only mapping of `len` bytes until drop.
        unsafe { std::slice::from_raw_parts(self.ptr.cast::<u8>(), self.len) }
    }
}

// SAFETY: the mapping is read-only and private, so sharing or moving it between threads
// cannot race; the pointer is only unmapped by Drop, once.
unsafe impl Send for MappedFile {}

impl Drop for MappedFile {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping `open` made; no slice of it outlives `self`.
        unsafe { libc::munmap(self.ptr, self.len) };
    }
}
