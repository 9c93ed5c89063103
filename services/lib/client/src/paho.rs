//! Where the Python with paho-mqtt lives: the benchmarks and the ACL tests
//! drive the broker with paho, a client the project did not write.

use std::path::PathBuf;

/// `$LAMBDALESS_PAHO_PYTHON`, else the venv `scripts/install-deps.sh`
/// creates under the cache directory (`scripts/lib.sh`'s `LL_CACHE_DIR`:
/// `$LAMBDALESS_CACHE_DIR`, else `$XDG_CACHE_HOME/lambdaless`, else
/// `~/.cache/lambdaless`). The path may not exist; callers say so.
pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("LAMBDALESS_PAHO_PYTHON") {
        return PathBuf::from(p);
    }
    let cache = std::env::var_os("LAMBDALESS_CACHE_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("lambdaless")))
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into()))
                .join(".cache/lambdaless")
        });
    cache.join("paho-venv/bin/python")
}
