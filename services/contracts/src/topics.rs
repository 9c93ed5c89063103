//! MQTT topics of SPEC §3.

/// Where `mover` announces a stored device message: `notification/{uuid}`.
pub fn notification(uuid: &str) -> String {
    format!("notification/{uuid}")
}

/// Shared subscription through which `mqtt-api` replicas split the requests.
pub const REQUEST_SHARED_FILTER: &str = "$share/mqtt-api/request/#";

/// Where answers to unusable requests go.
pub const RESPONSE_INVALID: &str = "response/invalid";

/// A topic level is usable as a single level when it is non-empty and holds
/// no separator or wildcard (a device name or token must not escape its level).
pub fn is_single_level(s: &str) -> bool {
    !s.is_empty() && !s.contains(['/', '+', '#', '\0'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_level_rejects_separators_and_wildcards() {
        assert!(is_single_level("testThing"));
        for bad in ["", "a/b", "+", "x#", "nul\0"] {
            assert!(!is_single_level(bad), "{bad:?}");
        }
        assert_eq!(notification("t"), "notification/t");
    }
}
