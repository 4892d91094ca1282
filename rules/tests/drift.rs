//! The compile-time rules, the run-time refusals and the public paths agree.
//!
//! * every run-time refusal names an existing rule of the same category, and one of that rule's
//!   patterns matches the refusal's public path;
//! * every `symmem::` path a rule or a refusal names is a public path: it is named in
//!   `tests/public_paths.rs` (the compile-only test of the facade's paths);
//! * every refusal the runtime's sources raise is in the table, and every table entry is
//!   raised by the runtime.
//!
//! Each failure says what drifted and where to fix it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use symmem_rules::capture::{self, Category, Pattern, RULES};
use symmem_rules::refusals::{Kind, NESTING, REFUSALS};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Whether `pattern` matches a call of the public path `path` (`symmem::Type::method` or
/// `symmem::module::function`): a method pattern matches the last segment, a function or type
/// pattern matches a suffix, as the macro does.
fn matches(pattern: &Pattern, path: &str) -> bool {
    let segs: Vec<String> = path.split("::").map(String::from).collect();
    pattern.matches_path(&segs) || segs.last().is_some_and(|last| pattern.matches_method(last))
}

fn rule_matching(path: &str) -> Option<&'static str> {
    RULES
        .iter()
        .find(|r| r.patterns.iter().any(|p| matches(p, path)))
        .map(|r| r.id)
}

