//! Image layouts: `index.json` (and nested indexes) to one manifest, by tag
//! (`org.opencontainers.image.ref.name`), by digest, and by platform. Docker
//! v2.2 manifest lists and manifests are taken like their OCI counterparts.

use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest};

use super::blob;
use crate::error::{Context, Error, Result};

pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// `os/arch[/variant]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Platform {
    pub os: String,
    pub arch: String,
    pub variant: Option<String>,
}

impl Platform {
    pub fn parse(s: &str) -> Result<Platform> {
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            [os, arch] if !os.is_empty() && !arch.is_empty() => Ok(Platform {
                os: os.to_string(),
                arch: arch.to_string(),
                variant: None,
            }),
            [os, arch, v] if !os.is_empty() && !arch.is_empty() && !v.is_empty() => Ok(Platform {
                os: os.to_string(),
                arch: arch.to_string(),
                variant: Some(v.to_string()),
            }),
            _ => Err(Error::Usage(format!(
                "platform {s:?} is not os/arch[/variant]"
            ))),
        }
    }

    /// The platform this binary runs on, in OCI/Go names.
    pub fn host() -> Platform {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
            "powerpc64" => "ppc64",
            "loongarch64" => "loong64",
            other => other,
        };
        let variant = (arch == "arm64").then(|| "v8".to_string());
        Platform {
            os: "linux".into(),
            arch: arch.into(),
            variant,
        }
    }

    fn matches(&self, os: &str, arch: &str, variant: Option<&str>) -> bool {
        if self.os != os || self.arch != arch {
            return false;
        }
        match (&self.variant, variant) {
            (None, _) | (_, None) => true,
            (Some(a), Some(b)) => a == b,
        }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.arch)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// Splits `DIR[:REF]`: the part before the first `:` is the layout if it is
/// a directory (a digest ref has a `:` of its own).
pub fn split_image_arg(s: &str) -> (PathBuf, Option<String>) {
    if Path::new(s).is_dir() {
        return (PathBuf::from(s), None);
    }
    if let Some((dir, r)) = s.split_once(':')
        && Path::new(dir).is_dir()
        && !r.is_empty()
    {
        return (PathBuf::from(dir), Some(r.to_string()));
    }
    (PathBuf::from(s), None)
}

fn is_index(mt: &str) -> bool {
    mt == "application/vnd.oci.image.index.v1+json"
        || mt == "application/vnd.docker.distribution.manifest.list.v2+json"
}

fn is_manifest(mt: &str) -> bool {
    mt == "application/vnd.oci.image.manifest.v1+json"
        || mt == "application/vnd.docker.distribution.manifest.v2+json"
}

/// What an image resolves to.
pub struct Resolved {
    pub manifest_desc: Descriptor,
    pub manifest: ImageManifest,
    pub config: ImageConfiguration,
}

/// The manifest, config and descriptor that `reference` (a tag or digest;
/// none: every manifest) picks in the layout at `layout` for the platform
/// `want` (none: this host's).
pub fn resolve(
    layout: &Path,
    reference: Option<&str>,
    want: Option<&Platform>,
) -> Result<Resolved> {
    let index = read_index(layout)?;
    let mut top: Vec<Descriptor> = index.manifests().clone();
    if let Some(r) = reference {
        top = named(layout, top, r)?;
    }
    let mut manifests = Vec::new();
    collect(layout, &top, 0, &mut manifests)?;
    // A reference naming exactly one manifest is taken as asked, unless a
    // platform was asked for too.
    let chosen = if reference.is_some() && want.is_none() && manifests.len() == 1 {
        manifests.swap_remove(0)
    } else {
        for_platform(layout, &manifests, want)?
    };
    let manifest: ImageManifest = serde_json::from_slice(&blob::read_all(layout, &chosen)?)
        .map_err(|e| Error::Image(format!("parse manifest {}: {e}", chosen.digest())))?;
    let config: ImageConfiguration =
        serde_json::from_slice(&blob::read_all(layout, manifest.config())?).map_err(|e| {
            Error::Image(format!("parse config {}: {e}", manifest.config().digest()))
        })?;
    if config.rootfs().diff_ids().len() != manifest.layers().len() {
        return Err(Error::Image(format!(
            "config {} lists {} diff_ids for {} layers",
            manifest.config().digest(),
            config.rootfs().diff_ids().len(),
            manifest.layers().len()
        )));
    }
    Ok(Resolved {
        manifest_desc: chosen,
        manifest,
        config,
    })
}

