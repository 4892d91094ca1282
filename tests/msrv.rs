//! The `rust-version`s are true: each published crate's is at least the `rust-version` of every
//! package it builds, as `Cargo.lock` locks them, and every member inherits the workspace's
//! (except those `OWN_RUST_VERSION` names, which declare a higher one of their own).
//!
//! Reads `cargo metadata --locked --all-features` (the dependency graph of every feature of
//! every member, for every target platform) and walks, from each published member (those
//! without `publish = false`), its normal and build dependencies. The newest `rust-version`
//! declared on that walk is what the crate needs; the test fails when the crate claims less,
//! naming the package and the path that pulls it in. The graph is the workspace's, with
//! features unified over all members, so a crate's walk may also pass optional dependencies that
//! another member turns on: the bound errs on the high side.
//!
//! Not covered: dependencies that need a newer compiler without declaring it (candle-core
//! 0.11.1: found by building with old toolchains, see `candle/Cargo.toml`); dev-dependencies
//! (tests, benches and examples may need a newer toolchain than the libraries, and users of the
//! crates do not build them); symmem's own use of newer standard-library items (clippy's
//! `incompatible_msrv` lint reads the same `rust-version` for that). A user's build resolves
//! its own lock file: newer dependency versions may need more, which cargo's MSRV-aware resolver
//! (resolver 3, or `resolver.incompatible-rust-versions = "fallback"`) avoids.

use std::collections::{BTreeMap, HashMap};
use std::process::Command;

use serde_json::Value;

/// A `rust-version` as numbers: `1.88` is `(1, 88, 0)`.
fn parse_version(v: &str) -> (u64, u64, u64) {
    let mut parts = v.split('.').map(|p| {
        p.parse::<u64>()
            .unwrap_or_else(|_| panic!("rust-version {v:?} is not numeric"))
    });
    let major = parts.next().unwrap_or(0);
    let minor = parts.next().unwrap_or(0);
    let patch = parts.next().unwrap_or(0);
    (major, minor, patch)
}

/// `cargo metadata` of the workspace, every feature on.
fn metadata() -> Value {
    let out = Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--locked",
            "--format-version",
            "1",
            "--all-features",
            "--manifest-path",
            concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"),
        ])
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo metadata failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON")
}

/// The packages of the metadata by id.
fn packages(meta: &Value) -> HashMap<&str, &Value> {
    meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| (p["id"].as_str().expect("package id"), p))
        .collect()
}

/// The workspace members' ids.
fn members(meta: &Value) -> Vec<&str> {
    meta["workspace_members"]
        .as_array()
        .expect("workspace_members")
        .iter()
        .map(|m| m.as_str().expect("member id"))
        .collect()
}

/// Whether a package may be published (`publish` is absent or names a registry).
fn published(pkg: &Value) -> bool {
    match &pkg["publish"] {
        Value::Array(registries) => !registries.is_empty(),
        _ => true,
    }
}

/// Members that declare their own, higher, `rust-version` instead of inheriting the
/// workspace's, and why (the reason is also in their manifest).
const OWN_RUST_VERSION: &[(&str, &str)] = &[(
    "symmem-candle",
    "candle-core 0.11.1 needs Rust 1.94 on x86_64 without declaring it",
)];

