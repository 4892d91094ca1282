//! The module graph of `runtime/src` and `macros/src` has no import circle.
//!
//! Every file is a node (an inline `mod` belongs to its file). An arrow runs from a file to the
//! file that defines the module a path names: `crate::a::b::Item` points at the deepest known
//! module among `a::b`, `super::x` and `self::x` are resolved from the file's module (inline
//! modules included). A path through the crate root (`crate::Error`) points at `lib.rs`, which
//! re-exports everything, so it closes a circle: import from the defining module instead.
//! Arrows from `#[cfg(test)]` items are left out: test code may use anything.
//!
//! The test fails with the circle it found, so a change that makes a lower module import a
//! higher one (directly or through others) is caught in CI.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use syn::visit::Visit;

/// One source file of a crate: its module path and its parsed contents.
struct SourceFile {
    module: Vec<String>,
    file: syn::File,
}

/// Reads every `.rs` file under `src` and gives each its module path (`lib.rs` is the root).
fn load_crate(src: &Path) -> Vec<SourceFile> {
    let mut out = Vec::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read source dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(src).expect("under src");
                let mut module: Vec<String> = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                let last = module.pop().expect("file name");
                let stem = last.trim_end_matches(".rs").to_string();
                if stem != "mod" && stem != "lib" {
                    module.push(stem);
                }
                let text = std::fs::read_to_string(&path).expect("read source");
                let file = syn::parse_file(&text)
                    .unwrap_or_else(|e| panic!("{} does not parse: {e}", path.display()));
                out.push(SourceFile { module, file });
            }
        }
    }
    out
}

fn is_cfg_test(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|a| {
        a.path().is_ident("cfg") && {
            let s = a.meta.to_token_stream_string();
            s.contains("test") && !s.contains("not")
        }
    })
}

trait MetaString {
    fn to_token_stream_string(&self) -> String;
}
impl MetaString for syn::Meta {
    fn to_token_stream_string(&self) -> String {
        quote_free_tokens(self)
    }
}

fn quote_free_tokens(meta: &syn::Meta) -> String {
    match meta {
        syn::Meta::List(l) => l.tokens.to_string(),
        syn::Meta::Path(p) => p.segments.iter().map(|s| s.ident.to_string()).collect(),
        syn::Meta::NameValue(_) => String::new(),
    }
}

/// Collects every path that starts with `crate`, `super` or `self`, resolved to absolute
/// segments, from the non-test items of one file.
struct PathCollector {
    /// Module of the item being visited (the file's module plus inline modules).
    current: Vec<String>,
    /// Every file module of the crate (to resolve `child::Item` relative to the current one).
    modules: BTreeSet<Vec<String>>,
    found: Vec<Vec<String>>,
}

impl PathCollector {
    fn resolve(&self, segs: &[String]) -> Option<Vec<String>> {
        let first = segs.first()?;
        let mut base = match first.as_str() {
            "crate" => Vec::new(),
            "self" => self.current.clone(),
            "super" => {
                let mut b = self.current.clone();
                b.pop();
                b
            }
            other => {
                // A path relative to the current module through one of its child modules.
                let mut child = self.current.clone();
                child.push(other.to_string());
                if !self.modules.contains(&child) {
                    return None;
                }
                return Some(self.current.iter().chain(segs).cloned().collect());
            }
        };
        let mut rest = &segs[1..];
        while rest.first().is_some_and(|s| s == "super") {
            base.pop();
            rest = &rest[1..];
        }
        base.extend(rest.iter().cloned());
        Some(base)
    }

    fn record(&mut self, segs: Vec<String>) {
        if let Some(abs) = self.resolve(&segs) {
            self.found.push(abs);
        }
    }

    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.use_tree(prefix, &p.tree);
                prefix.pop();
            }
            syn::UseTree::Name(n) => {
                let mut segs = prefix.clone();
                if n.ident != "self" {
                    segs.push(n.ident.to_string());
                }
                self.record(segs);
            }
            syn::UseTree::Rename(r) => {
                let mut segs = prefix.clone();
                if r.ident != "self" {
                    segs.push(r.ident.to_string());
                }
                self.record(segs);
            }
            syn::UseTree::Glob(_) => self.record(prefix.clone()),
            syn::UseTree::Group(g) => {
                for t in &g.items {
                    self.use_tree(prefix, t);
                }
            }
        }
    }
}

impl<'ast> Visit<'ast> for PathCollector {
    fn visit_item(&mut self, item: &'ast syn::Item) {
        let attrs: &[syn::Attribute] = match item {
            syn::Item::Mod(m) => &m.attrs,
            syn::Item::Fn(f) => &f.attrs,
            syn::Item::Impl(i) => &i.attrs,
            syn::Item::Use(u) => &u.attrs,
            syn::Item::Struct(s) => &s.attrs,
            syn::Item::Enum(e) => &e.attrs,
            syn::Item::Const(c) => &c.attrs,
            syn::Item::Static(s) => &s.attrs,
            syn::Item::Trait(t) => &t.attrs,
            syn::Item::Type(t) => &t.attrs,
            syn::Item::Macro(m) => &m.attrs,
            _ => &[],
        };
        if is_cfg_test(attrs) {
            return;
        }
        syn::visit::visit_item(self, item);
    }

