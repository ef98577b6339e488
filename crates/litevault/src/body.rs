//! The bytes of an LTX file on their way to a replica: in memory when small,
//! spilled to a temporary file when large, so that shipping a big transaction
//! or a first snapshot does not hold the whole file in memory.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;

/// Files larger than this are spilled to disk while they are encoded.
pub const SPILL_THRESHOLD: usize = 8 << 20;

/// An encoded LTX file ready to upload.
#[derive(Debug)]
pub enum LtxBody {
    /// Small files.
    Memory(Bytes),
    /// Large files, in a temporary file removed when this is dropped.
    Spilled(SpilledFile),
    /// A file kept elsewhere (the local LTX store); not removed on drop.
    File {
        /// Where it is.
        path: PathBuf,
        /// Its size.
        len: u64,
    },
}

impl LtxBody {
    /// Size in bytes.
    pub fn len(&self) -> u64 {
        match self {
            LtxBody::Memory(b) => b.len() as u64,
            LtxBody::Spilled(f) => f.len,
            LtxBody::File { len, .. } => *len,
        }
    }

    /// The file holding the bytes, for bodies not in memory.
    pub fn file_path(&self) -> Option<&Path> {
        match self {
            LtxBody::Memory(_) => None,
            LtxBody::Spilled(f) => Some(f.path()),
            LtxBody::File { path, .. } => Some(path),
        }
    }

    /// `true` for an empty body.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A temporary file holding an encoded LTX file; deleted on drop.
#[derive(Debug)]
pub struct SpilledFile {
    path: PathBuf,
    len: u64,
}

impl SpilledFile {
    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Moves the file to `to` (same file system) and keeps it there.
    pub fn persist(mut self, to: &Path) -> io::Result<()> {
        std::fs::rename(&self.path, to)?;
        // Nothing left to remove on drop.
        self.path = PathBuf::new();
        Ok(())
    }
}

impl Drop for SpilledFile {
    fn drop(&mut self) {
        if self.path.as_os_str().is_empty() {
            return;
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A writer that keeps bytes in memory up to a threshold, then moves them to
/// a temporary file in `dir` and continues there.
pub struct SpillWriter {
    dir: PathBuf,
    threshold: usize,
    mem: Vec<u8>,
    file: Option<(io::BufWriter<File>, PathBuf, u64)>,
}

impl SpillWriter {
    /// A writer spilling to `dir` past `threshold` bytes.
    pub fn new(dir: &Path, threshold: usize) -> SpillWriter {
        SpillWriter {
            dir: dir.to_path_buf(),
            threshold,
            mem: Vec::new(),
            file: None,
        }
    }

    /// The finished body.
    pub fn finish(self) -> io::Result<LtxBody> {
        match self.file {
            None => Ok(LtxBody::Memory(Bytes::from(self.mem))),
            Some((w, path, len)) => {
                let f = w.into_inner().map_err(|e| e.into_error())?;
                f.sync_all()?;
                Ok(LtxBody::Spilled(SpilledFile { path, len }))
            }
        }
    }
}

impl Write for SpillWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some((w, _, len)) = &mut self.file {
            w.write_all(buf)?;
            *len += buf.len() as u64;
            return Ok(buf.len());
        }
        if self.mem.len() + buf.len() <= self.threshold {
            self.mem.extend_from_slice(buf);
            return Ok(buf.len());
        }
        std::fs::create_dir_all(&self.dir)?;
        let path = self.dir.join(format!(
            "spill-{}-{:x}.ltx.tmp",
            std::process::id(),
            rand::random::<u64>()
        ));
        let mut w = io::BufWriter::with_capacity(1 << 20, File::create(&path)?);
        w.write_all(&self.mem)?;
        w.write_all(buf)?;
        let len = (self.mem.len() + buf.len()) as u64;
        self.mem = Vec::new();
        self.file = Some((w, path, len));
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.file {
            Some((w, _, _)) => w.flush(),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spills_past_the_threshold_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = SpillWriter::new(dir.path(), 10);
        w.write_all(b"12345").unwrap();
        assert!(matches!(
            SpillWriter::new(dir.path(), 10).finish().unwrap(),
            LtxBody::Memory(_)
        ));
        w.write_all(b"678901234").unwrap();
        w.write_all(b"xyz").unwrap();
        let body = w.finish().unwrap();
        let LtxBody::Spilled(f) = &body else {
            panic!("expected a spilled body")
        };
        assert_eq!(std::fs::read(f.path()).unwrap(), b"12345678901234xyz");
        assert_eq!(body.len(), 17);
        let path = f.path().to_path_buf();
        drop(body);
        assert!(!path.exists());
    }
}
