//! IAM-style policies in AWS's JSON grammar, evaluated the AWS way: an explicit `Deny` wins, then an `Allow`,
//! otherwise nothing applies (the caller decides what "no statement applies" means: default deny for ordinary
//! users). Parsing uses `s3s-policy`'s model; this module validates documents and evaluates them against one
//! request ([`Request`]), with AWS's condition operators and missing-key rules.

mod conditions;
mod document;
mod pattern;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;

use s3s_policy::model;

use conditions::Condition;
use pattern::{Pattern, Syntax};

/// Where a policy is attached, which decides what it may contain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicyKind {
    /// Attached to a user (users file or admin API): no `Principal`/`NotPrincipal`; resources `s3` or `kms` ARNs.
    Identity,
    /// Attached to a bucket (PutBucketPolicy): `Principal` required, every `Resource` inside this bucket.
    Bucket(String),
}

/// Why a policy document was refused. Messages name the offending element, never a value that could be a secret.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PolicyError(pub String);

/// A validated policy, ready to evaluate. Keeps the submitted text for GetBucketPolicy.
#[derive(Clone, Debug)]
pub struct Policy {
    text: String,
    /// Compiled once; shared by clones.
    statements: Arc<[Statement]>,
}

/// The outcome of evaluating one or more policies for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// A matching statement allows the request and none denies it.
    Allow,
    /// A matching statement denies the request.
    Deny,
    /// No statement matches.
    NotApplicable,
}

/// The request context condition keys are read from. Keys compare case-insensitively, values as given.
#[derive(Clone, Debug, Default)]
pub struct ConditionContext {
    values: HashMap<String, Vec<String>>,
}

/// One request as policies see it.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// The caller's access key (Coffer users are named by their access key).
    pub principal: &'a str,
    /// `service:Action`, e.g. `s3:PutObject` or `kms:Decrypt`.
    pub action: &'a str,
    /// The resource's ARN and its equivalent spellings (a key in the default store is also `arn:aws:kms:::key/ID`);
    /// a statement's `Resource` matches if it matches any of them.
    pub resources: &'a [String],
    pub context: &'a ConditionContext,
}

impl Policy {
    /// Parses and validates `text` for `kind`: JSON grammar, `Version` (2012-10-17 or 2008-10-17), known effects,
    /// actions `s3:…`/`kms:…`/`*` with wildcards, resources allowed for the kind, known condition operators (with
    /// `IfExists` and `ForAnyValue:`/`ForAllValues:`), at most 20 KiB. JSON numbers and booleans in conditions are
    /// read as their string form, as AWS does.
    pub fn parse(text: &str, kind: &PolicyKind) -> Result<Policy, PolicyError> {
        let document = document::read(text)?;
        // Without a Version AWS reads the 2008-10-17 grammar, which has no policy variables.
        let variables = document.version == Some(model::Version::V2012_10_17);
        let statements = document
            .statement
            .as_slice()
            .iter()
            .map(|statement| Statement::compile(statement, kind, variables))
            .collect::<Result<_, _>>()?;
        Ok(Policy { text: text.to_owned(), statements })
    }

    /// The document as submitted.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// How many statements the policy has.
    pub fn statement_count(&self) -> usize {
        self.statements.len()
    }

    /// Evaluates every statement against `request`.
    pub fn evaluate(&self, request: &Request<'_>) -> Decision {
        let mut decision = Decision::NotApplicable;
        for statement in self.statements.iter().filter(|statement| statement.applies(request)) {
            match statement.effect {
                model::Effect::Deny => return Decision::Deny,
                model::Effect::Allow => decision = Decision::Allow,
            }
        }
        decision
    }
}

impl Decision {
    /// Joins the decisions of several policies: any `Deny` wins, then any `Allow`.
    pub fn and(self, other: Decision) -> Decision {
        match (self, other) {
            (Decision::Deny, _) | (_, Decision::Deny) => Decision::Deny,
            (Decision::Allow, _) | (_, Decision::Allow) => Decision::Allow,
            (Decision::NotApplicable, Decision::NotApplicable) => Decision::NotApplicable,
        }
    }
}

impl ConditionContext {
    /// Adds `value` to condition key `key` (a key may have several values).
    pub fn insert(&mut self, key: &str, value: impl Into<String>) {
        self.values.entry(fold_key(key)).or_default().push(value.into());
    }

