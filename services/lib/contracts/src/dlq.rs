//! Dead-letter queues: every message a service gives up on lands in `{queue}-dlq` with the
//! reason in one message attribute, so an operator reads why without the service's logs.

/// SQS message attribute (String) carrying the reason a message was dead-lettered.
pub const REASON_ATTRIBUTE: &str = "lambdaless-dlq-reason";

/// Reasons are cut to this many bytes (on a character boundary).
pub const MAX_REASON_BYTES: usize = 1024;

/// `reason` cut to at most `max` bytes without splitting a character.
pub fn truncate_reason(reason: &str, max: usize) -> &str {
    let mut end = reason.len().min(max);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_keeps_whole_characters() {
        assert_eq!(truncate_reason("abc", 10), "abc");
        assert_eq!(truncate_reason("éé", 3), "é");
        assert_eq!(truncate_reason("", 0), "");
    }
}
