//! Rotated files: `<log>.1`, `<log>.2`, … in the order they were written (`.1` is the oldest; a
//! number is never reused and a rotated file is never renamed again, so a shipper can pick up each
//! once). The file named by `--audit-log` is always the newest.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

/// The rotated files of `log`, oldest first, with their numbers.
pub fn rotated_files(log: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let (Some(dir), Some(name)) = (parent(log), log.file_name().and_then(|n| n.to_str())) else {
        return Ok(Vec::new());
    };
    let prefix = format!("{name}.");
    let mut found = Vec::new();
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let file_name = entry.file_name();
        let Some(n) = file_name
            .to_str()
            .and_then(|f| f.strip_prefix(&prefix))
            .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|d| d.parse::<u64>().ok())
        else {
            continue;
        };
        found.push((n, entry.path()));
    }
    found.sort();
    Ok(found)
}

/// The name of rotated file number `n`.
pub fn rotated_name(log: &Path, n: u64) -> PathBuf {
    let mut s = log.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// The directory holding `log` (`.` for a bare file name).
fn parent(log: &Path) -> Option<PathBuf> {
    match log.parent() {
        Some(p) if p.as_os_str().is_empty() => Some(PathBuf::from(".")),
        Some(p) => Some(p.to_owned()),
        None => None,
    }
}

/// Renames `log` to rotated number `n` and makes the rename durable. The caller has synced the file.
pub(super) fn rename_to_rotated(log: &Path, n: u64) -> io::Result<()> {
    let target = rotated_name(log, n);
    if target.exists() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists already", target.display()),
        ));
    }
    fs::rename(log, &target)?;
    sync_dir(log)
}

/// Syncs the directory holding `log`, so that a rename or a new file survives a crash.
pub(super) fn sync_dir(log: &Path) -> io::Result<()> {
    match parent(log) {
        Some(dir) => File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}

/// Deletes the oldest rotated files until at most `keep` remain (`keep == 0` keeps all).
pub(super) fn prune(log: &Path, keep: usize) -> io::Result<usize> {
    if keep == 0 {
        return Ok(0);
    }
    let files = rotated_files(log)?;
    let excess = files.len().saturating_sub(keep);
    for (_, path) in &files[..excess] {
        fs::remove_file(path)?;
    }
    Ok(excess)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotated_files_are_ordered_by_number_not_by_name() {
        let dir = tempfile::tempdir().expect("dir");
        let log = dir.path().join("audit.jsonl");
        for name in [
            "audit.jsonl",
            "audit.jsonl.10",
            "audit.jsonl.9",
            "audit.jsonl.1",
            "audit.jsonl.x",
            "audit.jsonl.",
            "other.jsonl.2",
        ] {
            std::fs::write(dir.path().join(name), "").expect("write");
        }
        let numbers: Vec<u64> = rotated_files(&log)
            .expect("list")
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(numbers, [1, 9, 10]);
        assert_eq!(rotated_name(&log, 11), dir.path().join("audit.jsonl.11"));
    }

    #[test]
    fn prune_deletes_the_oldest_and_keep_zero_deletes_nothing() {
        let dir = tempfile::tempdir().expect("dir");
        let log = dir.path().join("a.log");
        for n in 1..=4 {
            std::fs::write(rotated_name(&log, n), "").expect("write");
        }
        assert_eq!(prune(&log, 0).expect("prune"), 0);
        assert_eq!(prune(&log, 3).expect("prune"), 1);
        let left: Vec<u64> = rotated_files(&log)
            .expect("list")
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(left, [2, 3, 4]);
    }

    #[test]
    fn rename_refuses_to_overwrite_a_rotated_file() {
        let dir = tempfile::tempdir().expect("dir");
        let log = dir.path().join("a.log");
        std::fs::write(&log, "new").expect("write");
        std::fs::write(rotated_name(&log, 1), "old").expect("write");
        assert!(rename_to_rotated(&log, 1).is_err());
        assert_eq!(
            std::fs::read_to_string(rotated_name(&log, 1)).expect("read"),
            "old"
        );
        rename_to_rotated(&log, 2).expect("rename");
        assert!(!log.exists());
    }
}
