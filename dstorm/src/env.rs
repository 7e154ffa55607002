//! What a process reads from its surroundings: environment variables, as a
//! source that tests can replace ([`Env`]), and the host's name. At the
//! bottom of the crate, so that configuration, secrets and transports can
//! all read them.

/// Source of environment variables (a closure in tests, the process environment otherwise).
pub trait Env {
    /// The value of `key`, if set and not empty.
    fn get(&self, key: &str) -> Option<String>;
}

impl<F: Fn(&str) -> Option<String>> Env for F {
    fn get(&self, key: &str) -> Option<String> {
        self(key).filter(|v| !v.is_empty())
    }
}

/// The process environment.
#[derive(Debug, Clone, Copy)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn get(&self, key: &str) -> Option<String> {
        std::env::var(key).ok().filter(|v| !v.is_empty())
    }
}

/// This host's name as the kernel has it (`/proc/sys/kernel/hostname`),
/// without surrounding white space; `None` where it cannot be read.
pub(crate) fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
}

/// An environment holding just `pairs`, for tests.
#[cfg(test)]
pub(crate) fn fake(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: std::collections::HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k: &str| map.get(k).cloned()
}
