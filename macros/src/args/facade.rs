//! The facade's path when no `crate = ".."` is given: `::symmem`, or the name the calling
//! package gives the `symmem` package (`sm = { package = "symmem", .. }` makes it `::sm`). Found
//! by a small scan of the dependency tables of `$CARGO_MANIFEST_DIR/Cargo.toml` (no TOML parser:
//! the crates that have one need a newer Rust than this crate's `rust-version`). Where the
//! scan finds nothing (a dependency inherited with `workspace = true` under another name, a
//! re-export), `::symmem` is used and `crate = ".."` says where the facade is.

use proc_macro2::Span;
use syn::Path;

const FACADE: &str = "symmem";

/// The path of the facade for the package being compiled.
pub(crate) fn default_path() -> Path {
    let name = std::env::var_os("CARGO_MANIFEST_DIR")
        .and_then(|dir| std::fs::read_to_string(std::path::Path::new(&dir).join("Cargo.toml")).ok())
        .and_then(|manifest| facade_name(&manifest));
    // Never panics: a name that is not an identifier falls back to the default.
    let ident = name
        .and_then(|n| syn::parse_str::<syn::Ident>(&n).ok())
        .unwrap_or_else(|| syn::Ident::new(FACADE, Span::call_site()));
    syn::parse_quote!(::#ident)
}

/// Strip quotes (`"a"`, `'a'`) around a TOML key.
fn unquote(key: &str) -> &str {
    let key = key.trim();
    key.strip_prefix('"')
        .and_then(|k| k.strip_suffix('"'))
        .or_else(|| key.strip_prefix('\'').and_then(|k| k.strip_suffix('\'')))
        .unwrap_or(key)
}

/// The value of `package = ".."` in an inline table or a `package = ".."` line.
fn package_of(text: &str) -> Option<&str> {
    let mut rest = text;
    while let Some(i) = rest.find("package") {
        let after = rest[i + "package".len()..].trim_start();
        let before_ok = i == 0
            || !rest[..i]
                .chars()
                .next_back()
                .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '-');
        if let Some(v) = after.strip_prefix('=') {
            let v = v.trim_start();
            if before_ok {
                if let Some(v) = v.strip_prefix('"') {
                    return v.split('"').next();
                }
            }
        }
        rest = &rest[i + "package".len()..];
    }
    None
}

/// Whether a TOML table header names a dependency table (`dependencies`, `dev-dependencies`,
/// `build-dependencies`, `target.'cfg(..)'.dependencies`), and the dependency key of a
/// `[dependencies.key]` header.
fn dependency_table(header: &str) -> Option<Option<String>> {
    for table in ["dependencies", "dev-dependencies", "build-dependencies"] {
        if header == table || header.ends_with(&format!(".{table}")) {
            return Some(None);
        }
        if let Some(i) = header.find(&format!("{table}.")) {
            let at_start = i == 0 || header[..i].ends_with('.');
            if at_start {
                return Some(Some(unquote(&header[i + table.len() + 1..]).to_string()));
            }
        }
    }
    None
}

/// The name (as a Rust identifier) under which `manifest` depends on the `symmem` package;
/// `None` when the manifest is the `symmem` package's own (its tests and examples name it
/// `symmem`) or does not show it.
pub(crate) fn facade_name(manifest: &str) -> Option<String> {
    let mut table: Option<Option<String>> = None;
    let mut renamed: Option<String> = None;
    let mut direct = false;
    for line in manifest.lines() {
        let line = line.split(" #").next().unwrap_or(line).trim();
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if let Some(header) = line.strip_prefix('[') {
            let header = header.trim_start_matches('[');
            let header = header.split(']').next().unwrap_or("").trim();
            table = dependency_table(header);
            continue;
        }
        let Some(Some(key)) = table.as_ref().map(|t| t.as_ref()) else {
            // A dependency table: `key = ..` lines.
            if table.is_some() {
                if let Some((key, value)) = line.split_once('=') {
                    let key = unquote(key);
                    match package_of(value) {
                        Some(FACADE) => renamed = renamed.or_else(|| Some(key.to_string())),
                        Some(_) => {}
                        None if key == FACADE => direct = true,
                        None => {}
                    }
                }
            }
            continue;
        };
        // `[dependencies.key]`: its `package = ..` line.
        if line.starts_with("package") && package_of(line) == Some(FACADE) {
            renamed = renamed.or_else(|| Some(key.clone()));
        } else if key == FACADE && line.starts_with("package") {
            // `[dependencies.symmem] package = "other"`: not the facade.
        } else if key == FACADE {
            direct = true;
        }
    }
    if direct {
        return None;
    }
    renamed.map(|k| k.replace('-', "_"))
}
