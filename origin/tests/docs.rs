//! The design lives in the repository: `docs/architecture.md` has the agreed section titles,
//! every reference to one of its sections in the sources and docs (the file name, a comma
//! and the quoted title) names one of them, and nothing points to the old design document
//! outside the repository.

#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

const SECTIONS: &[&str] = &[
    "Modules",
    "Publish flow",
    "Play flow and routing",
    "Ownership query",
    "RTMP 302",
    "Relay",
    "Coworker delivery",
    "HTTP API",
    "Fan-out and write-through",
    "HLS",
    "Auth and hooks",
    "Limits and hostile input",
    "Operator",
    "Test control plane",
    "Ownership directory",
    "TLS",
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Every Rust, Markdown, TOML, YAML and Python file of the repository (no build output,
/// no dependencies).
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || ["target", "node_modules", "seeds"].contains(&name.as_str()) {
            continue;
        }
        if path.is_dir() {
            sources(&path, out);
        } else if ["rs", "md", "toml", "yaml", "py", "sh"]
            .iter()
            .any(|x| name.ends_with(&format!(".{x}")))
        {
            out.push(path);
        }
    }
}

#[test]
fn architecture_has_exactly_the_agreed_sections() {
    let text = std::fs::read_to_string(root().join("docs/architecture.md")).expect("read");
    let titles: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("## ")).collect();
    let mut want = SECTIONS.to_vec();
    let mut got = titles.clone();
    want.sort_unstable();
    got.sort_unstable();
    assert_eq!(got, want, "section titles of docs/architecture.md");
}

#[test]
fn references_name_existing_sections_and_none_points_outside() {
    let mut files = Vec::new();
    sources(&root(), &mut files);
    assert!(files.len() > 50, "found {} files", files.len());
    let marker = "docs/architecture.md, \"";
    let old = format!("DESIGN {}", '\u{a7}');
    let mut refs = 0;
    for f in &files {
        let Ok(text) = std::fs::read_to_string(f) else {
            continue;
        };
        assert!(
            !text.contains(&old),
            "{} points to a document outside the repository ({old}…)",
            f.display()
        );
        // A reference may wrap onto the next comment line: compare with comment markers
        // and line breaks folded into spaces.
        let folded = text
            .lines()
            .map(|l| {
                l.trim_start()
                    .trim_start_matches("//!")
                    .trim_start_matches("///")
                    .trim_start_matches("//")
                    .trim_start_matches('#')
                    .trim()
            })
            .collect::<Vec<_>>()
            .join(" ");
        for (at, _) in folded.match_indices(marker) {
            let rest = &folded[at + marker.len()..];
            let title = rest.split('"').next().unwrap_or_default();
            assert!(
                SECTIONS.contains(&title),
                "{}: reference to a section that does not exist: \"{title}\"",
                f.display()
            );
            refs += 1;
        }
    }
    assert!(refs >= 30, "only {refs} references found");
}
