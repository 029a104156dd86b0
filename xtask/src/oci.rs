//! OCI images of the filters, written as OCI image-layout directories (no registry, no daemon).
//!
//! The image is the Wasm image spec's *compat* variant: one `application/vnd.oci.image.layer.v1.tar+gzip`
//! layer whose tar holds `plugin.wasm`, an ordinary OCI image config and manifest. Both pullers
//! we target accept exactly that: Istio's `pkg/wasm/imagefetcher.go` and Envoy Gateway's
//! `internal/wasm/imagefetcher.go` (a copy of Istio's) try, in order, a Docker image whose last
//! layer is `application/vnd.docker.image.rootfs.diff.tar.gzip`, then this compat variant (last
//! layer `application/vnd.oci.image.layer.v1.tar+gzip`, the file whose base name is
//! `plugin.wasm`), then the *oci* artifact variant (two layers, one
//! `application/vnd.module.wasm.content.layer.v1+wasm`). Compat is also what skopeo, crane, oras
//! and every registry handle without custom media types.
//!
//! Both pullers compare the `sha256` of a `WasmPlugin` / `EnvoyExtensionPolicy` with the digest of
//! the image *manifest* (go-containerregistry's `img.Digest()`), not with the `.wasm`'s own hash,
//! so the manifests under `deploy/` pin [`Image::manifest_digest`].
//!
//! Everything is deterministic, so the same `.wasm` always gives the same manifest digest: the tar
//! entry has mtime 0, uid/gid 0, mode 0644 and no user names; gzip has no timestamp and a fixed
//! level; JSON is written compact with sorted keys; nothing records the build time or the commit.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use flate2::Compression;
use flate2::GzBuilder;
use oci_spec::image::{
    ANNOTATION_DESCRIPTION, ANNOTATION_LICENSES, ANNOTATION_REF_NAME, ANNOTATION_SOURCE,
    ANNOTATION_TITLE, ANNOTATION_VERSION, Arch, Descriptor, ImageConfigurationBuilder,
    ImageIndexBuilder, ImageManifestBuilder, MediaType, OciLayoutBuilder, Os, RootFsBuilder,
    Sha256Digest,
};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::paths::{CHAIN, FILTERS, oci_dir, wasm_dir};

/// The file name both pullers look for in the layer.
pub const WASM_FILE: &str = "plugin.wasm";

/// The image tag: the workspace version, as `org.opencontainers.image.ref.name` in `index.json`.
pub const TAG: &str = env!("CARGO_PKG_VERSION");

const REPOSITORY: &str = "https://github.com/wasmgate/wasmgate";
const LICENSE: &str = "Apache-2.0";

/// One filter's image as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// The cargo package, e.g. `bearer-auth`; also the image name.
    pub package: String,
    /// The OCI layout directory.
    pub dir: PathBuf,
    /// Hex sha256 of the manifest: what `WasmPlugin.spec.sha256` and Envoy Gateway's
    /// `code.image.sha256` must be, and the `@sha256:` of the image in a registry.
    pub manifest_digest: String,
    /// Hex sha256 of `plugin.wasm` (the `.wasm` the build made).
    pub wasm_sha256: String,
}

/// Hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// The layout directory of `package` (e.g. `target/oci-images/bearer-auth`).
pub fn layout_dir(package: &str) -> PathBuf {
    oci_dir().join(package)
}

/// Packages every filter's `.wasm` from [`wasm_dir`], and the one-module chain's, into its layout
/// under [`oci_dir`] and prints the digests.
pub fn package_all() -> Result<Vec<Image>> {
    let mut images = Vec::new();
    for (package, stem) in FILTERS.into_iter().chain([CHAIN]) {
        let wasm_path = wasm_dir().join(format!("{stem}.wasm"));
        let wasm = fs::read(&wasm_path).with_context(|| {
            format!(
                "cannot read {} (build the filters first: `cargo xtask build`)",
                wasm_path.display()
            )
        })?;
        let image = write_layout(&layout_dir(package), package, &wasm)?;
        println!(
            "oci: {package}:{TAG}  manifest sha256:{}  plugin.wasm sha256:{}  {}",
            image.manifest_digest,
            image.wasm_sha256,
            image.dir.display()
        );
        images.push(image);
    }
    Ok(images)
}

