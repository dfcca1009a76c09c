//! The config file with environment overrides: TOML text, then after a NUL
//! byte, NUL-separated `NAME=value` pairs applied as `PORTER_NAME`.
//! Properties: no panic; a refused config names at least one error, and
//! every error renders.
#![no_main]

use libfuzzer_sys::fuzz_target;
use porterd::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    let (text, env) = s.split_once('\0').unwrap_or((s, ""));
    let vars: Vec<(String, String)> = env
        .split('\0')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (format!("PORTER_{k}"), v.to_string()))
        .collect();
    if let Err(errs) = Config::from_toml_with_env(text, vars.into_iter()) {
        assert!(!errs.0.is_empty(), "a refused config names its errors");
        let _ = errs.to_string();
    }
});
