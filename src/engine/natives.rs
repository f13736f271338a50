//! The native functions behind the JS prelude (`globalThis.__native`): URL parsing with
//! the `url` crate's WHATWG API, UTF-8 (every other encoding: `encoding.rs`), randomness,
//! clocks and logging. The prelude builds every Web API class on these; the host removes
//! `__native` once it has run.
//! Also: whether the heap ran out (for telling QuickJS's out-of-memory `null` from an
//! app's `throw null`).

use super::clock::Clock;
use super::heap::Heap;
use super::random;
use rquickjs::function::Opt;
use rquickjs::{ArrayBuffer, Ctx, Exception, Function, IntoJs, Object, Result, TypedArray, Value};
use url::{quirks, Url};

/// The eleven URL components in getter order: href, origin, protocol, username, password,
/// host, hostname, port, pathname, search, hash.
pub fn url_parts(u: &Url) -> Vec<String> {
    vec![
        quirks::href(u).to_string(),
        quirks::origin(u),
        quirks::protocol(u).to_string(),
        quirks::username(u).to_string(),
        quirks::password(u).to_string(),
        quirks::host(u).to_string(),
        quirks::hostname(u).to_string(),
        quirks::port(u).to_string(),
        quirks::pathname(u).to_string(),
        quirks::search(u).to_string(),
        quirks::hash(u).to_string(),
    ]
}

/// WHATWG "parse `input` against `base`".
pub fn url_parse(input: &str, base: Option<&str>) -> Option<Url> {
    match base {
        Some(b) => {
            let base = Url::parse(b).ok()?;
            Url::options().base_url(Some(&base)).parse(input).ok()
        }
        None => Url::parse(input).ok(),
    }
}

/// Applies a URL setter; `None` only when an `href` assignment does not parse.
pub fn url_set(href: &str, setter: &str, value: &str) -> Option<Url> {
    let mut u = Url::parse(href).ok()?;
    // Setter failures other than href leave the URL unchanged, as the spec says.
    let _ = match setter {
        "href" => return quirks::set_href(&mut u, value).ok().map(|()| u),
        "protocol" => quirks::set_protocol(&mut u, value),
        "username" => quirks::set_username(&mut u, value),
        "password" => quirks::set_password(&mut u, value),
        "host" => quirks::set_host(&mut u, value),
        "hostname" => quirks::set_hostname(&mut u, value),
        "port" => quirks::set_port(&mut u, value),
        "pathname" => {
            quirks::set_pathname(&mut u, value);
            Ok(())
        }
        "search" => {
            quirks::set_search(&mut u, value);
            Ok(())
        }
        "hash" => {
            quirks::set_hash(&mut u, value);
            Ok(())
        }
        _ => Err(()),
    };
    Some(u)
}

/// Decodes UTF-8 per the WHATWG Encoding standard.
pub fn utf8_decode(bytes: &[u8], fatal: bool, ignore_bom: bool) -> std::result::Result<String, ()> {
    let bytes = match bytes {
        [0xef, 0xbb, 0xbf, rest @ ..] if !ignore_bom => rest,
        b => b,
    };
    if fatal {
        std::str::from_utf8(bytes)
            .map(str::to_string)
            .map_err(|_| ())
    } else {
        // Rust's lossy decoding replaces maximal subparts, as the Encoding standard does.
        Ok(String::from_utf8_lossy(bytes).into_owned())
    }
}

/// Runs `f` on the bytes viewed by an ArrayBuffer view (any typed array or DataView) or
/// ArrayBuffer. The slice cannot escape `f`, and no JS runs while `f` does.
pub fn with_view_bytes<R>(v: &Object<'_>, f: impl FnOnce(&mut [u8]) -> R) -> Result<R> {
    // Views have a `buffer`; only then is anything probed as an ArrayBuffer, because
    // rquickjs's ArrayBuffer checks (JS_GetArrayBuffer) leave a pending TypeError behind on
    // other objects, which then surfaces in unrelated code such as the module loader.
    let view_buffer: Option<Object> = v.get("buffer")?;
    let (buf, off, len) = if view_buffer.is_none() {
        let ab = ArrayBuffer::from_object(v.clone()).ok_or_else(|| {
            rquickjs::Error::new_from_js("object", "ArrayBuffer or ArrayBuffer view")
        })?;
        let n = ab.len();
        (ab, 0usize, n)
    } else {
        let ab: ArrayBuffer = v.get("buffer")?;
        let off: usize = v.get("byteOffset")?;
        let len: usize = v.get("byteLength")?;
        (ab, off, len)
    };
    let raw = buf
        .as_raw()
        .ok_or_else(|| rquickjs::Error::new_from_js("detached ArrayBuffer", "bytes"))?;
    if off.checked_add(len).is_none_or(|e| e > raw.len()) {
        return Err(rquickjs::Error::new_from_js("view", "bytes"));
    }
    // SAFETY: the range lies inside the live ArrayBuffer (checked above), which `buf`
    // keeps alive; no JS runs while `f` uses the slice and it cannot outlive `f`.
    let bytes = unsafe { std::slice::from_raw_parts_mut(raw.as_ptr().cast::<u8>().add(off), len) };
    Ok(f(bytes))
}

