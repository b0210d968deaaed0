//! `cargo xtask tidy`: the invariants of ARCHITECTURE.md that can be checked by reading the
//! source, checked. Each rule names the files it looks at and what it forbids; a violation is
//! printed as `path:line: rule`.

use std::path::{Path, PathBuf};

/// One broken rule at one place.
#[derive(Debug, PartialEq, Eq)]
pub struct Violation {
    /// The file, relative to the workspace root.
    pub path: String,
    /// 1-based line (0: the whole file).
    pub line: usize,
    /// What is wrong.
    pub rule: &'static str,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}: {}", self.path, self.line, self.rule)
    }
}

/// Where Rust sources are checked (relative to the root); `target` directories are skipped.
const SOURCE_DIRS: [&str; 5] = ["host", "xtask", "demo", "tests", "guest-udfs"];

/// Every violation in the workspace at `root`.
pub fn check(root: &Path) -> Vec<Violation> {
    let mut files = Vec::new();
    for dir in SOURCE_DIRS {
        rust_files(&root.join(dir), &mut files);
    }
    files.sort();
    let mut found = Vec::new();
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        let path = file
            .strip_prefix(root)
            .unwrap_or(&file)
            .to_string_lossy()
            .replace('\\', "/");
        found.extend(check_file(&path, &text));
    }
    found.extend(check_counts(root));
    found
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if path.is_dir() {
            if name != "target" && !name.to_string_lossy().starts_with('.') {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// A rule about which files may name a crate in code.
struct OnlyIn {
    word: &'static str,
    /// Path prefixes allowed to name it.
    allowed: &'static [&'static str],
    /// Path prefixes the rule covers.
    scope: &'static str,
    rule: &'static str,
}

const ONLY_IN: [OnlyIn; 10] = [
    OnlyIn {
        word: "wasmtime",
        allowed: &["host/src/udf_runtime/"],
        scope: "host/src/",
        rule: "only host/src/udf_runtime/ names wasmtime",
    },
    OnlyIn {
        word: "axum",
        allowed: &["host/src/admin/"],
        scope: "host/src/",
        rule: "only host/src/admin/ names axum",
    },
    OnlyIn {
        word: "anyhow",
        allowed: &["host/src/main.rs", "host/src/cli/"],
        scope: "host/src/",
        rule: "anyhow only in the binary (main.rs, cli/); the library uses thiserror",
    },
    OnlyIn {
        word: "tokio",
        allowed: &[],
        scope: "host/src/pipeline/",
        rule: "the pipeline model is pure: no tokio in host/src/pipeline/",
    },
    OnlyIn {
        word: "crate::topology",
        allowed: &[],
        scope: "host/src/pipeline/",
        rule: "the pipeline model does not import the running topology",
    },
    OnlyIn {
        word: "crate::topology",
        allowed: &[],
        scope: "host/src/flow/",
        rule: "flow/ is the components' vocabulary: it does not import the topology that runs them",
    },
    OnlyIn {
        word: "crate::topology",
        allowed: &[],
        scope: "host/src/sources/",
        rule: "components are written in flow/'s vocabulary: no imports from topology/",
    },
    OnlyIn {
        word: "crate::topology",
        allowed: &[],
        scope: "host/src/transforms/",
        rule: "components are written in flow/'s vocabulary: no imports from topology/",
    },
    OnlyIn {
        word: "crate::topology",
        allowed: &[],
        scope: "host/src/sinks/",
        rule: "components are written in flow/'s vocabulary: no imports from topology/",
    },
    OnlyIn {
        word: "sluice::admin",
        allowed: &[],
        scope: "host/src/cli/admin_client.rs",
        rule: "the admin client reads the API through sluice::api's types, not the server's module",
    },
];

/// The rules that look at one file.
pub fn check_file(path: &str, text: &str) -> Vec<Violation> {
    let mut found = Vec::new();
    let at = |line: usize, rule: &'static str| Violation {
        path: path.to_string(),
        line,
        rule,
    };
    if !text.starts_with("//!") {
        found.push(at(
            1,
            "every file opens with a `//!` line saying what it is",
        ));
    }
    let mut in_tests = false;
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        // A `#[cfg(test)]` at the start of a line begins the file's test module, which runs
        // to the end of the file by this project's layout.
        if line.starts_with("#[cfg(test)]") {
            in_tests = true;
        }
        let code = line.trim_start();
        if code.starts_with("//") {
            continue;
        }
        for rule in &ONLY_IN {
            if path.starts_with(rule.scope)
                && !rule.allowed.iter().any(|a| path.starts_with(a))
                && mentions(code, rule.word)
            {
                found.push(at(number, rule.rule));
            }
        }
        if path.starts_with("host/src/") && !in_tests && code.contains(".unwrap()") {
            found.push(at(
                number,
                "no unwrap() in the host outside tests: say what failed, or handle it",
            ));
        }
    }
    found
}

