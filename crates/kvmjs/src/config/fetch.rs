//! tinykvm.json `fetch`: which backends a program's `fetch()` may reach, and its limits.
//!
//! ```json
//! "fetch": { "allow": ["https://api.example.com", "http://127.0.0.1:8081"],
//!            "timeout": 10, "connect_timeout": 5, "max_response_size": 16777216,
//!            "max_request_body": 16777216, "max_open": 16, "max_per_request": 256 }
//! ```

use super::{ConfigError, Ctx};
use kvmjs_vm::fetch::{FetchPolicy, Origin};
use serde_json::Value;
use std::time::Duration;

/// The sub-keys, with their meaning.
pub const SUBKEYS: &[(&str, &str)] = &[
    ("allow", "origins (scheme://host[:port]) fetch() may reach; nothing by default"),
    ("timeout", "seconds one fetch may take, body included (default 30; the request's max_request_time still applies)"),
    ("connect_timeout", "seconds to connect (default 5)"),
    ("max_response_size", "bytes of response body (default 16777216)"),
    ("max_request_body", "bytes of request body (default 16777216)"),
    ("max_open", "fetches open at once in one request (default 16)"),
    ("max_per_request", "fetches one request may start (default 256)"),
];

/// Parses the `fetch` object.
pub(super) fn parse(ctx: &Ctx<'_>, key: &str, v: &Value) -> Result<FetchPolicy, ConfigError> {
    let Some(o) = v.as_object() else {
        return Err(ctx.bad(
            key,
            "expected an object such as {\"allow\": [\"https://api.example.com\"]}",
            v,
        ));
    };
    let mut p = FetchPolicy::default();
    for (k, v) in o {
        let name = format!("{key}.{k}");
        match k.as_str() {
            "allow" => {
                for s in ctx.strings(&name, v)? {
                    let origin =
                        Origin::parse(&s).map_err(|e| ctx.bad(&name, &e.to_string(), v))?;
                    if !p.allow.contains(&origin) {
                        p.allow.push(origin);
                    }
                }
            }
            "timeout" => p.timeout = Duration::from_secs_f64(ctx.num(&name, v, 0.001, 3600.0)?),
            "connect_timeout" => {
                p.connect_timeout = Duration::from_secs_f64(ctx.num(&name, v, 0.001, 3600.0)?)
            }
            "max_response_size" => p.max_response_size = ctx.int(&name, v, 0, 1 << 40)?,
            "max_request_body" => p.max_request_body = ctx.int(&name, v, 0, 1 << 40)?,
            "max_open" => p.max_open = ctx.int(&name, v, 1, 1024)? as usize,
            "max_per_request" => p.max_per_request = ctx.int(&name, v, 1, 1 << 20)? as usize,
            other => {
                let known: Vec<&str> = SUBKEYS.iter().map(|(k, _)| *k).collect();
                return Err(ctx.bad(
                    &format!("{key}.{other}"),
                    &format!("unknown key; expected one of {}", known.join(", ")),
                    v,
                ));
            }
        }
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn ctx() -> Ctx<'static> {
        Ctx {
            path: Path::new("tinykvm.json"),
            dir: Path::new("/"),
            entry: "app",
        }
    }

    fn parse_json(s: &str) -> Result<FetchPolicy, String> {
        parse(&ctx(), "fetch", &serde_json::from_str(s).unwrap()).map_err(|e| e.to_string())
    }

    #[test]
    fn reads_every_key() {
        let p = parse_json(
            r#"{"allow": ["https://api.example.com", "http://127.0.0.1:8081/"], "timeout": 2.5,
                "connect_timeout": 1, "max_response_size": 100, "max_request_body": 50,
                "max_open": 3, "max_per_request": 9}"#,
        )
        .unwrap();
        assert_eq!(p.allow.len(), 2);
        assert_eq!(p.allow[1].port, 8081);
        assert_eq!(p.timeout, Duration::from_millis(2500));
        assert_eq!((p.max_response_size, p.max_request_body), (100, 50));
        assert_eq!((p.max_open, p.max_per_request), (3, 9));
        assert_eq!(p.connect_timeout, Duration::from_secs(1));
    }

    #[test]
    fn errors_name_the_key_and_say_what_to_write() {
        let e = parse_json(r#"{"allow": ["https://api.example.com/v1"]}"#).unwrap_err();
        assert!(
            e.contains("fetch.allow") && e.contains("drop the path"),
            "{e}"
        );
        let e = parse_json(r#"{"allow": ["ftp://x"]}"#).unwrap_err();
        assert!(e.contains("not an http or https origin"), "{e}");
        let e = parse_json(r#"{"alow": []}"#).unwrap_err();
        assert!(
            e.contains("fetch.alow") && e.contains("expected one of allow"),
            "{e}"
        );
        let e = parse_json(r#"["https://x"]"#).unwrap_err();
        assert!(e.contains("expected an object"), "{e}");
        assert!(parse_json(r#"{"timeout": 0}"#).is_err());
        assert!(parse_json(r#"{}"#).unwrap().allow.is_empty());
    }
}
