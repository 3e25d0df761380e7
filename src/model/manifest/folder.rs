//! What riposte reads from a playbook folder (its code, its manifest, the catalog's `_lib`, a container's
//! build context): regular files and folders only, each file within [`PLAYBOOK_FILE_BYTES`] and a folder within
//! [`PLAYBOOK_FOLDER_BYTES`] and [`PLAYBOOK_FOLDER_ENTRIES`]. A playbook is someone else's code: a link in it (to `/dev/zero`, to `/etc`), a
//! device, a fifo or a socket is refused with its path before anything is read, so no command can be made to
//! read without end, block, or pack what the link points to. Reads are checked again on the opened file
//! (no link followed, a regular file, within the bound), so a file swapped meanwhile changes nothing.

use crate::model::limits::{PLAYBOOK_FILE_BYTES, PLAYBOOK_FOLDER_BYTES, PLAYBOOK_FOLDER_ENTRIES};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Why a playbook folder cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum FolderError {
    #[error("{} is {what}: playbook folders may hold only regular files; {fix}", .path.display())]
    NotRegular { path: PathBuf, what: &'static str, fix: &'static str },
    #[error("{} is {size} bytes, over the {max} bytes a playbook file may have (limits::PLAYBOOK_FILE_BYTES): keep large data out of the playbook folder", .path.display(), max = PLAYBOOK_FILE_BYTES)]
    FileTooLarge { path: PathBuf, size: u64 },
    #[error("{} holds over {max} bytes of files (limits::PLAYBOOK_FOLDER_BYTES): keep large data out of the playbook folder", .path.display(), max = PLAYBOOK_FOLDER_BYTES)]
    FolderTooLarge { path: PathBuf },
    #[error("{} holds over {max} files and folders (limits::PLAYBOOK_FOLDER_ENTRIES): keep data out of the playbook folder", .path.display(), max = PLAYBOOK_FOLDER_ENTRIES)]
    TooManyEntries { path: PathBuf },
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A file of a playbook folder, found by [`files`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct FolderFile {
    /// Its path (the folder's path joined with `relative`).
    pub path: PathBuf,
    /// Its path inside the folder.
    pub relative: PathBuf,
    /// Its size when it was listed.
    pub size: u64,
}

/// What a playbook folder holds: its regular files and its folders, sorted by path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listing {
    pub files: Vec<FolderFile>,
    /// Every folder under it, by its path inside it (a build context keeps empty ones too).
    pub folders: Vec<PathBuf>,
}

/// Every regular file and folder under `dir` (nothing when `dir` is no folder), but the entries whose name
/// `skip` says to leave out (and what they hold). Every entry is checked, left out or not (a tool given the
/// folder, componentize-py, reads it all): anything but a regular file or a folder is refused, as is a file over
/// [`PLAYBOOK_FILE_BYTES`], files adding up to more than [`PLAYBOOK_FOLDER_BYTES`] or more than
/// [`PLAYBOOK_FOLDER_ENTRIES`] entries. `dir` itself may be reached through a link (a catalog's layout is its
/// owner's choice); nothing inside it is followed.
pub fn list(dir: &Path, skip: impl Fn(&str) -> bool) -> Result<Listing, FolderError> {
    let mut listing = Listing::default();
    if dir.is_dir() {
        let mut walk = Walk { root: dir, skip: &skip, total: 0, entries: 0, out: &mut listing };
        walk.folder(dir, true)?;
    }
    listing.files.sort();
    listing.folders.sort();
    Ok(listing)
}

/// The regular files of [`list`].
pub fn files(dir: &Path, skip: impl Fn(&str) -> bool) -> Result<Vec<FolderFile>, FolderError> {
    Ok(list(dir, skip)?.files)
}

fn entries(dir: &Path) -> Result<Vec<std::fs::DirEntry>, FolderError> {
    let read = |source| FolderError::Read { path: dir.to_owned(), source };
    std::fs::read_dir(dir).map_err(read)?.collect::<Result<Vec<_>, _>>().map_err(read)
}

/// One listing under way: the bounds are on everything seen, listed or left out.
struct Walk<'a> {
    root: &'a Path,
    skip: &'a dyn Fn(&str) -> bool,
    total: u64,
    entries: usize,
    out: &'a mut Listing,
}

