//! The server's state: buckets of objects with generations, multipart
//! uploads in progress, and a count of requests by kind. Every operation
//! runs under one lock, so a conditional write is checked and applied
//! atomically, as GCS does.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

use axum::body::Bytes;
use chrono::{DateTime, Utc};
use md5::{Digest, Md5};

use super::api::Kind;
pub use super::error::Error;

/// GCS refuses a part smaller than this unless it is the last one.
pub const MIN_PART: usize = 5 << 20;
/// The largest page a listing returns, whatever `max-keys` asks.
pub const MAX_PAGE: usize = 1000;

/// The headers an object keeps and serves back: `Content-Type`,
/// `Cache-Control`, `Content-Disposition`, `Content-Encoding`,
/// `Content-Language`, `x-goog-storage-class` and `x-goog-meta-*`
/// (names in lower case).
pub type Meta = Vec<(String, String)>;

#[derive(Debug, Clone)]
pub struct Object {
    pub data: Bytes,
    pub generation: i64,
    pub metageneration: i64,
    /// Quoted, as sent in the `ETag` header.
    pub etag: String,
    pub updated: DateTime<Utc>,
    pub meta: Meta,
    /// For an object assembled from multipart parts: how many.
    pub components: Option<usize>,
    /// The MD5 of the data; GCS keeps none for a composite object.
    pub md5: Option<[u8; 16]>,
}

/// `x-goog-if-generation-match` and `x-goog-if-metageneration-match`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Precondition {
    pub generation: Option<i64>,
    pub metageneration: Option<i64>,
}

impl Precondition {
    /// Generation 0 means "no live object"; any other number must be the
    /// live object's generation.
    fn check(&self, live: Option<&Object>) -> Result<(), Error> {
        let ok_gen = match (self.generation, live) {
            (None, _) => true,
            (Some(0), live) => live.is_none(),
            (Some(g), Some(o)) => o.generation == g,
            (Some(_), None) => false,
        };
        let ok_meta = match (self.metageneration, live) {
            (None, _) => true,
            (Some(m), Some(o)) => o.metageneration == m,
            (Some(_), None) => false,
        };
        if ok_gen && ok_meta {
            Ok(())
        } else {
            Err(Error::PreconditionFailed)
        }
    }
}

struct Upload {
    bucket: String,
    key: String,
    meta: Meta,
    /// Part number → (quoted ETag, data).
    parts: BTreeMap<u32, (String, Bytes)>,
}

/// Where a page ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum After {
    Name(String),
    Prefix(String),
}

/// One page of a listing.
pub struct Page {
    pub objects: Vec<(String, Object)>,
    pub prefixes: Vec<String>,
    /// Where the next page starts, when there is one: after this object
    /// name, or past this common prefix.
    pub next: Option<After>,
}

pub struct Store {
    buckets: BTreeMap<String, BTreeMap<String, Object>>,
    uploads: HashMap<String, Upload>,
    last_generation: i64,
    next_upload: u64,
    /// The page size of a listing that gives no `max-keys`.
    pub list_page: usize,
    pub counts: BTreeMap<Kind, u64>,
}

pub fn quoted_md5(data: &[u8]) -> (String, [u8; 16]) {
    let sum: [u8; 16] = Md5::digest(data).into();
    (format!("\"{}\"", hex::encode(sum)), sum)
}

impl Store {
    pub fn new() -> Store {
        Store {
            buckets: BTreeMap::new(),
            uploads: HashMap::new(),
            last_generation: 0,
            next_upload: 1,
            list_page: MAX_PAGE,
            counts: BTreeMap::new(),
        }
    }

    pub fn create_bucket(&mut self, name: &str) {
        self.buckets.entry(name.to_string()).or_default();
    }

    /// GCS generations are microsecond timestamps; here they are that, and
    /// strictly increasing even when the clock is not.
    fn next_generation(&mut self) -> i64 {
        self.last_generation = Utc::now().timestamp_micros().max(self.last_generation + 1);
        self.last_generation
    }

