//! The `Condition` element: AWS's condition operators (string, numeric, date, boolean, IP address, ARN, `Null`),
//! their `IfExists` forms and the `ForAnyValue:`/`ForAllValues:` set qualifiers, compiled once at parse time and
//! evaluated against a request's [`ConditionContext`](super::ConditionContext).

use std::net::IpAddr;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::pattern::{tokenize, Pattern, Syntax, Token};
use super::{fold_key, PolicyError, Request};

/// One condition key under one operator. A statement holds when all of its conditions hold.
#[derive(Clone, Debug)]
pub(super) struct Condition {
    /// Folded like [`ConditionContext`](super::ConditionContext) keys.
    key: String,
    check: Check,
}

#[derive(Clone, Debug)]
enum Check {
    /// `Null`: each value says whether the key must be missing (`true`) or present (`false`).
    Null(Vec<bool>),
    Compare(Comparison),
}

#[derive(Clone, Debug)]
struct Comparison {
    test: Test,
    /// The `Not` operators: a request value passes when it matches none of the policy values.
    negated: bool,
    set: SetQualifier,
    /// `…IfExists`: a missing key passes.
    if_exists: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SetQualifier {
    Single,
    ForAnyValue,
    ForAllValues,
}

/// The policy values of one condition, parsed for their operator family.
#[derive(Clone, Debug)]
enum Test {
    String(Vec<Pattern>),
    Numeric(Order, Vec<f64>),
    /// Nanoseconds since the Unix epoch.
    Date(Order, Vec<i128>),
    Bool(Vec<bool>),
    Ip(Vec<Cidr>),
    /// Six components each, matched separately (a `*` never spans a `:`).
    Arn(Vec<Vec<Pattern>>),
}

/// How a request value must compare with a policy value.
#[derive(Clone, Copy, Debug)]
enum Order {
    Equal,
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
}

#[derive(Clone, Copy, Debug)]
enum Family {
    String { wildcards: bool, ignore_case: bool },
    Numeric(Order),
    Date(Order),
    Bool,
    Ip,
    Arn,
    Null,
}

/// An address range, stored with its host bits cleared.
#[derive(Clone, Copy, Debug)]
struct Cidr {
    network: IpAddr,
    prefix: u8,
}

const ARN_COMPONENTS: usize = 6;

impl Condition {
    /// Compiles one `operator: { key: values }` entry (`values` not empty, which the document check ensures).
    /// `variables`: whether policy variables are expanded
    /// (Version 2012-10-17).
    pub fn new(operator: &str, key: &str, values: &[String], variables: bool) -> Result<Condition, PolicyError> {
        let unknown = || PolicyError(format!("Unknown condition operator {operator}"));
        let (set, rest) = if let Some(rest) = operator.strip_prefix("ForAnyValue:") {
            (SetQualifier::ForAnyValue, rest)
        } else if let Some(rest) = operator.strip_prefix("ForAllValues:") {
            (SetQualifier::ForAllValues, rest)
        } else {
            (SetQualifier::Single, operator)
        };
        let (if_exists, base) = match rest.strip_suffix("IfExists") {
            Some(base) => (true, base),
            None => (false, rest),
        };
        let (family, negated) = base_operator(base).ok_or_else(unknown)?;
        let test = match family {
            Family::Null => {
                if if_exists || set != SetQualifier::Single {
                    return Err(unknown());
                }
                let wants_missing = parse_values(values, parse_bool, "boolean value", operator)?;
                return Ok(Condition { key: fold_key(key), check: Check::Null(wants_missing) });
            }
            Family::String { wildcards, ignore_case } => {
                let syntax = Syntax { wildcards, variables };
                Test::String(values.iter().map(|value| Pattern::new(value, syntax, ignore_case)).collect())
            }
            Family::Numeric(order) => {
                Test::Numeric(order, parse_values(values, parse_number, "numeric value", operator)?)
            }
            Family::Date(order) => Test::Date(order, parse_values(values, parse_date, "date", operator)?),
            Family::Bool => Test::Bool(parse_values(values, parse_bool, "boolean value", operator)?),
            Family::Ip => Test::Ip(parse_values(values, parse_cidr, "IP address or CIDR", operator)?),
            Family::Arn => Test::Arn(parse_values(values, |value| arn_pattern(value, variables), "ARN", operator)?),
        };
        Ok(Condition { key: fold_key(key), check: Check::Compare(Comparison { test, negated, set, if_exists }) })
    }

