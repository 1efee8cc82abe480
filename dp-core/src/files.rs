//! Writing run files safely: private permissions, atomic replacement that survives a crash or a
//! power loss, an exclusive lock on a run directory, and clean-up of what a killed writer left.
//!
//! # Privacy
//! Every file written here is created with mode 0600 and every directory with mode 0700 (on
//! Unix): what a training run writes is for its owner until they decide what to release.

use crate::error::{DpError, Result};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The marker in the names of temporary files made by [`write_atomically`].
const TEMP_MARKER: &str = ".tmp-";

fn fail(path: &Path, reason: impl std::fmt::Display) -> DpError {
    DpError::Checkpoint {
        path: path.display().to_string(),
        reason: reason.to_string(),
    }
}

/// The directory `path` is in (`.` for a bare file name).
pub fn parent_dir(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Options that create a file readable and writable by its owner only.
pub fn private_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
}

/// Makes `path` readable and writable by its owner only (for files written by other
/// libraries, such as plots).
pub fn make_private(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Creates `dir` and its missing parents; `dir` itself gets mode 0700.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        builder.mode(0o700);
        builder.create(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
    }
    #[cfg(not(unix))]
    builder.create(dir)
}

/// Flushes the directory entry of `dir` to disk, so that a rename in it survives a power loss.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Writes `bytes` to `path` atomically: a private temporary file in the same directory,
/// flushed to disk, renamed over `path`, then the directory flushed. After a crash or a power
/// loss `path` holds either its old or its new contents, never a mix; on an error `path` is
/// untouched.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = parent_dir(path);
    let name = path
        .file_name()
        .ok_or_else(|| fail(path, "not a file path"))?;
    let tmp: PathBuf = dir.join(format!(
        ".{}{TEMP_MARKER}{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| -> std::io::Result<()> {
        let mut file = private_options()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        sync_dir(dir)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(fail(path, e));
    }
    Ok(())
}

/// Whether `name` is that of a temporary file made by [`write_atomically`].
pub fn is_temporary(name: &str) -> bool {
    name.starts_with('.') && name.contains(TEMP_MARKER)
}

/// Removes the temporary files that writers killed mid-write left in `dir`; returns how many.
/// Call it only while holding the directory's lock ([`lock_dir`]), so that no live writer's
/// file is removed.
pub fn remove_stale_temporaries(dir: &Path) -> std::io::Result<usize> {
    let mut removed = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name().to_str().is_some_and(is_temporary) && entry.file_type()?.is_file() {
            std::fs::remove_file(entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// The name of the lock file [`lock_dir`] holds in a directory.
pub const LOCK_FILE: &str = ".lock";

/// Takes an exclusive lock on `dir` (an advisory lock on `dir/.lock`), held until the returned
/// file is dropped or the process ends, however it ends. A second process that tries while it
/// is held gets an error instead of writing the same journal concurrently (two writers could
/// each overwrite the other's record of spent budget).
pub fn lock_dir(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK_FILE);
    let file = private_options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| fail(&path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(fail(
            dir,
            "another process is using this run directory (its lock is held)",
        )),
        Err(std::fs::TryLockError::Error(e)) => Err(fail(&path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn atomic_writes_are_private_and_leave_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.json");
        write_atomically(&path, b"one").unwrap();
        write_atomically(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        #[cfg(unix)]
        assert_eq!(mode(&path), 0o600);
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn stale_temporaries_are_removed_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(".checkpoint.dpck.tmp-123"), b"x").unwrap();
        std::fs::write(dir.path().join("keep.tmp"), b"x").unwrap();
        assert_eq!(remove_stale_temporaries(dir.path()).unwrap(), 1);
        assert!(dir.path().join("keep.tmp").exists());
    }

    #[test]
    fn a_held_lock_refuses_a_second_holder_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let held = lock_dir(dir.path()).unwrap();
        let err = lock_dir(dir.path()).unwrap_err();
        assert!(err.to_string().contains("another process"), "{err}");
        drop(held);
        lock_dir(dir.path()).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn private_dirs_have_mode_0700() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("a/b");
        create_private_dir(&run).unwrap();
        assert_eq!(mode(&run), 0o700);
    }
}
