//! The image of a container playbook: present in the engine, or built there from the playbook's
//! Containerfile (through the engine API, so it works with Docker and Podman alike and needs no CLI).
//!
//! The build context is the playbook's folder, read through [`folder`] (regular files and folders only, each
//! bounded: a link, a device or a fifo in it stops the build with its path) plus the files named in
//! `[container] context`. A playbook is someone else's code: its manifest may name
//! only files inside its own folder (after resolving links and `..`), unless the person building names a host
//! path on the command line ([`ContextAllow`], `--context-allow`). Anything else is refused before any build.

use super::engine::ContainerEngine;
use super::short;
use super::ContainerError;
use crate::model::manifest::folder::{self, Listing};
use crate::model::manifest::{Kind, Manifest};
use bollard::query_parameters::BuildImageOptions;
use futures::StreamExt;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Whether the image was already there or had to be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageStatus {
    Present,
    Built,
}

/// Host paths outside a playbook's folder that its `[container] context` may add to an image build, as the
/// person building named them (`--context-allow PATH`): a file, or a folder and everything under it.
#[derive(Debug, Clone, Default)]
pub struct ContextAllow(Vec<PathBuf>);

impl ContextAllow {
    /// Allows `paths` (compared once links are resolved: `/bin/busybox` allows `/usr/bin/busybox` too).
    pub fn new(paths: impl IntoIterator<Item = PathBuf>) -> ContextAllow {
        ContextAllow(paths.into_iter().collect())
    }

    fn allows(&self, real: &Path) -> bool {
        self.0.iter().filter_map(|p| p.canonicalize().ok()).any(|allowed| real.starts_with(allowed))
    }
}

/// A file of the build context named in `[container] context`, opened and checked.
pub struct ContextFile {
    file: std::fs::File,
    /// Where it really is (no link left).
    pub path: PathBuf,
}

/// Opens every file `[container] context` names (`name in the context → path`, a relative path from the
/// playbook folder `dir`), checking that each one really lies inside `dir` or under a path of `allow`. The check
/// is made on the opened file (its `/proc/self/fd` link), so no link swapped in meanwhile can redirect it.
pub fn context_files(
    playbook: &str,
    dir: &Path,
    context: &BTreeMap<String, String>,
    allow: &ContextAllow,
) -> Result<BTreeMap<String, ContextFile>, ContainerError> {
    let root = dir.canonicalize()?;
    let mut files = BTreeMap::new();
    for (name, path) in context {
        let unreadable = |why: String| ContainerError::ContextFile {
            playbook: playbook.to_owned(),
            name: name.clone(),
            path: path.clone(),
            why,
        };
        let outside = |real: &Path| ContainerError::ContextOutside {
            playbook: playbook.to_owned(),
            name: name.clone(),
            path: path.clone(),
            real: real.display().to_string(),
            // What to pass: the manifest's own path when it is absolute (`/bin/busybox`), else where it leads.
            allow: if Path::new(path).is_absolute() { path.clone() } else { real.display().to_string() },
        };
        let inside = |real: &Path| real.starts_with(&root) || allow.allows(real);
        // Checked before opening (a refused file is never read), and again on the opened file.
        let real = root.join(path).canonicalize().map_err(|e| unreadable(e.to_string()))?;
        if !inside(&real) {
            return Err(outside(&real));
        }
        let file = std::fs::File::open(&real).map_err(|e| unreadable(e.to_string()))?;
        let real = real_path(&file).map_err(|e| unreadable(e.to_string()))?;
        if !inside(&real) {
            return Err(outside(&real));
        }
        if !file.metadata().map_err(|e| unreadable(e.to_string()))?.is_file() {
            return Err(unreadable("not a regular file".into()));
        }
        files.insert(name.clone(), ContextFile { file, path: real });
    }
    Ok(files)
}

