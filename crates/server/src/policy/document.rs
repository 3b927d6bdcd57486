//! The policy document's JSON shape, checked before `s3s-policy`'s model reads it: the model ignores unknown
//! fields (a misspelt `Condition` would silently widen a statement) and reports shape errors without naming the
//! element, so this pass refuses both with messages naming the element. It also turns JSON numbers and booleans
//! in `Condition` values into strings, which is how AWS reads them and the only form the model accepts.

use s3s_policy::model;
use serde_json::{Map, Value};

use super::PolicyError;

/// AWS's limit for bucket policies, applied to every policy.
pub(super) const MAX_POLICY_BYTES: usize = 20 * 1024;

const POLICY_FIELDS: [&str; 3] = ["Version", "Id", "Statement"];
const STATEMENT_FIELDS: [&str; 9] =
    ["Sid", "Effect", "Principal", "NotPrincipal", "Action", "NotAction", "Resource", "NotResource", "Condition"];

fn error(message: impl Into<String>) -> PolicyError {
    PolicyError(message.into())
}

/// Reads `text` into the model after checking its shape.
pub(super) fn read(text: &str) -> Result<model::Policy, PolicyError> {
    if text.len() > MAX_POLICY_BYTES {
        return Err(error("Policy exceeds the maximum size of 20 KiB"));
    }
    let mut document: Value =
        serde_json::from_str(text).map_err(|e| error(format!("Policy is not valid JSON: {e}")))?;
    let Value::Object(policy) = &mut document else { return Err(error("Policy must be a JSON object")) };
    check_fields(policy, &POLICY_FIELDS, "Policy")?;
    match policy.get("Version") {
        None => {}
        Some(Value::String(version)) if version == "2012-10-17" || version == "2008-10-17" => {}
        Some(_) => return Err(error("Policy has invalid Version (must be 2012-10-17 or 2008-10-17)")),
    }
    if policy.get("Id").is_some_and(|id| !id.is_string()) {
        return Err(error("Policy has invalid Id"));
    }
    let statements = match policy.get_mut("Statement") {
        None => return Err(error("Missing required field Statement")),
        Some(Value::Array(statements)) if statements.is_empty() => return Err(error("Policy has no statements")),
        Some(Value::Array(statements)) => statements.iter_mut().collect(),
        Some(statement) => vec![statement],
    };
    for statement in statements {
        let Value::Object(statement) = statement else { return Err(error("Policy has invalid Statement")) };
        check_statement(statement)?;
    }
    serde_json::from_value(document).map_err(|_| error("Policy does not follow the policy grammar"))
}

fn check_fields(object: &Map<String, Value>, known: &[&str], element: &str) -> Result<(), PolicyError> {
    match object.keys().find(|field| !known.contains(&field.as_str())) {
        Some(field) => Err(error(format!("{element} has unknown field {field}"))),
        None => Ok(()),
    }
}

fn check_statement(statement: &mut Map<String, Value>) -> Result<(), PolicyError> {
    check_fields(statement, &STATEMENT_FIELDS, "Statement")?;
    if statement.get("Sid").is_some_and(|sid| !sid.is_string()) {
        return Err(error("Statement has invalid Sid"));
    }
    match statement.get("Effect") {
        None => return Err(error("Missing required field Effect")),
        Some(Value::String(effect)) if effect == "Allow" || effect == "Deny" => {}
        Some(_) => return Err(error("Policy has invalid Effect (must be Allow or Deny)")),
    }
    for (element, negated, description) in [("Action", "NotAction", "action"), ("Resource", "NotResource", "resource")]
    {
        let value =
            one_of(statement, element, negated)?.ok_or_else(|| error(format!("Missing required field {element}")))?;
        if !is_strings(value) {
            return Err(error(format!("Policy has invalid {description}")));
        }
    }
    if let Some(principal) = one_of(statement, "Principal", "NotPrincipal")? {
        let valid = match principal {
            Value::String(wildcard) => wildcard == "*",
            Value::Object(types) => !types.is_empty() && types.values().all(is_strings),
            _ => false,
        };
        if !valid {
            return Err(error("Invalid principal in policy"));
        }
    }
    if let Some(condition) = statement.get_mut("Condition") {
        normalise_condition(condition)?;
    }
    Ok(())
}

/// The value of `element` or `negated` (a statement may hold one of them, not both).
fn one_of<'a>(
    statement: &'a Map<String, Value>,
    element: &str,
    negated: &str,
) -> Result<Option<&'a Value>, PolicyError> {
    match (statement.get(element), statement.get(negated)) {
        (Some(_), Some(_)) => Err(error(format!("Statement cannot have both {element} and {negated}"))),
        (value, None) | (None, value) => Ok(value),
    }
}

/// A string or a non-empty array of strings.
fn is_strings(value: &Value) -> bool {
    match value {
        Value::String(_) => true,
        Value::Array(items) => !items.is_empty() && items.iter().all(Value::is_string),
        _ => false,
    }
}

/// Checks `{ operator: { key: value or [values] } }` and turns number and boolean values into strings.
fn normalise_condition(condition: &mut Value) -> Result<(), PolicyError> {
    let Value::Object(operators) = condition else { return Err(error("Policy has invalid Condition")) };
    for (operator, keys) in operators.iter_mut() {
        let Value::Object(keys) = keys else {
            return Err(error(format!("Condition operator {operator} is not an object")));
        };
        if keys.is_empty() {
            return Err(error(format!("Condition operator {operator} has no keys")));
        }
        for values in keys.values_mut() {
            let items = match values {
                Value::Array(items) if items.is_empty() => {
                    return Err(error(format!("Condition operator {operator} has no values for a key")))
                }
                Value::Array(items) => items.iter_mut().collect(),
                value => vec![value],
            };
            for item in items {
                match item {
                    Value::String(_) => {}
                    Value::Number(number) => *item = Value::String(number.to_string()),
                    Value::Bool(flag) => *item = Value::String(flag.to_string()),
                    _ => return Err(error(format!("Condition operator {operator} has an invalid value"))),
                }
            }
        }
    }
    Ok(())
}
