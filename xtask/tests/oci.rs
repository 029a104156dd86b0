//! The filters' OCI images as `cargo xtask build` wrote them (`target/oci-images/<filter>/`),
//! read back the way a puller does: `index.json` → the manifest tagged with the version → config
//! and the one layer, every blob checked against its digest and size, the layer untarred and its
//! `plugin.wasm` compared with the `.wasm` the build made. skopeo (Debian's, from
//! containers/image) reads and copies each layout as an independent client. Finally the digests
//! pinned under `deploy/` must be these images' manifest digests.
//!
//! Needs the build: `cargo xtask test` runs it first (or `cargo xtask build`), and installs skopeo.
// Test code states its expectations bluntly; the no-panic rule is for filter and service code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeSet;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use oci_spec::image::{
    ANNOTATION_REF_NAME, Descriptor, ImageConfiguration, ImageIndex, ImageManifest, MediaType,
    OciLayout,
};
use serde_json::Value;
use xtask::oci::{TAG, WASM_FILE, layout_dir, sha256_hex};
use xtask::paths::{CHAIN, FILTERS, deploy_dir, wasm_dir};

/// The built `.wasm` of a filter, and its image layout; both must exist.
fn built(package: &str, stem: &str) -> (Vec<u8>, PathBuf) {
    let wasm = wasm_dir().join(format!("{stem}.wasm"));
    let dir = layout_dir(package);
    assert!(
        wasm.is_file() && dir.join("index.json").is_file(),
        "{} or {} is missing: run `cargo xtask build` first",
        wasm.display(),
        dir.display()
    );
    (fs::read(wasm).unwrap(), dir)
}

/// A blob named by `descriptor`, checked against the descriptor's digest and size.
fn blob(dir: &Path, descriptor: &Descriptor) -> Vec<u8> {
    let digest = descriptor.digest();
    assert_eq!(digest.algorithm().as_ref(), "sha256", "{digest}");
    let bytes = fs::read(dir.join("blobs/sha256").join(digest.digest())).unwrap();
    assert_eq!(
        sha256_hex(&bytes),
        digest.digest(),
        "blob content vs its digest"
    );
    assert_eq!(
        bytes.len() as u64,
        descriptor.size(),
        "blob size of {digest}"
    );
    bytes
}

/// What one layout holds, read back and checked; returns the manifest digest (hex).
fn read_back(package: &str, dir: &Path, wasm: &[u8]) -> String {
    let layout: OciLayout =
        serde_json::from_slice(&fs::read(dir.join("oci-layout")).unwrap()).unwrap();
    assert_eq!(layout.image_layout_version(), "1.0.0");

    let index: ImageIndex =
        serde_json::from_slice(&fs::read(dir.join("index.json")).unwrap()).unwrap();
    assert_eq!(index.schema_version(), 2);
    assert_eq!(index.manifests().len(), 1, "one image per layout");
    let entry = &index.manifests()[0];
    assert_eq!(entry.media_type(), &MediaType::ImageManifest);
    assert_eq!(
        entry
            .annotations()
            .as_ref()
            .and_then(|a| a.get(ANNOTATION_REF_NAME)),
        Some(&TAG.to_owned()),
        "tagged with the crate version"
    );

    let manifest_bytes = blob(dir, entry);
    let manifest: ImageManifest = serde_json::from_slice(&manifest_bytes).unwrap();
    assert_eq!(manifest.schema_version(), 2);
    assert_eq!(manifest.media_type(), &Some(MediaType::ImageManifest));
    assert_eq!(manifest.config().media_type(), &MediaType::ImageConfig);
    // The compat variant Istio and Envoy Gateway pull: exactly one tar+gzip layer.
    assert_eq!(manifest.layers().len(), 1);
    let layer_descriptor = &manifest.layers()[0];
    assert_eq!(layer_descriptor.media_type(), &MediaType::ImageLayerGzip);

    let layer = blob(dir, layer_descriptor);
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(layer.as_slice())
        .read_to_end(&mut tar)
        .unwrap();
    let config: ImageConfiguration = serde_json::from_slice(&blob(dir, manifest.config())).unwrap();
    assert_eq!(config.architecture().to_string(), "wasm");
    assert_eq!(config.os().to_string(), "wasip1");
    assert_eq!(
        config.rootfs().diff_ids(),
        &vec![format!("sha256:{}", sha256_hex(&tar))],
        "diff_id is the uncompressed layer's digest"
    );

    let mut archive = tar::Archive::new(tar.as_slice());
    let mut entries = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let header = entry.header().clone();
        let mut content = Vec::new();
        entry.read_to_end(&mut content).unwrap();
        entries.push((entry.path().unwrap().into_owned(), header, content));
    }
    assert_eq!(entries.len(), 1, "{package}: the layer holds one file");
    let (path, header, content) = &entries[0];
    assert_eq!(path, Path::new(WASM_FILE));
    assert!(header.entry_type().is_file());
    assert_eq!(header.mode().unwrap(), 0o644);
    assert_eq!(header.mtime().unwrap(), 0);
    assert_eq!((header.uid().unwrap(), header.gid().unwrap()), (0, 0));
    assert_eq!(
        sha256_hex(content),
        sha256_hex(wasm),
        "{package}: plugin.wasm is not the .wasm the build made (run `cargo xtask build`)"
    );

    // Nothing else in the layout: config, layer, manifest.
    let blobs: BTreeSet<String> = fs::read_dir(dir.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    let referenced: BTreeSet<String> = [entry, manifest.config(), layer_descriptor]
        .iter()
        .map(|d| d.digest().digest().to_owned())
        .collect();
    assert_eq!(blobs, referenced);
    sha256_hex(&manifest_bytes)
}

