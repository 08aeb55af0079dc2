//! PowerShell's wildcard patterns (`WildcardPattern`): the one matcher the endpoint uses, for
//! GET_COMMAND_METADATA names and modules, `Select-Object -Property`/`-ExcludeProperty` and
//! the catalog's lookups.
//!
//! Semantics as `System.Management.Automation.WildcardPattern` with `IgnoreCase`: `*` any run
//! of characters, `?` exactly one, `[abc]` one of a set, `[a-z]` one of a range (a `-` first
//! or last in the brackets is literal), and a backtick makes the next character literal
//! (`` `* `` is a star, `` `[ `` a bracket), also inside brackets. An unclosed `[` is an
//! invalid pattern, as PowerShell's `WildcardPatternException` says; comparison is
//! case-insensitive by simple (one character to one character) case folding.
//!
//! Why a compiled pattern and this algorithm: patterns come from clients. The recursive
//! matcher this replaces tried every split for every `*`, so `**********Q` against a command
//! name took a minute of CPU and two such requests froze the proxy (issue 12). Here the
//! pattern is parsed once into single-character tokens with runs of `*` collapsed, and
//! matched greedily with one backtrack point (the last `*` seen): each text position is
//! revisited at most once per pattern token, so a match costs at most O(pattern × text)
//! steps whatever the pattern, with no recursion and no allocation per attempt.

use std::fmt;

use super::clixml::Value;
use super::executor::{ErrorCategory, ErrorRecord};

/// One compiled token.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// One character, already case-folded.
    Literal(char),
    /// `?`
    One,
    /// `*` (consecutive stars are one token)
    Star,
    /// `[...]`: any of these characters or inclusive ranges (bounds as written and folded).
    Set(Vec<(char, char)>),
}

/// A compiled PowerShell wildcard pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WildcardPattern {
    pattern: String,
    tokens: Vec<Token>,
}

/// A pattern PowerShell would refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "The specified wildcard character pattern is not valid: {pattern} ({why}); escape a \
     literal [ with a backtick (`[)"
)]
pub struct WildcardError {
    /// The pattern as given.
    pub pattern: String,
    /// What is wrong with it.
    pub why: &'static str,
}

impl WildcardError {
    /// The error record PowerShell writes for an invalid pattern.
    pub fn to_error_record(&self) -> ErrorRecord {
        ErrorRecord {
            target_name: self.pattern.clone(),
            target_type: "String".into(),
            target_object: Value::from(self.pattern.as_str()),
            ..ErrorRecord::new(
                self.to_string(),
                "System.Management.Automation.WildcardPatternException",
                "RuntimeException",
                ErrorCategory::InvalidArgument,
            )
        }
    }
}

/// Compiles each pattern of a list.
///
/// # Errors
/// The first pattern's [`WildcardError`].
pub fn compile_all(patterns: &[String]) -> Result<Vec<WildcardPattern>, WildcardError> {
    patterns.iter().map(|p| WildcardPattern::new(p)).collect()
}

/// Simple case folding: the single-character lower case of `c`, or `c` itself.
fn fold(c: char) -> char {
    let mut lower = c.to_lowercase();
    match (lower.next(), lower.next()) {
        (Some(l), None) => l,
        _ => c,
    }
}

/// Whether `text` holds a wildcard character (`*`, `?`, `[`) not escaped by a backtick, as
/// PowerShell's `WildcardPattern.ContainsWildcardCharacters`.
pub fn is_wildcard(text: &str) -> bool {
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '`' => {
                chars.next();
            }
            '*' | '?' | '[' => return true,
            _ => {}
        }
    }
    false
}

impl WildcardPattern {
    /// Compiles `pattern`.
    ///
    /// # Errors
    /// [`WildcardError`] for an unclosed or empty `[...]`, as PowerShell refuses them.
    pub fn new(pattern: &str) -> Result<Self, WildcardError> {
        let err = |why| WildcardError {
            pattern: pattern.to_owned(),
            why,
        };
        let mut tokens = Vec::with_capacity(pattern.len());
        let mut chars = pattern.chars();
        while let Some(c) = chars.next() {
            let token = match c {
                '*' if tokens.last() == Some(&Token::Star) => continue,
                '*' => Token::Star,
                '?' => Token::One,
                // A trailing backtick escapes nothing and stands for itself.
                '`' => Token::Literal(fold(chars.next().unwrap_or('`'))),
                '[' => {
                    let mut members = Vec::new();
                    let mut closed = false;
                    while let Some(c) = chars.next() {
                        let c = match c {
                            ']' => {
                                closed = true;
                                break;
                            }
                            '`' => chars.next().ok_or_else(|| err("a [ is not closed"))?,
                            c => c,
                        };
                        members.push(c);
                    }
                    if !closed {
                        return Err(err("a [ is not closed"));
                    }
                    if members.is_empty() {
                        return Err(err("[] names no character"));
                    }
                    Token::Set(ranges(&members))
                }
                c => Token::Literal(fold(c)),
            };
            tokens.push(token);
        }
        Ok(Self {
            pattern: pattern.to_owned(),
            tokens,
        })
    }

    /// The pattern as given.
    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// Whether the pattern holds no wildcard: it matches one text only (case-insensitively).
    pub fn is_literal(&self) -> bool {
        self.tokens.iter().all(|t| matches!(t, Token::Literal(_)))
    }

