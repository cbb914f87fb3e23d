//! The documentation a new user follows must work: every command shown in the README and
//! in docs/getting-started.md exists (its `--help` succeeds), and every relative link in
//! the README and docs/ points at a file that exists.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The directory cargo put this workspace's binaries in (`target/debug`).
fn bin_dir() -> PathBuf {
    let aeogate = PathBuf::from(env!("CARGO_BIN_EXE_aeogate"));
    aeogate.parent().expect("binary directory").to_path_buf()
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()))
}

/// Lines of fenced `sh` code blocks.
fn shell_lines(markdown: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_sh = false;
    for line in markdown.lines() {
        let t = line.trim_start();
        if let Some(rest) = t.strip_prefix("```") {
            in_sh = !in_sh && (rest == "sh" || rest == "bash");
            continue;
        }
        if in_sh && !t.is_empty() && !t.starts_with('#') {
            let cmd = t.split(" #").next().unwrap_or(t).trim().to_owned();
            out.push(cmd);
        }
    }
    out
}

/// Turns `cargo run [--release] [-p PKG] -- ARGS` into (binary, ARGS).
fn as_binary_call(cmd: &str) -> Option<(String, Vec<String>)> {
    let words: Vec<&str> = cmd.split_whitespace().collect();
    if words.first() != Some(&"cargo") || words.get(1) != Some(&"run") {
        return None;
    }
    let sep = words.iter().position(|w| *w == "--")?;
    let mut bin = "aeogate".to_owned();
    let mut i = 2;
    while i < sep {
        if words[i] == "-p" || words[i] == "--package" || words[i] == "--bin" {
            bin = words.get(i + 1)?.to_string();
            i += 1;
        }
        i += 1;
    }
    Some((
        bin,
        words[sep + 1..]
            .iter()
            .map(|w| w.trim_matches('"').to_owned())
            .collect(),
    ))
}

#[test]
fn every_command_in_the_readme_and_getting_started_exists() {
    let mut checked = 0;
    for doc in ["README.md", "docs/getting-started.md"] {
        for cmd in shell_lines(&read(&root().join(doc))) {
            if let Some(script) = cmd.strip_prefix("./") {
                let path = root().join(script.split_whitespace().next().unwrap_or(""));
                assert!(
                    path.is_file(),
                    "{doc}: `{cmd}`: {} does not exist",
                    path.display()
                );
                checked += 1;
                continue;
            }
            let Some((bin, mut args)) = as_binary_call(&cmd) else {
                if cmd.starts_with("cargo ") {
                    panic!("{doc}: `{cmd}` is a cargo command this check does not understand");
                }
                continue;
            };
            args.push("--help".into());
            let exe = bin_dir().join(&bin);
            let out = Command::new(&exe)
                .args(&args)
                .current_dir(root())
                .output()
                .unwrap_or_else(|e| panic!("{doc}: `{cmd}`: running {}: {e}", exe.display()));
            assert!(
                out.status.success(),
                "{doc}: `{cmd}` → `{bin} {}` failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
            checked += 1;
        }
    }
    assert!(
        checked >= 5,
        "found only {checked} commands: is the parser still finding the code blocks?"
    );
}

/// `[text](target)` links whose target is a relative path.
fn relative_links(markdown: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = markdown;
    while let Some(i) = rest.find("](") {
        rest = &rest[i + 2..];
        let Some(end) = rest.find(')') else { break };
        let target = &rest[..end];
        rest = &rest[end..];
        if target.contains("://")
            || target.starts_with('#')
            || target.starts_with("mailto:")
            || target.contains(' ')
        {
            continue;
        }
        out.push(target.split('#').next().unwrap_or(target).to_owned());
    }
    out
}

#[test]
fn every_relative_link_in_the_docs_resolves() {
    let mut files = vec![root().join("README.md")];
    for entry in std::fs::read_dir(root().join("docs")).expect("docs/") {
        let p = entry.expect("entry").path();
        if p.extension().is_some_and(|e| e == "md") {
            files.push(p);
        }
    }
    let mut checked = 0;
    for f in &files {
        let base = f.parent().expect("parent");
        for link in relative_links(&read(f)) {
            if link.is_empty() {
                continue;
            }
            let target = base.join(&link);
            assert!(
                target.exists(),
                "{}: link to {link} does not resolve ({})",
                f.display(),
                target.display()
            );
            checked += 1;
        }
    }
    assert!(checked >= 10, "found only {checked} links");
}