    fn visit_item_mod(&mut self, m: &'ast syn::ItemMod) {
        if m.content.is_some() {
            self.current.push(m.ident.to_string());
            syn::visit::visit_item_mod(self, m);
            self.current.pop();
        }
    }

    fn visit_visibility(&mut self, _: &'ast syn::Visibility) {
        // `pub(crate)` and `pub(in crate::x)` restrict visibility; they import nothing.
    }

    fn visit_item_use(&mut self, u: &'ast syn::ItemUse) {
        let mut prefix = Vec::new();
        self.use_tree(&mut prefix, &u.tree);
    }

    fn visit_vis_restricted(&mut self, _: &'ast syn::VisRestricted) {
        // `pub(crate)`, `pub(super)`, `pub(in path)` name who may see an item, not a module
        // this file uses.
    }

    fn visit_path(&mut self, p: &'ast syn::Path) {
        if p.leading_colon.is_none() {
            let segs: Vec<String> = p.segments.iter().map(|s| s.ident.to_string()).collect();
            self.record(segs);
        }
        syn::visit::visit_path(self, p);
    }

    fn visit_macro(&mut self, m: &'ast syn::Macro) {
        // Paths inside macro calls (`format!`, `matches!`, local `macro_rules!` uses) are token
        // streams to syn; scan them for `crate :: a :: b` and `super :: a` runs.
        let tokens: Vec<proc_macro2::TokenTree> = flatten(m.tokens.clone());
        let mut i = 0;
        while i < tokens.len() {
            if let proc_macro2::TokenTree::Ident(id) = &tokens[i] {
                let s = id.to_string();
                if s == "crate" || s == "super" {
                    // Skip `$crate` (a macro_rules metavariable resolving to this crate's root
                    // at the *use* site, not an import of this file).
                    let dollar = i > 0
                        && matches!(&tokens[i - 1], proc_macro2::TokenTree::Punct(p) if p.as_char() == '$');
                    let mut segs = vec![s];
                    let mut j = i + 1;
                    while j + 2 < tokens.len() + 1 {
                        let colons = matches!(&tokens.get(j), Some(proc_macro2::TokenTree::Punct(p)) if p.as_char() == ':')
                            && matches!(&tokens.get(j + 1), Some(proc_macro2::TokenTree::Punct(p)) if p.as_char() == ':');
                        match (colons, tokens.get(j + 2)) {
                            (true, Some(proc_macro2::TokenTree::Ident(next))) => {
                                segs.push(next.to_string());
                                j += 3;
                            }
                            _ => break,
                        }
                    }
                    // A lone `crate` is a visibility (`pub(crate)`), not a path.
                    if !dollar && segs.len() > 1 {
                        self.record(segs);
                    }
                    i = j;
                    continue;
                }
            }
            i += 1;
        }
    }
}

fn flatten(ts: proc_macro2::TokenStream) -> Vec<proc_macro2::TokenTree> {
    let mut out = Vec::new();
    for t in ts {
        match t {
            proc_macro2::TokenTree::Group(g) => {
                out.push(proc_macro2::TokenTree::Punct(proc_macro2::Punct::new(
                    ';',
                    proc_macro2::Spacing::Alone,
                )));
                out.extend(flatten(g.stream()));
                out.push(proc_macro2::TokenTree::Punct(proc_macro2::Punct::new(
                    ';',
                    proc_macro2::Spacing::Alone,
                )));
            }
            other => out.push(other),
        }
    }
    out
}

/// The arrows between files of one crate: file module -> set of file modules it names.
fn crate_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = load_crate(src);
    // Files declared `#[cfg(test)] mod x;` are test code: leave them (and their children) out.
    let mut test_only: Vec<Vec<String>> = Vec::new();
    for f in &files {
        for item in &f.file.items {
            if let syn::Item::Mod(m) = item {
                if m.content.is_none() && is_cfg_test(&m.attrs) {
                    let mut path = f.module.clone();
                    path.push(m.ident.to_string());
                    test_only.push(path);
                }
            }
        }
    }
    files.retain(|f| !test_only.iter().any(|t| f.module.starts_with(t)));
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| f.module.clone()).collect();
    let name = |m: &[String]| {
        if m.is_empty() {
            "lib".to_string()
        } else {
            m.join("::")
        }
    };
    let mut graph = BTreeMap::new();
    for f in &files {
        let mut c = PathCollector {
            current: f.module.clone(),
            modules: modules.clone(),
            found: Vec::new(),
        };
        c.visit_file(&f.file);
        let from = name(&f.module);
        let arrows: &mut BTreeSet<String> = graph.entry(from.clone()).or_default();
        for path in c.found {
            // The deepest file module that is a prefix of the path.
            let mut target = path.clone();
            while !modules.contains(&target) {
                target.pop();
            }
            let to = name(&target);
            if std::env::var_os("SYMMEM_EXPLAIN_MODULE_GRAPH").is_some() && to != from {
                eprintln!("{from} -> {to}: {}", path.join("::"));
            }
            if to != from {
                arrows.insert(to);
            }
        }
    }
    graph
}