#[test]
fn rust_version_covers_every_dependency_of_the_published_crates() {
    let meta = metadata();
    let pkgs = packages(&meta);
    let members = members(&meta);

    // The resolved graph, without dev-only edges: package id -> dependency ids.
    let mut edges: HashMap<&str, Vec<&str>> = HashMap::new();
    for node in meta["resolve"]["nodes"].as_array().expect("resolve nodes") {
        let id = node["id"].as_str().expect("node id");
        let deps = node["deps"]
            .as_array()
            .expect("node deps")
            .iter()
            .filter(|d| {
                d["dep_kinds"]
                    .as_array()
                    .expect("dep_kinds")
                    .iter()
                    .any(|k| k["kind"].as_str() != Some("dev"))
            })
            .map(|d| d["pkg"].as_str().expect("dep id"))
            .collect();
        edges.insert(id, deps);
    }

    let published: Vec<&str> = members
        .iter()
        .copied()
        .filter(|m| published(pkgs[m]))
        .collect();
    assert!(!published.is_empty(), "no published member");
    let mut failures = Vec::new();
    for &member in &published {
        let claimed_text = pkgs[member]["rust_version"].as_str().unwrap_or("0");
        let claimed = parse_version(claimed_text);
        let name = pkgs[member]["name"].as_str().unwrap();

        // Breadth-first from the member, remembering who pulled each package in.
        let mut parent: HashMap<&str, Option<&str>> = HashMap::from([(member, None)]);
        let mut queue = std::collections::VecDeque::from([member]);
        while let Some(id) = queue.pop_front() {
            for &dep in edges.get(id).into_iter().flatten() {
                if !parent.contains_key(dep) {
                    parent.insert(dep, Some(id));
                    queue.push_back(dep);
                }
            }
        }
        let path = |start: &str| {
            // The key's own `&str`, which lives as long as the metadata (the argument may not).
            let mut id = *parent.get_key_value(start).expect("reached").0;
            let mut names = Vec::new();
            loop {
                let p = pkgs[id];
                names.push(format!(
                    "{} {}",
                    p["name"].as_str().unwrap(),
                    p["version"].as_str().unwrap()
                ));
                match parent[id] {
                    Some(up) => id = up,
                    None => break,
                }
            }
            names.reverse();
            names.join(" -> ")
        };

        let mut too_new: BTreeMap<(u64, u64, u64), Vec<String>> = BTreeMap::new();
        for &id in parent.keys() {
            if id == member {
                continue;
            }
            let Some(rv) = pkgs[id]["rust_version"].as_str() else {
                continue;
            };
            let v = parse_version(rv);
            if v > claimed {
                too_new.entry(v).or_default().push(format!(
                    "{} (rust-version {rv}): {}",
                    pkgs[id]["name"].as_str().unwrap(),
                    path(id)
                ));
            }
        }
        if let Some((&(major, minor, patch), _)) = too_new.iter().next_back() {
            let needed = if patch > 0 {
                format!("{major}.{minor}.{patch}")
            } else {
                format!("{major}.{minor}")
            };
            let list: Vec<String> = too_new.values().rev().flatten().cloned().collect();
            failures.push(format!(
                "{name} claims rust-version {claimed_text} but builds packages that need \
                 {needed}; raise its `rust-version` ([workspace.package] in Cargo.toml, or its \
                 own manifest if OWN_RUST_VERSION names it) and the README, or pin older \
                 versions in Cargo.lock:\n    {}",
                list.join("\n    ")
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_member_inherits_the_workspace_rust_version() {
    let meta = metadata();
    let pkgs = packages(&meta);
    let members = members(&meta);
    let root = pkgs
        .values()
        .find(|p| p["name"] == "symmem" && members.contains(&p["id"].as_str().unwrap()))
        .expect("the symmem package is a member");
    let workspace_text = root["rust_version"]
        .as_str()
        .expect("the workspace declares a rust-version");
    let workspace = parse_version(workspace_text);
    let mut wrong = Vec::new();
    for id in members {
        let pkg = pkgs[id];
        let name = pkg["name"].as_str().unwrap_or("?");
        let manifest_path = pkg["manifest_path"].as_str().expect("manifest_path");
        let manifest = std::fs::read_to_string(manifest_path).expect("manifest readable");
        let inherits = manifest.lines().any(|l| {
            let l: String = l.chars().filter(|c| !c.is_whitespace()).collect();
            l == "rust-version.workspace=true" || l == "rust-version={workspace=true}"
        });
        let own = OWN_RUST_VERSION.iter().find(|(n, _)| *n == name);
        match (inherits, own) {
            (true, None) => {}
            (false, Some((_, why))) => {
                let declared = pkg["rust_version"].as_str().unwrap_or("none");
                if pkg["rust_version"].is_null() || parse_version(declared) < workspace {
                    wrong.push(format!(
                        "{name} ({manifest_path}) declares rust-version {declared}, below the \
                         workspace's {workspace_text} (it has its own because {why})"
                    ));
                }
            }
            (true, Some(_)) => wrong.push(format!(
                "{name} ({manifest_path}) inherits the workspace's rust-version: remove it from \
                 OWN_RUST_VERSION in tests/msrv.rs"
            )),
            (false, None) => wrong.push(format!(
                "{name} ({manifest_path}) does not have `rust-version.workspace = true`"
            )),
        }
    }
    assert!(
        wrong.is_empty(),
        "every member must inherit [workspace.package] rust-version (Cargo.toml) unless \
         OWN_RUST_VERSION in tests/msrv.rs names it:\n  {}",
        wrong.join("\n  ")
    );
}

#[test]
fn versions_compare_as_numbers() {
    assert_eq!(parse_version("1.88"), (1, 88, 0));
    assert!(parse_version("1.9") < parse_version("1.10.0"));
    assert!(parse_version("1.88.1") > parse_version("1.88"));
}
