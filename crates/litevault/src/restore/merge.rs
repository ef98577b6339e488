//! The merge of a chain's pages, with bounded open files, memory and disk.
//!
//! A chain is merged in one k-way pass over its files' page streams (pages
//! inside an LTX file are sorted), by the one page merge the compactor uses
//! too ([`ltx::merge`]): the newest version of each page wins, and a page
//! above the size a later file committed is dropped. At most
//! `MERGE_FAN_IN` replica files are open at once: a longer chain is merged
//! group by group, each group into a *run* (its surviving pages, in order,
//! LZ4-compressed, in the staging folder), and the runs are merged last
//! (again by groups when there are many). Memory is bounded by the group
//! size, and disk by what the files hold.
//!
//! [`Coverage`] checks, page by page as the merge emits them, that the chain
//! writes every page up to the size its last file claims, so nothing is
//! allocated or written for pages that a header claims and no file holds.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use lz4_flex::block::{compress_into, decompress_into, get_maximum_output_size};

use super::{Fetched, RestoreError, bad_file, io_err};
use crate::ltx::merge::{PageStream, merge_pages};
use crate::ltx::{self, Header, Trailer};
use crate::replica::LtxFileInfo;

pub(crate) use crate::ltx::merge::Coverage;

/// Replica files (or runs) open at once in one merge.
pub(crate) const MERGE_FAN_IN: usize = 64;

/// Read buffer of one merge input.
const INPUT_BUFFER: usize = 256 << 10;

/// The pages of one input of a merge.
enum Pages {
    /// A replica file being decoded.
    File {
        decoder: Box<ltx::Decoder<Box<dyn Read + Send>>>,
        /// Its index in the chain.
        index: usize,
    },
    /// A run written by an earlier merge.
    Run(RunReader),
}

/// One input of a merge: its pages and the smallest database size its
/// files committed.
struct Source {
    pages: Pages,
    min_commit: u32,
}

impl Source {
    fn next_page(
        &mut self,
        chain: &[LtxFileInfo],
        buf: &mut Vec<u8>,
    ) -> Result<Option<u32>, RestoreError> {
        match &mut self.pages {
            Pages::File { decoder, index } => {
                decoder.next_page(buf).map_err(bad_file(&chain[*index]))
            }
            Pages::Run(r) => r.next_page(buf),
        }
    }

    /// The replica file behind this input, for error messages.
    fn file<'c>(&self, chain: &'c [LtxFileInfo]) -> Option<&'c LtxFileInfo> {
        match &self.pages {
            Pages::File { index, .. } => chain.get(*index),
            Pages::Run(_) => None,
        }
    }
}

/// An input of a merge, with the chain its errors name.
struct Bound<'a> {
    source: &'a mut Source,
    chain: &'a [LtxFileInfo],
}

impl PageStream for Bound<'_> {
    type Error = RestoreError;

    fn next_page(&mut self, buf: &mut Vec<u8>) -> Result<Option<u32>, RestoreError> {
        self.source.next_page(self.chain, buf)
    }
}

/// Merges `sources` (oldest first) in page order with [`merge_pages`] and
/// hands each surviving page to `sink` once. A file's own commit bounds its
/// pages already (the decoder refuses a page above it); a run's pages were
/// filtered inside the run, and it carries the smallest size its files
/// committed. `sink` may stop the merge early.
fn merge_sources<E: From<RestoreError>>(
    chain: &[LtxFileInfo],
    sources: &mut [Source],
    page_size: u32,
    mut sink: impl FnMut(u32, &[u8]) -> Result<ControlFlow<()>, E>,
) -> Result<(), E> {
    let page_size = page_size as usize;
    let min_commits: Vec<u32> = sources.iter().map(|s| s.min_commit).collect();
    let files: Vec<Option<&LtxFileInfo>> = sources.iter().map(|s| s.file(chain)).collect();
    let mut inputs: Vec<Bound<'_>> = sources
        .iter_mut()
        .map(|source| Bound { source, chain })
        .collect();
    merge_pages(&mut inputs, &min_commits, |pgno, winner, page| {
        if page.len() != page_size {
            let reason = format!("page {pgno} has {} bytes", page.len());
            return Err(match files.get(winner).copied().flatten() {
                Some(f) => bad_file(f)(ltx::LtxError::InvalidHeader { reason }),
                None => RestoreError::Io {
                    path: PathBuf::new(),
                    source: std::io::Error::other(reason),
                },
            }
            .into());
        }
        sink(pgno, page)
    })
}

/// The chain's pages, ready to merge: every file's header, the trailers of
/// the files already merged into runs, and at most [`MERGE_FAN_IN`] inputs.
pub(crate) struct Prepared {
    headers: Vec<Header>,
    trailers: Vec<Option<Trailer>>,
    sources: Vec<Source>,
}

impl Prepared {
    /// The headers of the chain's files, in order.
    pub(crate) fn headers(&self) -> &[Header] {
        &self.headers
    }

    /// The page size of the chain.
    pub(crate) fn page_size(&self) -> u32 {
        self.headers.first().map(|h| h.page_size).unwrap_or(0)
    }

