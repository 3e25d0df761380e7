//! The image of a container playbook: present in the engine, or built there from the playbook's
//! Containerfile (through the engine API, so it works with Docker and Podman alike and needs no CLI).
//! The build context is the playbook's folder plus the host files named in `[container] context`.

use super::engine::ContainerEngine;
use super::short;
use super::ContainerError;
use crate::manifest::{Kind, Manifest};
use bollard::query_parameters::BuildImageOptions;
use futures::StreamExt;
use std::path::Path;

/// Whether the image was already there or had to be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageStatus {
    Present,
    Built,
}

impl ContainerEngine {
    /// Makes sure the image of the container playbook in `dir` exists in the engine, building it from its
    /// Containerfile when it does not.
    pub async fn ensure_image(&self, manifest: &Manifest, dir: &Path) -> Result<ImageStatus, ContainerError> {
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
        self.build_image(&section.image, dir, containerfile, &section.context).await?;
        Ok(ImageStatus::Built)
    }

    /// Builds `image` from `dir/containerfile`, with the host files of `extra` added to the context.
    pub async fn build_image(
        &self,
        image: &str,
        dir: &Path,
        containerfile: &str,
        extra: &std::collections::BTreeMap<String, String>,
    ) -> Result<(), ContainerError> {
        let fail = |why: String| ContainerError::Build {
            image: image.to_owned(),
            containerfile: dir.join(containerfile).display().to_string(),
            why,
        };
        let context = {
            let (dir, extra) = (dir.to_owned(), extra.clone());
            tokio::task::spawn_blocking(move || context_tar(&dir, &extra))
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

/// The build context as a tar: every file of `dir`, then `extra` (name in the context → host path).
fn context_tar(dir: &Path, extra: &std::collections::BTreeMap<String, String>) -> std::io::Result<Vec<u8>> {
    let mut tar = tar::Builder::new(Vec::new());
    tar.follow_symlinks(true);
    tar.append_dir_all(".", dir)?;
    for (name, host_path) in extra {
        tar.append_path_with_name(host_path, name)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{host_path} (context file {name}): {e}")))?;
    }
    tar.into_inner()
}