    /// The values of condition key `key`, in any letter case.
    pub fn get(&self, key: &str) -> Option<&[String]> {
        self.get_folded(&fold_key(key))
    }

    /// The values of a key already folded with [`fold_key`].
    fn get_folded(&self, key: &str) -> Option<&[String]> {
        self.values.get(key).map(Vec::as_slice)
    }
}

/// Condition keys and policy variable names compare case-insensitively: both sides are stored folded.
fn fold_key(key: &str) -> String {
    key.to_lowercase()
}

/// One statement, compiled.
#[derive(Clone, Debug)]
struct Statement {
    effect: model::Effect,
    /// `None` in identity policies, which apply to the user they are attached to.
    principals: Option<Principals>,
    actions: Element,
    resources: Element,
    /// All must hold.
    conditions: Vec<Condition>,
}

/// A compiled `Action`/`NotAction` or `Resource`/`NotResource`.
#[derive(Clone, Debug)]
struct Element {
    /// `None` for `*`.
    patterns: Option<Vec<Pattern>>,
    /// `NotAction`/`NotResource`: applies to everything not listed.
    negated: bool,
}

/// A compiled `Principal`/`NotPrincipal` (bucket policies). Coffer users are named by access key.
#[derive(Clone, Debug)]
struct Principals {
    everyone: bool,
    users: Vec<String>,
    negated: bool,
}

impl Statement {
    fn compile(statement: &model::Statement, kind: &PolicyKind, variables: bool) -> Result<Statement, PolicyError> {
        let principals = match (kind, &statement.principal) {
            (PolicyKind::Identity, None) => None,
            (PolicyKind::Identity, Some(model::PrincipalRule::Principal(_))) => {
                return Err(PolicyError("Policy has prohibited field Principal".into()))
            }
            (PolicyKind::Identity, Some(model::PrincipalRule::NotPrincipal(_))) => {
                return Err(PolicyError("Policy has prohibited field NotPrincipal".into()))
            }
            (PolicyKind::Bucket(_), None) => return Err(PolicyError("Missing required field Principal".into())),
            (PolicyKind::Bucket(_), Some(model::PrincipalRule::Principal(principal))) => {
                Some(Principals::compile(principal, false)?)
            }
            (PolicyKind::Bucket(_), Some(model::PrincipalRule::NotPrincipal(principal))) => {
                Some(Principals::compile(principal, true)?)
            }
        };

        let (actions, negated) = match &statement.action {
            model::ActionRule::Action(actions) => (actions, false),
            model::ActionRule::NotAction(actions) => (actions, true),
        };
        let actions =
            Element::compile(actions, negated, valid_action, Syntax { wildcards: true, variables: false }, true)
                .ok_or_else(|| PolicyError("Policy has invalid action".into()))?;

        let (resources, negated) = match &statement.resource {
            model::ResourceRule::Resource(resources) => (resources, false),
            model::ResourceRule::NotResource(resources) => (resources, true),
        };
        let valid = |resource: &str| valid_resource(resource, kind);
        let resources = Element::compile(resources, negated, valid, Syntax { wildcards: true, variables }, false)
            .ok_or_else(|| PolicyError("Policy has invalid resource".into()))?;

        let mut conditions = Vec::new();
        for (operator, keys) in statement.condition.iter().flat_map(|condition| &condition.0) {
            for (key, values) in &keys.0 {
                conditions.push(Condition::new(operator, key, values.as_slice(), variables)?);
            }
        }
        Ok(Statement { effect: statement.effect.clone(), principals, actions, resources, conditions })
    }

    fn applies(&self, request: &Request<'_>) -> bool {
        self.actions.applies(std::slice::from_ref(&request.action), request)
            && self.principals.as_ref().is_none_or(|principals| principals.applies(request.principal))
            && self.resources.applies(request.resources, request)
            && self.conditions.iter().all(|condition| condition.holds(request))
    }
}

impl Element {
    /// Compiles the listed values; `None` if one is not `valid`. A `*` anywhere in the list makes the element match
    /// everything, whatever the request names (even no resource at all).
    fn compile(
        values: &model::WildcardOneOrMore<String>,
        negated: bool,
        valid: impl Fn(&str) -> bool,
        syntax: Syntax,
        ignore_case: bool,
    ) -> Option<Element> {
        let patterns = match values.as_slice() {
            None => valid("*").then_some(None)?,
            Some(values) if !values.iter().all(|value| valid(value)) => return None,
            Some(values) if values.iter().any(|value| value == "*") => None,
            Some(values) => Some(values.iter().map(|value| Pattern::new(value, syntax, ignore_case)).collect()),
        };
        Some(Element { patterns, negated })
    }