#[test]
fn each_layout_holds_the_built_wasm_as_plugin_wasm() {
    for (package, stem) in FILTERS.into_iter().chain([CHAIN]) {
        let (wasm, dir) = built(package, stem);
        let digest = read_back(package, &dir, &wasm);
        assert_eq!(xtask::oci::manifest_digest(&dir).unwrap(), digest);
    }
}

fn skopeo(args: &[&str]) -> String {
    let out = Command::new("skopeo")
        .args(args)
        .output()
        .expect("skopeo (Debian package skopeo) must be installed: `cargo xtask test` installs it");
    assert!(
        out.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn skopeo_reads_each_layout_and_copies_it_with_the_same_digest() {
    let scratch = std::env::temp_dir().join(format!("wasmgate-skopeo-{}", std::process::id()));
    fs::create_dir_all(&scratch).unwrap();
    for (package, stem) in FILTERS.into_iter().chain([CHAIN]) {
        let (_, dir) = built(package, stem);
        let digest = xtask::oci::manifest_digest(&dir).unwrap();
        let reference = format!("oci:{}:{TAG}", dir.display());

        let inspect: Value = serde_json::from_str(&skopeo(&["inspect", &reference])).unwrap();
        assert_eq!(inspect["Digest"], format!("sha256:{digest}"), "{inspect}");
        assert_eq!(inspect["Architecture"], "wasm");
        assert_eq!(inspect["Os"], "wasip1");
        assert_eq!(inspect["Layers"].as_array().unwrap().len(), 1);
        let raw = skopeo(&["inspect", "--raw", &reference]);
        assert_eq!(sha256_hex(raw.as_bytes()), digest, "raw manifest digest");

        // What a push does (`skopeo copy oci:… docker://…`), into another layout: the digest the
        // manifests pin must survive it.
        let copy = scratch.join(package);
        let target = format!("oci:{}:{TAG}", copy.display());
        skopeo(&["copy", "--quiet", "--preserve-digests", &reference, &target]);
        assert_eq!(xtask::oci::manifest_digest(&copy).unwrap(), digest);
    }
    fs::remove_dir_all(scratch).unwrap();
}

/// The `sha256` values under `deploy/`, by file, in order of appearance.
fn pinned_digests(path: &Path) -> Vec<String> {
    let text = fs::read_to_string(path).unwrap();
    let value: Value = serde_yaml::from_str(&text).unwrap();
    let mut found = Vec::new();
    fn walk(value: &Value, found: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, v) in map {
                    if key == "sha256" {
                        found.push(v.as_str().unwrap().to_owned());
                    } else {
                        walk(v, found);
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, found)),
            _ => {}
        }
    }
    walk(&value, &mut found);
    found
}

#[test]
fn the_manifests_under_deploy_pin_these_images() {
    let digests: Vec<String> = FILTERS
        .iter()
        .map(|(package, stem)| {
            let (_, dir) = built(package, stem);
            xtask::oci::manifest_digest(&dir).unwrap()
        })
        .collect();
    let stale = "deploy/ pins other images than the build made: run `cargo xtask render` and commit deploy/";
    for ((package, _), digest) in FILTERS.iter().zip(&digests) {
        let istio = deploy_dir().join("istio").join(format!("{package}.yaml"));
        assert_eq!(pinned_digests(&istio), vec![digest.clone()], "{stale}");
    }
    let gateway = deploy_dir().join("envoy-gateway/envoy-extension-policy.yaml");
    assert_eq!(pinned_digests(&gateway), digests, "{stale}");
    let (package, stem) = CHAIN;
    let (_, dir) = built(package, stem);
    let chain = vec![xtask::oci::manifest_digest(&dir).unwrap()];
    for file in ["istio-wasm-plugin.yaml", "envoy-extension-policy.yaml"] {
        let path = deploy_dir().join("chain").join(file);
        assert_eq!(pinned_digests(&path), chain, "{stale}");
    }
}
