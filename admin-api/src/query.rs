//! Query-string parameters of admin requests, read by name and type with errors that name the parameter.

use std::collections::BTreeMap;

use crate::error::ApiError;
use crate::routes::percent_decode;

/// The decoded parameters of one request; each must be consumed or [`Query::finish`] reports it as unknown.
#[derive(Debug, Default)]
pub struct Query {
    params: BTreeMap<String, String>,
}

impl Query {
    /// Parses `a=1&b=x%20y` (form encoding: `+` is a space). A repeated or undecodable parameter is refused.
    pub fn parse(query: Option<&str>) -> Result<Self, ApiError> {
        let mut params = BTreeMap::new();
        for pair in query.unwrap_or_default().split('&').filter(|pair| !pair.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |text: &str| percent_decode(&text.replace('+', " "));
            let (Some(name), Some(value)) = (decode(name), decode(value)) else {
                return Err(ApiError::bad_request("InvalidQuery", "the query string has a broken percent-escape"));
            };
            if params.contains_key(&name) {
                return Err(ApiError::invalid_field(
                    "InvalidQuery",
                    name.clone(),
                    format!("query parameter `{name}` is given more than once"),
                ));
            }
            params.insert(name, value);
        }
        Ok(Self { params })
    }

    pub fn string(&mut self, name: &str) -> Option<String> {
        self.params.remove(name)
    }

    pub fn required_string(&mut self, name: &str) -> Result<String, ApiError> {
        self.string(name).filter(|value| !value.is_empty()).ok_or_else(|| {
            ApiError::invalid_field("MissingParameter", name, format!("query parameter `{name}` is required"))
        })
    }

    /// An integer within `range`, if given.
    pub fn integer(&mut self, name: &str, range: std::ops::RangeInclusive<u32>) -> Result<Option<u32>, ApiError> {
        let Some(text) = self.string(name) else {
            return Ok(None);
        };
        match text.parse::<u32>() {
            Ok(value) if range.contains(&value) => Ok(Some(value)),
            _ => Err(ApiError::invalid_field(
                "InvalidQuery",
                name,
                format!("query parameter `{name}` must be an integer from {} to {}", range.start(), range.end()),
            )),
        }
    }

    /// `true` or `false` (absent: `false`).
    pub fn flag(&mut self, name: &str) -> Result<bool, ApiError> {
        match self.string(name).as_deref() {
            None | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(_) => Err(ApiError::invalid_field(
                "InvalidQuery",
                name,
                format!("query parameter `{name}` must be true or false"),
            )),
        }
    }

    /// Fails on the first parameter the endpoint did not read.
    pub fn finish(self) -> Result<(), ApiError> {
        match self.params.into_keys().next() {
            None => Ok(()),
            Some(name) => Err(ApiError::invalid_field(
                "InvalidQuery",
                name.clone(),
                format!("unknown query parameter `{name}` for this endpoint"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_decoded_typed_and_checked() {
        let mut query = Query::parse(Some("limit=10&marker=a%2Fb+c&key-id=k")).unwrap();
        assert_eq!(query.integer("limit", 1..=1000).unwrap(), Some(10));
        assert_eq!(query.string("marker").as_deref(), Some("a/b c"));
        assert_eq!(query.required_string("key-id").unwrap(), "k");
        query.finish().unwrap();
    }

    #[test]
    fn bad_parameters_are_named() {
        let mut query = Query::parse(Some("limit=0")).unwrap();
        assert_eq!(query.integer("limit", 1..=1000).unwrap_err().field.as_deref(), Some("limit"));
        let mut query = Query::parse(Some("limit=x")).unwrap();
        assert!(query.integer("limit", 1..=1000).is_err());
        assert_eq!(Query::parse(Some("a=1&a=2")).unwrap_err().field.as_deref(), Some("a"));
        assert_eq!(Query::parse(Some("colour=red")).unwrap().finish().unwrap_err().field.as_deref(), Some("colour"));
        assert_eq!(Query::parse(None).unwrap().required_string("key-id").unwrap_err().code, "MissingParameter");
    }
}