/// Writes the image of `wasm` as an OCI layout at `dir`, replacing whatever was there (so no
/// blob of an older build lingers).
pub fn write_layout(dir: &Path, package: &str, wasm: &[u8]) -> Result<Image> {
    if !wasm.starts_with(b"\0asm") {
        bail!("{package}: not a WebAssembly module (no \\0asm magic)");
    }
    let staging = dir.with_extension("partial");
    if staging.exists() {
        fs::remove_dir_all(&staging)?;
    }
    let blobs = staging.join("blobs").join("sha256");
    fs::create_dir_all(&blobs).with_context(|| format!("cannot create {}", blobs.display()))?;
    let put = |bytes: &[u8], media_type: MediaType| -> Result<Descriptor> {
        let hex = sha256_hex(bytes);
        fs::write(blobs.join(&hex), bytes)?;
        let digest: Sha256Digest = hex.parse()?;
        Ok(Descriptor::new(media_type, bytes.len() as u64, digest))
    };

    let tar = layer_tar(wasm)?;
    let diff_id = format!("sha256:{}", sha256_hex(&tar));
    let layer = put(&gzip(&tar)?, MediaType::ImageLayerGzip)?;

    // A plain image config: `wasm`/`wasip1` is the platform Docker and containerd use for WASI
    // modules; no `created`, so the digest does not depend on when it was built.
    let config = ImageConfigurationBuilder::default()
        .architecture(Arch::Wasm)
        .os(Os::Other("wasip1".to_owned()))
        .rootfs(
            RootFsBuilder::default()
                .typ("layers")
                .diff_ids(vec![diff_id])
                .build()?,
        )
        .build()?;
    let config = put(
        &canonical_json(serde_json::to_value(&config)?)?,
        MediaType::ImageConfig,
    )?;

    let annotations = [
        (ANNOTATION_TITLE, package.to_owned()),
        (ANNOTATION_VERSION, TAG.to_owned()),
        (ANNOTATION_SOURCE, REPOSITORY.to_owned()),
        (ANNOTATION_LICENSES, LICENSE.to_owned()),
        (
            ANNOTATION_DESCRIPTION,
            format!("wasmgate {package}: a proxy-wasm (ABI 0.2.1) HTTP filter"),
        ),
    ];
    let manifest = ImageManifestBuilder::default()
        .schema_version(2_u32)
        .media_type(MediaType::ImageManifest)
        .config(config)
        .layers(vec![layer])
        .annotations(
            annotations
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect::<std::collections::HashMap<_, _>>(),
        )
        .build()?;
    let manifest_bytes = canonical_json(serde_json::to_value(&manifest)?)?;
    let mut manifest_descriptor = put(&manifest_bytes, MediaType::ImageManifest)?;
    manifest_descriptor.set_annotations(Some(
        [(ANNOTATION_REF_NAME.to_owned(), TAG.to_owned())]
            .into_iter()
            .collect(),
    ));

    let index = ImageIndexBuilder::default()
        .schema_version(2_u32)
        .media_type(MediaType::ImageIndex)
        .manifests(vec![manifest_descriptor])
        .build()?;
    fs::write(
        staging.join("index.json"),
        canonical_json(serde_json::to_value(&index)?)?,
    )?;
    let layout = OciLayoutBuilder::default()
        .image_layout_version("1.0.0")
        .build()?;
    fs::write(
        staging.join("oci-layout"),
        canonical_json(serde_json::to_value(&layout)?)?,
    )?;

    if dir.exists() {
        fs::remove_dir_all(dir).with_context(|| format!("cannot replace {}", dir.display()))?;
    }
    fs::rename(&staging, dir).with_context(|| format!("cannot write {}", dir.display()))?;
    Ok(Image {
        package: package.to_owned(),
        dir: dir.to_path_buf(),
        manifest_digest: sha256_hex(&manifest_bytes),
        wasm_sha256: sha256_hex(wasm),
    })
}

