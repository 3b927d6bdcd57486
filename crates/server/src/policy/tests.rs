//! Policy parsing and evaluation, table-driven, on AWS's documented examples and evaluation rules.

use super::*;

use Decision::{Allow, Deny, NotApplicable};

/// Condition keys and values of one request.
type Pairs<'a> = &'a [(&'a str, &'a str)];
/// A `Condition` object, the request's condition keys, and whether the condition holds.
type ConditionCase<'a> = (&'a str, Pairs<'a>, bool);

const BUCKET: &str = "bucket";
const OBJECT: &str = "arn:aws:s3:::bucket/home/alice/notes.txt";

fn context(pairs: Pairs) -> ConditionContext {
    let mut context = ConditionContext::default();
    for (key, value) in pairs {
        context.insert(key, *value);
    }
    context
}

fn parse(kind: &PolicyKind, text: &str) -> Policy {
    Policy::parse(text, kind).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// Evaluates `policy` for one request.
fn decide(policy: &Policy, principal: &str, action: &str, resource: &str, pairs: Pairs) -> Decision {
    let resources = [resource.to_owned()];
    let context = context(pairs);
    policy.evaluate(&Request { principal, action, resources: &resources, context: &context })
}

/// An identity policy with these statements (a JSON array's contents), Version 2012-10-17.
fn identity(statements: &str) -> Policy {
    parse(&PolicyKind::Identity, &format!(r#"{{"Version":"2012-10-17","Statement":[{statements}]}}"#))
}

/// An identity policy allowing everything under `condition` (a JSON object).
fn allow_if(condition: &str) -> Policy {
    identity(&format!(r#"{{"Effect":"Allow","Action":"*","Resource":"*","Condition":{condition}}}"#))
}

fn bucket_policy(statements: &str) -> Policy {
    parse(&PolicyKind::Bucket(BUCKET.into()), &format!(r#"{{"Version":"2012-10-17","Statement":[{statements}]}}"#))
}

#[test]
fn statements_combine_deny_over_allow_over_nothing() {
    let allow_get = r#"{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::bucket/*"}"#;
    let deny_secret = r#"{"Effect":"Deny","Action":"s3:*","Resource":"arn:aws:s3:::bucket/secret/*"}"#;
    let allow_all = r#"{"Effect":"Allow","Action":"*","Resource":"*"}"#;
    let policy = identity(&[allow_get, deny_secret, allow_all].join(","));
    let only_get = identity(allow_get);
    #[rustfmt::skip]
    let cases: &[(&Policy, &str, &str, Decision)] = &[
        (&only_get, "s3:GetObject", "arn:aws:s3:::bucket/a", Allow),
        (&only_get, "s3:PutObject", "arn:aws:s3:::bucket/a", NotApplicable),
        (&only_get, "s3:GetObject", "arn:aws:s3:::other/a", NotApplicable),
        (&only_get, "s3:GetObject", "arn:aws:s3:::bucket", NotApplicable),
        (&policy, "s3:GetObject", "arn:aws:s3:::bucket/secret/x", Deny),
        (&policy, "s3:PutObject", "arn:aws:s3:::bucket/public/x", Allow),
        (&policy, "kms:Decrypt", "arn:aws:kms:::key/k1", Allow),
    ];
    for (index, &(policy, action, resource, expected)) in cases.iter().enumerate() {
        assert_eq!(decide(policy, "alice", action, resource, &[]), expected, "case {index}: {action} {resource}");
    }
}

#[test]
fn actions_and_resources_match_with_wildcards_and_negation() {
    #[rustfmt::skip]
    let cases: &[(&str, &str, &str, Decision)] = &[
        // Actions: wildcards, case-insensitive as in AWS.
        (r#""Action":"s3:Get*","Resource":"*""#, "s3:GetObject", OBJECT, Allow),
        (r#""Action":"s3:Get*","Resource":"*""#, "s3:GetObjectAcl", OBJECT, Allow),
        (r#""Action":"s3:Get*","Resource":"*""#, "s3:PutObject", OBJECT, NotApplicable),
        (r#""Action":"S3:getobject","Resource":"*""#, "s3:GetObject", OBJECT, Allow),
        (r#""Action":"s3:?etObject","Resource":"*""#, "s3:GetObject", OBJECT, Allow),
        (r#""Action":["s3:PutObject","s3:GetObject"],"Resource":"*""#, "s3:GetObject", OBJECT, Allow),
        (r#""Action":"s3:*","Resource":"*""#, "kms:Decrypt", OBJECT, NotApplicable),
        (r#""Action":"kms:*","Resource":"*""#, "kms:Decrypt", OBJECT, Allow),
        // NotAction: everything not listed.
        (r#""NotAction":"s3:DeleteObject","Resource":"*""#, "s3:GetObject", OBJECT, Allow),
        (r#""NotAction":"s3:DeleteObject","Resource":"*""#, "s3:DeleteObject", OBJECT, NotApplicable),
        (r#""NotAction":"s3:Delete*","Resource":"*""#, "s3:DeleteObjectTagging", OBJECT, NotApplicable),
        (r#""NotAction":"*","Resource":"*""#, "s3:GetObject", OBJECT, NotApplicable),
        // Resources: wildcards, case-sensitive.
        (r#""Action":"*","Resource":"arn:aws:s3:::bucket/home/*""#, "s3:GetObject", OBJECT, Allow),
        (r#""Action":"*","Resource":"arn:aws:s3:::bucket/Home/*""#, "s3:GetObject", OBJECT, NotApplicable),
        (r#""Action":"*","Resource":"arn:aws:s3:::bucket/home/alice/notes.???""#, "s3:GetObject", OBJECT, Allow),
        (r#""Action":"*","Resource":"arn:aws:s3:::bucket/home/alice/notes.??""#, "s3:GetObject", OBJECT, NotApplicable),
        (r#""Action":"*","Resource":"arn:aws:s3:::*/home/*/notes.txt""#, "s3:GetObject", OBJECT, Allow),
        (r#""Action":"*","Resource":["arn:aws:s3:::x","arn:aws:s3:::bucket/*"]"#, "s3:GetObject", OBJECT, Allow),
        // Policy variables (Version 2012-10-17).
        (r#""Action":"*","Resource":"arn:aws:s3:::bucket/home/${aws:username}/*""#, "s3:GetObject", OBJECT, Allow),
        (r#""Action":"*","Resource":"arn:aws:s3:::bucket/home/${aws:username}""#, "s3:GetObject", OBJECT, NotApplicable),
        // NotResource: everything not listed.
        (r#""Action":"*","NotResource":"arn:aws:s3:::bucket/home/*""#, "s3:GetObject", OBJECT, NotApplicable),
        (r#""Action":"*","NotResource":"arn:aws:s3:::other/*""#, "s3:GetObject", OBJECT, Allow),
        (r#""Action":"*","NotResource":"*""#, "s3:GetObject", OBJECT, NotApplicable),
    ];
    for (index, &(elements, action, resource, expected)) in cases.iter().enumerate() {
        let policy = identity(&format!(r#"{{"Effect":"Allow",{elements}}}"#));
        assert_eq!(decide(&policy, "alice", action, resource, &[]), expected, "case {index}: {elements}");
    }
}

#[test]
fn username_variable_depends_on_the_caller_and_version() {
    let statement = r#"{"Effect":"Allow","Action":"*","Resource":"arn:aws:s3:::bucket/home/${aws:username}/*"}"#;
    let current = identity(statement);
    let old = parse(&PolicyKind::Identity, &format!(r#"{{"Version":"2008-10-17","Statement":{statement}}}"#));
    let unversioned = parse(&PolicyKind::Identity, &format!(r#"{{"Statement":{statement}}}"#));
    let literal = "arn:aws:s3:::bucket/home/${aws:username}/x";
    #[rustfmt::skip]
    let cases: &[(&Policy, &str, &str, Decision)] = &[
        (&current, "alice", OBJECT, Allow),
        (&current, "bob", OBJECT, NotApplicable),
        (&current, "", "arn:aws:s3:::bucket/home//x", NotApplicable),
        (&old, "alice", OBJECT, NotApplicable),
        (&old, "alice", literal, Allow),
        (&unversioned, "alice", OBJECT, NotApplicable),
        (&unversioned, "alice", literal, Allow),
    ];
    for (index, &(policy, principal, resource, expected)) in cases.iter().enumerate() {
        assert_eq!(decide(policy, principal, "s3:GetObject", resource, &[]), expected, "case {index}");
    }
}

#[test]
fn resource_matches_any_of_the_request_spellings() {
    let policy = identity(r#"{"Effect":"Allow","Action":"kms:*","Resource":"arn:aws:kms:::key/k1"}"#);
    let deny_other = identity(r#"{"Effect":"Deny","Action":"kms:*","NotResource":"arn:aws:kms:::key/k1"}"#);
    let context = ConditionContext::default();
    let evaluate = |policy: &Policy, resources: &[String]| {
        policy.evaluate(&Request { principal: "alice", action: "kms:Decrypt", resources, context: &context })
    };
    let both = ["arn:aws:kms:us-east-1:000:key/k1".to_owned(), "arn:aws:kms:::key/k1".to_owned()];
    let other = ["arn:aws:kms:us-east-1:000:key/k2".to_owned(), "arn:aws:kms:::key/k2".to_owned()];
    assert_eq!(evaluate(&policy, &both), Allow);
    assert_eq!(evaluate(&policy, &other), NotApplicable);
    assert_eq!(evaluate(&policy, &[]), NotApplicable);
    assert_eq!(evaluate(&deny_other, &both), NotApplicable);
    assert_eq!(evaluate(&deny_other, &other), Deny);
    // `*` applies even when the request names no resource (ListBuckets).
    assert_eq!(evaluate(&identity(r#"{"Effect":"Allow","Action":"*","Resource":"*"}"#), &[]), Allow);
}

#[test]
fn condition_operators() {
    let now = "2026-06-01T12:00:00Z";
    #[rustfmt::skip]
    let cases: &[ConditionCase] = &[
        // String: exact, negated, case, wildcards, several policy values ORed, variables.
        (r#"{"StringEquals":{"s3:prefix":"home/"}}"#, &[("s3:prefix", "home/")], true),
        (r#"{"StringEquals":{"s3:prefix":"home/"}}"#, &[("s3:prefix", "Home/")], false),
        (r#"{"StringEquals":{"s3:prefix":"home/*"}}"#, &[("s3:prefix", "home/x")], false),
        (r#"{"StringEquals":{"s3:prefix":["a","home/"]}}"#, &[("s3:prefix", "home/")], true),
        (r#"{"StringEquals":{"S3:Prefix":"home/"}}"#, &[("s3:PREFIX", "home/")], true),
        (r#"{"StringNotEquals":{"s3:prefix":"home/"}}"#, &[("s3:prefix", "home/")], false),
        (r#"{"StringNotEquals":{"s3:prefix":"home/"}}"#, &[("s3:prefix", "other/")], true),
        (r#"{"StringNotEquals":{"s3:prefix":["a","b"]}}"#, &[("s3:prefix", "b")], false),
        (r#"{"StringEqualsIgnoreCase":{"s3:prefix":"HOME/"}}"#, &[("s3:prefix", "home/")], true),
        (r#"{"StringEqualsIgnoreCase":{"s3:prefix":"HOME/"}}"#, &[("s3:prefix", "house/")], false),
        (r#"{"StringNotEqualsIgnoreCase":{"s3:prefix":"HOME/"}}"#, &[("s3:prefix", "home/")], false),
        (r#"{"StringNotEqualsIgnoreCase":{"s3:prefix":"HOME/"}}"#, &[("s3:prefix", "house/")], true),
        (r#"{"StringLike":{"s3:prefix":"home/*"}}"#, &[("s3:prefix", "home/alice/")], true),
        (r#"{"StringLike":{"s3:prefix":"home/*"}}"#, &[("s3:prefix", "Home/alice/")], false),
        (r#"{"StringLike":{"s3:prefix":"home/${aws:username}/*"}}"#, &[("s3:prefix", "home/alice/x")], true),
        (r#"{"StringLike":{"s3:prefix":"home/${aws:username}/*"}}"#, &[("s3:prefix", "home/bob/x")], false),
        (r#"{"StringNotLike":{"s3:prefix":"home/*"}}"#, &[("s3:prefix", "home/alice/")], false),
        (r#"{"StringNotLike":{"s3:prefix":"home/*"}}"#, &[("s3:prefix", "tmp/")], true),
        // Numeric.
        (r#"{"NumericLessThanEquals":{"s3:max-keys":"10"}}"#, &[("s3:max-keys", "10")], true),
        (r#"{"NumericLessThanEquals":{"s3:max-keys":"10"}}"#, &[("s3:max-keys", "11")], false),
        (r#"{"NumericLessThan":{"s3:max-keys":"10"}}"#, &[("s3:max-keys", "10")], false),
        (r#"{"NumericLessThan":{"s3:max-keys":"10"}}"#, &[("s3:max-keys", "9.5")], true),
        (r#"{"NumericGreaterThan":{"s3:max-keys":"10"}}"#, &[("s3:max-keys", "10")], false),
        (r#"{"NumericGreaterThanEquals":{"s3:max-keys":"10"}}"#, &[("s3:max-keys", "10")], true),
        (r#"{"NumericEquals":{"s3:max-keys":10}}"#, &[("s3:max-keys", "10.0")], true),
        (r#"{"NumericEquals":{"s3:max-keys":"10"}}"#, &[("s3:max-keys", "ten")], false),
        (r#"{"NumericNotEquals":{"s3:max-keys":"10"}}"#, &[("s3:max-keys", "10")], false),
        (r#"{"NumericNotEquals":{"s3:max-keys":"10"}}"#, &[("s3:max-keys", "11")], true),
        // Date: RFC 3339 and epoch seconds, on either side.
        (r#"{"DateLessThan":{"aws:CurrentTime":"2026-12-31T00:00:00Z"}}"#, &[("aws:CurrentTime", now)], true),
        (r#"{"DateLessThan":{"aws:CurrentTime":"2026-01-01T00:00:00Z"}}"#, &[("aws:CurrentTime", now)], false),
        (r#"{"DateGreaterThan":{"aws:CurrentTime":"2026-01-01T00:00:00+02:00"}}"#, &[("aws:CurrentTime", now)], true),
        (r#"{"DateEquals":{"aws:CurrentTime":1780315200}}"#, &[("aws:CurrentTime", now)], true),
        (r#"{"DateEquals":{"aws:EpochTime":"2026-06-01T12:00:00Z"}}"#, &[("aws:EpochTime", "1780315200")], true),
        (r#"{"DateNotEquals":{"aws:CurrentTime":"2026-06-01T12:00:00Z"}}"#, &[("aws:CurrentTime", now)], false),
        (r#"{"DateLessThanEquals":{"aws:CurrentTime":"2026-06-01T12:00:00Z"}}"#, &[("aws:CurrentTime", now)], true),
        (r#"{"DateGreaterThanEquals":{"aws:CurrentTime":"2026-06-01T12:00:01Z"}}"#, &[("aws:CurrentTime", now)], false),
        // Bool, with JSON booleans read as strings.
        (r#"{"Bool":{"aws:SecureTransport":"true"}}"#, &[("aws:SecureTransport", "true")], true),
        (r#"{"Bool":{"aws:SecureTransport":true}}"#, &[("aws:SecureTransport", "TRUE")], true),
        (r#"{"Bool":{"aws:SecureTransport":false}}"#, &[("aws:SecureTransport", "true")], false),
        (r#"{"Bool":{"aws:SecureTransport":"true"}}"#, &[("aws:SecureTransport", "yes")], false),
        // IP addresses: CIDR v4 and v6, single addresses, IPv4-mapped clients.
        (r#"{"IpAddress":{"aws:SourceIp":"203.0.113.0/24"}}"#, &[("aws:SourceIp", "203.0.113.77")], true),
        (r#"{"IpAddress":{"aws:SourceIp":"203.0.113.0/24"}}"#, &[("aws:SourceIp", "203.0.114.1")], false),
        (r#"{"IpAddress":{"aws:SourceIp":"203.0.113.9/24"}}"#, &[("aws:SourceIp", "203.0.113.1")], true),
        (r#"{"IpAddress":{"aws:SourceIp":"203.0.113.5"}}"#, &[("aws:SourceIp", "203.0.113.5")], true),
        (r#"{"IpAddress":{"aws:SourceIp":"203.0.113.5"}}"#, &[("aws:SourceIp", "203.0.113.6")], false),
        (r#"{"IpAddress":{"aws:SourceIp":"0.0.0.0/0"}}"#, &[("aws:SourceIp", "192.0.2.1")], true),
        (r#"{"IpAddress":{"aws:SourceIp":"0.0.0.0/0"}}"#, &[("aws:SourceIp", "2001:db8::1")], false),
        (r#"{"IpAddress":{"aws:SourceIp":"203.0.113.0/24"}}"#, &[("aws:SourceIp", "::ffff:203.0.113.8")], true),
        (r#"{"IpAddress":{"aws:SourceIp":"2001:db8::/32"}}"#, &[("aws:SourceIp", "2001:db8:1::5")], true),
        (r#"{"IpAddress":{"aws:SourceIp":"2001:db8::/32"}}"#, &[("aws:SourceIp", "2001:db9::5")], false),
        (r#"{"IpAddress":{"aws:SourceIp":["192.0.2.0/24","2001:db8::/32"]}}"#, &[("aws:SourceIp", "2001:db8::9")], true),
        (r#"{"NotIpAddress":{"aws:SourceIp":"203.0.113.0/24"}}"#, &[("aws:SourceIp", "203.0.113.77")], false),
        (r#"{"NotIpAddress":{"aws:SourceIp":"203.0.113.0/24"}}"#, &[("aws:SourceIp", "198.51.100.1")], true),
        (r#"{"IpAddress":{"aws:SourceIp":"203.0.113.0/24"}}"#, &[("aws:SourceIp", "not-an-ip")], false),
        // ARN: six components matched separately, `*` within one component.
        (r#"{"ArnLike":{"aws:SourceArn":"arn:aws:s3:::bucket/*"}}"#, &[("aws:SourceArn", "arn:aws:s3:::bucket/a:b")], true),
        (r#"{"ArnLike":{"aws:SourceArn":"arn:aws:iam::*:user/alice"}}"#, &[("aws:SourceArn", "arn:aws:iam::123:user/alice")], true),
        (r#"{"ArnLike":{"aws:SourceArn":"arn:aws:iam::*:user/alice"}}"#, &[("aws:SourceArn", "arn:aws:iam::1:2:user/alice")], false),
        (r#"{"ArnLike":{"aws:SourceArn":"arn:aws:*::1:user/a"}}"#, &[("aws:SourceArn", "arn:aws:iam:x::1:user/a")], false),
        (r#"{"ArnLike":{"aws:SourceArn":"arn:aws:*::1:user/a"}}"#, &[("aws:SourceArn", "arn:aws:iam:::1:user/a")], false),
        (r#"{"ArnLike":{"aws:SourceArn":"arn:aws:*::1:user/a"}}"#, &[("aws:SourceArn", "arn:aws:iam::1:user/a")], true),
        (r#"{"ArnEquals":{"aws:SourceArn":"arn:aws:kms:*:*:key/k1"}}"#, &[("aws:SourceArn", "arn:aws:kms:eu:9:key/k1")], true),
        (r#"{"ArnEquals":{"aws:SourceArn":"arn:aws:kms:*:*:key/k1"}}"#, &[("aws:SourceArn", "arn:aws:kms:eu:9:key/k2")], false),
        (r#"{"ArnEquals":{"aws:SourceArn":"arn:aws:kms:*:*:key/k1"}}"#, &[("aws:SourceArn", "key/k1")], false),
        (r#"{"ArnNotLike":{"aws:SourceArn":"arn:aws:s3:::bucket/*"}}"#, &[("aws:SourceArn", "arn:aws:s3:::bucket/a")], false),
        (r#"{"ArnNotEquals":{"aws:SourceArn":"arn:aws:s3:::bucket/*"}}"#, &[("aws:SourceArn", "arn:aws:s3:::other/a")], true),
        (r#"{"ArnLike":{"aws:SourceArn":"arn:aws:iam::*:user/${aws:username}"}}"#, &[("aws:SourceArn", "arn:aws:iam::1:user/alice")], true),
        // Several keys and several operators: all must hold.
        (r#"{"StringEquals":{"a":"1","b":"2"}}"#, &[("a", "1"), ("b", "2")], true),
        (r#"{"StringEquals":{"a":"1","b":"2"}}"#, &[("a", "1"), ("b", "3")], false),
        (r#"{"StringEquals":{"a":"1"},"Bool":{"b":"true"}}"#, &[("a", "1"), ("b", "true")], true),
        (r#"{"StringEquals":{"a":"1"},"Bool":{"b":"true"}}"#, &[("a", "1"), ("b", "false")], false),
    ];
    check_conditions(cases);
}

#[test]
fn missing_keys_and_exists_checks() {
    #[rustfmt::skip]
    let cases: &[ConditionCase] = &[
        // A missing key fails positive operators and satisfies negated ones.
        (r#"{"StringEquals":{"s3:prefix":"home/"}}"#, &[], false),
        (r#"{"StringLike":{"s3:prefix":"*"}}"#, &[], false),
        (r#"{"NumericLessThan":{"s3:max-keys":"10"}}"#, &[], false),
        (r#"{"DateLessThan":{"aws:CurrentTime":"2030-01-01T00:00:00Z"}}"#, &[], false),
        (r#"{"Bool":{"aws:SecureTransport":"false"}}"#, &[], false),
        (r#"{"IpAddress":{"aws:SourceIp":"0.0.0.0/0"}}"#, &[], false),
        (r#"{"ArnLike":{"aws:SourceArn":"arn:*:*:*:*:*"}}"#, &[], false),
        (r#"{"StringNotEquals":{"s3:prefix":"home/"}}"#, &[], true),
        (r#"{"StringNotEqualsIgnoreCase":{"s3:prefix":"home/"}}"#, &[], true),
        (r#"{"StringNotLike":{"s3:prefix":"home/*"}}"#, &[], true),
        (r#"{"NumericNotEquals":{"s3:max-keys":"10"}}"#, &[], true),
        (r#"{"DateNotEquals":{"aws:CurrentTime":"2030-01-01T00:00:00Z"}}"#, &[], true),
        (r#"{"NotIpAddress":{"aws:SourceIp":"203.0.113.0/24"}}"#, &[], true),
        (r#"{"ArnNotEquals":{"aws:SourceArn":"arn:aws:s3:::b"}}"#, &[], true),
        (r#"{"ArnNotLike":{"aws:SourceArn":"arn:aws:s3:::b"}}"#, &[], true),
        // IfExists: a missing key passes; a present key is tested as usual.
        (r#"{"StringEqualsIfExists":{"s3:prefix":"home/"}}"#, &[], true),
        (r#"{"StringEqualsIfExists":{"s3:prefix":"home/"}}"#, &[("s3:prefix", "home/")], true),
        (r#"{"StringEqualsIfExists":{"s3:prefix":"home/"}}"#, &[("s3:prefix", "tmp/")], false),
        (r#"{"NumericLessThanIfExists":{"s3:max-keys":"10"}}"#, &[("s3:max-keys", "20")], false),
        (r#"{"DateLessThanIfExists":{"aws:CurrentTime":"2030-01-01T00:00:00Z"}}"#, &[], true),
        (r#"{"BoolIfExists":{"aws:SecureTransport":"true"}}"#, &[("aws:SecureTransport", "false")], false),
        (r#"{"IpAddressIfExists":{"aws:SourceIp":"10.0.0.0/8"}}"#, &[], true),
        (r#"{"ArnLikeIfExists":{"aws:SourceArn":"arn:*:*:*:*:*"}}"#, &[], true),
        (r#"{"StringNotLikeIfExists":{"s3:prefix":"home/*"}}"#, &[("s3:prefix", "home/x")], false),
        // Null: true asks for a missing key, false for a present one.
        (r#"{"Null":{"s3:x-amz-server-side-encryption":"true"}}"#, &[], true),
        (r#"{"Null":{"s3:x-amz-server-side-encryption":"true"}}"#, &[("s3:x-amz-server-side-encryption", "AES256")], false),
        (r#"{"Null":{"s3:x-amz-server-side-encryption":false}}"#, &[], false),
        (r#"{"Null":{"s3:x-amz-server-side-encryption":"false"}}"#, &[("s3:x-amz-server-side-encryption", "AES256")], true),
    ];
    check_conditions(cases);
}

#[test]
fn multi_valued_keys_and_set_qualifiers() {
    let tags: Pairs = &[("aws:TagKeys", "project"), ("aws:TagKeys", "owner")];
    let one_tag: Pairs = &[("aws:TagKeys", "project")];
    #[rustfmt::skip]
    let cases: &[ConditionCase] = &[
        // ForAllValues: every request value is among the policy values; true for a missing key.
        (r#"{"ForAllValues:StringEquals":{"aws:TagKeys":["project","owner","cost"]}}"#, tags, true),
        (r#"{"ForAllValues:StringEquals":{"aws:TagKeys":["project","cost"]}}"#, tags, false),
        (r#"{"ForAllValues:StringEquals":{"aws:TagKeys":["project"]}}"#, &[], true),
        (r#"{"ForAllValues:StringLike":{"aws:TagKeys":"*o*"}}"#, tags, true),
        (r#"{"ForAllValues:StringNotEquals":{"aws:TagKeys":["secret"]}}"#, tags, true),
        (r#"{"ForAllValues:StringNotEquals":{"aws:TagKeys":["owner"]}}"#, tags, false),
        // ForAnyValue: at least one request value is among them; false for a missing key.
        (r#"{"ForAnyValue:StringEquals":{"aws:TagKeys":["owner","cost"]}}"#, tags, true),
        (r#"{"ForAnyValue:StringEquals":{"aws:TagKeys":["cost"]}}"#, tags, false),
        (r#"{"ForAnyValue:StringEquals":{"aws:TagKeys":["cost"]}}"#, &[], false),
        (r#"{"ForAnyValue:StringNotEquals":{"aws:TagKeys":["owner"]}}"#, tags, true),
        (r#"{"ForAnyValue:StringNotEquals":{"aws:TagKeys":["project"]}}"#, one_tag, false),
        (r#"{"ForAnyValue:StringNotEquals":{"aws:TagKeys":["project"]}}"#, &[], false),
        (r#"{"ForAnyValue:StringEqualsIfExists":{"aws:TagKeys":["cost"]}}"#, &[], true),
        (r#"{"ForAnyValue:NumericGreaterThan":{"n":"5"}}"#, &[("n", "1"), ("n", "9")], true),
        (r#"{"ForAllValues:NumericGreaterThan":{"n":"5"}}"#, &[("n", "1"), ("n", "9")], false),
        // A plain operator on a multi-valued key: some value matches, or (negated) none does.
        (r#"{"StringEquals":{"aws:TagKeys":"owner"}}"#, tags, true),
        (r#"{"StringEquals":{"aws:TagKeys":"cost"}}"#, tags, false),
        (r#"{"StringNotEquals":{"aws:TagKeys":"owner"}}"#, tags, false),
        (r#"{"StringNotEquals":{"aws:TagKeys":"cost"}}"#, tags, true),
    ];
    check_conditions(cases);
}

fn check_conditions(cases: &[ConditionCase]) {
    for (index, &(condition, pairs, holds)) in cases.iter().enumerate() {
        let expected = if holds { Allow } else { NotApplicable };
        let decision = decide(&allow_if(condition), "alice", "s3:ListBucket", "arn:aws:s3:::bucket", pairs);
        assert_eq!(decision, expected, "case {index}: {condition} with {pairs:?}");
    }
}

#[test]
fn classic_bucket_policies() {
    const SSE: &str = "s3:x-amz-server-side-encryption";
    const SSE_KEY: &str = "s3:x-amz-server-side-encryption-aws-kms-key-id";
    const SSE_C: &str = "s3:x-amz-server-side-encryption-customer-algorithm";
    let allow_everyone = r#"{"Effect":"Allow","Principal":"*","Action":"s3:*","Resource":"arn:aws:s3:::bucket/*"}"#;
    let require_kms = bucket_policy(
        &[
            allow_everyone,
            r#"{"Sid":"DenyUnencrypted","Effect":"Deny","Principal":"*",
        "Action":"s3:PutObject","Resource":"arn:aws:s3:::bucket/*",
        "Condition":{"StringNotEquals":{"s3:x-amz-server-side-encryption":"aws:kms"}}}"#,
        ]
        .join(","),
    );
    let require_key = bucket_policy(
        &[
            allow_everyone,
            r#"{"Effect":"Deny","Principal":"*","Action":"s3:PutObject",
        "Resource":"arn:aws:s3:::bucket/*",
        "Condition":{"StringNotEquals":{"s3:x-amz-server-side-encryption-aws-kms-key-id":"arn:aws:kms:::key/K"}}}"#,
        ]
        .join(","),
    );
    let require_sse_c = bucket_policy(&[allow_everyone, r#"{"Effect":"Deny","Principal":"*","Action":"s3:PutObject",
        "Resource":"arn:aws:s3:::bucket/*","Condition":{"Null":{"s3:x-amz-server-side-encryption-customer-algorithm":"true"}}},
        {"Effect":"Deny","Principal":"*","Action":"s3:PutObject","Resource":"arn:aws:s3:::bucket/*",
        "Condition":{"StringNotEquals":{"s3:x-amz-server-side-encryption-customer-algorithm":"AES256"}}}"#]
    .join(","));
    let allow_sse_c_only = bucket_policy(
        r#"{"Effect":"Allow","Principal":"*","Action":"s3:PutObject",
        "Resource":"arn:aws:s3:::bucket/*","Condition":{"Null":{"s3:x-amz-server-side-encryption-customer-algorithm":"false"}}}"#,
    );
    #[rustfmt::skip]
    let cases: &[(&Policy, &str, Pairs, Decision)] = &[
        (&require_kms, "s3:PutObject", &[(SSE, "aws:kms")], Allow),
        (&require_kms, "s3:PutObject", &[(SSE, "AES256")], Deny),
        (&require_kms, "s3:PutObject", &[], Deny),
        (&require_kms, "s3:GetObject", &[], Allow),
        (&require_key, "s3:PutObject", &[(SSE, "aws:kms"), (SSE_KEY, "arn:aws:kms:::key/K")], Allow),
        (&require_key, "s3:PutObject", &[(SSE, "aws:kms"), (SSE_KEY, "arn:aws:kms:::key/L")], Deny),
        (&require_key, "s3:PutObject", &[(SSE, "aws:kms")], Deny),
        (&require_sse_c, "s3:PutObject", &[(SSE_C, "AES256")], Allow),
        (&require_sse_c, "s3:PutObject", &[(SSE_C, "AES128")], Deny),
        (&require_sse_c, "s3:PutObject", &[], Deny),
        (&require_sse_c, "s3:GetObject", &[], Allow),
        (&allow_sse_c_only, "s3:PutObject", &[(SSE_C, "AES256")], Allow),
        (&allow_sse_c_only, "s3:PutObject", &[], NotApplicable),
    ];
    for (index, &(policy, action, pairs, expected)) in cases.iter().enumerate() {
        assert_eq!(decide(policy, "alice", action, OBJECT, pairs), expected, "case {index}: {action} {pairs:?}");
    }
}

#[test]
fn bucket_policy_principals() {
    let statement = |principal: &str| {
        bucket_policy(&format!(
            r#"{{"Effect":"Allow",{principal},"Action":"s3:GetObject","Resource":"arn:aws:s3:::bucket/*"}}"#
        ))
    };
    #[rustfmt::skip]
    let cases: &[(&str, &str, Decision)] = &[
        (r#""Principal":"*""#, "alice", Allow),
        (r#""Principal":"*""#, "", Allow),
        (r#""Principal":{"AWS":"*"}"#, "bob", Allow),
        (r#""Principal":{"AWS":"alice"}"#, "alice", Allow),
        (r#""Principal":{"AWS":"alice"}"#, "bob", NotApplicable),
        (r#""Principal":{"AWS":"alice"}"#, "", NotApplicable),
        (r#""Principal":{"AWS":"arn:aws:iam::123456789012:user/alice"}"#, "alice", Allow),
        (r#""Principal":{"AWS":"arn:aws:iam:::user/alice"}"#, "alice", Allow),
        (r#""Principal":{"AWS":"arn:aws:iam::1:user/team/alice"}"#, "alice", Allow),
        (r#""Principal":{"AWS":"arn:aws:iam::1:user/alice"}"#, "bob", NotApplicable),
        (r#""Principal":{"AWS":["bob","arn:aws:iam:::user/alice"]}"#, "alice", Allow),
        (r#""Principal":{"AWS":["bob","arn:aws:iam:::user/alice"]}"#, "bob", Allow),
        (r#""Principal":{"AWS":["bob","arn:aws:iam:::user/alice"]}"#, "carol", NotApplicable),
        (r#""Principal":{"AWS":"arn:aws:iam::123456789012:root"}"#, "alice", NotApplicable),
        (r#""Principal":{"Service":"s3.amazonaws.com"}"#, "alice", NotApplicable),
        (r#""Principal":{"CanonicalUser":"alice"}"#, "alice", NotApplicable),
        (r#""Principal":{"Federated":"alice"}"#, "alice", NotApplicable),
        (r#""Principal":{"Service":"s3.amazonaws.com","AWS":"alice"}"#, "alice", Allow),
        (r#""NotPrincipal":{"AWS":"alice"}"#, "alice", NotApplicable),
        (r#""NotPrincipal":{"AWS":"alice"}"#, "bob", Allow),
        (r#""NotPrincipal":{"AWS":"arn:aws:iam::1:user/alice"}"#, "alice", NotApplicable),
        (r#""NotPrincipal":"*""#, "alice", NotApplicable),
    ];
    for (index, &(principal, caller, expected)) in cases.iter().enumerate() {
        assert_eq!(
            decide(&statement(principal), caller, "s3:GetObject", OBJECT, &[]),
            expected,
            "case {index}: {principal}"
        );
    }
}

#[test]
fn json_numbers_and_booleans_in_conditions_read_as_strings() {
    let policy = allow_if(r#"{"NumericEquals":{"n":[1,2.5]},"Bool":{"b":true},"StringEquals":{"s":[7,false]}}"#);
    let decision = |pairs: Pairs| decide(&policy, "alice", "s3:GetObject", OBJECT, pairs);
    assert_eq!(decision(&[("n", "2.5"), ("b", "true"), ("s", "7")]), Allow);
    assert_eq!(decision(&[("n", "1"), ("b", "true"), ("s", "false")]), Allow);
    assert_eq!(decision(&[("n", "3"), ("b", "true"), ("s", "7")]), NotApplicable);
    assert_eq!(decision(&[("n", "1"), ("b", "true"), ("s", "8")]), NotApplicable);
}

#[test]
fn user_policy_admin_actions_are_iam_actions_on_users() {
    let policy = identity(r#"{"Effect":"Allow","Action":"iam:*UserPolicy","Resource":"arn:aws:iam:::user/team-*"}"#);
    assert_eq!(decide(&policy, "lead", "iam:PutUserPolicy", "arn:aws:iam:::user/team-bob", &[]), Allow);
    assert_eq!(decide(&policy, "lead", "iam:PutUserPolicy", "arn:aws:iam:::user/root", &[]), NotApplicable);
    assert_eq!(decide(&policy, "lead", "kms:RotateKey", "arn:aws:iam:::user/team-bob", &[]), NotApplicable);
}

#[test]
fn parse_refusals() {
    let bucket = PolicyKind::Bucket(BUCKET.into());
    let identity = PolicyKind::Identity;
    let allow = |elements: &str| format!(r#"{{"Version":"2012-10-17","Statement":{{"Effect":"Allow",{elements}}}}}"#);
    let any = r#""Action":"*","Resource":"*""#;
    let condition = |condition: &str| allow(&format!(r#"{any},"Condition":{condition}"#));
    let too_big = allow(&format!(r#"{any},"Sid":"{}""#, "x".repeat(document::MAX_POLICY_BYTES)));
    #[rustfmt::skip]
    let cases: Vec<(&PolicyKind, String, &str)> = vec![
        // Document shape.
        (&identity, too_big, "maximum size"),
        (&identity, "{".into(), "not valid JSON"),
        (&identity, "[]".into(), "must be a JSON object"),
        (&identity, r#"{"Version":"2012-10-17"}"#.into(), "Missing required field Statement"),
        (&identity, r#"{"Version":"2012-10-17","Statement":[]}"#.into(), "no statements"),
        (&identity, r#"{"Version":"2012-10-17","Statement":["x"]}"#.into(), "invalid Statement"),
        (&identity, r#"{"Version":"2012-10-18","Statement":{"Effect":"Allow","Action":"*","Resource":"*"}}"#.into(), "invalid Version"),
        (&identity, r#"{"Version":"2012-10-17","Policy":1,"Statement":{"Effect":"Allow","Action":"*","Resource":"*"}}"#.into(), "unknown field Policy"),
        (&identity, allow(&format!(r#"{any},"Conditions":{{}}"#)), "unknown field Conditions"),
        (&identity, allow(&format!(r#"{any},"Sid":1"#)), "invalid Sid"),
        (&identity, r#"{"Statement":{"Action":"*","Resource":"*"}}"#.into(), "Missing required field Effect"),
        (&identity, r#"{"Statement":{"Effect":"Maybe","Action":"*","Resource":"*"}}"#.into(), "invalid Effect"),
        // Actions.
        (&identity, allow(r#""Resource":"*""#), "Missing required field Action"),
        (&identity, allow(r#""Action":"*","NotAction":"s3:GetObject","Resource":"*""#), "both Action and NotAction"),
        (&identity, allow(r#""Action":"ec2:RunInstances","Resource":"*""#), "Policy has invalid action"),
        (&identity, allow(r#""Action":"GetObject","Resource":"*""#), "Policy has invalid action"),
        (&identity, allow(r#""Action":"s3:","Resource":"*""#), "Policy has invalid action"),
        (&identity, allow(r#""Action":"s3:Get Object","Resource":"*""#), "Policy has invalid action"),
        (&identity, allow(r#""Action":"s*:GetObject","Resource":"*""#), "Policy has invalid action"),
        (&identity, allow(r#""Action":[],"Resource":"*""#), "Policy has invalid action"),
        (&identity, allow(r#""Action":["s3:GetObject",1],"Resource":"*""#), "Policy has invalid action"),
        (&identity, allow(r#""NotAction":["s3:GetObject","ec2:*"],"Resource":"*""#), "Policy has invalid action"),
        // Resources.
        (&identity, allow(r#""Action":"*""#), "Missing required field Resource"),
        (&identity, allow(r#""Action":"*","Resource":"*","NotResource":"*""#), "both Resource and NotResource"),
        (&identity, allow(r#""Action":"*","Resource":"bucket/*""#), "Policy has invalid resource"),
        (&identity, allow(r#""Action":"*","Resource":"arn:aws:ec2:::instance/x""#), "Policy has invalid resource"),
        (&identity, allow(r#""Action":"*","Resource":"arn:aws:s3:::""#), "Policy has invalid resource"),
        (&bucket, allow(r#""Principal":"*","Action":"*","Resource":"*""#), "Policy has invalid resource"),
        (&bucket, allow(r#""Principal":"*","Action":"*","Resource":["*"]"#), "Policy has invalid resource"),
        (&bucket, allow(r#""Principal":"*","Action":"*","Resource":"arn:aws:s3:::other/*""#), "Policy has invalid resource"),
        (&bucket, allow(r#""Principal":"*","Action":"*","Resource":"arn:aws:s3:::bucket2""#), "Policy has invalid resource"),
        (&bucket, allow(r#""Principal":"*","Action":"*","Resource":"arn:aws:s3:::bucket*""#), "Policy has invalid resource"),
        (&bucket, allow(r#""Principal":"*","Action":"*","Resource":"arn:aws:s3:::*""#), "Policy has invalid resource"),
        (&bucket, allow(r#""Principal":"*","Action":"*","NotResource":"arn:aws:kms:::key/k""#), "Policy has invalid resource"),
        (&bucket, allow(r#""Principal":"*","Action":"*","Resource":["arn:aws:s3:::bucket","arn:aws:s3:::x/*"]"#), "Policy has invalid resource"),
        // Principals.
        (&bucket, allow(r#""Action":"*","Resource":"arn:aws:s3:::bucket/*""#), "Missing required field Principal"),
        (&identity, allow(&format!(r#""Principal":"*",{any}"#)), "prohibited field Principal"),
        (&identity, allow(&format!(r#""NotPrincipal":{{"AWS":"bob"}},{any}"#)), "prohibited field NotPrincipal"),
        (&bucket, allow(r#""Principal":"*","NotPrincipal":"*","Action":"*","Resource":"arn:aws:s3:::bucket""#), "both Principal and NotPrincipal"),
        (&bucket, allow(r#""Principal":"alice","Action":"*","Resource":"arn:aws:s3:::bucket""#), "Invalid principal"),
        (&bucket, allow(r#""Principal":{},"Action":"*","Resource":"arn:aws:s3:::bucket""#), "Invalid principal"),
        (&bucket, allow(r#""Principal":{"AWS":"al*"},"Action":"*","Resource":"arn:aws:s3:::bucket""#), "Invalid principal"),
        (&bucket, allow(r#""Principal":{"AWS":""},"Action":"*","Resource":"arn:aws:s3:::bucket""#), "Invalid principal"),
        (&bucket, allow(r#""Principal":{"AWS":"arn:aws:iam::1:user/"},"Action":"*","Resource":"arn:aws:s3:::bucket""#), "Invalid principal"),
        (&bucket, allow(r#""Principal":{"AWS":"arn:aws:sts::1:x"},"Action":"*","Resource":"arn:aws:s3:::bucket""#), "Invalid principal"),
        (&bucket, allow(r#""Principal":{"Group":"x"},"Action":"*","Resource":"arn:aws:s3:::bucket""#), "Invalid principal"),
        (&bucket, allow(r#""Principal":{"AWS":1},"Action":"*","Resource":"arn:aws:s3:::bucket""#), "Invalid principal"),
        // Conditions.
        (&identity, condition(r#"{"Foo":{"k":"v"}}"#), "Unknown condition operator Foo"),
        (&identity, condition(r#"{"stringequals":{"k":"v"}}"#), "Unknown condition operator stringequals"),
        (&identity, condition(r#"{"NullIfExists":{"k":"true"}}"#), "Unknown condition operator NullIfExists"),
        (&identity, condition(r#"{"ForAnyValue:Null":{"k":"true"}}"#), "Unknown condition operator ForAnyValue:Null"),
        (&identity, condition(r#"{"ForSomeValues:StringEquals":{"k":"v"}}"#), "Unknown condition operator"),
        (&identity, condition(r#"{"StringEquals":"v"}"#), "is not an object"),
        (&identity, condition(r#"{"StringEquals":{}}"#), "has no keys"),
        (&identity, condition(r#"{"StringEquals":{"k":[]}}"#), "has no values"),
        (&identity, condition(r#"{"StringEquals":{"k":null}}"#), "invalid value"),
        (&identity, condition(r#"{"StringEquals":{"k":{"x":"y"}}}"#), "invalid value"),
        (&identity, condition(r#""x""#), "invalid Condition"),
        (&identity, condition(r#"{"NumericLessThan":{"k":"ten"}}"#), "Invalid numeric value in condition operator NumericLessThan"),
        (&identity, condition(r#"{"NumericEquals":{"k":"NaN"}}"#), "Invalid numeric value"),
        (&identity, condition(r#"{"DateLessThan":{"k":"2026-13-01T00:00:00Z"}}"#), "Invalid date in condition operator DateLessThan"),
        (&identity, condition(r#"{"DateGreaterThanIfExists":{"k":"yesterday"}}"#), "Invalid date"),
        (&identity, condition(r#"{"Bool":{"k":"yes"}}"#), "Invalid boolean value in condition operator Bool"),
        (&identity, condition(r#"{"Null":{"k":"maybe"}}"#), "Invalid boolean value in condition operator Null"),
        (&identity, condition(r#"{"IpAddress":{"k":"10.0.0.0/33"}}"#), "Invalid IP address or CIDR in condition operator IpAddress"),
        (&identity, condition(r#"{"NotIpAddress":{"k":"2001:db8::/129"}}"#), "Invalid IP address or CIDR"),
        (&identity, condition(r#"{"IpAddress":{"k":"10.0.0/8"}}"#), "Invalid IP address or CIDR"),
        (&identity, condition(r#"{"IpAddress":{"k":"10.0.0.0/+8"}}"#), "Invalid IP address or CIDR"),
        (&identity, condition(r#"{"IpAddress":{"k":"10.0.0.0/"}}"#), "Invalid IP address or CIDR"),
        (&identity, condition(r#"{"ArnLike":{"k":"arn:aws:s3"}}"#), "Invalid ARN in condition operator ArnLike"),
        (&identity, condition(r#"{"ArnEquals":{"k":"*"}}"#), "Invalid ARN"),
    ];
    for (kind, text, expected) in &cases {
        match Policy::parse(text, kind) {
            Ok(_) => panic!("accepted: {text}"),
            Err(PolicyError(message)) => assert!(message.contains(expected), "{message:?} for {text}"),
        }
    }
}

#[test]
fn parse_accepts_the_documented_forms() {
    let bucket = PolicyKind::Bucket(BUCKET.into());
    #[rustfmt::skip]
    let cases: &[(&PolicyKind, &str)] = &[
        (&PolicyKind::Identity, r#"{"Statement":{"Effect":"Allow","Action":"*","Resource":"*"}}"#),
        (&PolicyKind::Identity, r#"{"Version":"2008-10-17","Id":"x","Statement":[{"Sid":"1","Effect":"Deny","NotAction":"S3:get*","NotResource":["arn:aws:s3:::b/*","arn:aws:kms:*"]}]}"#),
        (&PolicyKind::Identity, r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":["kms:Decrypt","s3:*"],"Resource":["*","arn:aws:kms:::key/k"]}}"#),
        (&bucket, r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":{"AWS":["alice","arn:aws:iam::1:root"]},"Action":"s3:*","Resource":["arn:aws:s3:::bucket","arn:aws:s3:::bucket/*"]}}"#),
        (&bucket, r#"{"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":"*","Action":"s3:*","Resource":"arn:aws:s3:::bucket/${aws:username}/*",
            "Condition":{"ForAllValues:StringLikeIfExists":{"k":"v*"},"DateLessThan":{"aws:CurrentTime":"2030-01-01T00:00:00.5+01:00","aws:EpochTime":1893456000},"IpAddress":{"aws:SourceIp":["::1","10.0.0.0/8"]},"Null":{"k2":true}}}}"#),
    ];
    for &(kind, text) in cases {
        let policy = parse(kind, text);
        assert_eq!(policy.text(), text);
    }
}

#[test]
fn decisions_join_deny_over_allow_over_nothing() {
    #[rustfmt::skip]
    let cases = [
        (Allow, Allow, Allow), (Allow, Deny, Deny), (Allow, NotApplicable, Allow),
        (Deny, Allow, Deny), (Deny, Deny, Deny), (Deny, NotApplicable, Deny),
        (NotApplicable, Allow, Allow), (NotApplicable, Deny, Deny), (NotApplicable, NotApplicable, NotApplicable),
    ];
    for (left, right, joined) in cases {
        assert_eq!(left.and(right), joined, "{left:?} and {right:?}");
    }
}

#[test]
fn condition_context_keys_ignore_case() {
    let context = context(&[("aws:SourceIp", "192.0.2.1"), ("AWS:SOURCEIP", "192.0.2.2")]);
    assert_eq!(context.get("aws:sourceip"), Some(&["192.0.2.1".to_owned(), "192.0.2.2".to_owned()][..]));
    assert_eq!(context.get("s3:prefix"), None);
}

#[test]
fn statement_count_and_clones() {
    let policy = identity(
        r#"{"Effect":"Allow","Action":"*","Resource":"*"},{"Effect":"Deny","Action":"s3:DeleteObject","Resource":"*"}"#,
    );
    let clone = policy.clone();
    assert_eq!(clone.statement_count(), 2);
    assert_eq!(decide(&clone, "alice", "s3:DeleteObject", OBJECT, &[]), Deny);
    assert_eq!(clone.text(), policy.text());
}
