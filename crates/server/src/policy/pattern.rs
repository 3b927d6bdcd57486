//! Compiled policy strings: literal text, the `*` and `?` wildcards (where the element allows them) and policy
//! variables such as `${aws:username}`. Variables are resolved while matching and compared as literal text, so a
//! user name containing `*` never acts as a wildcard, and no substituted string is ever built.

use super::{fold_key, Request};

/// One piece of a compiled pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Token {
    Literal(String),
    /// `*`: any run of characters, including none.
    AnyRun,
    /// `?`: exactly one character.
    AnyChar,
    /// `${name}`, the name folded like condition keys.
    Variable(String),
}

/// What a policy element's strings may contain.
#[derive(Clone, Copy, Debug)]
pub(super) struct Syntax {
    pub wildcards: bool,
    /// Policy variables and the `${*}`, `${?}`, `${$}` escapes (Version 2012-10-17 only, as AWS).
    pub variables: bool,
}

/// A compiled pattern, matched against one request string.
#[derive(Clone, Debug)]
pub(super) struct Pattern {
    tokens: Vec<Token>,
    ignore_case: bool,
}

impl Pattern {
    pub fn new(text: &str, syntax: Syntax, ignore_case: bool) -> Pattern {
        Pattern::from_tokens(tokenize(text, syntax), ignore_case)
    }

    pub fn from_tokens(tokens: Vec<Token>, ignore_case: bool) -> Pattern {
        Pattern { tokens, ignore_case }
    }

    /// Whether `input` matches. A variable the request cannot resolve matches nothing (AWS: the element does not
    /// match).
    pub fn matches(&self, input: &str, request: &Request<'_>) -> bool {
        let tokens = &self.tokens;
        let (mut token, mut offset) = (0, 0);
        // After a `*`: the token following it and the input offset it currently resumes at. On a mismatch the `*`
        // swallows one more character and matching resumes from there; the segments between stars consume a
        // fixed amount of input, so retrying only the last `*` is enough.
        let mut last_star: Option<(usize, usize)> = None;
        loop {
            if let Some(current) = tokens.get(token) {
                let rest = &input[offset..];
                let consumed = match current {
                    Token::AnyRun => {
                        token += 1;
                        if token == tokens.len() {
                            return true;
                        }
                        last_star = Some((token, offset));
                        continue;
                    }
                    Token::AnyChar => rest.chars().next().map(char::len_utf8),
                    Token::Literal(text) => strip_prefix(rest, text, self.ignore_case),
                    Token::Variable(name) => match resolve(name, request) {
                        Some(value) => strip_prefix(rest, value, self.ignore_case),
                        None => return false,
                    },
                };
                if let Some(consumed) = consumed {
                    token += 1;
                    offset += consumed;
                    continue;
                }
            } else if offset == input.len() {
                return true;
            }
            let Some((after_star, resume)) = last_star else { return false };
            let Some(swallowed) = input[resume..].chars().next() else { return false };
            let resume = resume + swallowed.len_utf8();
            last_star = Some((after_star, resume));
            token = after_star;
            offset = resume;
        }
    }
}

/// Splits `text` into tokens. An unterminated `${` is literal text.
pub(super) fn tokenize(text: &str, syntax: Syntax) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut literal = String::new();
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if syntax.variables && rest.starts_with("${") {
            if let Some(end) = rest.find('}') {
                match &rest[2..end] {
                    "*" => literal.push('*'),
                    "?" => literal.push('?'),
                    "$" => literal.push('$'),
                    name => {
                        flush(&mut literal, &mut tokens);
                        tokens.push(Token::Variable(fold_key(name.trim())));
                    }
                }
                rest = &rest[end + 1..];
                continue;
            }
        }
        match c {
            '*' if syntax.wildcards => {
                flush(&mut literal, &mut tokens);
                if tokens.last() != Some(&Token::AnyRun) {
                    tokens.push(Token::AnyRun);
                }
            }
            '?' if syntax.wildcards => {
                flush(&mut literal, &mut tokens);
                tokens.push(Token::AnyChar);
            }
            _ => literal.push(c),
        }
        rest = &rest[c.len_utf8()..];
    }
    flush(&mut literal, &mut tokens);
    tokens
}

fn flush(literal: &mut String, tokens: &mut Vec<Token>) {
    if !literal.is_empty() {
        tokens.push(Token::Literal(std::mem::take(literal)));
    }
}

