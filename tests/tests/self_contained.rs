//! A user's clone has only the repository: nothing in the project may read files beside the checkout
//! (the steering folder the project was started from is not part of a clone). Every fixture lives in
//! `tests/fixtures`.

use std::process::Command;

use sealtune_e2e::repo_root;

/// Strings that name a path outside the checkout. Built with `concat!` so this file does not match itself.
const FORBIDDEN: [&str; 3] = [
    concat!("..", "/shared"),
    concat!("SEALTUNE_", "SHARED"),
    concat!("shared", "/fixtures"),
];

#[test]
fn no_tracked_file_reads_outside_the_checkout() {
    let root = repo_root();
    let out = Command::new("git")
        .arg("-C")
        .arg(&root)
        .args(["ls-files", "-z"])
        .output()
        .expect("git ls-files (the tests run in a git checkout)");
    assert!(
        out.status.success(),
        "git ls-files failed in {}",
        root.display()
    );
    let files: Vec<String> = out
        .stdout
        .split(|b| *b == 0)
        .filter(|f| !f.is_empty())
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect();
    assert!(
        files.len() > 100,
        "git ls-files listed only {} files",
        files.len()
    );
    let mut offenders = Vec::new();
    for file in &files {
        let Ok(bytes) = std::fs::read(root.join(file)) else {
            continue; // a deleted-but-tracked file in a dirty tree
        };
        let text = String::from_utf8_lossy(&bytes);
        for (n, line) in text.lines().enumerate() {
            if FORBIDDEN.iter().any(|f| line.contains(f)) {
                offenders.push(format!("{file}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "these lines name a path outside the checkout; vendor the file into tests/fixtures \
         (with provenance in its README) and read it through sealtune_e2e::fixture:\n{}",
        offenders.join("\n")
    );
}

#[test]
fn every_fixture_folder_has_provenance_and_a_licence() {
    let dir = repo_root().join("tests/fixtures");
    let readme = std::fs::read_to_string(dir.join("README.md")).expect("tests/fixtures/README.md");
    for sub in ["tdx", "nvidia", "abi"] {
        let d = dir.join(sub);
        assert!(
            d.join("README.md").exists(),
            "{} has no README",
            d.display()
        );
        assert!(
            readme.contains(&format!("`{sub}/`")),
            "tests/fixtures/README.md has no row for {sub}/"
        );
        let named: Vec<String> = std::fs::read_dir(&d)
            .expect("fixture folder")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        let own = std::fs::read_to_string(d.join("README.md")).expect("folder README");
        for name in named
            .iter()
            .filter(|n| !n.starts_with("LICENSE") && *n != "README.md")
        {
            assert!(
                own.contains(name.as_str()) || readme.contains(name.as_str()),
                "{sub}/{name} is not described in any README (provenance and licence)"
            );
        }
    }
}
