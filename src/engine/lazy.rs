//! Prelude parts evaluated on first use: `src/web/lazy/<group>/*.js` (crypto.subtle,
//! Intl). They are ~80 KB of JS that most handlers never touch; evaluated at boot they
//! cost every program's boot ~10 ms and its snapshot ~200 pages. The eager prelude
//! (`src/web/73_lazy.js`) installs stubs that load a group the first time it is used; an
//! app that uses it while warming up has it in its snapshot, so its requests pay nothing.

use super::prelude::LAZY;
use rquickjs::context::EvalOptions;
use rquickjs::{Ctx, Function, Object, Result};
use std::sync::atomic::{AtomicU8, Ordering};

/// Words that, in an app's source, say it uses a group: such groups are loaded before the
/// snapshot, so no request pays for them (~3-7 ms and ~300 dirty pages each). A use the
/// scan misses (a computed name) still works: the group loads on first use, in the request.
const HINTS: &[(&str, &[&str])] = &[
    ("crypto", &["subtle", "CryptoKey"]),
    ("intl", &["Intl", "localeCompare", "toLocale"]),
];

/// Bit i: the app's source names HINTS[i]'s group (one app per guest process).
static NAMED: AtomicU8 = AtomicU8::new(0);

/// Records which groups a module's source names.
pub fn note_source(source: &[u8]) {
    for (i, (_, words)) in HINTS.iter().enumerate() {
        if words.iter().any(|w| contains(source, w.as_bytes())) {
            NAMED.fetch_or(1 << i, Ordering::Relaxed);
        }
    }
}

/// The groups the app's sources named so far.
pub fn named() -> Vec<&'static str> {
    let bits = NAMED.load(Ordering::Relaxed);
    HINTS
        .iter()
        .enumerate()
        .filter(|(i, _)| bits & (1 << i) != 0)
        .map(|(_, (g, _))| *g)
        .collect()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Evaluates the files of `group`: each is a function expression of the prelude's private
/// objects, `(native, internal) => { ... }`, called with them. Nothing passes through the
/// global object, where an app's accessor could catch them. Returns false for an unknown
/// group; an exception thrown by a file reaches the caller.
pub fn load<'js>(
    ctx: Ctx<'js>,
    group: String,
    native: Object<'js>,
    internal: Object<'js>,
) -> Result<bool> {
    let Some((_, files)) = LAZY.iter().find(|(g, _)| *g == group) else {
        return Ok(false);
    };
    for (name, src) in files.iter() {
        let mut eo = EvalOptions::default();
        eo.global = true;
        eo.strict = true;
        eo.filename = Some(format!("kvmjs:lazy/{group}/{name}"));
        let f: Function = ctx.eval_with_options(*src, eo)?;
        f.call::<_, ()>((native.clone(), internal.clone()))?;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_embedded_in_file_order() {
        let names: Vec<&str> = LAZY.iter().map(|(g, _)| *g).collect();
        assert_eq!(names, ["crypto", "intl"]);
        let crypto: Vec<&str> = LAZY[0].1.iter().map(|(n, _)| *n).collect();
        assert_eq!(crypto, ["74_cryptokey.js", "75_subtle.js"]);
        assert!(LAZY
            .iter()
            .all(|(_, f)| f.iter().all(|(_, s)| !s.is_empty())));
        // Every hinted group exists.
        assert!(HINTS.iter().all(|(g, _)| names.contains(g)));
    }

    #[test]
    fn sources_that_name_a_group_mark_it() {
        assert!(!contains(b"new Response('hi')", b"Intl"));
        assert!(contains(b"x.localeCompare(y)", b"localeCompare"));
        note_source(b"export default { fetch() { return new Response('hi') } }");
        assert!(!named().contains(&"intl"));
        note_source(b"const c = new Intl.Collator();");
        note_source(b"await crypto.subtle.digest('SHA-256', d)");
        assert_eq!(named(), ["crypto", "intl"]);
    }
}
