//! The simulator's own wildcard matching, as PowerShell's `WildcardPattern` defines it:
//! `*` any run, `?` one character, `[abc]` / `[a-z]` one character of a set, a backtick
//! escapes the next character; case-insensitive.
//!
//! Used for `-Identity 'a*'`, `-Filter "X -like 'y*'"` and GET_COMMAND_METADATA names. Written
//! here rather than borrowed from the proxy, so a mistake in the proxy's matcher shows up
//! as a disagreement. The matcher is the greedy one with a single backtrack point (the last
//! `*`): time is bounded by pattern length × text length on any pattern, so a hostile
//! `*a*a*a*…b` costs microseconds, not an exponential search.

/// One pattern element.
#[derive(Debug, Clone, PartialEq)]
enum Token {
    /// `*`
    Any,
    /// `?`
    One,
    /// A literal character (lower-cased).
    Char(char),
    /// `[…]`: characters and ranges (lower-cased).
    Set(Vec<(char, char)>),
}

fn fold(c: char) -> char {
    c.to_lowercase().next().unwrap_or(c)
}

fn tokens(pattern: &str) -> Vec<Token> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = Vec::with_capacity(chars.len());
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '*' => {
                if out.last() != Some(&Token::Any) {
                    out.push(Token::Any);
                }
            }
            '?' => out.push(Token::One),
            '`' if i + 1 < chars.len() => {
                i += 1;
                out.push(Token::Char(fold(chars[i])));
            }
            '[' => match chars[i + 1..].iter().position(|&c| c == ']') {
                Some(len) => {
                    let body = &chars[i + 1..i + 1 + len];
                    let mut set = Vec::new();
                    let mut j = 0;
                    while j < body.len() {
                        if j + 2 < body.len() && body[j + 1] == '-' {
                            set.push((fold(body[j]), fold(body[j + 2])));
                            j += 3;
                        } else {
                            set.push((fold(body[j]), fold(body[j])));
                            j += 1;
                        }
                    }
                    out.push(Token::Set(set));
                    i += len + 1;
                }
                None => out.push(Token::Char('[')),
            },
            c => out.push(Token::Char(fold(c))),
        }
        i += 1;
    }
    out
}

fn accepts(token: &Token, c: char) -> bool {
    match token {
        Token::Any | Token::One => true,
        Token::Char(p) => *p == c,
        Token::Set(ranges) => ranges.iter().any(|(lo, hi)| (*lo..=*hi).contains(&c)),
    }
}

/// Whether `text` matches `pattern` (whole text, case-insensitive).
pub fn matches(pattern: &str, text: &str) -> bool {
    let pat = tokens(pattern);
    let text: Vec<char> = text.chars().map(fold).collect();
    let (mut p, mut t) = (0, 0);
    // The last `*` seen and the text position it currently stands for.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pat.get(p) {
            Some(Token::Any) => {
                star = Some((p, t));
                p += 1;
            }
            Some(tok) if accepts(tok, text[t]) => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pat[p..].iter().all(|tok| *tok == Token::Any)
}

/// Whether `text` has wildcard characters PowerShell would expand.
pub fn has_wildcards(text: &str) -> bool {
    text.contains(['*', '?', '['])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn powershell_wildcard_semantics() {
        assert!(matches("*", ""));
        assert!(matches("get-*box", "Get-Mailbox"));
        assert!(matches("Get-Mailbo?", "Get-Mailbox"));
        assert!(!matches("Get-Mailbo?", "Get-Mailbo"));
        assert!(matches("[gs]et-mailbox", "Set-Mailbox"));
        assert!(matches("user0000[0-4]", "user00003"));
        assert!(!matches("user0000[0-4]", "user00007"));
        assert!(matches("a`*b", "a*b"));
        assert!(!matches("a`*b", "axb"));
        assert!(!matches("Get-M", "Get-Mailbox"));
        assert!(matches("*a*b*", "xxaxxbxx"));
    }

    #[test]
    fn pathological_patterns_are_linear_not_exponential() {
        let pattern = format!("{}b", "*a".repeat(40));
        let text = "a".repeat(5_000);
        assert!(!matches(&pattern, &text));
        assert!(matches(&pattern, &format!("{text}b")));
    }
}
