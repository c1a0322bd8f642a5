//! Bounds on client-controlled text the filter copies into audit events, so
//! one odd request cannot make a whole event batch unstorable.

pub const MAX_USER_AGENT: usize = 512;
pub const MAX_PATH: usize = 1024;
pub const MAX_MODEL: usize = 256;
pub const MAX_ERROR: usize = 1024;
pub const MAX_REQUEST_ID: usize = 128;

/// At most `max` characters of `s` (never splits a character).
pub fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((end, _)) => s.get(..end).unwrap_or(s).to_string(),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clips_on_character_boundaries() {
        assert_eq!(clip("héllo", 2), "hé");
        assert_eq!(clip("abc", 10), "abc");
        assert_eq!(clip("", 0), "");
    }
}