    /// Whether the statement applies to a request naming `names` (one action, or a resource's spellings).
    fn applies(&self, names: &[impl AsRef<str>], request: &Request<'_>) -> bool {
        let listed = match &self.patterns {
            None => true,
            Some(patterns) => {
                names.iter().any(|name| patterns.iter().any(|pattern| pattern.matches(name.as_ref(), request)))
            }
        };
        listed != self.negated
    }
}

impl Principals {
    fn compile(principal: &model::Principal, negated: bool) -> Result<Principals, PolicyError> {
        let invalid = || PolicyError("Invalid principal in policy".into());
        let mut principals = Principals { everyone: false, users: Vec::new(), negated };
        let types = match principal {
            model::Principal::Wildcard => {
                principals.everyone = true;
                return Ok(principals);
            }
            model::Principal::Map(types) => types,
        };
        for (principal_type, values) in types {
            match principal_type.as_str() {
                "AWS" => {
                    for value in values.as_slice() {
                        match aws_principal(value).ok_or_else(invalid)? {
                            AwsPrincipal::Everyone => principals.everyone = true,
                            AwsPrincipal::User(user) => principals.users.push(user.to_owned()),
                            AwsPrincipal::Other => {}
                        }
                    }
                }
                // Well-formed, but Coffer has no such callers: they never match.
                "Service" | "Federated" | "CanonicalUser" => {}
                _ => return Err(invalid()),
            }
        }
        Ok(principals)
    }

    fn applies(&self, principal: &str) -> bool {
        let listed = self.everyone || self.users.iter().any(|user| user == principal);
        listed != self.negated
    }
}

/// What an `AWS` principal value names.
enum AwsPrincipal<'a> {
    Everyone,
    /// An access key.
    User(&'a str),
    /// Another IAM entity (`root`, a role…): well-formed, never a Coffer user.
    Other,
}

/// `*`, an access key, or `arn:aws:iam::ACCOUNT:user/[PATH/]NAME` (any account, including none). `None` when
/// malformed; partial wildcards are refused, as AWS does.
fn aws_principal(value: &str) -> Option<AwsPrincipal<'_>> {
    if value == "*" {
        return Some(AwsPrincipal::Everyone);
    }
    if value.contains(['*', '?']) {
        return None;
    }
    let Some(rest) = value.strip_prefix("arn:aws:iam::") else {
        return (!value.is_empty() && !value.contains(':')).then_some(AwsPrincipal::User(value));
    };
    let (_account, entity) = rest.split_once(':')?;
    match entity.strip_prefix("user/") {
        Some(path_and_name) => {
            let name = path_and_name.rsplit('/').next().filter(|name| !name.is_empty())?;
            Some(AwsPrincipal::User(name))
        }
        None if !entity.is_empty() => Some(AwsPrincipal::Other),
        None => None,
    }
}

/// `*` or `s3:NAME`/`kms:NAME`/`iam:NAME` (service in any case; `iam:` for user-policy admin calls), the name made
/// of letters, digits and wildcards.
fn valid_action(action: &str) -> bool {
    let Some((service, name)) = action.split_once(':') else { return action == "*" };
    ["s3", "kms", "iam"].iter().any(|known| service.eq_ignore_ascii_case(known))
        && !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '*' || c == '?')
}

/// Identity policies: `*`, `s3`, `kms` or `iam` (users) ARNs. Bucket policies: the bucket itself or objects in it.
fn valid_resource(resource: &str, kind: &PolicyKind) -> bool {
    match kind {
        PolicyKind::Identity => {
            resource == "*"
                || ["arn:aws:s3:::", "arn:aws:kms:", "arn:aws:iam:"]
                    .iter()
                    .any(|prefix| resource.strip_prefix(prefix).is_some_and(|rest| !rest.is_empty()))
        }
        PolicyKind::Bucket(bucket) => resource
            .strip_prefix("arn:aws:s3:::")
            .and_then(|rest| rest.strip_prefix(bucket.as_str()))
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/')),
    }
}