/// The value of policy variable `name` for `request`: `aws:username` is the caller (absent for anonymous
/// requests), any other name a single-valued condition key.
fn resolve<'a>(name: &str, request: &Request<'a>) -> Option<&'a str> {
    if name == "aws:username" {
        return Some(request.principal).filter(|principal| !principal.is_empty());
    }
    match request.context.get_folded(name)? {
        [value] => Some(value),
        _ => None,
    }
}

/// The length of the prefix of `input` equal to `prefix`, comparing lowercase forms when `ignore_case`.
fn strip_prefix(input: &str, prefix: &str, ignore_case: bool) -> Option<usize> {
    if !ignore_case {
        return input.starts_with(prefix).then_some(prefix.len());
    }
    let mut wanted = prefix.chars().flat_map(char::to_lowercase).peekable();
    let mut consumed = 0;
    for c in input.chars() {
        if wanted.peek().is_none() {
            return Some(consumed);
        }
        for lower in c.to_lowercase() {
            if wanted.next() != Some(lower) {
                return None;
            }
        }
        consumed += c.len_utf8();
    }
    wanted.peek().is_none().then_some(consumed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::ConditionContext;

    const GLOB: Syntax = Syntax { wildcards: true, variables: true };
    const PLAIN: Syntax = Syntax { wildcards: false, variables: true };
    const OLD: Syntax = Syntax { wildcards: true, variables: false };

    #[test]
    fn matching() {
        let mut context = ConditionContext::default();
        context.insert("s3:Prefix", "docs");
        context.insert("multi", "a");
        context.insert("multi", "b");
        let request = Request { principal: "alice", action: "s3:GetObject", resources: &[], context: &context };
        let anonymous = Request { principal: "", ..request };
        #[rustfmt::skip]
        let cases: &[(&str, Syntax, bool, &str, &Request, bool)] = &[
            ("*", GLOB, false, "", &request, true),
            ("*", GLOB, false, "anything", &request, true),
            ("a*c?b", GLOB, false, "acdcb", &request, false),
            ("*a*b*c*", GLOB, false, "xaybzc", &request, true),
            ("*abc???def", GLOB, false, "abcdefabc123def", &request, true),
            ("s3:Get*", GLOB, false, "s3:GetObject", &request, true),
            ("s3:Get*", GLOB, false, "s3:getobject", &request, false),
            ("s3:Get*", GLOB, true, "S3:GETOBJECT", &request, true),
            ("s3:Get*", GLOB, true, "s3:PutObject", &request, false),
            ("s3:?etObject", GLOB, false, "s3:GetObject", &request, true),
            ("s3:?etObject", GLOB, false, "s3:etObject", &request, false),
            ("caf?", GLOB, false, "café", &request, true),
            ("CAFÉ", PLAIN, true, "café", &request, true),
            ("a*", PLAIN, false, "abc", &request, false),
            ("a*", PLAIN, false, "a*", &request, true),
            ("home/${aws:username}/*", GLOB, false, "home/alice/x", &request, true),
            ("home/${aws:username}/*", GLOB, false, "home/bob/x", &request, false),
            ("home/${aws:username}/*", GLOB, false, "home//x", &anonymous, false),
            ("home/${AWS:UserName}", GLOB, false, "home/alice", &request, true),
            ("home/${aws:username}", OLD, false, "home/${aws:username}", &request, true),
            ("home/${aws:username}", OLD, false, "home/alice", &request, false),
            ("p/${s3:prefix}/*", GLOB, false, "p/docs/a", &request, true),
            ("p/${multi}", GLOB, false, "p/a", &request, false),
            ("p/${missing}", GLOB, false, "p/", &request, false),
            ("a${*}b", GLOB, false, "a*b", &request, true),
            ("a${*}b", GLOB, false, "axb", &request, false),
            ("a${?}${$}", GLOB, false, "a?$", &request, true),
            ("a${unterminated", GLOB, false, "a${unterminated", &request, true),
        ];
        for &(pattern, syntax, ignore_case, input, request, expected) in cases {
            let compiled = Pattern::new(pattern, syntax, ignore_case);
            assert_eq!(compiled.matches(input, request), expected, "{pattern:?} against {input:?}");
        }
    }

    #[test]
    fn variable_values_are_literal() {
        let context = ConditionContext::default();
        let request = Request { principal: "a*", action: "", resources: &[], context: &context };
        let pattern = Pattern::new("home/${aws:username}", GLOB, false);
        assert!(pattern.matches("home/a*", &request));
        assert!(!pattern.matches("home/abc", &request));
    }
}
