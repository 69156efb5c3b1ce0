//! The documents that describe the inline read name its step as the code has it (64 KiB of
//! value per step since 0558efe; 1 MiB of value at most, in a file of 64 KiB at most).

const README: &str = include_str!("../../../README.md");
const ARCHITECTURE: &str = include_str!("../../../docs/ARCHITECTURE.md");

/// One line of text: the document's words with its line breaks and indentation folded.
fn folded(doc: &str) -> String {
    doc.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The README's data-flow diagram names the 64 KiB steps (a guard).
#[test]
fn the_readme_names_the_64k_step() {
    let readme = folded(README);
    assert!(
        readme.contains("inflated in ≤64 KiB steps"),
        "README.md does not name the 64 KiB steps"
    );
}

#[test]
fn the_architecture_doc_names_the_64k_step() {
    let doc = folded(ARCHITECTURE);
    assert!(
        !doc.contains("at most 32 KiB of value per step"),
        "docs/ARCHITECTURE.md: \"at most 32 KiB of value per step\""
    );
    assert!(
        doc.contains("at most 64 KiB of value per step"),
        "docs/ARCHITECTURE.md does not name the 64 KiB step"
    );
}
