//! IAM-style policies in AWS's JSON grammar, evaluated the AWS way: an explicit `Deny` wins, then an `Allow`,
//! otherwise nothing applies (the caller decides what "no statement applies" means: default deny for ordinary
//! users). Parsing uses `s3s-policy`'s model; this module validates documents and evaluates them against one
//! request ([`Request`]), with AWS's condition operators and missing-key rules.

// Skeleton agreed with the helper implementing it: signatures are the contract; bodies come with the implementation.

use std::collections::HashMap;

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
        let _ = kind;
        todo!("{text}")
    }

    /// The document as submitted.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Evaluates every statement against `request`.
    pub fn evaluate(&self, request: &Request<'_>) -> Decision {
        let _ = request;
        todo!()
    }
}

impl Decision {
    /// Joins the decisions of several policies: any `Deny` wins, then any `Allow`.
    pub fn and(self, other: Decision) -> Decision {
        let _ = other;
        todo!()
    }
}

impl ConditionContext {
    /// Adds `value` to condition key `key` (a key may have several values).
    pub fn insert(&mut self, key: &str, value: impl Into<String>) {
        let _ = (key, value.into(), &self.values);
        todo!()
    }
}
