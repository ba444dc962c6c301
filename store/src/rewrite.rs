//! Making an erasure real on disk: copying every tree into a fresh sled directory and swapping
//! it in, so that the log segments that still hold deleted values are gone.
//!
//! sled locks its directory, so this runs while the store is closed: when the node stops
//! cleanly, and on start-up if the `erasure_pending` mark is still set (the stop was not clean,
//! or something still held the store). The swap, for `DIR` = `DATA_DIR/db`:
//!
//! 1. copy every tree of `DIR` (without the mark) into `DIR.new`, flush it, fsync its files;
//! 2. rename `DIR.new` to `DIR.next`: from here on the copy counts as complete;
//! 3. rename `DIR` to `DIR.old`, then `DIR.next` to `DIR`;
//! 4. remove `DIR.old`.
//!
//! Each rename is followed by an fsync of the data directory. [`recover`], run by every
//! [`crate::Store::open`] before it touches `DIR`, finishes or undoes a swap a crash
//! interrupted at any step: a `DIR.new` is an unfinished copy and is removed; a `DIR.next` is
//! complete and is moved into place; a `DIR.old` is removed once `DIR` exists, or moved back
//! if it does not.

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::erase::META_ERASURE_PENDING;
use crate::{open_db, StoreConfig, StoreError, TREE_META};

/// Entries per sled batch while copying.
const COPY_BATCH: usize = 1024;

/// Rewrites the database in `dir` into fresh files if an account deletion left the
/// `erasure_pending` mark; returns whether it did. The store must be closed: this waits up to
/// `wait` for sled's lock on `dir` (a store dropped a moment ago may still hold it) and fails
/// with the lock error after that, leaving the mark for the next attempt. Blocking: reads and
/// writes the whole database once.
pub fn rewrite_if_pending(
    dir: &Path,
    cfg: &StoreConfig,
    wait: Duration,
) -> Result<bool, StoreError> {
    recover(dir)?;
    if !dir.exists() {
        return Ok(false);
    }
    let started = Instant::now();
    let old = open_db(dir, cfg, wait)?;
    if !old
        .open_tree(TREE_META)?
        .contains_key(META_ERASURE_PENDING)?
    {
        return Ok(false);
    }
    let before = old.size_on_disk()?;
    let (new_dir, next_dir, old_dir) = siblings(dir);
    if new_dir.exists() {
        fs::remove_dir_all(&new_dir).map_err(io)?;
    }
    let after = {
        let new = open_db(&new_dir, cfg, Duration::ZERO)?;
        copy_trees(&old, &new)?;
        new.flush()?;
        new.size_on_disk()?
    };
    drop(old);
    sync_tree(&new_dir)?;
    rename(&new_dir, &next_dir)?;
    rename(dir, &old_dir)?;
    rename(&next_dir, dir)?;
    fs::remove_dir_all(&old_dir).map_err(io)?;
    sync_parent(dir)?;
    tracing::info!(
        path = %dir.display(),
        bytes_before = before,
        bytes_after = after,
        took_ms = started.elapsed().as_millis() as u64,
        "database rewritten: erased data is gone from the disk"
    );
    Ok(true)
}

/// Finishes or undoes a swap that a crash interrupted (see the module docs). Cheap when there
/// is nothing to do: three `exists` checks.
pub(crate) fn recover(dir: &Path) -> Result<(), StoreError> {
    let (new_dir, next_dir, old_dir) = siblings(dir);
    if new_dir.exists() {
        tracing::warn!(path = %new_dir.display(), "removing an unfinished database copy");
        fs::remove_dir_all(&new_dir).map_err(io)?;
    }
    if next_dir.exists() {
        tracing::warn!(path = %dir.display(), "finishing an interrupted database swap");
        if dir.exists() {
            if old_dir.exists() {
                fs::remove_dir_all(&old_dir).map_err(io)?;
            }
            rename(dir, &old_dir)?;
        }
        rename(&next_dir, dir)?;
    }
    if old_dir.exists() {
        if dir.exists() {
            fs::remove_dir_all(&old_dir).map_err(io)?;
        } else {
            tracing::warn!(path = %dir.display(), "restoring the database an interrupted swap moved");
            rename(&old_dir, dir)?;
        }
        sync_parent(dir)?;
    }
    Ok(())
}

/// Copies every tree of `from` into `to`, without the erasure mark.
fn copy_trees(from: &sled::Db, to: &sled::Db) -> Result<(), StoreError> {
    for name in from.tree_names() {
        let src = from.open_tree(&name)?;
        let dst = to.open_tree(&name)?;
        let is_meta = &name[..] == TREE_META.as_bytes();
        let mut batch = sled::Batch::default();
        let mut in_batch = 0;
        for entry in src.iter() {
            let (key, value) = entry?;
            if is_meta && &key[..] == META_ERASURE_PENDING {
                continue;
            }
            batch.insert(key, value);
            in_batch += 1;
            if in_batch == COPY_BATCH {
                dst.apply_batch(std::mem::take(&mut batch))?;
                in_batch = 0;
            }
        }
        dst.apply_batch(batch)?;
    }
    Ok(())
}

/// `DIR.new`, `DIR.next`, `DIR.old`.
fn siblings(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let with = |suffix: &str| {
        let mut name: OsString = dir.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    };
    (with(".new"), with(".next"), with(".old"))
}

fn rename(from: &Path, to: &Path) -> Result<(), StoreError> {
    fs::rename(from, to).map_err(io)?;
    sync_parent(to)
}

/// fsyncs the directory that holds `path`, so a rename in it is durable.
fn sync_parent(path: &Path) -> Result<(), StoreError> {
    match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(parent) => sync_dir(parent),
        None => sync_dir(Path::new(".")),
    }
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    fs::File::open(dir).and_then(|f| f.sync_all()).map_err(io)
}

/// fsyncs every file under `dir` and the directories themselves.
fn sync_tree(dir: &Path) -> Result<(), StoreError> {
    for entry in fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let path = entry.path();
        if entry.file_type().map_err(io)?.is_dir() {
            sync_tree(&path)?;
        } else {
            fs::File::open(&path)
                .and_then(|f| f.sync_all())
                .map_err(io)?;
        }
    }
    sync_dir(dir)
}

fn io(e: std::io::Error) -> StoreError {
    StoreError::Sled(sled::Error::Io(e))
}
