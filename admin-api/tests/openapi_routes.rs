//! `openapi.yaml` and the router describe the same API: every (method, path) in the spec is served, and every route
//! the router serves is in the spec. The spec's `paths:` block is read line by line (it is written with two-space
//! indentation: paths at two spaces, operations at four), which is all this check needs from YAML.

use std::collections::BTreeSet;

use coffer_admin_api::routes::{self, Resolution, ROUTES};

const OPERATIONS: [&str; 7] = ["get", "put", "post", "delete", "patch", "head", "options"];

fn spec_operations() -> BTreeSet<(String, String)> {
    let spec = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml")).unwrap();
    let mut lines = spec.lines().skip_while(|line| *line != "paths:").skip(1);
    let mut operations = BTreeSet::new();
    let mut path = None;
    for line in lines.by_ref().take_while(|line| line.is_empty() || line.starts_with(' ')) {
        if let Some(key) = line.strip_prefix("  ").filter(|key| key.starts_with('/')) {
            path = Some(key.strip_suffix(':').expect("path keys end with ':'").to_owned());
        } else if let Some(key) =
            line.strip_prefix("    ").and_then(|key| key.strip_suffix(':')).filter(|key| OPERATIONS.contains(key))
        {
            let path = path.clone().expect("operations sit under a path");
            operations.insert((key.to_uppercase(), path));
        }
    }
    operations
}

#[test]
fn spec_and_router_list_the_same_operations() {
    let spec = spec_operations();
    assert!(spec.len() >= 18, "the spec's paths block was not found or is incomplete: {spec:?}");
    let served: BTreeSet<(String, String)> =
        ROUTES.iter().map(|route| (route.method.to_string(), route.path.to_owned())).collect();
    assert_eq!(ROUTES.len(), served.len(), "the route table lists an operation twice");
    let missing_from_spec: Vec<_> = served.difference(&spec).collect();
    let not_served: Vec<_> = spec.difference(&served).collect();
    assert!(missing_from_spec.is_empty(), "served but not in openapi.yaml: {missing_from_spec:?}");
    assert!(not_served.is_empty(), "in openapi.yaml but not served: {not_served:?}");
}

#[test]
fn every_spec_operation_resolves_under_every_prefix() {
    for (method, path) in spec_operations() {
        let method: http::Method = method.parse().unwrap();
        let concrete = path.replace("{key_id}", "some-key");
        for prefix in routes::MOUNT_PREFIXES {
            let resolution = routes::resolve(&method, &format!("{prefix}{concrete}"));
            assert!(matches!(resolution, Resolution::Found { .. }), "{method} {prefix}{concrete}: {resolution:?}");
        }
    }
}

#[test]
fn spec_servers_are_the_mount_prefixes() {
    let spec = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml")).unwrap();
    let urls: Vec<&str> = spec.lines().filter_map(|line| line.strip_prefix("  - url: ")).collect();
    for prefix in routes::MOUNT_PREFIXES {
        assert!(urls.iter().any(|url| url.ends_with(prefix)), "no server for {prefix} in {urls:?}");
    }
}