/// The path an open file really has.
fn real_path(file: &std::fs::File) -> std::io::Result<PathBuf> {
    use std::os::fd::AsRawFd;
    std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
}

impl ContainerEngine {
    /// Makes sure the image of the container playbook in `dir` exists in the engine, building it from its
    /// Containerfile when it does not; `allow` names the host files outside `dir` its context may add.
    pub async fn ensure_image(
        &self,
        manifest: &Manifest,
        dir: &Path,
        allow: &ContextAllow,
    ) -> Result<ImageStatus, ContainerError> {
        let section = match (&manifest.kind, &manifest.container) {
            (Kind::Container, Some(section)) => section,
            _ => return Err(ContainerError::NotContainer(manifest.name.clone())),
        };
        if self.docker.inspect_image(&section.image).await.is_ok() {
            return Ok(ImageStatus::Present);
        }
        let Some(containerfile) = &section.containerfile else {
            return Err(ContainerError::NoImage { image: section.image.clone(), playbook: manifest.name.clone() });
        };
        let extra = context_files(&manifest.name, dir, &section.context, allow)?;
        self.build_image(&section.image, dir, containerfile, extra).await?;
        Ok(ImageStatus::Built)
    }

    /// Builds `image` from `dir/containerfile`, with the files of `extra` (checked by [`context_files`]) added
    /// to the context.
    pub async fn build_image(
        &self,
        image: &str,
        dir: &Path,
        containerfile: &str,
        extra: BTreeMap<String, ContextFile>,
    ) -> Result<(), ContainerError> {
        let fail = |why: String| ContainerError::Build {
            image: image.to_owned(),
            containerfile: dir.join(containerfile).display().to_string(),
            why,
        };
        let listing = folder::list(dir, |_| false)?;
        let context = {
            let dir = dir.to_owned();
            tokio::task::spawn_blocking(move || context_tar(&dir, &listing, extra))
                .await
                .map_err(|e| fail(e.to_string()))?
                .map_err(|e| fail(format!("cannot pack the build context: {e}")))?
        };
        let options = BuildImageOptions {
            dockerfile: containerfile.to_owned(),
            t: Some(image.to_owned()),
            rm: true,
            forcerm: true,
            ..Default::default()
        };
        let mut progress = self.docker.build_image(options, None, Some(bollard::body_full(context.into())));
        let mut tail = Vec::new();
        while let Some(step) = progress.next().await {
            let info = step.map_err(|e| fail(short(&e)))?;
            if let Some(err) = info.error_detail.and_then(|d| d.message) {
                return Err(fail(err));
            }
            if let Some(line) = info.stream.filter(|s| !s.trim().is_empty()) {
                tail.push(line.trim().to_owned());
            }
        }
        if self.docker.inspect_image(image).await.is_err() {
            return Err(fail(format!("the engine built nothing: {}", tail.last().cloned().unwrap_or_default())));
        }
        Ok(())
    }
}

