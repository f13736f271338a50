//! Embeds the Web API prelude: every `src/web/*.js`, in file-name order, then
//! `src/runtime.js`, so adding a file under src/web needs no code change; and the parts
//! evaluated on first use, `src/web/lazy/<group>/*.js` (see src/engine/lazy.rs).

use std::fmt::Write as _;
use std::path::Path;

fn main() {
    let web = Path::new("src/web");
    println!("cargo:rerun-if-changed=src/web");
    println!("cargo:rerun-if-changed=src/runtime.js");
    let mut files: Vec<_> = std::fs::read_dir(web)
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "js"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    let mut out = String::from(
        "/// Prelude scripts: (file name, source).\npub const PRELUDE: &[(&str, &str)] = &[\n",
    );
    for f in files
        .iter()
        .chain(std::iter::once(&Path::new("src/runtime.js").to_path_buf()))
    {
        println!("cargo:rerun-if-changed={}", f.display());
        let abs = std::fs::canonicalize(f).expect("prelude file exists");
        let name = f.file_name().expect("file name").to_string_lossy();
        writeln!(out, "    ({name:?}, include_str!({:?})),", abs.display())
            .expect("write to String");
    }
    out.push_str("];\n");
    out.push_str("/// Lazily evaluated groups: (group, [(file name, source)]).\n");
    out.push_str("pub const LAZY: &[(&str, &[(&str, &str)])] = &[\n");
    let lazy = web.join("lazy");
    println!("cargo:rerun-if-changed={}", lazy.display());
    for group in sorted_entries(&lazy, |p| p.is_dir()) {
        println!("cargo:rerun-if-changed={}", group.display());
        let gname = group.file_name().expect("group name").to_string_lossy();
        writeln!(out, "    ({gname:?}, &[").expect("write to String");
        for f in sorted_entries(&group, |p| p.extension().is_some_and(|x| x == "js")) {
            println!("cargo:rerun-if-changed={}", f.display());
            let abs = std::fs::canonicalize(&f).expect("lazy prelude file exists");
            let name = f.file_name().expect("file name").to_string_lossy();
            writeln!(
                out,
                "        ({name:?}, include_str!({:?})),",
                abs.display()
            )
            .expect("write to String");
        }
        out.push_str("    ]),\n");
    }
    out.push_str("];\n");
    let dest =
        Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR set by cargo")).join("prelude.rs");
    std::fs::write(dest, out).expect("write prelude.rs");
}

/// The entries of `dir` that `keep` accepts, sorted by path (none when it does not exist).
fn sorted_entries(dir: &Path, keep: impl Fn(&Path) -> bool) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| keep(p))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}