    /// Whether this condition holds for `request`, with AWS's rules for missing keys and multi-valued keys.
    pub fn holds(&self, request: &Request<'_>) -> bool {
        let values = request.context.get_folded(&self.key).filter(|values| !values.is_empty());
        let comparison = match &self.check {
            Check::Null(wants_missing) => return wants_missing.contains(&values.is_none()),
            Check::Compare(comparison) => comparison,
        };
        let passes = |value: &String| comparison.test.matches(value, request) != comparison.negated;
        match values {
            None if comparison.if_exists => true,
            None => match comparison.set {
                SetQualifier::Single => comparison.negated,
                SetQualifier::ForAnyValue => false,
                SetQualifier::ForAllValues => true,
            },
            Some(values) => match comparison.set {
                // A plain operator on a multi-valued key: some value matches, or (negated) none does.
                SetQualifier::Single if !comparison.negated => values.iter().any(passes),
                SetQualifier::Single | SetQualifier::ForAllValues => values.iter().all(passes),
                SetQualifier::ForAnyValue => values.iter().any(passes),
            },
        }
    }
}

impl Test {
    /// Whether request value `value` matches any of the policy values. A value that does not parse for the
    /// operator family matches none.
    fn matches(&self, value: &str, request: &Request<'_>) -> bool {
        match self {
            Test::String(patterns) => patterns.iter().any(|pattern| pattern.matches(value, request)),
            Test::Numeric(order, wanted) => {
                parse_number(value).is_some_and(|value| wanted.iter().any(|wanted| order.holds(value, *wanted)))
            }
            Test::Date(order, wanted) => {
                parse_date(value).is_some_and(|value| wanted.iter().any(|wanted| order.holds(value, *wanted)))
            }
            Test::Bool(wanted) => parse_bool(value).is_some_and(|value| wanted.contains(&value)),
            Test::Ip(ranges) => {
                value.parse::<IpAddr>().is_ok_and(|address| ranges.iter().any(|range| range.contains(address)))
            }
            Test::Arn(patterns) => {
                let mut components = [""; ARN_COMPONENTS];
                let mut count = 0;
                for (slot, component) in components.iter_mut().zip(value.splitn(ARN_COMPONENTS, ':')) {
                    *slot = component;
                    count += 1;
                }
                count == ARN_COMPONENTS
                    && patterns.iter().any(|pattern| {
                        pattern.iter().zip(&components).all(|(part, component)| part.matches(component, request))
                    })
            }
        }
    }
}

impl Order {
    fn holds<T: PartialOrd>(self, request: T, policy: T) -> bool {
        match self {
            Order::Equal => request == policy,
            Order::Less => request < policy,
            Order::LessOrEqual => request <= policy,
            Order::Greater => request > policy,
            Order::GreaterOrEqual => request >= policy,
        }
    }
}

impl Cidr {
    fn contains(self, address: IpAddr) -> bool {
        // A dual-stack listener reports IPv4 clients as IPv4-mapped IPv6 addresses.
        let address = match address {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
            IpAddr::V4(_) => address,
        };
        mask(address, self.prefix) == Some(self.network)
    }
}

/// The operator family of a base operator name (no qualifier, no `IfExists`) and whether it is negated.
fn base_operator(name: &str) -> Option<(Family, bool)> {
    let exact = Family::String { wildcards: false, ignore_case: false };
    let ignore_case = Family::String { wildcards: false, ignore_case: true };
    let like = Family::String { wildcards: true, ignore_case: false };
    Some(match name {
        "StringEquals" => (exact, false),
        "StringNotEquals" => (exact, true),
        "StringEqualsIgnoreCase" => (ignore_case, false),
        "StringNotEqualsIgnoreCase" => (ignore_case, true),
        "StringLike" => (like, false),
        "StringNotLike" => (like, true),
        "NumericEquals" => (Family::Numeric(Order::Equal), false),
        "NumericNotEquals" => (Family::Numeric(Order::Equal), true),
        "NumericLessThan" => (Family::Numeric(Order::Less), false),
        "NumericLessThanEquals" => (Family::Numeric(Order::LessOrEqual), false),
        "NumericGreaterThan" => (Family::Numeric(Order::Greater), false),
        "NumericGreaterThanEquals" => (Family::Numeric(Order::GreaterOrEqual), false),
        "DateEquals" => (Family::Date(Order::Equal), false),
        "DateNotEquals" => (Family::Date(Order::Equal), true),
        "DateLessThan" => (Family::Date(Order::Less), false),
        "DateLessThanEquals" => (Family::Date(Order::LessOrEqual), false),
        "DateGreaterThan" => (Family::Date(Order::Greater), false),
        "DateGreaterThanEquals" => (Family::Date(Order::GreaterOrEqual), false),
        "Bool" => (Family::Bool, false),
        "IpAddress" => (Family::Ip, false),
        "NotIpAddress" => (Family::Ip, true),
        // AWS gives ArnEquals the same wildcard matching as ArnLike.
        "ArnEquals" | "ArnLike" => (Family::Arn, false),
        "ArnNotEquals" | "ArnNotLike" => (Family::Arn, true),
        "Null" => (Family::Null, false),
        _ => return None,
    })
}

/// Parses every policy value of one condition key, or names the operator whose value did not parse.
fn parse_values<T>(
    values: &[String],
    parse: impl Fn(&str) -> Option<T>,
    what: &str,
    operator: &str,
) -> Result<Vec<T>, PolicyError> {
    let invalid = || PolicyError(format!("Invalid {what} in condition operator {operator}"));
    values.iter().map(|value| parse(value).ok_or_else(invalid)).collect()
}

fn parse_number(text: &str) -> Option<f64> {
    text.parse().ok().filter(|number: &f64| number.is_finite())
}

/// RFC 3339 (`2026-01-31T12:00:00Z`) or whole seconds since the Unix epoch.
fn parse_date(text: &str) -> Option<i128> {
    if let Ok(seconds) = text.parse::<i64>() {
        return Some(i128::from(seconds) * 1_000_000_000);
    }
    OffsetDateTime::parse(text, &Rfc3339).ok().map(OffsetDateTime::unix_timestamp_nanos)
}

fn parse_bool(text: &str) -> Option<bool> {
    if text.eq_ignore_ascii_case("true") {
        Some(true)
    } else if text.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// `203.0.113.0/24`, `2001:db8::/32`, or a single address.
fn parse_cidr(text: &str) -> Option<Cidr> {
    let (address, prefix) = match text.split_once('/') {
        Some((address, prefix)) => (address.parse().ok()?, Some(prefix)),
        None => (text.parse().ok()?, None),
    };
    let bits = if matches!(address, IpAddr::V4(_)) { 32 } else { 128 };
    let prefix = match prefix {
        // `u8`'s parser accepts a leading `+`; a prefix length is digits only.
        Some(digits) if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) => return None,
        Some(digits) => digits.parse().ok().filter(|&prefix| prefix <= bits)?,
        None => bits,
    };
    Some(Cidr { network: mask(address, prefix)?, prefix })
}

/// `address` with all but its first `prefix` bits cleared; `None` if `prefix` is longer than the address.
fn mask(address: IpAddr, prefix: u8) -> Option<IpAddr> {
    match address {
        IpAddr::V4(v4) if prefix <= 32 => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            Some(IpAddr::V4((u32::from(v4) & mask).into()))
        }
        IpAddr::V6(v6) if prefix <= 128 => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            Some(IpAddr::V6((u128::from(v6) & mask).into()))
        }
        _ => None,
    }
}

/// Splits an ARN pattern into its six components (the last, the resource, may contain `:`), each a pattern.
fn arn_pattern(text: &str, variables: bool) -> Option<Vec<Pattern>> {
    let mut components: Vec<Vec<Token>> = vec![Vec::new()];
    for token in tokenize(text, Syntax { wildcards: true, variables }) {
        let Token::Literal(literal) = token else {
            components.last_mut()?.push(token);
            continue;
        };
        for (index, piece) in literal.split(':').enumerate() {
            if index > 0 && components.len() < ARN_COMPONENTS {
                components.push(Vec::new());
            } else if index > 0 {
                push_literal(components.last_mut()?, ":");
            }
            push_literal(components.last_mut()?, piece);
        }
    }
    if components.len() != ARN_COMPONENTS {
        return None;
    }
    Some(components.into_iter().map(|tokens| Pattern::from_tokens(tokens, false)).collect())
}

fn push_literal(tokens: &mut Vec<Token>, text: &str) {
    if text.is_empty() {
        return;
    }
    match tokens.last_mut() {
        Some(Token::Literal(literal)) => literal.push_str(text),
        _ => tokens.push(Token::Literal(text.to_owned())),
    }
}
