//! `scripts/oci-image`: the filter as the OCI image Istio's WasmPlugin pulls (the "compat" form: one
//! `tar+gzip` layer holding only `plugin.wasm`). Builds the layout twice and checks it is
//! reproducible, that every descriptor matches its blob, that the layer holds exactly the built
//! `.wasm`, and (when skopeo is installed) that skopeo reads it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::LazyLock;

use serde_json::Value;
use testbed::envoy::{repo_root, wasm_path};

const TAG: &str = env!("CARGO_PKG_VERSION");
const MT_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MT_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const MT_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const MT_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// Two layouts built from the same `.wasm` with the default tag, in this process's scratch dir.
struct Built {
    scratch: PathBuf,
    wasm: Vec<u8>,
    first: PathBuf,
    second: PathBuf,
    first_stdout: String,
}

static BUILT: LazyLock<Built> = LazyLock::new(|| {
    let wasm = wasm_path().unwrap_or_else(|e| panic!("{e}"));
    let scratch = scratch_dir();
    let first = scratch.join("a/inline-authz");
    let second = scratch.join("b/inline-authz");
    let out = run_script(&wasm, &first, None);
    run_script(&wasm, &second, None);
    Built {
        scratch,
        wasm: fs::read(&wasm).unwrap(),
        first,
        second,
        first_stdout: String::from_utf8(out.stdout).unwrap(),
    }
});

