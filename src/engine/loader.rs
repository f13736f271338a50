//! ES module resolution and loading from the file system (inside a VM, through the
//! host's read-only file system calls). Relative and absolute specifiers only: npm
//! packages must be bundled into the app, because there is no package resolution here.
//!
//! Only `.js`, `.mjs` and `.json` files load, so that importing anything else (`./.env`)
//! cannot show its contents in an error message. Modules are named by their path relative
//! to the app's directory (`main.js`, `lib/util.js`, `../shared/x.js`): stack traces and
//! error messages show those names, not where the app lives on the host.

use rquickjs::loader::{ImportAttributes, Loader, Resolver};
use rquickjs::module::Declared;
use rquickjs::{CaughtError, Ctx, Error, Exception, Module, Result};
use std::path::{Component, Path, PathBuf};

/// File name extensions that can be imported.
pub const EXTENSIONS: &[&str] = &["js", "mjs", "json"];

/// Why an import of another kind of file fails.
const ONLY: &str = "only .js, .mjs and .json files can be imported";

/// Lexically normalises `p`: drops `.`, applies `..` (kept at the start of a relative path).
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                let up = matches!(
                    out.components().next_back(),
                    None | Some(Component::ParentDir)
                );
                if up && !out.has_root() {
                    out.push("..");
                } else {
                    out.pop();
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// Lexically joins `name` onto the directory of `base`.
pub fn resolve_path(base: &str, name: &str) -> String {
    let joined: PathBuf = if name.starts_with('/') {
        PathBuf::from(name)
    } else {
        Path::new(base)
            .parent()
            .unwrap_or(Path::new("/"))
            .join(name)
    };
    normalize(&joined).to_string_lossy().into_owned()
}

/// Whether `path` may be imported.
pub fn importable(path: &str) -> bool {
    Path::new(path)
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTENSIONS.contains(&e))
}

/// The app's directory: maps module names to files and back.
#[derive(Clone, Debug)]
pub struct AppDir(PathBuf);

impl AppDir {
    /// The directory of the app module `app`.
    pub fn of(app: &str) -> AppDir {
        AppDir(normalize(Path::new(app).parent().unwrap_or(Path::new(""))))
    }

    /// The file behind module `name`.
    pub fn path(&self, name: &str) -> PathBuf {
        if Path::new(name).has_root() {
            normalize(Path::new(name))
        } else {
            normalize(&self.0.join(name))
        }
    }

    /// The module name of `path` (normalised): relative to the app directory.
    pub fn name(&self, path: &Path) -> String {
        if path.has_root() != self.0.has_root() {
            return path.to_string_lossy().into_owned();
        }
        let (mut a, mut b) = (self.0.components().peekable(), path.components().peekable());
        while a.peek().is_some() && a.peek() == b.peek() {
            a.next();
            b.next();
        }
        let mut out = PathBuf::new();
        for _ in a {
            out.push("..");
        }
        out.extend(b);
        out.to_string_lossy().into_owned()
    }
}

/// Resolves `./x.js`, `../x.js` and `/abs/x.js` to module names.
pub struct FsResolver(pub AppDir);

impl Resolver for FsResolver {
    fn resolve<'js>(
        &mut self,
        _: &Ctx<'js>,
        base: &str,
        name: &str,
        _: Option<ImportAttributes<'js>>,
    ) -> Result<String> {
        if !(name.starts_with("./") || name.starts_with("../") || name.starts_with('/')) {
            return Err(Error::new_resolving_message(
                base,
                name,
                "bare module specifiers are not supported: bundle npm packages into the app (e.g. with esbuild)",
            ));
        }
        let base_path = self.0.path(base);
        let path = resolve_path(&base_path.to_string_lossy(), name);
        if !importable(&path) {
            return Err(Error::new_resolving_message(base, name, ONLY));
        }
        Ok(self.0.name(Path::new(&path)))
    }
}

/// Reads modules from disk.
pub struct FsLoader(pub AppDir);

impl Loader for FsLoader {
    fn load<'js>(
        &mut self,
        ctx: &Ctx<'js>,
        name: &str,
        _: Option<ImportAttributes<'js>>,
    ) -> Result<Module<'js, Declared>> {
        if !importable(name) {
            return Err(Error::new_loading_message(name, ONLY));
        }
        let source = std::fs::read(self.0.path(name))
            .map_err(|e| Error::new_loading_message(name, format!("cannot read it: {e}")))?;
        if name.ends_with(".json") {
            declare_json(ctx, name, &source)
        } else {
            super::lazy::note_source(&source);
            declare(ctx, name, source)
        }
    }
}

/// Declares a JavaScript module; a syntax error names the place, not the source text.
pub fn declare<'js>(ctx: &Ctx<'js>, name: &str, source: Vec<u8>) -> Result<Module<'js, Declared>> {
    Module::declare(ctx.clone(), name, source).map_err(|e| syntax_error(ctx, name, e))
}

/// A JSON module: the parsed document is the default export.
fn declare_json<'js>(ctx: &Ctx<'js>, name: &str, source: &[u8]) -> Result<Module<'js, Declared>> {
    let text = std::str::from_utf8(source)
        .map_err(|_| Exception::throw_syntax(ctx, &format!("{name} is not UTF-8 text")))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    // Parsed here so that an error can be reported without the text; parsed again (as
    // JSON, never as JavaScript) when the module runs.
    ctx.json_parse(text)
        .map_err(|e| syntax_error(ctx, name, e))?;
    let src = format!("export default JSON.parse({});\n", js_string(text));
    Module::declare(ctx.clone(), name, src)
}

