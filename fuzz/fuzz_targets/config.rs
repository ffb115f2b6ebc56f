//! The plugin configuration parser on arbitrary bytes: a bad configuration is an error value
//! naming a field, never a panic.

#![no_main]

use inline_authz::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match Config::parse(data) {
        Ok(config) => {
            let _ = config.deny_policy_names();
            let _ = config.custom_provider();
        }
        Err(error) => {
            assert!(!error.to_string().is_empty(), "errors say why");
        }
    }
});