/// The URL record as a JS array, or `null` (rquickjs would turn `None` into undefined).
fn url_record<'js>(ctx: &Ctx<'js>, u: Option<Url>) -> Result<Value<'js>> {
    match u {
        Some(u) => url_parts(&u).into_js(ctx),
        None => Ok(Value::new_null(ctx.clone())),
    }
}

fn js_url_parse<'js>(ctx: Ctx<'js>, input: String, base: Opt<String>) -> Result<Value<'js>> {
    url_record(&ctx, url_parse(&input, base.0.as_deref()))
}

fn js_url_set<'js>(
    ctx: Ctx<'js>,
    href: String,
    setter: String,
    value: String,
) -> Result<Value<'js>> {
    url_record(&ctx, url_set(&href, &setter, &value))
}

fn js_utf8_encode<'js>(ctx: Ctx<'js>, s: rquickjs::String<'js>) -> Result<TypedArray<'js, u8>> {
    TypedArray::<u8>::new(ctx, s.to_string()?.into_bytes())
}

fn js_utf8_decode<'js>(
    ctx: Ctx<'js>,
    v: Object<'js>,
    fatal: Opt<bool>,
    ignore_bom: Opt<bool>,
) -> Result<String> {
    let (fatal, ignore_bom) = (fatal.0.unwrap_or(false), ignore_bom.0.unwrap_or(false));
    with_view_bytes(&v, |bytes| utf8_decode(bytes, fatal, ignore_bom))?
        .map_err(|()| Exception::throw_type(&ctx, "The encoded data was not valid utf-8"))
}

/// Builds `__native` on the global object.
pub fn install(
    ctx: &Ctx<'_>,
    clock: Clock,
    wall_at_start_ms: f64,
    to_host_log: bool,
    heap: Heap,
) -> Result<()> {
    let n = Object::new(ctx.clone())?;
    // Whether the heap refused an allocation in this request: a thrown `null` is then
    // QuickJS's out-of-memory signal rather than the app's own `throw null`.
    let h = heap.clone();
    n.set(
        "heapExhausted",
        Function::new(ctx.clone(), move || h.exhausted())?,
    )?;
    // reportError of an out-of-memory exception: the request ends as out of memory.
    n.set(
        "outOfMemory",
        Function::new(ctx.clone(), move || heap.report_out_of_memory())?,
    )?;
    n.set("loadLazy", Function::new(ctx.clone(), super::lazy::load)?)?;
    n.set("urlParse", Function::new(ctx.clone(), js_url_parse)?)?;
    n.set("urlSet", Function::new(ctx.clone(), js_url_set)?)?;
    n.set("utf8Encode", Function::new(ctx.clone(), js_utf8_encode)?)?;
    n.set("utf8Decode", Function::new(ctx.clone(), js_utf8_decode)?)?;
    n.set(
        "textDecoder",
        Function::new(ctx.clone(), super::encoding::js_text_decoder)?,
    )?;
    n.set(
        "randomFill",
        Function::new(ctx.clone(), |v: Object<'_>| -> Result<()> {
            with_view_bytes(&v, random::fill)
        })?,
    )?;
    n.set("now", Function::new(ctx.clone(), move || clock.now_ms())?)?;
    n.set(
        "wallNow",
        Function::new(ctx.clone(), move || wall_at_start_ms + clock.now_ms())?,
    )?;
    n.set(
        "log",
        Function::new(ctx.clone(), move |level: i32, msg: String| {
            log(level, &msg, to_host_log)
        })?,
    )?;
    super::intl::install(ctx, &n)?;
    super::crypto::install(ctx, &n)?;
    super::fetch::install(ctx, &n, to_host_log)?;
    ctx.globals().set("__native", n)?;
    Ok(())
}

/// Writes one console line: through sys_log inside a VM, to stderr otherwise.
pub fn log(level: i32, msg: &str, to_host_log: bool) {
    let tag = match level {
        0 => "debug",
        2 => "warn",
        3 => "error",
        _ => "log",
    };
    if to_host_log {
        let line = format!("[{tag}] {msg}");
        kvmjs_abi::guest::sys_log(line.as_bytes());
    } else {
        eprintln!("[{tag}] {msg}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_parse_and_set() {
        let u = url_parse("/a?b#c", Some("https://example.com/x/y")).unwrap();
        let p = url_parts(&u);
        assert_eq!(p[0], "https://example.com/a?b#c");
        assert_eq!(
            (p[2].as_str(), p[8].as_str(), p[9].as_str(), p[10].as_str()),
            ("https:", "/a", "?b", "#c")
        );
        assert!(url_parse("not a url", None).is_none());
        let s = url_set("https://example.com/", "port", "8080").unwrap();
        assert_eq!(quirks::port(&s), "8080");
        assert!(url_set("https://example.com/", "href", "::bad").is_none());
        // A failing setter leaves the URL as it was.
        let same = url_set("https://example.com/", "port", "notaport").unwrap();
        assert_eq!(quirks::href(&same), "https://example.com/");
    }

    #[test]
    fn utf8_decoding_rules() {
        assert_eq!(utf8_decode(b"\xef\xbb\xbfhi", false, false).unwrap(), "hi");
        assert_eq!(
            utf8_decode(b"\xef\xbb\xbfhi", false, true).unwrap(),
            "\u{feff}hi"
        );
        assert_eq!(utf8_decode(b"a\xffb", false, false).unwrap(), "a\u{fffd}b");
        assert!(utf8_decode(b"a\xffb", true, false).is_err());
    }
}