/// A JavaScript string literal holding `s`.
fn js_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c < ' ' || c == '\u{2028}' || c == '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", u32::from(c)))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Rethrows a parse error of module `name` as a SyntaxError whose message gives the place
/// (`name:line:column`) and no source text: QuickJS quotes the offending token, which may
/// be anything in the file. Other errors (from a module it imports, or out of memory) go
/// on as they were.
fn syntax_error(ctx: &Ctx<'_>, name: &str, e: Error) -> Error {
    let caught = CaughtError::from_error(ctx, e);
    if let CaughtError::Exception(ex) = &caught {
        let is_syntax = ex
            .get::<_, String>("name")
            .is_ok_and(|n| n == "SyntaxError");
        // The parser's error has one frame, where it stopped: "    at <file>:<line>:<col>".
        let stack = ex.stack().unwrap_or_default();
        let place = stack.lines().next().and_then(|l| {
            let mut it = l.trim_start().strip_prefix("at ")?.rsplitn(3, ':');
            let (col, line, file) = (it.next()?, it.next()?, it.next()?);
            let ours = file == name || file == "<input>";
            (ours && line.parse::<u32>().is_ok() && col.parse::<u32>().is_ok())
                .then(|| format!("{name}:{line}:{col}"))
        });
        if let (true, Some(place)) = (is_syntax, place) {
            let msg = ex.message().unwrap_or_default();
            return Exception::throw_syntax(ctx, &format!("{} at {place}", without_quotes(&msg)));
        }
    }
    caught.throw(ctx)
}

/// `msg` without quoted source text ('…' longer than a few characters, e.g. a token or an
/// identifier); short quotes such as `expecting ';'` stay.
pub fn without_quotes(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut rest = msg;
    while let Some(open) = rest.find('\'') {
        let Some(len) = rest[open + 1..].find('\'') else {
            break;
        };
        let quoted = &rest[open + 1..open + 1 + len];
        if quoted.chars().count() <= 3 {
            out.push_str(&rest[..open + len + 2]);
        } else {
            out.push_str(rest[..open].trim_end_matches([' ', ':']));
        }
        rest = &rest[open + len + 2..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_resolve_against_the_importer() {
        assert_eq!(resolve_path("/app/main.js", "./lib/a.js"), "/app/lib/a.js");
        assert_eq!(resolve_path("/app/lib/a.js", "../b.js"), "/app/b.js");
        assert_eq!(resolve_path("/app/main.js", "/other/c.js"), "/other/c.js");
        assert_eq!(resolve_path("/app/main.js", "../../../x.js"), "/x.js");
        assert_eq!(resolve_path("main.js", "../x.js"), "../x.js");
        assert_eq!(resolve_path("a/main.js", "../../x.js"), "../x.js");
    }

    #[test]
    fn modules_are_named_relative_to_the_app() {
        let d = AppDir::of("/srv/app/main.js");
        assert_eq!(d.name(Path::new("/srv/app/main.js")), "main.js");
        assert_eq!(d.name(Path::new("/srv/app/lib/a.js")), "lib/a.js");
        assert_eq!(d.name(Path::new("/srv/shared/x.js")), "../shared/x.js");
        assert_eq!(d.name(Path::new("/x.js")), "../../x.js");
        for n in ["main.js", "lib/a.js", "../shared/x.js", "../../x.js"] {
            assert_eq!(d.name(&d.path(n)), n);
        }
        assert_eq!(d.path("../shared/x.js"), Path::new("/srv/shared/x.js"));
        // A relative app path (outside a VM): names stay unambiguous.
        let r = AppDir::of("apps/main.js");
        assert_eq!(r.name(Path::new("x.js")), "../x.js");
        assert_eq!(r.path("../x.js"), Path::new("x.js"));
        assert_eq!(r.name(Path::new("/abs/y.js")), "/abs/y.js");
        assert_eq!(r.path("/abs/y.js"), Path::new("/abs/y.js"));
        assert_eq!(
            AppDir::of("main.js").path("lib/a.js"),
            Path::new("lib/a.js")
        );
    }

    #[test]
    fn only_js_mjs_and_json_are_importable() {
        for ok in ["a.js", "/x/b.mjs", "c.json", "../d.e.js"] {
            assert!(importable(ok), "{ok}");
        }
        for no in [
            ".env", "x/.env", "data.txt", "noext", "a.JS", "a.cjs", "a.ts",
        ] {
            assert!(!importable(no), "{no}");
        }
    }

    #[test]
    fn quoted_source_text_is_dropped() {
        assert_eq!(
            without_quotes("unexpected token in expression: 'SECRET_VALUE'"),
            "unexpected token in expression"
        );
        assert_eq!(
            without_quotes("Unexpected identifier 'abcd'"),
            "Unexpected identifier"
        );
        assert_eq!(without_quotes("expecting ';'"), "expecting ';'");
        assert_eq!(
            without_quotes("unexpected token in expression: ')'"),
            "unexpected token in expression: ')'"
        );
        assert_eq!(without_quotes("it's"), "it's");
        assert_eq!(without_quotes("'long one' and 'x'"), " and 'x'");
    }

    #[test]
    fn json_text_becomes_a_string_literal() {
        assert_eq!(
            js_string("a\"b\\c\n\u{2028}é"),
            "\"a\\\"b\\\\c\\u000a\\u2028é\""
        );
    }
}