    fn bucket(&self, name: &str) -> Result<&BTreeMap<String, Object>, Error> {
        self.buckets.get(name).ok_or(Error::NoSuchBucket)
    }

    /// Replaces (or creates) `key` if `pre` holds.
    fn write(
        &mut self,
        bucket: &str,
        key: &str,
        pre: Precondition,
        make: impl FnOnce(i64) -> Object,
    ) -> Result<Object, Error> {
        pre.check(self.bucket(bucket)?.get(key))?;
        let object = make(self.next_generation());
        let objects = self.buckets.get_mut(bucket).expect("checked above");
        objects.insert(key.to_string(), object.clone());
        Ok(object)
    }

    pub fn put(
        &mut self,
        bucket: &str,
        key: &str,
        data: Bytes,
        meta: Meta,
        pre: Precondition,
    ) -> Result<Object, Error> {
        let (etag, md5) = quoted_md5(&data);
        self.write(bucket, key, pre, |generation| Object {
            data,
            generation,
            metageneration: 1,
            etag,
            updated: Utc::now(),
            meta,
            components: None,
            md5: Some(md5),
        })
    }

    /// The live object; with `generation`, only if that is the live one
    /// (no older generations are kept).
    pub fn get(
        &self,
        bucket: &str,
        key: &str,
        generation: Option<i64>,
        pre: Precondition,
    ) -> Result<Object, Error> {
        let live = self.bucket(bucket)?.get(key);
        let object = live.ok_or(Error::NoSuchKey)?;
        if generation.is_some_and(|g| g != object.generation) {
            return Err(Error::NoSuchKey);
        }
        pre.check(live)?;
        Ok(object.clone())
    }

    pub fn delete(&mut self, bucket: &str, key: &str, pre: Precondition) -> Result<(), Error> {
        let live = self.bucket(bucket)?.get(key);
        if live.is_none() {
            return Err(Error::NoSuchKey);
        }
        pre.check(live)?;
        self.buckets.get_mut(bucket).unwrap().remove(key);
        Ok(())
    }

    /// Copies the live `from` object, data and metadata, to `to`.
    pub fn copy(
        &mut self,
        (src_bucket, src_key): (&str, &str),
        (bucket, key): (&str, &str),
        pre: Precondition,
    ) -> Result<Object, Error> {
        let source = self
            .bucket(src_bucket)?
            .get(src_key)
            .ok_or(Error::NoSuchKey)?
            .clone();
        self.write(bucket, key, pre, |generation| Object {
            generation,
            metageneration: 1,
            updated: Utc::now(),
            ..source
        })
    }

    /// Objects whose names start with `prefix`, in name order, after the
    /// name `after` and not under `skip` (the common prefix a page ended
    /// on); with a delimiter, the names that go on past it roll up into one
    /// common prefix each. At most `max` entries (objects and prefixes
    /// together).
    pub fn list(
        &self,
        bucket: &str,
        (prefix, delimiter): (&str, Option<&str>),
        (after, skip): (Option<&str>, Option<&str>),
        max: usize,
    ) -> Result<Page, Error> {
        let objects = self.bucket(bucket)?;
        let start = match after {
            Some(a) if a >= prefix => Bound::Excluded(a),
            _ => Bound::Included(prefix),
        };
        let mut page = Page {
            objects: Vec::new(),
            prefixes: Vec::new(),
            next: None,
        };
        let mut last: Option<After> = None;
        let mut entries = 0;
        let iter = objects
            .range::<str, _>((start, Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix));
        for (key, object) in iter {
            if skip.is_some_and(|s| key.starts_with(s)) {
                continue;
            }
            let rolled = delimiter.and_then(|d| {
                let rest = &key[prefix.len()..];
                rest.find(d)
                    .map(|i| key[..prefix.len() + i + d.len()].to_string())
            });
            if rolled.is_some() && rolled == page.prefixes.last().cloned() {
                continue;
            }
            if entries == max {
                page.next = last;
                break;
            }
            entries += 1;
            match rolled {
                Some(p) => {
                    last = Some(After::Prefix(p.clone()));
                    page.prefixes.push(p);
                }
                None => {
                    last = Some(After::Name(key.clone()));
                    page.objects.push((key.clone(), object.clone()));
                }
            }
        }
        Ok(page)
    }