    /// Whether `text` matches the whole pattern (case-insensitive).
    pub fn is_match(&self, text: &str) -> bool {
        let text: Vec<char> = text.chars().collect();
        let tokens = &self.tokens;
        let (mut ti, mut pi) = (0usize, 0usize);
        // The last star: the token after it, and the text position it is tried from next.
        let mut backtrack: Option<(usize, usize)> = None;
        while ti < text.len() {
            match tokens.get(pi) {
                Some(Token::Star) => {
                    backtrack = Some((pi + 1, ti));
                    pi += 1;
                    continue;
                }
                Some(t) if t.matches(text[ti]) => {
                    pi += 1;
                    ti += 1;
                    continue;
                }
                _ => {}
            }
            // Mismatch: let the last star swallow one more character, or fail.
            let Some((after_star, from)) = backtrack else {
                return false;
            };
            pi = after_star;
            ti = from + 1;
            backtrack = Some((after_star, from + 1));
        }
        tokens[pi.min(tokens.len())..]
            .iter()
            .all(|t| *t == Token::Star)
    }
}

impl Token {
    fn matches(&self, c: char) -> bool {
        match self {
            Self::Literal(l) => *l == fold(c),
            Self::One => true,
            Self::Star => false,
            Self::Set(ranges) => {
                let f = fold(c);
                ranges.iter().any(|(lo, hi)| {
                    (*lo..=*hi).contains(&c) || (fold(*lo)..=fold(*hi)).contains(&f)
                })
            }
        }
    }
}

/// `a-z` ranges and single characters of a bracket set; a `-` first or last is literal.
fn ranges(members: &[char]) -> Vec<(char, char)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < members.len() {
        let c = members[i];
        if i + 2 < members.len() && members[i + 1] == '-' {
            let (lo, hi) = (c, members[i + 2]);
            out.push(if lo <= hi { (lo, hi) } else { (hi, lo) });
            i += 3;
        } else {
            out.push((c, c));
            i += 1;
        }
    }
    out
}

impl fmt::Display for WildcardPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.pattern)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, text: &str) -> bool {
        WildcardPattern::new(pattern).unwrap().is_match(text)
    }

    #[test]
    fn stars_questions_and_case() {
        assert!(m("*", "Get-Mailbox"));
        assert!(m("*", ""));
        assert!(m("get-*", "Get-Mailbox"));
        assert!(m("G?t-Mail*x", "Get-Mailbox"));
        assert!(m("*box", "Get-Mailbox"));
        assert!(m("get-*box", "Get-Mailbox"));
        assert!(m("Primary*", "PrimarySmtpAddress"));
        assert!(!m("Set-*", "Get-Mailbox"));
        assert!(!m("Get-M", "Get-Mailbox"));
        assert!(!m("", "x"));
        assert!(m("", ""));
        assert!(!m("?", ""));
        assert!(m("*a*b", "xaxxb"));
        assert!(!m("*a*b", "xbxxa"));
        assert!(m("ÄRGER*", "ärgerlich"), "case folding beyond ASCII");
    }

    #[test]
    fn sets_ranges_and_escapes() {
        assert!(m("[gs]et-mailbox", "Set-Mailbox"));
        assert!(!m("[gs]et-mailbox", "Net-Mailbox"));
        assert!(m("user0[0-4]", "user03"));
        assert!(!m("user0[0-4]", "user05"));
        assert!(m("[A-C]x", "bx"), "ranges ignore case");
        assert!(
            m("[-a]", "-") && m("[a-]", "-"),
            "a - at either end is literal"
        );
        assert!(m("a`*", "a*"));
        assert!(!m("a`*", "ab"));
        assert!(m("`[x`]", "[x]"));
        assert!(m("[`]]", "]"));
        assert!(m("a`", "a`"), "a trailing backtick stands for itself");
        assert!(WildcardPattern::new("Get-[abc").is_err());
        assert!(WildcardPattern::new("[]").is_err());
        let e = WildcardPattern::new("x[").unwrap_err();
        assert!(e.to_string().contains("not valid: x["), "{e}");
    }

    #[test]
    fn is_wildcard_ignores_escaped_characters() {
        assert!(is_wildcard("Primary*"));
        assert!(is_wildcard("a?"));
        assert!(is_wildcard("[ab]"));
        assert!(!is_wildcard("Name"));
        assert!(!is_wildcard("a`*"));
        assert!(WildcardPattern::new("Name").unwrap().is_literal());
        assert!(!WildcardPattern::new("Na*").unwrap().is_literal());
    }

    /// Issue 12: patterns that took the old recursive matcher a minute now answer at once;
    /// the results are what PowerShell gives.
    #[test]
    fn pathological_patterns_issue_12() {
        let name = "Get-MailboxFolderStatistics".repeat(4);
        assert!(!m("**********Q", &name));
        assert!(!m("*?*?*?*?*?*?*?*?*?*?Q", &name));
        assert!(!m(&format!("{}Q", "*".repeat(10_000)), &name));
        let long = "a".repeat(20_000);
        assert!(!m("*a*a*a*a*a*a*a*a*b", &long));
        assert!(m("*a*a*a*a*a*a*a*a*b", &format!("{long}b")));
        let pattern = "*a".repeat(500) + "*b";
        assert!(!m(&pattern, &long));
        assert!(m(&pattern, &(long.clone() + "b")));
    }
}
