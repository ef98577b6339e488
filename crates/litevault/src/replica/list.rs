//! Listing a replica's LTX files: one level, or every level in one listing.

use std::sync::atomic::Ordering;

use futures::{StreamExt, TryStreamExt};
use object_store::ObjectMeta;
use object_store::path::Path as ObjectPath;

use super::{KeyLayout, LtxFileInfo, Replica, ReplicaError, SNAPSHOT_LEVEL, file_kind, join};
use crate::ltx;

/// How many objects outside the level folders one listing of every level
/// pages through before the replica goes back to listing level by level.
/// A replica's own folder holds a few (its lease); more means someone
/// else's objects share the prefix (a Litestream v0.3 backup's
/// `generations/`, another replica nested under this one).
const STRANGERS: usize = 64;

/// Where an object of a recursive listing belongs.
enum Listed {
    /// An LTX file of a level.
    File(LtxFileInfo),
    /// Something else in a level folder (an upload's staging file).
    Other,
    /// Not in a level folder of this replica.
    Stranger,
}

impl Replica {
    /// Lists the LTX files of one level, sorted by TXID range.
    pub async fn list_level(&self, level: u8) -> Result<Vec<LtxFileInfo>, ReplicaError> {
        let prefix = self.level_prefix(level);
        let path = ObjectPath::from(prefix.as_str());
        let metas: Vec<ObjectMeta> = self
            .with_retry_op("LIST", &prefix, &self.stats.lists, || {
                self.store.list(Some(&path)).try_collect()
            })
            .await?;
        let mut files: Vec<LtxFileInfo> = metas
            .into_iter()
            .filter_map(|m| {
                let name = m.location.filename()?;
                let (min_txid, max_txid) = ltx::parse_filename_shape(name)?;
                // Only direct children of the level folder.
                let parent_ok = m
                    .location
                    .as_ref()
                    .strip_suffix(name)
                    .map(|p| p.trim_end_matches('/') == prefix.trim_end_matches('/'))
                    .unwrap_or(false);
                parent_ok.then_some(LtxFileInfo {
                    level,
                    min_txid,
                    max_txid,
                    size: m.size,
                    created: m.last_modified,
                })
            })
            .collect();
        files.sort_by_key(|f| (f.min_txid, f.max_txid));
        self.check_local_entries(&prefix)?;
        Ok(files)
    }

    /// Lists every level (0 to 9), lowest level first, each sorted by TXID
    /// range.
    ///
    /// One recursive listing of the folder that holds the levels: a start
    /// over a thousand databases makes one LIST request per database, not
    /// ten. When that folder turns out to hold many other objects, this
    /// replica lists level by level from then on, so it never pages through
    /// objects that are not its own more than once.
    pub async fn list_all(&self) -> Result<Vec<LtxFileInfo>, ReplicaError> {
        if !self.list_per_level.load(Ordering::Relaxed) {
            if let Some(files) = self.list_levels_at_once().await? {
                return Ok(files);
            }
            tracing::debug!(replica = %self, "the replica's folder holds other objects; listing level by level");
            self.list_per_level.store(true, Ordering::Relaxed);
        }
        let levels =
            futures::future::try_join_all((0..=SNAPSHOT_LEVEL).map(|l| self.list_level(l))).await?;
        Ok(levels.into_iter().flatten().collect())
    }

    /// The folder whose children are the level folders.
    fn levels_root(&self) -> String {
        match self.layout {
            KeyLayout::Ltx => join(&self.prefix, "ltx"),
            KeyLayout::S3 => self.prefix.clone(),
        }
    }

    /// Every level in one listing; `None` after more than [`STRANGERS`]
    /// objects outside the level folders.
    async fn list_levels_at_once(&self) -> Result<Option<Vec<LtxFileInfo>>, ReplicaError> {
        let root = self.levels_root();
        let path = (!root.is_empty()).then(|| ObjectPath::from(root.as_str()));
        let listed = self
            .with_retry_op("LIST", &root, &self.stats.lists, || async {
                let mut stream = self.store.list(path.as_ref());
                let mut files = Vec::new();
                let mut strangers = 0;
                while let Some(meta) = stream.next().await {
                    match self.classify(&root, meta?) {
                        Listed::File(f) => files.push(f),
                        Listed::Other => {}
                        Listed::Stranger => {
                            strangers += 1;
                            if strangers > STRANGERS {
                                return Ok(None);
                            }
                        }
                    }
                }
                Ok(Some(files))
            })
            .await?;
        let Some(mut files) = listed else {
            return Ok(None);
        };
        files.sort_by_key(|f| (f.level, f.min_txid, f.max_txid));
        for level in 0..=SNAPSHOT_LEVEL {
            self.check_local_entries(&self.level_prefix(level))?;
        }
        Ok(Some(files))
    }

    /// Places an object listed under `root` (see [`Replica::levels_root`]).
    fn classify(&self, root: &str, meta: ObjectMeta) -> Listed {
        let key = meta.location.as_ref();
        let relative = if root.is_empty() {
            Some(key)
        } else {
            key.strip_prefix(root).and_then(|r| r.strip_prefix('/'))
        };
        let Some((dir, name)) = relative.and_then(|r| r.split_once('/')) else {
            return Listed::Stranger;
        };
        let Some(level) = self.level_of(dir).filter(|_| !name.contains('/')) else {
            return Listed::Stranger;
        };
        match ltx::parse_filename_shape(name) {
            Some((min_txid, max_txid)) => Listed::File(LtxFileInfo {
                level,
                min_txid,
                max_txid,
                size: meta.size,
                created: meta.last_modified,
            }),
            None => Listed::Other,
        }
    }