/// The build context as a tar: the folders and files of the playbook folder `dir` as [`folder::list`] found
/// them (each file opened again through [`folder::open`]), then `extra` under their names.
fn context_tar(dir: &Path, listing: &Listing, extra: BTreeMap<String, ContextFile>) -> std::io::Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    for relative in &listing.folders {
        tar.append_dir(relative, dir.join(relative))?;
    }
    for file in &listing.files {
        let mut opened = folder::open(&file.path).map_err(std::io::Error::other)?;
        tar.append_file(&file.relative, &mut opened)?;
    }
    for (name, mut extra) in extra {
        tar.append_file(&name, &mut extra.file).map_err(|e| {
            std::io::Error::new(e.kind(), format!("{} (context file {name}): {e}", extra.path.display()))
        })?;
    }
    tar.into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context(name: &str, path: &str) -> BTreeMap<String, String> {
        BTreeMap::from([(name.to_owned(), path.to_owned())])
    }

    #[test]
    fn a_context_file_must_be_inside_the_folder_or_allowed_on_the_command_line() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("playbook");
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        std::fs::write(dir.join("bin/tool"), "inside").unwrap();
        std::fs::write(tmp.path().join("beside"), "outside").unwrap();
        std::os::unix::fs::symlink("/etc/shadow", dir.join("shadow-link")).unwrap();
        std::os::unix::fs::symlink("bin/tool", dir.join("tool-link")).unwrap();
        let none = ContextAllow::default();

        let files = context_files("p", &dir, &context("tool", "bin/tool"), &none).unwrap();
        assert_eq!(files["tool"].path, dir.canonicalize().unwrap().join("bin/tool"));
        let files = context_files("p", &dir, &context("tool", "tool-link"), &none).unwrap();
        assert_eq!(files["tool"].path, dir.canonicalize().unwrap().join("bin/tool"), "a link inside, to inside");

        for path in ["/etc/shadow", "shadow-link", "../beside", "bin/../../beside", "/etc/../etc/shadow"] {
            let err = context_files("p", &dir, &context("x", path), &none).err().expect(path).to_string();
            assert!(err.contains(&format!("[container] context x = {path:?}")), "{err}");
            assert!(err.contains("outside the playbook folder") && err.contains("--context-allow"), "{err}");
            assert!(!err.contains('\n'), "{err}");
        }

        // Named on the command line: the file itself, or a folder holding it; links resolved on both sides.
        let beside = ContextAllow::new([tmp.path().join("beside")]);
        assert!(context_files("p", &dir, &context("x", "../beside"), &beside).is_ok());
        let folder = ContextAllow::new([tmp.path().to_owned()]);
        assert!(context_files("p", &dir, &context("x", "../beside"), &folder).is_ok());
        let shadow = ContextAllow::new([PathBuf::from("/etc/shadow")]);
        assert!(context_files("p", &dir, &context("x", "shadow-link"), &shadow).is_ok());
        assert!(context_files("p", &dir, &context("x", "shadow-link"), &beside).is_err(), "another file allowed");

        let err = context_files("p", &dir, &context("x", "missing"), &none).err().unwrap().to_string();
        assert!(err.contains("[container] context x = \"missing\"") && !err.contains('\n'), "{err}");
        let err = context_files("p", &dir, &context("x", "bin"), &none).err().unwrap().to_string();
        assert!(err.contains("not a regular file"), "{err}");
    }

    #[test]
    fn the_context_holds_the_folders_files_and_folders_and_refuses_its_links() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("Containerfile"), "FROM scratch\n").unwrap();
        std::fs::create_dir_all(dir.path().join("bin/empty")).unwrap();
        std::fs::write(dir.path().join("bin/tool"), "tool").unwrap();
        let listing = folder::list(dir.path(), |_| false).unwrap();
        let bytes = context_tar(dir.path(), &listing, BTreeMap::new()).unwrap();
        let mut archive = tar::Archive::new(&bytes[..]);
        let entries: Vec<(String, tar::EntryType, u64)> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap())
            .map(|e| (e.path().unwrap().display().to_string(), e.header().entry_type(), e.size()))
            .collect();
        let (dir_entry, file) = (tar::EntryType::Directory, tar::EntryType::Regular);
        assert_eq!(
            entries,
            [
                ("bin".into(), dir_entry, 0),
                ("bin/empty".into(), dir_entry, 0),
                ("Containerfile".into(), file, 13),
                ("bin/tool".into(), file, 4)
            ]
        );

        // A link would pack a link the engine then resolves, or (followed) what it points to: refused.
        std::os::unix::fs::symlink("/etc/shadow", dir.path().join("shadow-link")).unwrap();
        let e = folder::list(dir.path(), |_| false).unwrap_err();
        let e = ContainerError::from(e).to_string();
        assert!(e.ends_with("shadow-link is a symbolic link: playbook folders may hold only regular files; copy the file in instead"), "{e}");
    }
}
