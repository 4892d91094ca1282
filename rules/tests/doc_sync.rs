//! `docs/capture-rules.md` is the rendering of the capture-unfit table
//! (`SYMMEM_BLESS=1 cargo test -p symmem-rules` rewrites it).

#[test]
fn capture_rules_doc_in_sync() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/capture-rules.md");
    let want = symmem_rules::doc::capture_rules_markdown();
    if std::env::var_os("SYMMEM_BLESS").is_some() {
        std::fs::write(&path, &want).unwrap();
        return;
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "{} is out of date with rules/src/capture.rs: run `SYMMEM_BLESS=1 cargo test -p symmem-rules`",
        path.display()
    );
}
