//! Splitting text at an ASCII separator by a plain loop over its bytes.
//!
//! `str::split_once(char)` and `str::find(char)` run the standard library's general character
//! searcher, which in wasm is a few hundred bytes of compiled code per request on top of the
//! byte search it calls; paths and header values are short, and the separators the filters look
//! for on every request (`?`, a newline) are ASCII. An ASCII byte never occurs inside a multi-byte
//! UTF-8 sequence, so its position is always a character boundary.

/// The text before and after the first `separator`, which must be ASCII; `None` if there is none.
/// (A byte that is not ASCII may fall inside a character: the slicing then yields `None`, never a
/// panic.)
pub fn split_once_ascii(text: &str, separator: u8) -> Option<(&str, &str)> {
    let at = text.bytes().position(|b| b == separator)?;
    Some((text.get(..at)?, text.get(at + 1..)?))
}

/// The text up to the first `separator` (ASCII), or all of it.
pub fn before_ascii(text: &str, separator: u8) -> &str {
    split_once_ascii(text, separator).map_or(text, |(before, _)| before)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn splits_at_the_first_separator_only() {
        assert_eq!(split_once_ascii("/a?b=1?c", b'?'), Some(("/a", "b=1?c")));
        assert_eq!(split_once_ascii("?", b'?'), Some(("", "")));
        assert_eq!(split_once_ascii("/é/ü", b'?'), None);
        assert_eq!(before_ascii("/é?x", b'?'), "/é");
        assert_eq!(before_ascii("/é", b'?'), "/é");
    }

    proptest! {
        /// The same answer as the standard library's, on any text, for the separators in use.
        #[test]
        fn agrees_with_split_once(text in "\\PC*[?\n]?\\PC*", separator in prop::sample::select(vec![b'?', b'\n', b':'])) {
            prop_assert_eq!(
                split_once_ascii(&text, separator),
                text.split_once(char::from(separator))
            );
        }
    }
}