#[test]
fn rule_ids_unique_and_texts_shaped() {
    let mut ids: Vec<&str> = RULES.iter().map(|r| r.id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(
        ids.len(),
        RULES.len(),
        "two rules share an id in rules/src/capture.rs"
    );
    for r in RULES {
        assert!(!r.patterns.is_empty(), "rule `{}` has no pattern", r.id);
        assert!(
            !r.reason.ends_with('.') && !r.fix.ends_with('.'),
            "rule `{}`: reason and fix end without a period (they are completed in messages)",
            r.id
        );
        for p in r.patterns {
            if let Pattern::Function { path, min } | Pattern::Type { path, min } = p {
                assert!(
                    *min >= 1 && *min <= path.split("::").count(),
                    "rule `{}`: `min` of {path} must be between 1 and its segment count",
                    r.id
                );
            }
        }
    }
}

#[test]
fn every_refusal_is_caught_by_its_rule() {
    for r in REFUSALS {
        let Some(rule) = capture::rule(r.rule) else {
            panic!(
                "refusal `{}` ({}) names rule `{}`, which is not in RULES: add the rule to rules/src/capture.rs or fix the refusal's `rule` in rules/src/refusals.rs",
                r.op, r.path, r.rule
            );
        };
        assert!(
            rule.patterns.iter().any(|p| matches(p, r.path)),
            "refusal `{}`: no pattern of rule `{}` matches its path `{}`, so the macro lets a call the runtime refuses compile: add a pattern to rule `{}` in rules/src/capture.rs (or name the right rule)",
            r.op,
            r.rule,
            r.path,
            r.rule
        );
        assert_eq!(
            rule.category,
            r.kind.category(),
            "refusal `{}` is {:?} but its rule `{}` is in category {}: make them agree",
            r.op,
            r.kind,
            r.rule,
            rule.category.name()
        );
    }
}

/// Every nesting refusal (a capture or a replay inside a capture) names an existing rule of
/// category `graph nesting` whose patterns match its public path.
#[test]
fn every_nesting_refusal_is_caught_by_its_rule() {
    for n in NESTING {
        let Some(rule) = capture::rule(n.rule) else {
            panic!(
                "nesting refusal `{}` ({}) names rule `{}`, which is not in RULES: add the rule to rules/src/capture.rs or fix the refusal's `rule` in rules/src/refusals.rs",
                n.op, n.path, n.rule
            );
        };
        assert!(
            rule.patterns.iter().any(|p| matches(p, n.path)),
            "nesting refusal `{}`: no pattern of rule `{}` matches its path `{}`, so the macro lets a call the runtime refuses compile: add a pattern to rule `{}` in rules/src/capture.rs",
            n.op,
            n.rule,
            n.path,
            n.rule
        );
        assert_eq!(
            rule.category,
            Category::Nesting,
            "nesting refusal `{}`: its rule `{}` is in category {}, not graph nesting",
            n.op,
            n.rule,
            rule.category.name()
        );
    }
}

/// The category of each rule is that of the refusals it catches: no rule of category
/// `graph nesting` catches a blocking or set-up refusal, and the other way round.
#[test]
fn rule_categories_match_their_refusals() {
    for r in REFUSALS {
        let rule = capture::rule(r.rule).map(|r| r.category);
        assert_ne!(rule, Some(Category::Nesting), "refusal `{}`", r.op);
    }
    for n in NESTING {
        let rule = capture::rule(n.rule).map(|r| r.category);
        assert!(
            !matches!(
                rule,
                Some(Category::HostBlocking | Category::CollectiveSetup)
            ),
            "nesting refusal `{}`",
            n.op
        );
    }
}

#[test]
fn refusals_are_unique() {
    let mut seen = BTreeSet::new();
    for op in REFUSALS
        .iter()
        .map(|r| r.op)
        .chain(NESTING.iter().map(|n| n.op))
    {
        assert!(
            seen.insert(op),
            "two refusals share the op `{op}` in rules/src/refusals.rs: the message would not say which operation was refused"
        );
    }
    for path in REFUSALS
        .iter()
        .map(|r| r.path)
        .chain(NESTING.iter().map(|n| n.path))
    {
        assert!(
            path.starts_with("symmem::"),
            "refusal path `{path}` is not a `symmem::` path",
        );
    }
}

/// The drifts the shared table was made to fix stay fixed (issue 13: a nested capture and a
/// replay had no rule).
#[test]
fn known_drifts_stay_fixed() {
    assert_eq!(
        rule_matching("symmem::RankContext::add_group"),
        Some("add-group"),
        "`ctx.add_group(..)` is refused at run time during capture, so a rule must reject it"
    );
    assert_eq!(
        rule_matching("symmem::cuda::init_rank"),
        Some("start-ranks"),
        "`symmem::cuda::init_rank` starts a rank, so rule `start-ranks` must reject it"
    );
    for (path, rule) in [
        ("symmem::capture", "nested-capture"),
        ("symmem::capture::capture", "nested-capture"),
        ("symmem::Graph::replay", "graph-replay"),
    ] {
        assert_eq!(
            rule_matching(path),
            Some(rule),
            "`{path}` is refused at run time during capture, so rule `{rule}` must reject it"
        );
    }
    for rule in RULES {
        for p in rule.patterns {
            if let Pattern::Function { path, .. } = p {
                assert_ne!(
                    *path, "symmem::empty_cache",
                    "rule `{}` names `symmem::empty_cache`, which does not exist (`empty_cache` is a method of `Group` and `RankContext`)",
                    rule.id
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The public paths, read from `tests/public_paths.rs` without a parser dependency.

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    PathSep,
    Arrow,
    Punct(char),
}

/// The tokens of Rust source text, without comments, literals and lifetimes.
fn tokenize(text: &str) -> Vec<Tok> {
    let c: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        let next = c.get(i + 1).copied();
        if ch == '/' && next == Some('/') {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '/' && next == Some('*') {
            i += 2;
            while i + 1 < c.len() && !(c[i] == '*' && c[i + 1] == '/') {
                i += 1;
            }
            i += 2;
        } else if ch == 'r'
            && (next == Some('"') || (next == Some('#') && c.get(i + 2) == Some(&'"')))
        {
            // A raw string: r"..", r#".."#.
            let mut hashes = 0;
            i += 1;
            while c[i] == '#' {
                hashes += 1;
                i += 1;
            }
            i += 1;
            loop {
                if c[i] == '"' && (0..hashes).all(|k| c.get(i + 1 + k) == Some(&'#')) {
                    i += 1 + hashes;
                    break;
                }
                i += 1;
            }
        } else if ch == '"' || (ch == 'b' && next == Some('"')) {
            i += if ch == 'b' { 2 } else { 1 };
            while c[i] != '"' {
                i += if c[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
        } else if ch == '\'' {
            if next == Some('\\') {
                i += 2;
                while c[i] != '\'' {
                    i += 1;
                }
                i += 1;
            } else if c.get(i + 2) == Some(&'\'') {
                i += 3;
            } else {
                // A lifetime.
                i += 1;
                while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                    i += 1;
                }
            }
        } else if ch.is_alphabetic() || ch == '_' {
            let start = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            out.push(Tok::Ident(c[start..i].iter().collect()));
        } else if ch.is_ascii_digit() {
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
        } else if ch == ':' && next == Some(':') {
            out.push(Tok::PathSep);
            i += 2;
        } else if ch == '-' && next == Some('>') {
            out.push(Tok::Arrow);
            i += 2;
        } else {
            if !ch.is_whitespace() {
                out.push(Tok::Punct(ch));
            }
            i += 1;
        }
    }
    out
}

/// Reads one use tree at `toks[*i]` under `prefix`, recording (full path, local name) pairs.
fn use_tree(
    toks: &[Tok],
    i: &mut usize,
    prefix: &mut Vec<String>,
    out: &mut Vec<(String, String)>,
) {
    match &toks[*i] {
        Tok::Punct('{') => {
            *i += 1;
            while toks[*i] != Tok::Punct('}') {
                use_tree(toks, i, prefix, out);
                if toks[*i] == Tok::Punct(',') {
                    *i += 1;
                }
            }
            *i += 1;
        }
        Tok::Punct('*') => *i += 1,
        Tok::Ident(name) => {
            let name = name.clone();
            *i += 1;
            if toks[*i] == Tok::PathSep {
                *i += 1;
                if name != "self" {
                    prefix.push(name);
                    use_tree(toks, i, prefix, out);
                    prefix.pop();
                } else {
                    use_tree(toks, i, prefix, out);
                }
                return;
            }
            let mut full = prefix.clone();
            if name != "self" {
                full.push(name.clone());
            }
            let mut local = full.last().cloned().unwrap_or_default();
            if toks[*i] == Tok::Ident("as".into()) {
                if let Tok::Ident(l) = &toks[*i + 1] {
                    local = l.clone();
                }
                *i += 2;
            }
            out.push((full.join("::"), local));
        }
        other => panic!("tests/public_paths.rs: unexpected {other:?} in a `use`"),
    }
}

/// Every `symmem::` path that `source` names: through its `use` items, and written in
/// expressions and types (`symmem::a::b`, or `Name::item` where `Name` was imported from
/// `symmem`), with generic arguments left out.
fn named_paths(source: &str) -> BTreeSet<String> {
    let toks = tokenize(source);
    let mut imports: Vec<(String, String)> = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        if toks[i] == Tok::Ident("use".into()) {
            i += 1;
            if toks[i] == Tok::PathSep {
                i += 1;
            }
            use_tree(&toks, &mut i, &mut Vec::new(), &mut imports);
        } else {
            i += 1;
        }
    }
    imports.retain(|(full, _)| full.starts_with("symmem::"));
    let mut named: BTreeSet<String> = imports.iter().map(|(f, _)| f.clone()).collect();
    let mut i = 0;
    while i < toks.len() {
        let Tok::Ident(first) = &toks[i] else {
            i += 1;
            continue;
        };
        let mut segs = vec![first.clone()];
        let mut j = i + 1;
        while toks.get(j) == Some(&Tok::PathSep) {
            if toks.get(j + 1) == Some(&Tok::Punct('<')) {
                // Turbofish: skip the generic arguments.
                let mut depth = 0;
                j += 1;
                loop {
                    match toks[j] {
                        Tok::Punct('<') => depth += 1,
                        Tok::Punct('>') => depth -= 1,
                        _ => {}
                    }
                    j += 1;
                    if depth == 0 {
                        break;
                    }
                }
            } else if let Some(Tok::Ident(s)) = toks.get(j + 1) {
                segs.push(s.clone());
                j += 2;
            } else {
                break;
            }
        }
        if segs.len() > 1 {
            if segs[0] == "symmem" {
                named.insert(segs.join("::"));
            } else if let Some((full, _)) = imports.iter().find(|(_, local)| *local == segs[0]) {
                named.insert(format!("{full}::{}", segs[1..].join("::")));
            }
        }
        i = j.max(i + 1);
    }
    named
}

fn public_paths() -> BTreeSet<String> {
    let file = workspace().join("tests/public_paths.rs");
    let source = std::fs::read_to_string(&file).unwrap_or_else(|e| {
        panic!(
            "cannot read {} ({e}): the drift test checks the `symmem::` paths of the capture rules and refusals against that file, the compile-only test naming every public path of the facade; create or restore it",
            file.display()
        )
    });
    named_paths(&source)
}

#[test]
fn symmem_paths_of_rules_and_refusals_are_public() {
    let public = public_paths();
    let mut missing = Vec::new();
    for rule in RULES {
        for p in rule.patterns {
            if let Pattern::Function { path, .. } | Pattern::Type { path, .. } = p {
                if path.starts_with("symmem::") && !public.contains(*path) {
                    missing.push(format!("rule `{}` matches `{path}`", rule.id));
                }
            }
        }
    }
    for r in REFUSALS {
        if !public.contains(r.path) {
            missing.push(format!("refusal `{}` is reached by `{}`", r.op, r.path));
        }
    }
    for n in NESTING {
        if !public.contains(n.path) {
            missing.push(format!(
                "nesting refusal `{}` is reached by `{}`",
                n.op, n.path
            ));
        }
    }
    assert!(
        missing.is_empty(),
        "paths that tests/public_paths.rs does not name (a public item was moved, renamed or removed, or the table names one that never existed): fix the path in rules/src/capture.rs or rules/src/refusals.rs, or name the new public item in tests/public_paths.rs:\n  {}",
        missing.join("\n  ")
    );
}

#[test]
fn public_path_reader() {
    let named = named_paths(
        "use std::sync::Arc; use symmem::{alloc, Buffer, RankContext as Ctx, a::{b, c as _}};\n\
         // symmem::commented_out\n\
         fn f() { let _ = Buffer::<f32, fn(u8) -> u8>::copy_to_host; let _ = Ctx::install;\n\
         let _ = symmem::x::y; let _: &'static str = \"symmem::in_string\"; let _ = Arc::new; }",
    );
    let want: BTreeSet<String> = [
        "symmem::alloc",
        "symmem::Buffer",
        "symmem::RankContext",
        "symmem::a::b",
        "symmem::a::c",
        "symmem::Buffer::copy_to_host",
        "symmem::RankContext::install",
        "symmem::x::y",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(named, want);
}

// ---------------------------------------------------------------------------------------------
// The runtime's sources.

/// The runtime's source files (path, text), `//` comment lines removed.
fn runtime_sources() -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let mut stack = vec![workspace().join("runtime/src")];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("cannot read {} ({e})", dir.display()));
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                let code: Vec<&str> = text
                    .lines()
                    .filter(|l| !l.trim_start().starts_with("//"))
                    .collect();
                out.push((path, code.join("\n")));
            }
        }
    }
    out.sort();
    out
}

/// The string literal right after `at` in `text` (spaces allowed), if there is one.
fn literal_after(text: &str, at: usize) -> Option<&str> {
    let rest = text[at..].trim_start();
    let rest = rest.strip_prefix('"')?;
    Some(&rest[..rest.find('"')?])
}

/// The (op, kind) of every refusal helper call with a literal op in `text`.
fn helper_calls(text: &str) -> Vec<(String, Kind)> {
    const HELPERS: &[(&str, Kind)] = &[
        ("refuse_if_capturing_blocking(", Kind::Blocking),
        ("refuse_if_capturing_setup(", Kind::Setup),
        ("blocking_in_capture(", Kind::Blocking),
        ("setup_in_capture(", Kind::Setup),
        // The CUDA stream's own check (a host-blocking refusal).
        ("refuse_capturing(", Kind::Blocking),
    ];
    let mut out = Vec::new();
    for (helper, kind) in HELPERS {
        for (at, _) in text.match_indices(helper) {
            if let Some(op) = literal_after(text, at + helper.len()) {
                out.push((op.to_string(), *kind));
            }
        }
    }
    out
}

/// One `NotAllowedDuringCapture { .. }` written in the runtime's sources.
#[derive(Debug, PartialEq)]
enum Built {
    /// The variant's definition (`op: &'static str`), or a pattern (`{ op, .. }`).
    Definition,
    /// Built from a table entry (`op: refusal.op`).
    FromEntry,
    /// A literal op, with its literal `why` and `fix` when they are literals.
    Literal {
        op: String,
        why: Option<String>,
        fix: Option<String>,
    },
    /// Anything else (the text after `op:`).
    Other(String),
}

/// Every `NotAllowedDuringCapture { .. }` in `text`.
fn constructions(text: &str) -> Vec<Built> {
    let mut out = Vec::new();
    for (at, _) in text.match_indices("NotAllowedDuringCapture {") {
        let body = &text[at + "NotAllowedDuringCapture {".len()..];
        let body = &body[..body.find('}').unwrap_or(body.len())];
        let field = |name: &str| {
            let key = format!("{name}:");
            body.find(&key)
                .and_then(|k| literal_after(body, k + key.len()))
                .map(String::from)
        };
        let Some(k) = body.find("op:") else {
            out.push(Built::Definition); // `{ op, .. }`, `{ .. }`: a pattern
            continue;
        };
        let after = body[k + 3..].trim_start();
        let value: String = after
            .chars()
            .take_while(|c| !matches!(c, ',' | '\n'))
            .collect();
        out.push(if let Some(op) = field("op") {
            Built::Literal {
                op,
                why: field("why"),
                fix: field("fix"),
            }
        } else if value == "&'static str" {
            Built::Definition
        } else if value == "refusal.op" {
            Built::FromEntry
        } else {
            Built::Other(value)
        });
    }
    out
}

#[test]
fn construction_reader() {
    let text = "enum E { NotAllowedDuringCapture {\n op: &'static str,\n why: &'static str } }\n\
                Error::NotAllowedDuringCapture { op: refusal.op, why: refusal.why(), fix: refusal.fix() }\n\
                Error::NotAllowedDuringCapture { op: \"capture\", why: \"w\", fix: \"f\" }\n\
                Error::NotAllowedDuringCapture { op: \"x\", why: Kind::Setup.why(), fix: f }\n\
                Error::NotAllowedDuringCapture { op: name, why: w, fix: f }\n\
                Error::NotAllowedDuringCapture { op, .. } => {}";
    assert_eq!(
        constructions(text),
        vec![
            Built::Definition,
            Built::FromEntry,
            Built::Literal {
                op: "capture".into(),
                why: Some("w".into()),
                fix: Some("f".into())
            },
            Built::Literal {
                op: "x".into(),
                why: None,
                fix: None
            },
            Built::Other("name".into()),
            Built::Definition,
        ]
    );
}

#[test]
fn runtime_refusals_are_in_the_table() {
    let sources = runtime_sources();
    let mut problems = Vec::new();
    let mut raised: BTreeSet<String> = BTreeSet::new();
    for (path, text) in &sources {
        let file = path
            .strip_prefix(workspace())
            .unwrap_or(path)
            .display()
            .to_string();
        for (op, kind) in helper_calls(text) {
            match REFUSALS.iter().find(|r| r.op == op) {
                Some(r) if r.kind == kind => {}
                Some(r) => problems.push(format!(
                    "{file}: `{op}` is refused as {kind:?} but the table says {:?}",
                    r.kind
                )),
                None => problems.push(format!(
                    "{file}: the runtime refuses `{op}` during capture, but REFUSALS has no entry for it: add one (with the rule that catches it) to rules/src/refusals.rs"
                )),
            }
            raised.insert(op);
        }
        for built in constructions(text) {
            match built {
                Built::Definition | Built::FromEntry => {}
                Built::Other(op) => problems.push(format!(
                    "{file}: builds `NotAllowedDuringCapture {{ op: {op}, .. }}` from something other than a literal op or a table entry's `op`: refuse with `refuse_if_capturing(&refusals::ENTRY)` (or build the error from a NESTING entry), so that the drift test can pair it with a rule"
                )),
                Built::Literal { op, why, fix } => {
                    let known = match (&why, &fix) {
                        (Some(why), Some(fix)) => {
                            NESTING
                                .iter()
                                .any(|n| n.op == op && n.why == why && n.fix == fix)
                                || REFUSALS.iter().any(|r| {
                                    r.op == op && r.why() == why && r.fix() == fix
                                })
                        }
                        _ => {
                            NESTING.iter().any(|n| n.op == op)
                                || REFUSALS.iter().any(|r| r.op == op)
                        }
                    };
                    if !known {
                        problems.push(format!(
                            "{file}: `NotAllowedDuringCapture {{ op: {op:?}, why: {why:?}, fix: {fix:?} }}` is neither a REFUSALS entry (with its kind's texts) nor a NESTING entry: add it, with the rule that catches it, to rules/src/refusals.rs, or build the error from a table entry"
                    ));
                    }
                    raised.insert(op);
                }
            }
        }
    }
    // Each entry is raised: by its op literal, or (once the runtime takes table entries) by the
    // name of its constant.
    let all: Vec<(&str, &str)> = const_names();
    for (name, op) in all {
        let used = raised.contains(op)
            || sources.iter().any(|(_, t)| {
                t.match_indices(name).any(|(at, _)| {
                    let before = t[..at].chars().next_back();
                    let after = t[at + name.len()..].chars().next();
                    !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
                        && !after.is_some_and(|c| c.is_alphanumeric() || c == '_')
                })
            });
        if !used {
            problems.push(format!(
                "refusals::{name} (`{op}`) is in the table but the runtime never refuses it: remove it from rules/src/refusals.rs, or refuse it in runtime/src"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "the run-time refusals and rules/src/refusals.rs differ:\n  {}",
        problems.join("\n  ")
    );
}

/// The constant name and op of every table entry, read from rules/src/refusals.rs.
fn const_names() -> Vec<(&'static str, &'static str)> {
    let text: &'static str = include_str!("../src/refusals.rs");
    let mut out = Vec::new();
    for (at, _) in text.match_indices("\npub const ") {
        let rest = &text[at + "\npub const ".len()..];
        let Some((name, ty)) = rest.split_once(':') else {
            continue;
        };
        let ty = ty.trim_start();
        if !(ty.starts_with("Refusal =") || ty.starts_with("NestingRefusal =")) {
            continue;
        }
        let op = rest.find("op:").and_then(|k| literal_after(rest, k + 3));
        out.push((
            name,
            op.unwrap_or_else(|| panic!("refusals::{name} has no literal op")),
        ));
    }
    assert_eq!(
        out.len(),
        REFUSALS.len() + NESTING.len(),
        "every entry constant of rules/src/refusals.rs is listed once in REFUSALS or NESTING"
    );
    out
}

/// Methods of other crates that the host-blocking rules name (cudarc's `CudaStream` copies):
/// the runtime's sources do not define them.
const FOREIGN_METHODS: &[(&str, &str)] = &[
    ("memcpy_dtoh", "cudarc::driver::CudaStream"),
    ("memcpy_dtov", "cudarc::driver::CudaStream"),
    ("clone_dtoh", "cudarc::driver::CudaStream"),
    ("memcpy_htod", "cudarc::driver::CudaStream"),
];

/// Every method a host-blocking, set-up or graph-nesting rule names is a method of symmem (a
/// `fn` of the runtime's sources) or one of [`FOREIGN_METHODS`]: a renamed symmem method does
/// not leave a rule that matches nothing. (The other-thread rules name std, rayon and tokio
/// APIs.)
#[test]
fn method_rules_name_existing_methods() {
    let sources = runtime_sources();
    let defined = |name: &str| {
        let needle = format!("fn {name}");
        sources.iter().any(|(_, t)| {
            t.match_indices(&needle).any(|(at, _)| {
                let after = t[at + needle.len()..].chars().next();
                matches!(after, Some('(' | '<'))
            })
        })
    };
    let mut missing = Vec::new();
    for rule in RULES {
        if !matches!(
            rule.category,
            Category::HostBlocking | Category::CollectiveSetup | Category::Nesting
        ) {
            continue;
        }
        for p in rule.patterns {
            let Pattern::Method(name) = p else { continue };
            let foreign = FOREIGN_METHODS.iter().any(|(m, _)| m == name);
            if foreign == defined(name) {
                missing.push(if foreign {
                    format!("rule `{}`: `.{name}(..)` is listed in FOREIGN_METHODS but runtime/src defines it: remove it from the list", rule.id)
                } else {
                    format!("rule `{}`: `.{name}(..)` is not a method of runtime/src (renamed or removed?) nor in FOREIGN_METHODS", rule.id)
                });
            }
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}
