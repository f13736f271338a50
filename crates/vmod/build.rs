//! Compiles the Varnish side of the VMOD: vmodtool.py (from the installed
//! libvarnishapi-dev, so the metadata matches the varnishd it will load into) turns
//! vmod.vcc into vcc_if.c/h, and those plus src/vmod_kvmjs.c are compiled against the
//! installed Varnish headers and bundled into this crate's static library.

use std::path::PathBuf;
use std::process::Command;

fn pkg_config(args: &[&str]) -> Result<String, String> {
    let out = Command::new("pkg-config")
        .args(args)
        .arg("varnishapi")
        .output()
        .map_err(|e| {
            format!("cannot run pkg-config: {e}; install it (apt-get install pkg-config)")
        })?;
    if !out.status.success() {
        return Err(format!(
            "pkg-config finds no varnishapi: install the Varnish development files \
             (apt-get install libvarnishapi-dev; .ci/install-deps does): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn main() {
    println!("cargo:rerun-if-changed=vmod.vcc");
    println!("cargo:rerun-if-changed=src/vmod_kvmjs.c");
    println!("cargo:rerun-if-changed=src/kvmjs_vmod.h");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let run = || -> Result<(), String> {
        let vmodtool = pkg_config(&["--variable=vmodtool"])?;
        let cflags = pkg_config(&["--cflags"])?;
        let status = Command::new("python3")
            .arg(&vmodtool)
            .arg("-o")
            .arg(out.join("vcc_if"))
            .arg("-w")
            .arg(&out)
            .arg("vmod.vcc")
            .status()
            .map_err(|e| format!("cannot run python3 {vmodtool}: {e}; install python3"))?;
        if !status.success() {
            return Err(format!("{vmodtool} failed on vmod.vcc ({status})"));
        }
        // vcc_if.c includes the autotools config.h a VMOD built in Varnish's tree has;
        // it needs nothing from it.
        std::fs::write(
            out.join("config.h"),
            "/* kvmjs VMOD: nothing to configure */\n",
        )
        .map_err(|e| format!("cannot write config.h: {e}"))?;
        let mut b = cc::Build::new();
        b.file(out.join("vcc_if.c"))
            .file("src/vmod_kvmjs.c")
            .include(&out)
            .include("src")
            .warnings(true)
            .extra_warnings(true)
            .flag_if_supported("-Wno-unused-parameter")
            .flag_if_supported("-Wno-missing-field-initializers")
            .pic(true);
        for f in cflags.split_whitespace() {
            b.flag(f);
        }
        b.try_compile("kvmjs_vmod_c").map_err(|e| e.to_string())
    };
    if let Err(e) = run() {
        panic!("building the Varnish VMOD glue failed: {e}");
    }
}