    /// The database size after the last file.
    pub(crate) fn commit(&self) -> u32 {
        self.headers.last().map(|h| h.commit).unwrap_or(0)
    }

    /// The smallest database size any file of the chain committed.
    #[cfg(feature = "dbpage")]
    pub(crate) fn min_commit(&self) -> u32 {
        self.headers.iter().map(|h| h.commit).min().unwrap_or(0)
    }

    /// Merges the pages into `sink` (see [`merge_sources`]).
    pub(crate) fn merge<E: From<RestoreError>>(
        &mut self,
        chain: &[LtxFileInfo],
        sink: impl FnMut(u32, &[u8]) -> Result<ControlFlow<()>, E>,
    ) -> Result<(), E> {
        let page_size = self.page_size();
        merge_sources(chain, &mut self.sources, page_size, sink)
    }

    /// Verifies the file checksum of every file still open and returns
    /// every file's trailer, in chain order.
    pub(crate) fn finish(self, chain: &[LtxFileInfo]) -> Result<Vec<Trailer>, RestoreError> {
        let mut trailers = self.trailers;
        for s in self.sources {
            if let Pages::File { decoder, index } = s.pages {
                let f = &chain[index];
                trailers[index] = Some(decoder.finish().map_err(bad_file(f))?);
            }
        }
        trailers
            .into_iter()
            .zip(chain)
            .map(|(t, f)| {
                t.ok_or_else(|| {
                    bad_file(f)(ltx::LtxError::InvalidTrailer {
                        reason: "the file was never read to its end".into(),
                    })
                })
            })
            .collect()
    }
}

/// Opens a replica file's decoder and checks its header against its name
/// and against the chain's page size.
fn open_file(
    f: &LtxFileInfo,
    data: &Fetched,
    page_size: Option<u32>,
) -> Result<ltx::Decoder<Box<dyn Read + Send>>, RestoreError> {
    let reader = data.reader(f)?;
    let d = ltx::Decoder::new(reader).map_err(bad_file(f))?;
    let h = d.header();
    if let Some(expected) = page_size
        && h.page_size != expected
    {
        return Err(RestoreError::PageSizeMismatch {
            file: f.to_string(),
            found: h.page_size,
            expected,
        });
    }
    if h.min_txid != f.min_txid || h.max_txid != f.max_txid {
        return Err(bad_file(f)(ltx::LtxError::InvalidHeader {
            reason: format!(
                "header says TXID {}-{}, the file name says {}-{}",
                h.min_txid, h.max_txid, f.min_txid, f.max_txid
            ),
        }));
    }
    Ok(d)
}

/// Opens every file of a short chain (at most [`MERGE_FAN_IN`]) for a
/// direct merge.
pub(crate) fn open_direct(
    chain: &[LtxFileInfo],
    fetched: Vec<Fetched>,
) -> Result<Prepared, RestoreError> {
    let mut headers = Vec::with_capacity(chain.len());
    let mut sources = Vec::with_capacity(chain.len());
    let mut page_size = None;
    for (index, (f, data)) in chain.iter().zip(&fetched).enumerate() {
        let d = open_file(f, data, page_size)?;
        let h = *d.header();
        page_size.get_or_insert(h.page_size);
        headers.push(h);
        sources.push(Source {
            pages: Pages::File {
                decoder: Box::new(d),
                index,
            },
            min_commit: h.commit,
        });
    }
    Ok(Prepared {
        trailers: vec![None; chain.len()],
        headers,
        sources,
    })
}

/// Runs built so far for a long chain: the group merges feed it in order.
pub(crate) struct RunSet {
    staging: PathBuf,
    fan_in: usize,
    headers: Vec<Header>,
    trailers: Vec<Option<Trailer>>,
    runs: Vec<Run>,
    made: usize,
}

/// A run on disk: the surviving pages of consecutive files.
struct Run {
    path: PathBuf,
    min_commit: u32,
}

impl RunSet {
    /// Runs in `staging`, merged `fan_in` (at least 2) at a time.
    pub(crate) fn new(staging: &Path, fan_in: usize) -> RunSet {
        RunSet {
            staging: staging.to_path_buf(),
            fan_in: fan_in.max(2),
            headers: Vec::new(),
            trailers: Vec::new(),
            runs: Vec::new(),
            made: 0,
        }
    }

    fn next_path(&mut self) -> PathBuf {
        self.made += 1;
        self.staging.join(format!("run-{:06}", self.made))
    }