    /// The level whose folder (relative to [`Replica::levels_root`]) is
    /// `dir`, spelled exactly as this layout spells it.
    fn level_of(&self, dir: &str) -> Option<u8> {
        let level = match self.layout {
            KeyLayout::Ltx => dir.parse::<u8>().ok()?,
            KeyLayout::S3 => u8::from_str_radix(dir, 16).ok()?,
        };
        let spelled = match self.layout {
            KeyLayout::Ltx => level.to_string(),
            KeyLayout::S3 => format!("{level:04x}"),
        };
        (level <= SNAPSHOT_LEVEL && spelled == dir).then_some(level)
    }

    /// In a local folder, an entry named like an LTX file must be a regular
    /// file: the store's listing silently skips a directory or a dangling
    /// link and follows a link anywhere, so look at the folder itself.
    fn check_local_entries(&self, prefix: &str) -> Result<(), ReplicaError> {
        let Some(root) = &self.local_root else {
            return Ok(());
        };
        let dir = root.join(prefix);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            // No folder: no files (the store's listing said so too).
            return Ok(());
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            if name.to_str().and_then(ltx::parse_filename_shape).is_none() {
                continue;
            }
            // `file_type` does not follow symbolic links.
            match entry.file_type() {
                Ok(t) if t.is_file() => {}
                Ok(t) => {
                    return Err(ReplicaError::NotAFile {
                        path: entry.path(),
                        kind: file_kind(&t),
                    });
                }
                Err(_) => {
                    return Err(ReplicaError::NotAFile {
                        path: entry.path(),
                        kind: "file of unknown type",
                    });
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use object_store::memory::InMemory;
    use object_store::{ObjectStoreExt, PutPayload};

    use super::*;

    async fn put(store: &InMemory, key: &str) {
        store
            .put(&ObjectPath::from(key), PutPayload::from_static(b"x"))
            .await
            .unwrap();
    }

    fn names(files: &[LtxFileInfo]) -> Vec<String> {
        files
            .iter()
            .map(|f| format!("{}:{}-{}", f.level, f.min_txid.0, f.max_txid.0))
            .collect()
    }

    /// A replica's files in both layouts, beside objects that are not its
    /// own: the lease, staging files, a replica nested under its prefix.
    #[tokio::test]
    async fn one_listing_finds_every_level_and_nothing_else() {
        for (layout, l0, l1, l9) in [
            (KeyLayout::Ltx, "ltx/0", "ltx/1", "ltx/9"),
            (KeyLayout::S3, "0000", "0001", "0009"),
        ] {
            let store = Arc::new(InMemory::new());
            for key in [
                format!("db/{l0}/0000000000000002-0000000000000002.ltx"),
                format!("db/{l0}/0000000000000003-0000000000000004.ltx"),
                format!("db/{l1}/0000000000000001-0000000000000004.ltx"),
                format!("db/{l9}/0000000000000001-0000000000000004.ltx"),
                format!("db/{l0}/0000000000000005-0000000000000005.ltx#1"),
                "db/litevault.lease".to_string(),
                format!("db/nested/{l0}/0000000000000001-0000000000000009.ltx"),
                format!("db/{l0}/deeper/0000000000000001-0000000000000009.ltx"),
                "db/ltx/10/0000000000000001-0000000000000009.ltx".to_string(),
                "db/00a/0000000000000001-0000000000000009.ltx".to_string(),
                format!("dbx/{l0}/0000000000000001-0000000000000009.ltx"),
            ] {
                put(&store, &key).await;
            }
            let replica = Replica::from_store(store.clone(), "db", layout, "mem");
            let all = replica.list_all().await.unwrap();
            assert_eq!(replica.stats().counts().lists, 1, "{layout:?}: one LIST");
            assert_eq!(
                names(&all),
                ["0:2-2", "0:3-4", "1:1-4", "9:1-4"],
                "{layout:?}"
            );
            let per_level: Vec<LtxFileInfo> = {
                let mut v = Vec::new();
                for l in 0..=SNAPSHOT_LEVEL {
                    v.extend(replica.list_level(l).await.unwrap());
                }
                v
            };
            assert_eq!(names(&all), names(&per_level), "{layout:?}");
        }
    }

    /// Many objects beside the levels (a Litestream v0.3 backup): the
    /// listing gives up on them once and lists level by level after.
    #[tokio::test]
    async fn a_crowded_prefix_is_listed_level_by_level() {
        let store = Arc::new(InMemory::new());
        put(&store, "db/0000/0000000000000001-0000000000000001.ltx").await;
        put(&store, "db/0009/0000000000000001-0000000000000001.ltx").await;
        for i in 0..(STRANGERS + 10) {
            put(&store, &format!("db/generations/0a/wal/{i:08x}.wal.lz4")).await;
        }
        let replica = Replica::from_store(store.clone(), "db", KeyLayout::S3, "mem");
        let first = replica.list_all().await.unwrap();
        assert_eq!(names(&first), ["0:1-1", "9:1-1"]);
        assert_eq!(
            replica.stats().counts().lists,
            1 + 10,
            "one try, then each level"
        );
        let second = replica.list_all().await.unwrap();
        assert_eq!(names(&second), names(&first));
        assert_eq!(
            replica.stats().counts().lists,
            11 + 10,
            "level by level from then on"
        );
    }
}