    pub fn initiate(&mut self, bucket: &str, key: &str, meta: Meta) -> Result<String, Error> {
        self.bucket(bucket)?;
        let id = format!(
            "upload-{}-{}",
            self.next_upload,
            Utc::now().timestamp_micros()
        );
        self.next_upload += 1;
        let upload = Upload {
            bucket: bucket.into(),
            key: key.into(),
            meta,
            parts: BTreeMap::new(),
        };
        self.uploads.insert(id.clone(), upload);
        Ok(id)
    }

    fn upload(&mut self, bucket: &str, key: &str, id: &str) -> Result<&mut Upload, Error> {
        match self.uploads.get_mut(id) {
            Some(u) if u.bucket == bucket && u.key == key => Ok(u),
            _ => Err(Error::NoSuchUpload),
        }
    }

    /// Stores part `number` (1 to 10000), replacing an earlier one with
    /// that number; returns its quoted ETag.
    pub fn upload_part(
        &mut self,
        (bucket, key): (&str, &str),
        id: &str,
        number: u32,
        data: Bytes,
    ) -> Result<String, Error> {
        if !(1..=10_000).contains(&number) {
            return Err(Error::InvalidArgument(format!(
                "partNumber {number} is not between 1 and 10000"
            )));
        }
        let upload = self.upload(bucket, key, id)?;
        let (etag, _) = quoted_md5(&data);
        upload.parts.insert(number, (etag.clone(), data));
        Ok(etag)
    }

    /// Assembles the parts named, in the order named (ascending numbers,
    /// each with the ETag its upload returned; all but the last at least
    /// 5 MiB), into the object, replacing any live one.
    pub fn complete(
        &mut self,
        (bucket, key): (&str, &str),
        id: &str,
        listed: &[(u32, String)],
    ) -> Result<Object, Error> {
        let upload = self.upload(bucket, key, id)?;
        if listed.is_empty() {
            return Err(Error::InvalidArgument("the upload lists no parts".into()));
        }
        if listed.windows(2).any(|w| w[0].0 >= w[1].0) {
            return Err(Error::InvalidPartOrder);
        }
        let mut data = Vec::new();
        let mut sums = Vec::new();
        for (i, (number, etag)) in listed.iter().enumerate() {
            let (have, bytes) = upload
                .parts
                .get(number)
                .ok_or_else(|| Error::InvalidPart(format!("part {number} was not uploaded")))?;
            if have.trim_matches('"') != etag.trim_matches('"') {
                return Err(Error::InvalidPart(format!(
                    "part {number} has ETag {have}, not {etag}"
                )));
            }
            if i + 1 < listed.len() && bytes.len() < MIN_PART {
                return Err(Error::EntityTooSmall(*number));
            }
            sums.extend(hex::decode(have.trim_matches('"')).expect("our own ETag"));
            data.extend_from_slice(bytes);
        }
        let meta = upload.meta.clone();
        self.uploads.remove(id);
        let (sum, _) = quoted_md5(&sums);
        let etag = format!("{}-{}\"", sum.trim_end_matches('"'), listed.len());
        self.write(bucket, key, Precondition::default(), |generation| Object {
            data: Bytes::from(data),
            generation,
            metageneration: 1,
            etag,
            updated: Utc::now(),
            meta,
            components: Some(listed.len()),
            md5: None,
        })
    }

    pub fn abort(&mut self, bucket: &str, key: &str, id: &str) -> Result<(), Error> {
        self.upload(bucket, key, id)?;
        self.uploads.remove(id);
        Ok(())
    }

    /// Multipart uploads neither completed nor aborted.
    pub fn open_uploads(&self) -> usize {
        self.uploads.len()
    }
}