    /// Merges the next group of the chain (`group` are its files, starting
    /// at chain index `start`) into a run, verifying each file's checksum.
    pub(crate) fn add_group(
        &mut self,
        chain: &[LtxFileInfo],
        start: usize,
        fetched: &[Fetched],
    ) -> Result<(), RestoreError> {
        let group = chain
            .get(start..start + fetched.len())
            .ok_or_else(|| RestoreError::Io {
                path: self.staging.clone(),
                source: std::io::Error::other("a merge group lies outside its chain"),
            })?;
        let mut sources = Vec::with_capacity(group.len());
        let mut page_size = self.headers.first().map(|h| h.page_size);
        for (k, (f, data)) in group.iter().zip(fetched).enumerate() {
            let d = open_file(f, data, page_size)?;
            let h = *d.header();
            page_size.get_or_insert(h.page_size);
            self.headers.push(h);
            sources.push(Source {
                pages: Pages::File {
                    decoder: Box::new(d),
                    index: start + k,
                },
                min_commit: h.commit,
            });
        }
        let page_size = page_size.unwrap_or(0);
        let min_commit = sources.iter().map(|s| s.min_commit).min().unwrap_or(0);
        let path = self.next_path();
        write_run(chain, &mut sources, page_size, &path)?;
        // Every file's own checksum, now that the group is read.
        self.trailers.resize(start, None);
        for s in sources {
            if let Pages::File { decoder, index } = s.pages {
                self.trailers
                    .push(Some(decoder.finish().map_err(bad_file(&chain[index]))?));
            }
        }
        self.runs.push(Run { path, min_commit });
        Ok(())
    }

    /// Merges runs until at most `fan_in` are left, and returns the chain
    /// ready for the last merge.
    pub(crate) fn finish(mut self, chain: &[LtxFileInfo]) -> Result<Prepared, RestoreError> {
        let page_size = self.headers.first().map(|h| h.page_size).unwrap_or(0);
        while self.runs.len() > self.fan_in {
            let runs = std::mem::take(&mut self.runs);
            let mut merged = Vec::new();
            for group in runs.chunks(self.fan_in) {
                let mut sources = group
                    .iter()
                    .map(|r| r.open(page_size))
                    .collect::<Result<Vec<_>, _>>()?;
                let min_commit = group.iter().map(|r| r.min_commit).min().unwrap_or(0);
                let path = self.next_path();
                write_run(chain, &mut sources, page_size, &path)?;
                drop(sources);
                for r in group {
                    let _ = std::fs::remove_file(&r.path);
                }
                merged.push(Run { path, min_commit });
            }
            self.runs = merged;
        }
        let sources = self
            .runs
            .iter()
            .map(|r| r.open(page_size))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Prepared {
            headers: self.headers,
            trailers: self.trailers,
            sources,
        })
    }
}

impl Run {
    fn open(&self, page_size: u32) -> Result<Source, RestoreError> {
        let file = File::open(&self.path).map_err(io_err(&self.path))?;
        Ok(Source {
            pages: Pages::Run(RunReader {
                r: BufReader::with_capacity(INPUT_BUFFER, file),
                path: self.path.clone(),
                page_size: page_size as usize,
                scratch: Vec::new(),
            }),
            min_commit: self.min_commit,
        })
    }
}

/// Writes the merge of `sources` to a run file: per page `pgno u32 | size
/// u32 | LZ4 block`, then `0u32`.
fn write_run(
    chain: &[LtxFileInfo],
    sources: &mut [Source],
    page_size: u32,
    path: &Path,
) -> Result<(), RestoreError> {
    let file = File::create(path).map_err(io_err(path))?;
    let mut w = BufWriter::with_capacity(INPUT_BUFFER, file);
    let mut block = vec![0u8; get_maximum_output_size(page_size as usize)];
    merge_sources(chain, sources, page_size, |pgno, page| {
        let n = compress_into(page, &mut block).map_err(|e| RestoreError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other(format!("LZ4: {e}")),
        })?;
        w.write_all(&pgno.to_be_bytes())
            .and_then(|()| w.write_all(&(n as u32).to_be_bytes()))
            .and_then(|()| w.write_all(&block[..n]))
            .map_err(io_err(path))?;
        Ok::<_, RestoreError>(ControlFlow::Continue(()))
    })?;
    w.write_all(&0u32.to_be_bytes()).map_err(io_err(path))?;
    w.flush().map_err(io_err(path))?;
    Ok(())
}

/// Reads a run written by [`write_run`].
struct RunReader {
    r: BufReader<File>,
    path: PathBuf,
    page_size: usize,
    scratch: Vec<u8>,
}

impl RunReader {
    fn next_page(&mut self, buf: &mut Vec<u8>) -> Result<Option<u32>, RestoreError> {
        let mut head = [0u8; 4];
        self.r.read_exact(&mut head).map_err(io_err(&self.path))?;
        let pgno = u32::from_be_bytes(head);
        if pgno == 0 {
            return Ok(None);
        }
        self.r.read_exact(&mut head).map_err(io_err(&self.path))?;
        let n = u32::from_be_bytes(head) as usize;
        let bad = |what: String| RestoreError::Io {
            path: self.path.clone(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, what),
        };
        if n > get_maximum_output_size(self.page_size) {
            return Err(bad(format!("page {pgno}: block of {n} bytes")));
        }
        self.scratch.resize(n, 0);
        self.r
            .read_exact(&mut self.scratch)
            .map_err(io_err(&self.path))?;
        buf.clear();
        buf.resize(self.page_size, 0);
        let got =
            decompress_into(&self.scratch, buf).map_err(|e| bad(format!("page {pgno}: {e}")))?;
        if got != self.page_size {
            return Err(bad(format!("page {pgno} has {got} bytes")));
        }
        Ok(Some(pgno))
    }
}