/// Whether `code` names `word` as a path or crate (not as part of a longer identifier).
fn mentions(code: &str, word: &str) -> bool {
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    code.match_indices(word).any(|(at, _)| {
        let before = code[..at].chars().next_back();
        let after = code[at + word.len()..].chars().next();
        !before.is_some_and(|c| is_ident(c) || c == '-')
            && !after.is_some_and(|c| is_ident(c) || c == '-')
            && !in_string(&code[..at])
    })
}

/// Whether a position after `prefix` is inside a string literal (an odd number of quotes).
fn in_string(prefix: &str) -> bool {
    prefix.matches('"').count() % 2 == 1
}

/// The bindings generators of each side of the WIT contract, in one file each: the host has
/// one per world it calls (`udf`, and `scalar-udf` for its `scalar` export), the SDK one.
fn check_counts(root: &Path) -> Vec<Violation> {
    let mut found = Vec::new();
    for (dir, macro_name, expected, rule) in [
        (
            "host/src",
            "bindgen!",
            2,
            "exactly two wasmtime bindgen! in the host (worlds udf and scalar-udf), both in udf_runtime/bindings.rs",
        ),
        (
            "guest-udfs/sdk/src",
            "generate!",
            1,
            "exactly one wit_bindgen::generate! in the SDK",
        ),
    ] {
        let mut files = Vec::new();
        rust_files(&root.join(dir), &mut files);
        let counts: Vec<usize> = files
            .iter()
            .filter_map(|f| std::fs::read_to_string(f).ok())
            .map(|text| {
                text.lines()
                    .filter(|l| !l.trim_start().starts_with("//") && l.contains(macro_name))
                    .count()
            })
            .filter(|&n| n > 0)
            .collect();
        if counts != [expected] {
            found.push(Violation {
                path: dir.to_string(),
                line: 0,
                rule,
            });
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_workspace_keeps_its_invariants() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let found = check(&root);
        assert!(
            found.is_empty(),
            "{}",
            found
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }

    #[test]
    fn each_rule_catches_what_it_forbids() {
        let rules = |path: &str, text: &str| -> Vec<&'static str> {
            check_file(path, text).into_iter().map(|v| v.rule).collect()
        };
        assert_eq!(
            rules("host/src/a.rs", "fn a() {}"),
            ["every file opens with a `//!` line saying what it is"]
        );
        assert_eq!(
            rules("host/src/topology/x.rs", "//! x\nuse wasmtime::Engine;"),
            ["only host/src/udf_runtime/ names wasmtime"]
        );
        assert!(rules("host/src/udf_runtime/x.rs", "//! x\nuse wasmtime::Engine;").is_empty());
        assert!(
            rules(
                "host/src/x.rs",
                "//! x\n// wasmtime in a comment\nlet s = \"wasmtime\";"
            )
            .is_empty(),
            "comments and strings may name it"
        );
        assert!(rules("host/src/x.rs", "//! x\nuse wasmtime_wasi::p2;").is_empty());
        assert_eq!(
            rules(
                "host/src/sinks/x.rs",
                "//! x\nfn f() -> anyhow::Result<()> { Ok(()) }"
            ),
            ["anyhow only in the binary (main.rs, cli/); the library uses thiserror"]
        );
        assert!(rules("host/src/cli/x.rs", "//! x\nuse anyhow::Context;").is_empty());
        assert_eq!(
            rules(
                "host/src/pipeline/x.rs",
                "//! x\nuse crate::topology::Record;"
            ),
            ["the pipeline model does not import the running topology"]
        );
        assert_eq!(
            rules(
                "host/src/sinks/x.rs",
                "//! x\nuse crate::topology::Topology;"
            ),
            ["components are written in flow/'s vocabulary: no imports from topology/"]
        );
        assert_eq!(
            rules("host/src/x.rs", "//! x\nfn f() { a.unwrap(); }"),
            ["no unwrap() in the host outside tests: say what failed, or handle it"]
        );
        assert!(rules(
            "host/src/x.rs",
            "//! x\n#[cfg(test)]\nmod tests { fn f() { a.unwrap(); } }"
        )
        .is_empty());
    }
}
