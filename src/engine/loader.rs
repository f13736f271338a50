//! ES module resolution and loading from the file system (inside a VM, through the
//! host's read-only file system calls). Relative and absolute specifiers only: npm
//! packages must be bundled into the app, because there is no package resolution here.

use rquickjs::loader::{ImportAttributes, Loader, Resolver};
use rquickjs::module::Declared;
use rquickjs::{Ctx, Error, Module, Result};
use std::path::{Component, Path, PathBuf};

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
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out.to_string_lossy().into_owned()
}

/// Resolves `./x.js`, `../x.js` and `/abs/x.js`.
pub struct FsResolver;

impl Resolver for FsResolver {
    fn resolve<'js>(
        &mut self,
        _: &Ctx<'js>,
        base: &str,
        name: &str,
        _: Option<ImportAttributes<'js>>,
    ) -> Result<String> {
        if name.starts_with("./") || name.starts_with("../") || name.starts_with('/') {
            Ok(resolve_path(base, name))
        } else {
            Err(Error::new_resolving_message(
                base,
                name,
                "bare module specifiers are not supported: bundle npm packages into the app (e.g. with esbuild)",
            ))
        }
    }
}

/// Reads modules from disk.
pub struct FsLoader;

impl Loader for FsLoader {
    fn load<'js>(
        &mut self,
        ctx: &Ctx<'js>,
        name: &str,
        _: Option<ImportAttributes<'js>>,
    ) -> Result<Module<'js, Declared>> {
        let source = std::fs::read(name)
            .map_err(|e| Error::new_loading_message(name, format!("cannot read {name}: {e}")))?;
        if name.ends_with(".json") {
            // JSON modules: the document becomes the default export.
            let mut wrapped = b"export default ".to_vec();
            wrapped.extend_from_slice(&source);
            wrapped.extend_from_slice(b";\n");
            return Module::declare(ctx.clone(), name, wrapped);
        }
        Module::declare(ctx.clone(), name, source)
    }
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
    }
}
