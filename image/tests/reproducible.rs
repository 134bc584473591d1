//! CI's proof that the image build is reproducible, on a reduced image: the shipped spec
//! (`deploy/image.toml`, all its layers and both variants) through the `sealtune-image` binary that
//! `scripts/build-image` runs, with small generated layer contents. Two builds whose trees differ in
//! everything the machinery must erase (creation order, mtimes, umask, owners, inode numbers) give
//! one digest and identical layouts; a changed byte gives another digest.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_sealtune-image");

fn spec() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/image.toml")
}

/// The files of the reduced image: (layer, path, contents, executable).
const FILES: &[(&str, &str, &str, bool)] = &[
    (
        "debian",
        "usr/bin/python3.11",
        "#!/bin/sh\necho python\n",
        true,
    ),
    (
        "debian",
        "etc/os-release",
        "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n",
        false,
    ),
    (
        "debian",
        "usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0",
        "\x7fELF not really",
        false,
    ),
    (
        "venv",
        "opt/sealtune/venv/pyvenv.cfg",
        "home = /usr/bin\n",
        false,
    ),
    (
        "venv",
        "opt/sealtune/venv/lib/python3.11/site-packages/torch/__init__.py",
        "x = 1\n",
        false,
    ),
    (
        "worker",
        "usr/local/bin/sealtune-worker",
        "#!/bin/sh\nexit 0\n",
        true,
    ),
    (
        "worker",
        "opt/sealtune/scripts/training/lora_causal_lm.py",
        "print('train')\n",
        false,
    ),
];

/// Generate the layer trees under `root`; `reverse` makes them in the other order, with other
/// mtimes, another umask-like mode on the data files and (as root) other owners.
fn generate(root: &Path, reverse: bool) -> Vec<String> {
    let mut files: Vec<_> = FILES.to_vec();
    if reverse {
        files.reverse();
    }
    for (layer, path, contents, exec) in files {
        let p = root.join(layer).join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, contents).unwrap();
        let mode = match (exec, reverse) {
            (true, false) => 0o755,
            (true, true) => 0o700,
            (false, false) => 0o644,
            (false, true) => 0o600,
        };
        // The Debian layer keeps modes (dpkg sets them): vary only the normalized layers' modes.
        if layer != "debian" {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        let t = std::time::SystemTime::UNIX_EPOCH
            + std::time::Duration::from_secs(if reverse { 7 } else { 1_900_000_000 });
        std::fs::File::options()
            .write(true)
            .open(&p)
            .unwrap()
            .set_modified(t)
            .unwrap();
        if reverse && layer != "debian" {
            // Owners the normalized layers erase (fails harmlessly when not root).
            let _ = Command::new("chown")
                .arg("-R")
                .arg("65534:65534")
                .arg(root.join(layer))
                .status();
        }
    }
    ["debian", "venv", "worker"]
        .iter()
        .map(|l| format!("{l}={}", root.join(l).display()))
        .collect()
}

fn build(layers: &[String], out: &Path, variant: &str) -> String {
    let mut cmd = Command::new(BIN);
    cmd.args(["build", "--spec"])
        .arg(spec())
        .args(["--variant", variant, "--out"])
        .arg(out);
    for l in layers {
        cmd.args(["--layer", l]);
    }
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8(o.stdout).unwrap().trim().to_owned()
}

/// Every file of a layout, by relative path, with its bytes.
fn tree(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((
                    p.strip_prefix(dir).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                ));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn two_builds_of_the_reduced_image_give_one_digest() {
    let t = tempfile::tempdir().unwrap();
    let a = generate(&t.path().join("a"), false);
    let b = generate(&t.path().join("b"), true);
    for variant in ["cpu", "cuda"] {
        let da = build(&a, &t.path().join(format!("oci-a-{variant}")), variant);
        let db = build(&b, &t.path().join(format!("oci-b-{variant}")), variant);
        assert!(da.starts_with("sha256:") && da.len() == 71, "{da}");
        assert_eq!(
            da, db,
            "{variant}: two builds of the same inputs gave two digests"
        );
        assert_eq!(
            tree(&t.path().join(format!("oci-a-{variant}"))),
            tree(&t.path().join(format!("oci-b-{variant}"))),
            "{variant}: the layouts differ"
        );
    }
    // A changed byte in any layer is another image.
    let f = t.path().join("b/worker/usr/local/bin/sealtune-worker");
    std::fs::write(&f, "#!/bin/sh\nexit 1\n").unwrap();
    let changed = build(&b, &t.path().join("oci-changed"), "cpu");
    let cpu = build(&a, &t.path().join("oci-a-cpu-again"), "cpu");
    assert_ne!(changed, cpu);
}

#[test]
fn the_reduced_image_unpacks_to_its_files_and_a_tampered_layer_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let layers = generate(&t.path().join("src"), false);
    let oci = t.path().join("oci");
    let digest = build(&layers, &oci, "cpu");
    let root = t.path().join("rootfs");
    let o = Command::new(BIN)
        .args(["unpack", "--layout"])
        .arg(&oci)
        .arg("--out")
        .arg(&root)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), digest);
    for (_, path, contents, _) in FILES {
        assert_eq!(
            std::fs::read_to_string(root.join(path)).unwrap(),
            *contents,
            "{path}"
        );
    }
    let worker = root.join("usr/local/bin/sealtune-worker");
    assert_eq!(
        std::fs::metadata(&worker).unwrap().permissions().mode() & 0o7777,
        0o755
    );

    // One byte of a layer blob changed: refused before anything of it is unpacked.
    let blobs = oci.join("blobs/sha256");
    let hex = |d: &serde_json::Value| {
        d["digest"]
            .as_str()
            .unwrap()
            .trim_start_matches("sha256:")
            .to_owned()
    };
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(oci.join("index.json")).unwrap()).unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(blobs.join(hex(&index["manifests"][0]))).unwrap())
            .unwrap();
    let layer = blobs.join(hex(&manifest["layers"][2]));
    let mut bytes = std::fs::read(&layer).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&layer, bytes).unwrap();
    let o = Command::new(BIN)
        .args(["unpack", "--layout"])
        .arg(&oci)
        .arg("--out")
        .arg(t.path().join("rootfs2"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("layer sha256:") && err.contains("does not hash to its name"),
        "{err}"
    );
    assert!(
        !t.path()
            .join("rootfs2/usr/local/bin/sealtune-worker")
            .exists()
    );
}
