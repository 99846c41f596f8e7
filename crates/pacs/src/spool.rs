//! The durable spool: every received object is a DICOM file here before
//! its C-STORE is answered with success, and stays until its result is in
//! the worklist (and its results are in the outbox).
//!
//! A file is written to a temporary name, flushed to disk (`fsync`),
//! renamed to its final name and the directory flushed too, so after a
//! crash — `kill -9` or power loss — a spooled file is either complete under
//! its final name or absent (and then its sender was never told success).
//! Names sort in arrival order: `<received ms>-<sequence>.dcm`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use dicom_object::FileMetaTableBuilder;

use super::uids;

/// One spooled object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolEntry {
    /// Its file.
    pub path: PathBuf,
    /// Arrival, ms since the epoch (from its name).
    pub received_ms: i64,
}

impl SpoolEntry {
    /// The file name, a log-safe handle of the entry (no identifiers).
    pub fn name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

/// An object being received into the spool (see [`Spool::partial`]): its
/// temporary file is removed when this is dropped uncommitted — the
/// association ended, or the object was refused.
#[derive(Debug)]
pub struct Partial {
    path: PathBuf,
    keep: bool,
}

impl Partial {
    /// The temporary file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        if !self.keep {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// The spool directory.
#[derive(Debug)]
pub struct Spool {
    incoming: PathBuf,
    rejected: PathBuf,
    sequence: AtomicU64,
}

const SUFFIX: &str = ".dcm";
const TMP_PREFIX: &str = ".tmp-";

impl Spool {
    /// Opens (creating) the spool under `root`; removes temporary files a
    /// crash left behind (their senders were never answered).
    pub fn open(root: &Path) -> io::Result<Spool> {
        let incoming = root.join("incoming");
        let rejected = root.join("rejected");
        fs::create_dir_all(&incoming)?;
        fs::create_dir_all(&rejected)?;
        let mut max_seq = 0;
        for entry in fs::read_dir(&incoming)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(TMP_PREFIX) {
                let _ = fs::remove_file(entry.path());
            } else if let Some((_, seq)) = parse_name(&name) {
                max_seq = max_seq.max(seq);
            }
        }
        Ok(Spool {
            incoming,
            rejected,
            sequence: AtomicU64::new(max_seq + 1),
        })
    }

