//! Command line of the guest program:
//! `kvmjs-guest <app.js> [--warmup N] [--memory-limit MB] [--cpu-limit-ms MS]
//! [--stack-size KB] [--debug]`.

/// Parsed options.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    /// The app's ES module.
    pub app: String,
    /// Synthetic requests before the snapshot.
    pub warmup: u32,
    /// QuickJS heap limit in bytes.
    pub memory_limit: usize,
    /// CPU budget per request in milliseconds (QuickJS interrupt).
    pub cpu_limit_ms: f64,
    /// QuickJS stack limit in bytes.
    pub stack_size: usize,
    /// Stack traces in error responses.
    pub debug: bool,
    /// Outside a VM: serve HTTP on this address (benchmark comparator).
    pub serve: Option<String>,
    /// With `serve`: fork a child per request (process-level isolation comparator).
    pub fork: bool,
}

impl Options {
    /// Parses `args` (without the program name).
    pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Options, String> {
        let mut o = Options {
            app: String::new(),
            warmup: 20,
            memory_limit: 64 << 20,
            cpu_limit_ms: 5000.0,
            stack_size: 1 << 20,
            debug: std::env::var("KVMJS_DEBUG").is_ok_and(|v| v == "1"),
            serve: None,
            fork: false,
        };
        let mut it = args.into_iter();
        while let Some(a) = it.next() {
            fn num(it: &mut impl Iterator<Item = String>, name: &str) -> Result<f64, String> {
                it.next()
                    .and_then(|v| v.parse::<f64>().ok())
                    .filter(|v| *v >= 0.0)
                    .ok_or_else(|| format!("{name} needs a non-negative number"))
            }
            match a.as_str() {
                "--warmup" => o.warmup = num(&mut it, "--warmup")? as u32,
                "--memory-limit" => {
                    o.memory_limit = (num(&mut it, "--memory-limit")? * 1048576.0) as usize
                }
                "--cpu-limit-ms" => o.cpu_limit_ms = num(&mut it, "--cpu-limit-ms")?,
                "--stack-size" => o.stack_size = (num(&mut it, "--stack-size")? * 1024.0) as usize,
                "--debug" => o.debug = true,
                "--serve" => {
                    o.serve = Some(
                        it.next()
                            .ok_or("--serve needs an address, e.g. 127.0.0.1:8081")?,
                    )
                }
                "--fork" => o.fork = true,
                s if s.starts_with("--") => return Err(format!("unknown option {s}")),
                s if o.app.is_empty() => o.app = s.to_string(),
                s => {
                    return Err(format!(
                        "unexpected argument {s:?}: only one app module is allowed"
                    ))
                }
            }
        }
        if o.app.is_empty() {
            return Err("usage: kvmjs-guest <app.js> [--warmup N] [--memory-limit MB] [--cpu-limit-ms MS] [--stack-size KB] [--debug] [--serve ADDR [--fork]]".into());
        }
        if o.fork && o.serve.is_none() {
            return Err("--fork needs --serve".into());
        }
        Ok(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Options, String> {
        Options::parse(s.split_whitespace().map(String::from))
    }

    #[test]
    fn parses_and_rejects() {
        let o = p("/app/x.js --warmup 3 --memory-limit 32 --debug").unwrap();
        assert_eq!(
            (o.app.as_str(), o.warmup, o.memory_limit, o.debug),
            ("/app/x.js", 3, 32 << 20, true)
        );
        assert!(p("").is_err());
        assert!(p("a.js b.js").is_err());
        assert!(p("a.js --warmup").is_err());
        assert!(p("a.js --bogus").unwrap_err().contains("--bogus"));
    }
}