impl Walk<'_> {
    /// Checks every entry of `dir`, listing them when `listed`.
    fn folder(&mut self, dir: &Path, listed: bool) -> Result<(), FolderError> {
        for entry in entries(dir)? {
            let path = entry.path();
            let listed = listed && !(self.skip)(&entry.file_name().to_string_lossy());
            self.entries += 1;
            if self.entries > PLAYBOOK_FOLDER_ENTRIES {
                return Err(FolderError::TooManyEntries { path: self.root.to_owned() });
            }
            // The entry itself, never what a link points to.
            let meta =
                std::fs::symlink_metadata(&path).map_err(|source| FolderError::Read { path: path.clone(), source })?;
            let relative = path.strip_prefix(self.root).unwrap_or(&path).to_owned();
            if meta.is_dir() {
                if listed {
                    self.out.folders.push(relative);
                }
                self.folder(&path, listed)?;
                continue;
            }
            check_regular(&path, &meta)?;
            self.total += meta.len();
            if self.total > PLAYBOOK_FOLDER_BYTES {
                return Err(FolderError::FolderTooLarge { path: self.root.to_owned() });
            }
            if listed {
                self.out.files.push(FolderFile { path, relative, size: meta.len() });
            }
        }
        Ok(())
    }
}

/// Refuses anything but a regular file within [`PLAYBOOK_FILE_BYTES`], saying what it is and what to do.
fn check_regular(path: &Path, meta: &std::fs::Metadata) -> Result<(), FolderError> {
    use std::os::unix::fs::FileTypeExt;
    let kind = meta.file_type();
    let refuse = |what, fix| Err(FolderError::NotRegular { path: path.to_owned(), what, fix });
    if kind.is_symlink() {
        let fix = match std::fs::metadata(path) {
            Ok(target) if target.is_dir() => "copy the folder in instead",
            _ => "copy the file in instead",
        };
        return refuse("a symbolic link", fix);
    }
    if kind.is_block_device() || kind.is_char_device() {
        return refuse("a device", "remove it");
    }
    if kind.is_fifo() {
        return refuse("a named pipe", "remove it");
    }
    if kind.is_socket() {
        return refuse("a socket", "remove it");
    }
    if !kind.is_file() {
        return refuse("not a regular file", "remove it");
    }
    if meta.len() > PLAYBOOK_FILE_BYTES {
        return Err(FolderError::FileTooLarge { path: path.to_owned(), size: meta.len() });
    }
    Ok(())
}

/// Opens a file of a playbook folder for reading, refusing (without blocking) a link, a device, a fifo, a
/// socket or a file over [`PLAYBOOK_FILE_BYTES`]. Read it with [`read`] or through `take`.
pub fn open(path: &Path) -> Result<std::fs::File, FolderError> {
    use std::os::unix::fs::OpenOptionsExt;
    let err = |source| FolderError::Read { path: path.to_owned(), source };
    // O_NOFOLLOW: a link is not opened (ELOOP); O_NONBLOCK: a fifo does not wait for a writer.
    let file = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(path);
    let file = match file {
        Ok(f) => f,
        Err(e) => {
            // The path itself, for the one-line answer (a link, say), else the error.
            let meta = std::fs::symlink_metadata(path).map_err(err)?;
            check_regular(path, &meta)?;
            return Err(err(e));
        }
    };
    let meta = file.metadata().map_err(err)?;
    check_regular(path, &meta)?;
    Ok(file)
}

/// The bytes of a file of a playbook folder (see [`open`]), never more than [`PLAYBOOK_FILE_BYTES`].
pub fn read(path: &Path) -> Result<Vec<u8>, FolderError> {
    let file = open(path)?;
    let mut bytes = Vec::new();
    file.take(PLAYBOOK_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| FolderError::Read { path: path.to_owned(), source })?;
    if bytes.len() as u64 > PLAYBOOK_FILE_BYTES {
        return Err(FolderError::FileTooLarge { path: path.to_owned(), size: bytes.len() as u64 });
    }
    Ok(bytes)
}