/// The layout's index.json, once its oci-layout file says it is one.
fn read_index(layout: &Path) -> Result<ImageIndex> {
    let oci_layout = layout.join("oci-layout");
    match std::fs::metadata(&oci_layout) {
        Ok(m) if m.is_file() => {}
        // Not "no such layout" when the caller may not look: say why.
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            return Err(e).ctx(Error::Image, || format!("read {}", oci_layout.display()));
        }
        _ => {
            return Err(Error::Image(format!(
                "{} is not an OCI image layout (no oci-layout file)",
                layout.display()
            )));
        }
    }
    let index_path = layout.join("index.json");
    let text = std::fs::read(&index_path)
        .ctx(Error::Image, || format!("read {}", index_path.display()))?;
    serde_json::from_slice(&text)
        .map_err(|e| Error::Image(format!("parse {}: {e}", index_path.display())))
}

/// The index entries `reference` names: a digest (it has a colon) or a
/// tag (`org.opencontainers.image.ref.name`); none is an error listing
/// the tags present.
fn named(layout: &Path, mut top: Vec<Descriptor>, reference: &str) -> Result<Vec<Descriptor>> {
    let by_digest = reference.contains(':');
    let names: Vec<String> = top
        .iter()
        .filter_map(|d| d.annotations().as_ref()?.get(REF_NAME).cloned())
        .collect();
    top.retain(|d| {
        if by_digest {
            d.digest().to_string() == reference
        } else {
            d.annotations()
                .as_ref()
                .and_then(|a| a.get(REF_NAME))
                .is_some_and(|n| n == reference)
        }
    });
    if top.is_empty() {
        return Err(Error::Image(format!(
            "no image {reference:?} in {}; tags present: {}",
            layout.display(),
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        )));
    }
    Ok(top)
}

/// The first manifest for the platform `want` (none: this host's), else
/// the only one without a platform; an error names the platforms present.
fn for_platform(
    layout: &Path,
    manifests: &[Descriptor],
    want: Option<&Platform>,
) -> Result<Descriptor> {
    let host = Platform::host();
    let want = want.unwrap_or(&host);
    let (with_platform, without): (Vec<_>, Vec<_>) =
        manifests.iter().partition(|d| d.platform().is_some());
    let matching: Vec<&Descriptor> = with_platform
        .iter()
        .copied()
        .filter(|d| {
            let p = d.platform().as_ref().expect("partitioned");
            want.matches(
                &p.os().to_string(),
                &p.architecture().to_string(),
                p.variant().as_deref(),
            )
        })
        .collect();
    match (matching.as_slice(), without.as_slice()) {
        ([one, ..], _) => Ok((*one).clone()),
        ([], [one]) => Ok((*one).clone()),
        ([], []) => {
            let present: Vec<String> = with_platform
                .iter()
                .map(|d| {
                    let p = d.platform().as_ref().expect("partitioned");
                    let mut s = format!("{}/{}", p.os(), p.architecture());
                    if let Some(v) = p.variant() {
                        s.push('/');
                        s.push_str(v);
                    }
                    s
                })
                .collect();
            Err(Error::Image(format!(
                "no manifest for platform {want} in {}; platforms present: {}",
                layout.display(),
                if present.is_empty() {
                    "none".into()
                } else {
                    present.join(", ")
                }
            )))
        }
        ([], many) => Err(Error::Image(format!(
            "{} manifests without a platform in {}: name one with DIR:REF",
            many.len(),
            layout.display()
        ))),
    }
}

/// Flattens nested indexes into manifest descriptors.
fn collect(layout: &Path, ds: &[Descriptor], depth: u32, out: &mut Vec<Descriptor>) -> Result<()> {
    if depth > 8 {
        return Err(Error::Image("indexes nested more than 8 deep".into()));
    }
    for d in ds {
        let mt = d.media_type().to_string();
        if is_index(&mt) {
            let idx: ImageIndex = serde_json::from_slice(&blob::read_all(layout, d)?)
                .map_err(|e| Error::Image(format!("parse index {}: {e}", d.digest())))?;
            collect(layout, idx.manifests(), depth + 1, out)?;
        } else if is_manifest(&mt) {
            out.push(d.clone());
        }
        // Other artifacts (signatures, attestations) are not images: skipped.
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_parsing_and_matching() {
        let p = Platform::parse("linux/arm64/v8").unwrap();
        assert_eq!(p.variant.as_deref(), Some("v8"));
        assert!(p.matches("linux", "arm64", Some("v8")));
        assert!(p.matches("linux", "arm64", None));
        assert!(!p.matches("linux", "arm64", Some("v7")));
        assert!(!p.matches("linux", "amd64", None));
        let q = Platform::parse("linux/amd64").unwrap();
        assert!(q.matches("linux", "amd64", Some("v3")));
        assert!(Platform::parse("linux").is_err());
        assert!(Platform::parse("linux//x").is_err());
    }

    #[test]
    fn host_platform_is_linux() {
        assert_eq!(Platform::host().os, "linux");
    }
}