/// The manifest digest (hex) that `index.json` of the layout at `dir` names for [`TAG`].
pub fn manifest_digest(dir: &Path) -> Result<String> {
    let path = dir.join("index.json");
    let text =
        fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let index: Value = serde_json::from_str(&text)?;
    let tagged = index["manifests"].as_array().and_then(|manifests| {
        manifests
            .iter()
            .find(|m| m["annotations"][ANNOTATION_REF_NAME] == TAG)
    });
    let Some(digest) = tagged.and_then(|m| m["digest"].as_str()) else {
        bail!("{} names no manifest tagged {TAG}", path.display());
    };
    digest
        .strip_prefix("sha256:")
        .map(str::to_owned)
        .with_context(|| format!("{}: digest {digest} is not sha256", path.display()))
}

/// A tar with the one file `plugin.wasm`: ustar header, fixed owner, mode and time.
fn layer_tar(wasm: &[u8]) -> Result<Vec<u8>> {
    let mut header = tar::Header::new_ustar();
    header.set_path(WASM_FILE)?;
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(wasm.len() as u64);
    header.set_mode(0o644);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_cksum();
    let mut builder = tar::Builder::new(Vec::new());
    builder.append(&header, wasm)?;
    Ok(builder.into_inner()?)
}

/// gzip without a timestamp or file name, at a fixed level.
fn gzip(bytes: &[u8]) -> Result<Vec<u8>> {
    let mut encoder = GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(Vec::new(), Compression::best());
    encoder.write_all(bytes)?;
    Ok(encoder.finish()?)
}

/// Compact JSON with object keys sorted, so maps (oci-spec keeps annotations in a `HashMap`)
/// always serialise the same way.
fn canonical_json(value: Value) -> Result<Vec<u8>> {
    Ok(serde_json::to_vec(&with_sorted_keys(value))?)
}

/// `value` with every object's keys in sorted order, whatever order it was built in (serde_json
/// keeps insertion order when a dependency turns on its `preserve_order`).
pub(crate) fn with_sorted_keys(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let ordered: BTreeMap<String, Value> = map
                .into_iter()
                .map(|(k, v)| (k, with_sorted_keys(v)))
                .collect();
            Value::Object(ordered.into_iter().collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(with_sorted_keys).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("wasmgate-oci-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    const MODULE: &[u8] = b"\0asm\x01\0\0\0";

    #[test]
    fn the_same_wasm_gives_the_same_digest_and_a_different_one_another() {
        let dir = scratch("determinism");
        let first = write_layout(&dir.join("a"), "demo", MODULE).unwrap();
        let second = write_layout(&dir.join("b"), "demo", MODULE).unwrap();
        assert_eq!(first.manifest_digest, second.manifest_digest);
        let mut other = MODULE.to_vec();
        other.push(0);
        let third = write_layout(&dir.join("c"), "demo", &other).unwrap();
        assert_ne!(first.manifest_digest, third.manifest_digest);
        assert_eq!(
            manifest_digest(&dir.join("a")).unwrap(),
            first.manifest_digest
        );
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn rewriting_a_layout_leaves_no_old_blobs() {
        let dir = scratch("rewrite").join("demo");
        write_layout(&dir, "demo", MODULE).unwrap();
        let mut other = MODULE.to_vec();
        other.push(0);
        write_layout(&dir, "demo", &other).unwrap();
        // config, layer, manifest
        assert_eq!(fs::read_dir(dir.join("blobs/sha256")).unwrap().count(), 3);
        fs::remove_dir_all(dir.parent().unwrap()).unwrap();
    }

    #[test]
    fn refuses_what_is_not_wasm() {
        let dir = scratch("refuse");
        assert!(write_layout(&dir, "demo", b"not wasm").is_err());
    }

    #[test]
    fn the_gzip_header_has_no_timestamp() {
        let gz = gzip(b"x").unwrap();
        assert_eq!(&gz[4..8], &[0, 0, 0, 0], "MTIME");
        assert_eq!(gz[9], 255, "OS unknown");
    }
}