/// `target/tmp/oci_image-<pid>`, after removing those left by test processes that are gone.
fn scratch_dir() -> PathBuf {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
    fs::create_dir_all(base).unwrap();
    for entry in fs::read_dir(base).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(pid) = name.strip_prefix("oci_image-") {
            if !Path::new("/proc").join(pid).exists() {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
    }
    let dir = base.join(format!("oci_image-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

fn run_script(wasm: &Path, out: &Path, tag: Option<&str>) -> Output {
    let mut command = Command::new(repo_root().join("scripts/oci-image"));
    command
        .arg("--out")
        .arg(out)
        .env("INLINE_AUTHZ_WASM", wasm)
        .env_remove("SOURCE_DATE_EPOCH");
    if let Some(tag) = tag {
        command.args(["--tag", tag]);
    }
    let output = command.output().expect("scripts/oci-image runs");
    assert!(
        output.status.success(),
        "scripts/oci-image failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// Runs `program args`, feeding `input` on stdin; returns its stdout, panics on failure.
fn pipe(program: &str, args: &[&str], input: &[u8]) -> Vec<u8> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(
        output.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

fn sha256(data: &[u8]) -> String {
    let out = String::from_utf8(pipe("sha256sum", &[], data)).unwrap();
    format!("sha256:{}", out.split_whitespace().next().unwrap())
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    pipe("gzip", &["-dc"], data)
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&fs::read(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn blob(layout: &Path, digest: &str) -> Vec<u8> {
    let hex = digest.strip_prefix("sha256:").expect("a sha256 digest");
    fs::read(layout.join("blobs/sha256").join(hex)).unwrap()
}

/// Checks a descriptor against its blob (digest, size, media type) and returns the blob.
fn resolve(layout: &Path, descriptor: &Value, media_type: &str) -> Vec<u8> {
    assert_eq!(descriptor["mediaType"], media_type, "{descriptor}");
    let digest = descriptor["digest"].as_str().unwrap();
    let data = blob(layout, digest);
    assert_eq!(sha256(&data), digest, "blob content vs its descriptor");
    assert_eq!(
        descriptor["size"].as_u64().unwrap(),
        data.len() as u64,
        "{descriptor}"
    );
    data
}

fn manifest_digest(layout: &Path) -> String {
    let index = read_json(&layout.join("index.json"));
    index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Every file of a directory tree, by relative path.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, into: &mut BTreeMap<String, Vec<u8>>) {
        for entry in fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(root, &path, into);
            } else {
                let rel = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                into.insert(rel, fs::read(&path).unwrap());
            }
        }
    }
    let mut into = BTreeMap::new();
    walk(dir, dir, &mut into);
    into
}

/// One member of a ustar archive.
#[derive(Debug)]
struct TarEntry {
    name: String,
    kind: u8,
    mode: u64,
    uid: u64,
    gid: u64,
    mtime: u64,
    uname: String,
    data: Vec<u8>,
}

fn octal(field: &[u8]) -> u64 {
    let text = std::str::from_utf8(field).unwrap();
    let text = text.trim_matches(|c: char| c == '\0' || c == ' ');
    u64::from_str_radix(text, 8).unwrap_or_else(|e| panic!("octal field {text:?}: {e}"))
}

fn cstr(field: &[u8]) -> String {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    String::from_utf8(field[..end].to_vec()).unwrap()
}

/// Parses a ustar archive (what the script writes: no pax or GNU extension headers).
fn untar(tar: &[u8]) -> Vec<TarEntry> {
    assert_eq!(tar.len() % 512, 0, "a tar is made of 512-byte blocks");
    let mut entries = Vec::new();
    let mut at = 0;
    while at + 512 <= tar.len() {
        let header = &tar[at..at + 512];
        if header.iter().all(|&b| b == 0) {
            break;
        }
        assert_eq!(&header[257..263], b"ustar\0", "ustar magic");
        let stored: u64 = octal(&header[148..156]);
        let sum: u64 = header
            .iter()
            .enumerate()
            .map(|(i, &b)| {
                if (148..156).contains(&i) {
                    32
                } else {
                    u64::from(b)
                }
            })
            .sum();
        assert_eq!(stored, sum, "header checksum");
        let prefix = cstr(&header[345..500]);
        let name = cstr(&header[0..100]);
        let size = octal(&header[124..136]) as usize;
        let start = at + 512;
        entries.push(TarEntry {
            name: if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            },
            kind: header[156],
            mode: octal(&header[100..108]),
            uid: octal(&header[108..116]),
            gid: octal(&header[116..124]),
            mtime: octal(&header[136..148]),
            uname: cstr(&header[265..297]),
            data: tar[start..start + size].to_vec(),
        });
        at = start + size.div_ceil(512) * 512;
    }
    assert!(
        tar[at..].iter().all(|&b| b == 0),
        "only zero blocks after the end marker"
    );
    entries
}

#[test]
fn two_builds_of_the_same_wasm_are_byte_identical() {
    let built = &*BUILT;
    let first = manifest_digest(&built.first);
    let second = manifest_digest(&built.second);
    assert_eq!(first, second, "manifest digests of two builds");
    assert_eq!(
        files(&built.first),
        files(&built.second),
        "every file of the two layouts"
    );
    let tarball = |layout: &Path| {
        fs::read(layout.with_file_name(format!("inline-authz-{TAG}.oci.tar"))).unwrap()
    };
    assert!(
        tarball(&built.first) == tarball(&built.second),
        "the two layout tarballs differ"
    );
}

#[test]
fn the_script_prints_the_manifest_digest_and_the_wasm_sha256() {
    let built = &*BUILT;
    let digest = manifest_digest(&built.first);
    let stdout = &built.first_stdout;
    assert!(
        stdout.contains(&format!("manifest digest:    {digest}")),
        "{stdout}"
    );
    let wasm_sha = sha256(&built.wasm);
    let wasm_hex = wasm_sha.strip_prefix("sha256:").unwrap();
    assert!(
        stdout.contains(&format!("plugin.wasm sha256: {wasm_hex}")),
        "{stdout}"
    );
}

#[test]
fn index_manifest_config_and_layer_descriptors_match_their_blobs() {
    let layout = &BUILT.first;
    assert_eq!(
        read_json(&layout.join("oci-layout")),
        serde_json::json!({"imageLayoutVersion": "1.0.0"})
    );

    let index = read_json(&layout.join("index.json"));
    assert_eq!(index["schemaVersion"], 2);
    assert_eq!(index["mediaType"], MT_INDEX);
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 1, "{index}");
    assert_eq!(
        manifests[0]["annotations"]["org.opencontainers.image.ref.name"], TAG,
        "the default tag is the crate version"
    );
    let manifest_bytes = resolve(layout, &manifests[0], MT_MANIFEST);

    let manifest: Value = serde_json::from_slice(&manifest_bytes).unwrap();
    assert_eq!(manifest["schemaVersion"], 2);
    assert_eq!(manifest["mediaType"], MT_MANIFEST);
    let config_bytes = resolve(layout, &manifest["config"], MT_CONFIG);
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1, "the compat form has a single layer");
    let layer = resolve(layout, &layers[0], MT_LAYER);

    let config: Value = serde_json::from_slice(&config_bytes).unwrap();
    assert_eq!(config["rootfs"]["type"], "layers");
    assert_eq!(
        config["rootfs"]["diff_ids"],
        serde_json::json!([sha256(&gunzip(&layer))]),
        "diff_ids is the digest of the uncompressed layer"
    );
    assert!(config["architecture"].is_string() && config["os"].is_string());
    assert!(
        config.get("created").is_none() && config.get("history").is_none(),
        "no timestamps in the config: {config}"
    );

    let mut blobs: Vec<String> = fs::read_dir(layout.join("blobs/sha256"))
        .unwrap()
        .map(|e| format!("sha256:{}", e.unwrap().file_name().to_string_lossy()))
        .collect();
    blobs.sort();
    let mut expected = vec![
        manifests[0]["digest"].as_str().unwrap().to_string(),
        manifest["config"]["digest"].as_str().unwrap().to_string(),
        layers[0]["digest"].as_str().unwrap().to_string(),
    ];
    expected.sort();
    assert_eq!(blobs, expected, "no blob beyond manifest, config and layer");
}

#[test]
fn the_layer_holds_exactly_plugin_wasm_as_built() {
    let built = &*BUILT;
    let manifest = read_json(&built.first.join(format!(
        "blobs/sha256/{}",
        manifest_digest(&built.first).strip_prefix("sha256:").unwrap()
    )));
    let layer = blob(
        &built.first,
        manifest["layers"][0]["digest"].as_str().unwrap(),
    );

    // gzip header (RFC 1952): no file name, mtime 0, as `gzip -n`.
    assert_eq!(&layer[..3], &[0x1f, 0x8b, 8], "gzip magic, deflate");
    assert_eq!(layer[3] & 0x08, 0, "no FNAME in the gzip header");
    assert_eq!(&layer[4..8], &[0, 0, 0, 0], "gzip mtime 0");

    let entries = untar(&gunzip(&layer));
    assert_eq!(
        entries.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(),
        ["plugin.wasm"],
        "the layer holds exactly plugin.wasm, at the root"
    );
    let entry = &entries[0];
    assert_eq!(entry.kind, b'0', "a regular file");
    assert_eq!((entry.uid, entry.gid, entry.mtime), (0, 0, 0), "{entry:?}");
    assert_eq!(entry.mode, 0o644);
    assert_eq!(entry.uname, "");
    assert!(
        entry.data == built.wasm,
        "plugin.wasm differs from {}",
        wasm_path().unwrap().display()
    );
    assert_eq!(&entry.data[..4], b"\0asm");
}

#[test]
fn the_tarball_holds_the_layout_and_the_tag_only_changes_the_index() {
    let built = &*BUILT;
    let tarball = built
        .first
        .with_file_name(format!("inline-authz-{TAG}.oci.tar"));
    let entries = untar(&fs::read(&tarball).unwrap());
    let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(names, sorted, "sorted entries");
    assert!(names.contains(&"blobs/") && names.contains(&"blobs/sha256/"));
    let in_tar: BTreeMap<String, Vec<u8>> = entries
        .into_iter()
        .filter(|e| e.kind == b'0')
        .inspect(|e| assert_eq!((e.uid, e.gid, e.mtime), (0, 0, 0), "{}", e.name))
        .map(|e| (e.name, e.data))
        .collect();
    assert_eq!(in_tar, files(&built.first), "the tarball is the layout");

    let tagged = built.scratch.join("c/inline-authz");
    run_script(&wasm_path().unwrap(), &tagged, Some("v9.8.7-test"));
    let index = read_json(&tagged.join("index.json"));
    assert_eq!(
        index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
        "v9.8.7-test"
    );
    assert_eq!(
        manifest_digest(&tagged),
        manifest_digest(&built.first),
        "the tag is not part of the image"
    );
    assert!(tagged
        .with_file_name("inline-authz-v9.8.7-test.oci.tar")
        .is_file());
}

#[test]
fn skopeo_reads_the_layout_and_the_tarball() {
    if Command::new("skopeo").arg("--version").output().is_err() {
        println!(
            "note: skopeo is not installed; skipping the skopeo check (apt-get install skopeo)"
        );
        return;
    }
    let built = &*BUILT;
    let digest = manifest_digest(&built.first);
    let tarball = built
        .first
        .with_file_name(format!("inline-authz-{TAG}.oci.tar"));
    for reference in [
        format!("oci:{}:{TAG}", built.first.display()),
        format!("oci-archive:{}", tarball.display()),
    ] {
        let output = Command::new("skopeo")
            .args(["inspect", &reference])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "skopeo inspect {reference}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let inspected: Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(inspected["Digest"], digest.as_str(), "{reference}");
        assert_eq!(inspected["Layers"].as_array().map(Vec::len), Some(1));
    }
}