    /// Writes `parts` (concatenated) durably as a new entry. Blocking.
    pub fn put(&self, parts: &[&[u8]], received_ms: i64) -> io::Result<SpoolEntry> {
        let seq = self.sequence.fetch_add(1, Ordering::Relaxed);
        let name = format!("{received_ms:013}-{seq:010}{SUFFIX}");
        let tmp = self.incoming.join(format!("{TMP_PREFIX}{name}"));
        let path = self.incoming.join(&name);
        let result = (|| {
            let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
            for p in parts {
                f.write_all(p)?;
            }
            f.sync_all()?;
            drop(f);
            fs::rename(&tmp, &path)?;
            sync_dir(&self.incoming)
        })();
        if let Err(e) = result {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
        Ok(SpoolEntry { path, received_ms })
    }

    /// Starts an object received straight into the spool: a temporary file
    /// (removed unless [`Spool::commit`]ted, and by [`Spool::open`] after a
    /// crash) that the receiver appends to as data arrives, so that an
    /// object is never held whole in memory.
    pub fn partial(&self) -> io::Result<(Partial, File)> {
        let seq = self.sequence.fetch_add(1, Ordering::Relaxed);
        let path = self
            .incoming
            .join(format!("{TMP_PREFIX}receiving-{seq:010}{SUFFIX}"));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        Ok((Partial { path, keep: false }, file))
    }

    /// Makes a complete [`Partial`] a durable entry (flushed, renamed,
    /// directory flushed), as [`Spool::put`] does. Blocking.
    pub fn commit(&self, mut partial: Partial, received_ms: i64) -> io::Result<SpoolEntry> {
        let seq = self.sequence.fetch_add(1, Ordering::Relaxed);
        let name = format!("{received_ms:013}-{seq:010}{SUFFIX}");
        let path = self.incoming.join(&name);
        File::open(&partial.path)?.sync_all()?;
        fs::rename(&partial.path, &path)?;
        partial.keep = true;
        sync_dir(&self.incoming)?;
        Ok(SpoolEntry { path, received_ms })
    }

    /// Entries waiting, oldest first.
    pub fn pending(&self) -> io::Result<Vec<SpoolEntry>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.incoming)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some((received_ms, _)) = parse_name(&name) {
                out.push(SpoolEntry {
                    path: entry.path(),
                    received_ms,
                });
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    /// Removes a processed entry (durably).
    pub fn remove(&self, entry: &SpoolEntry) -> io::Result<()> {
        match fs::remove_file(&entry.path) {
            Ok(()) => sync_dir(&self.incoming),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Retention: removes files set aside in `root`'s `rejected/` folder
    /// that were last modified before `before`; returns how many. Safe
    /// beside a running service (whole files, nothing else touched).
    pub fn purge_rejected(root: &Path, before: std::time::SystemTime) -> io::Result<usize> {
        let Ok(entries) = fs::read_dir(root.join("rejected")) else {
            return Ok(0);
        };
        let mut removed = 0;
        for entry in entries.flatten() {
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t < before);
            if old && entry.file_type().is_ok_and(|t| t.is_file()) {
                fs::remove_file(entry.path())?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Moves an entry that can never be processed to `rejected/`, where an
    /// administrator finds it; it is not retried.
    pub fn reject(&self, entry: &SpoolEntry) -> io::Result<PathBuf> {
        let to = self.rejected.join(entry.name());
        fs::rename(&entry.path, &to)?;
        sync_dir(&self.incoming)?;
        Ok(to)
    }

    /// Number of entries waiting.
    pub fn depth(&self) -> usize {
        self.pending().map(|p| p.len()).unwrap_or(0)
    }
}

fn parse_name(name: &str) -> Option<(i64, u64)> {
    let stem = name.strip_suffix(SUFFIX)?;
    let (ms, seq) = stem.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

/// Flushes a directory's entries (a rename or unlink) to disk.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Preamble, `DICM` and the File Meta Information of a received object, to
/// be followed by its data set exactly as received.
pub fn file_header(
    transfer_syntax: &str,
    sop_class: &str,
    sop_instance: &str,
    source_ae: &str,
    receiving_ae: &str,
) -> Result<Vec<u8>, String> {
    let meta = FileMetaTableBuilder::new()
        .media_storage_sop_class_uid(sop_class)
        .media_storage_sop_instance_uid(sop_instance)
        .transfer_syntax(transfer_syntax)
        .implementation_class_uid(uids::IMPLEMENTATION_CLASS_UID)
        .implementation_version_name(uids::IMPLEMENTATION_VERSION_NAME)
        .source_application_entity_title(source_ae)
        .receiving_application_entity_title(receiving_ae)
        .build()
        .map_err(|e| e.to_string())?;
    let mut out = vec![0u8; 128];
    out.extend_from_slice(b"DICM");
    meta.write(&mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_removes_rejected_files_older_than_the_cutoff() {
        let dir = tempfile::tempdir().unwrap();
        let _spool = Spool::open(dir.path()).unwrap();
        let now = std::time::SystemTime::now();
        let old = dir.path().join("rejected/old.dcm");
        let new = dir.path().join("rejected/new.dcm");
        fs::write(&old, b"x").unwrap();
        fs::write(&new, b"y").unwrap();
        fs::File::options()
            .write(true)
            .open(&old)
            .unwrap()
            .set_modified(now - std::time::Duration::from_secs(100 * 86_400))
            .unwrap();
        let cutoff = now - std::time::Duration::from_secs(90 * 86_400);
        assert_eq!(Spool::purge_rejected(dir.path(), cutoff).unwrap(), 1);
        assert!(!old.exists());
        assert!(new.exists());
        assert_eq!(
            Spool::purge_rejected(&dir.path().join("nothing"), cutoff).unwrap(),
            0
        );
    }

    #[test]
    fn entries_are_durable_ordered_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let a = spool.put(&[b"first", b"-part"], 1_000).unwrap();
        let b = spool.put(&[b"second"], 1_000).unwrap();
        assert_eq!(fs::read(&a.path).unwrap(), b"first-part");
        // A crash mid-write leaves a temporary file: dropped on reopening.
        fs::write(dir.path().join("incoming/.tmp-x.dcm"), b"partial").unwrap();
        drop(spool);
        let spool = Spool::open(dir.path()).unwrap();
        assert_eq!(spool.pending().unwrap(), vec![a.clone(), b.clone()]);
        let c = spool.put(&[b"third"], 500).unwrap();
        assert_ne!(c.path, a.path);
        spool.remove(&a).unwrap();
        spool.remove(&a).unwrap();
        let moved = spool.reject(&b).unwrap();
        assert!(moved.exists());
        assert_eq!(spool.pending().unwrap(), vec![c]);
        assert_eq!(
            fs::read_dir(dir.path().join("incoming")).unwrap().count(),
            1,
            "no temporary files left"
        );
    }

    #[test]
    fn the_file_header_is_a_readable_meta_group() {
        let mut bytes = file_header(
            "1.2.840.10008.1.2.1",
            "1.2.840.10008.5.1.4.1.1.1",
            "1.2.3",
            "PACS",
            "CXR",
        )
        .unwrap();
        assert_eq!(&bytes[128..132], b"DICM");
        bytes.drain(..128);
        let meta = dicom_object::FileMetaTable::from_reader(&bytes[..]).unwrap();
        assert_eq!(meta.transfer_syntax(), "1.2.840.10008.1.2.1");
        assert_eq!(meta.media_storage_sop_instance_uid(), "1.2.3");
        assert_eq!(meta.source_application_entity_title(), Some("PACS"));
    }
}
