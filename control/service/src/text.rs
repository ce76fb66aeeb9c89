//! Rules for text that people type and other people see.

/// Control characters, and the invisible format characters that reorder or
/// hide text (bidirectional overrides, zero-width marks): a name shown to
/// others must read as it is.
pub fn is_unprintable(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{061C}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_and_reordering_characters_are_unprintable() {
        for c in [
            '\u{0}', '\u{1b}', '\n', '\u{202e}', '\u{200b}', '\u{2066}', '\u{feff}',
        ] {
            assert!(is_unprintable(c), "{c:?}");
        }
        for c in ['a', 'é', '漢', '🎥', ' '] {
            assert!(!is_unprintable(c), "{c:?}");
        }
    }
}