/// Strongly connected components with more than one node (Tarjan), each as a sorted list.
fn circles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct State<'a> {
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        on_stack: BTreeSet<&'a str>,
        stack: Vec<&'a str>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    fn strong<'a>(s: &mut State<'a>, v: &'a str) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on_stack.insert(v);
        if let Some(edges) = s.graph.get(v) {
            for w in edges {
                let w = w.as_str();
                if !s.index.contains_key(w) {
                    strong(s, w);
                    let lw = s.low[w];
                    let lv = s.low.get_mut(v).unwrap();
                    *lv = (*lv).min(lw);
                } else if s.on_stack.contains(w) {
                    let iw = s.index[w];
                    let lv = s.low.get_mut(v).unwrap();
                    *lv = (*lv).min(iw);
                }
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = Vec::new();
            loop {
                let w = s.stack.pop().unwrap();
                s.on_stack.remove(w);
                comp.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                s.out.push(comp);
            }
        }
    }
    let mut s = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        on_stack: BTreeSet::new(),
        stack: Vec::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !s.index.contains_key(v.as_str()) {
            strong(&mut s, v.as_str());
        }
    }
    s.out
}

/// One shortest circle through `start` inside `comp`, for the failure message.
fn one_circle(graph: &BTreeMap<String, BTreeSet<String>>, comp: &[String]) -> Vec<String> {
    let inside: BTreeSet<&str> = comp.iter().map(|s| s.as_str()).collect();
    let start = comp[0].as_str();
    let mut prev: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(v) = queue.pop_front() {
        for w in graph.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !inside.contains(w) {
                continue;
            }
            if w == start {
                // Walk back from `v` to `start`, then read the circle forwards.
                let mut back = vec![v];
                while *back.last().unwrap() != start {
                    back.push(prev[back.last().unwrap()]);
                }
                back.reverse();
                back.push(start);
                return back.into_iter().map(str::to_string).collect();
            }
            if !prev.contains_key(w) {
                prev.insert(w, v);
                queue.push_back(w);
            }
        }
    }
    comp.to_vec()
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn check(src: &str) {
    let graph = crate_graph(&root().join(src));
    if std::env::var_os("SYMMEM_PRINT_MODULE_GRAPH").is_some() {
        for (from, to) in &graph {
            eprintln!(
                "{from} -> {}",
                to.iter().cloned().collect::<Vec<_>>().join(" ")
            );
        }
    }
    let found = circles(&graph);
    let report: Vec<String> = found
        .iter()
        .map(|c| {
            format!(
                "{}   (all of: {})",
                one_circle(&graph, c).join(" -> "),
                c.join(", ")
            )
        })
        .collect();
    assert!(
        found.is_empty(),
        "import circles in {src} (import from the defining module of a lower layer instead):\n  {}",
        report.join("\n  ")
    );
}

#[test]
fn runtime_has_no_import_circle() {
    check("runtime/src");
}

#[test]
fn macros_have_no_import_circle() {
    check("macros/src");
}

/// The checker itself finds a circle: a two-file crate whose files import each other.
#[test]
fn checker_finds_a_planted_circle() {
    let dir = std::env::temp_dir().join(format!("symmem-graph-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("a")).unwrap();
    std::fs::write(dir.join("lib.rs"), "mod a; mod b;").unwrap();
    std::fs::write(
        dir.join("a/mod.rs"),
        "use crate::b::B; pub struct A; mod inner { use super::super::b::B; }",
    )
    .unwrap();
    std::fs::write(
        dir.join("b.rs"),
        "pub struct B; fn f() { let _ = format!(\"{:?}\", crate::a::A); }\n\
         #[cfg(test)] mod tests { use crate::lib_only; }",
    )
    .unwrap();
    let graph = crate_graph(&dir);
    let found = circles(&graph);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(found, vec![vec!["a".to_string(), "b".to_string()]]);
}

/// Paths through the crate root count as arrows to `lib.rs`; test-only items and visibility
/// restrictions (`pub(crate)`) do not count.
#[test]
fn root_paths_count_and_test_items_do_not() {
    let dir = std::env::temp_dir().join(format!("symmem-graph-root-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("lib.rs"), "mod a; mod b; pub use a::A;").unwrap();
    std::fs::write(
        dir.join("a.rs"),
        "pub(crate) struct A; #[cfg(test)] mod t { use crate::b::B; }",
    )
    .unwrap();
    std::fs::write(
        dir.join("b.rs"),
        "pub struct B; use crate::A; pub(crate) fn f() {} pub(in crate::b) struct C;",
    )
    .unwrap();
    let graph = crate_graph(&dir);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(graph["b"], BTreeSet::from(["lib".to_string()]));
    assert!(
        graph["a"].is_empty(),
        "test-only arrows are left out: {graph:?}"
    );
    assert_eq!(graph["lib"], BTreeSet::from(["a".to_string()]));
    assert_eq!(circles(&graph), Vec::<Vec<String>>::new());
}