/// The text of a file of a playbook folder (see [`read`]), invalid UTF-8 refused.
pub fn read_to_string(path: &Path) -> Result<String, FolderError> {
    String::from_utf8(read(path)?).map_err(|e| FolderError::Read {
        path: path.to_owned(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e.utf8_error()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn folder() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("lib/empty")).unwrap();
        std::fs::write(dir.path().join("app.py"), "x = 1\n").unwrap();
        std::fs::write(dir.path().join("lib/util.py"), "y = 2\n").unwrap();
        dir
    }

    fn refusal(dir: &Path) -> String {
        let started = Instant::now();
        let e = list(dir, |_| false).unwrap_err().to_string();
        assert!(started.elapsed() < Duration::from_secs(2), "at once: {:?}", started.elapsed());
        assert!(!e.contains('\n'), "one line: {e}");
        e
    }

    #[test]
    fn regular_files_and_folders_are_listed_and_read() {
        let dir = folder();
        let listing = list(dir.path(), |_| false).unwrap();
        let files: Vec<_> = listing.files.iter().map(|f| (f.relative.to_str().unwrap(), f.size)).collect();
        assert_eq!(files, [("app.py", 6), ("lib/util.py", 6)]);
        assert_eq!(listing.folders, [PathBuf::from("lib"), PathBuf::from("lib/empty")]);
        assert_eq!(files_of(dir.path(), "lib"), ["app.py"], "a left-out folder is not listed");
        assert_eq!(read(&dir.path().join("lib/util.py")).unwrap(), b"y = 2\n");
        assert_eq!(list(&dir.path().join("missing"), |_| false).unwrap(), Listing::default());
    }

    fn files_of(dir: &Path, skipped: &str) -> Vec<String> {
        files(dir, |name| name == skipped).unwrap().iter().map(|f| f.relative.display().to_string()).collect()
    }

    #[test]
    fn links_devices_and_fifos_are_refused_with_their_path_before_anything_is_read() {
        let dir = folder();
        let zero = dir.path().join("lib/data.bin");
        std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
        let e = refusal(dir.path());
        assert_eq!(
            e,
            format!(
                "{} is a symbolic link: playbook folders may hold only regular files; copy the file in instead",
                zero.display()
            )
        );
        let e = read(&zero).unwrap_err().to_string();
        assert!(e.contains("data.bin is a symbolic link"), "read refuses it too: {e}");
        std::fs::remove_file(&zero).unwrap();

        std::os::unix::fs::symlink("/etc", dir.path().join("conf")).unwrap();
        assert!(refusal(dir.path()).ends_with(
            "conf is a symbolic link: playbook folders may hold only regular files; copy the folder in instead"
        ));
        std::fs::remove_file(dir.path().join("conf")).unwrap();

        let fifo = dir.path().join("pipe");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        assert!(refusal(dir.path())
            .ends_with("pipe is a named pipe: playbook folders may hold only regular files; remove it"));
        let started = Instant::now();
        assert!(read(&fifo).unwrap_err().to_string().contains("pipe is a named pipe"), "no wait for a writer");
        assert!(started.elapsed() < Duration::from_secs(2));
        std::fs::remove_file(&fifo).unwrap();

        // Left out or not, every entry is checked: a tool given the folder reads them all.
        std::os::unix::fs::symlink("/dev/zero", dir.path().join(".hidden")).unwrap();
        let e = files(dir.path(), |name| name.starts_with('.')).unwrap_err().to_string();
        assert!(
            e.ends_with(
                ".hidden is a symbolic link: playbook folders may hold only regular files; copy the file in instead"
            ),
            "{e}"
        );

        let e = read(Path::new("/dev/zero")).unwrap_err().to_string();
        assert_eq!(e, "/dev/zero is a device: playbook folders may hold only regular files; remove it");
    }

    #[test]
    fn a_file_or_a_folder_over_its_bound_is_refused_unread() {
        let dir = folder();
        // Sparse: their size is all there is to them.
        let big = std::fs::File::create(dir.path().join("big.bin")).unwrap();
        big.set_len(PLAYBOOK_FILE_BYTES + 1).unwrap();
        let e = refusal(dir.path());
        assert!(e.contains("big.bin is 16777217 bytes, over the 16777216 bytes a playbook file may have"), "{e}");
        assert!(read(&dir.path().join("big.bin")).unwrap_err().to_string().contains("over the 16777216 bytes"));
        big.set_len(PLAYBOOK_FILE_BYTES).unwrap();
        for n in 0..4 {
            let f = std::fs::File::create(dir.path().join(format!("part{n}.bin"))).unwrap();
            f.set_len(PLAYBOOK_FILE_BYTES).unwrap();
        }
        let e = refusal(dir.path());
        assert!(e.ends_with("holds over 67108864 bytes of files (limits::PLAYBOOK_FOLDER_BYTES): keep large data out of the playbook folder"), "{e}");
    }

    #[test]
    fn a_folder_of_too_many_entries_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        for n in 0..=PLAYBOOK_FOLDER_ENTRIES {
            std::fs::File::create(dir.path().join(n.to_string())).unwrap();
        }
        assert!(refusal(dir.path()).contains("holds over 10000 files and folders"));
    }
}
