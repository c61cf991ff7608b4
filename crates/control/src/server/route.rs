//! Parsing of Kubernetes REST paths.

use herd_api::resources::{self, ResourceInfo};

use crate::error::ApiError;

#[derive(Debug, PartialEq, Eq)]
pub enum Target {
    GroupVersion {
        group: String,
        version: String,
    },
    Collection {
        res: &'static ResourceInfo,
        ns: Option<String>,
    },
    Object {
        res: &'static ResourceInfo,
        ns: Option<String>,
        name: String,
    },
    Subresource {
        res: &'static ResourceInfo,
        ns: Option<String>,
        name: String,
        sub: String,
    },
}

pub fn parse(path: &str) -> Result<Target, ApiError> {
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let not_found = || ApiError::NotFound {
        message: "the server could not find the requested resource".into(),
        group: String::new(),
        kind: String::new(),
        name: String::new(),
    };
    let (group, version, rest) = match segs.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return Err(not_found()),
    };
    if !resources::group_versions().contains(&(group, version)) {
        return Err(not_found());
    }
    let lookup = |plural: &str| resources::by_path(group, version, plural).ok_or_else(not_found);
    let namespaced =
        |plural: &str| resources::by_path(group, version, plural).is_some_and(|r| r.namespaced);
    Ok(match rest {
        [] => Target::GroupVersion {
            group: group.into(),
            version: version.into(),
        },
        ["namespaces", ns, plural] if namespaced(plural) => Target::Collection {
            res: lookup(plural)?,
            ns: Some((*ns).into()),
        },
        ["namespaces", ns, plural, name] if namespaced(plural) => Target::Object {
            res: lookup(plural)?,
            ns: Some((*ns).into()),
            name: (*name).into(),
        },
        ["namespaces", ns, plural, name, sub] if namespaced(plural) => {
            let res = lookup(plural)?;
            if !res.has_subresource(sub) {
                return Err(not_found());
            }
            Target::Subresource {
                res,
                ns: Some((*ns).into()),
                name: (*name).into(),
                sub: (*sub).into(),
            }
        }
        [plural] => Target::Collection {
            res: lookup(plural)?,
            ns: None,
        },
        [plural, name] => {
            let res = lookup(plural)?;
            if res.namespaced {
                return Err(not_found());
            }
            Target::Object {
                res,
                ns: None,
                name: (*name).into(),
            }
        }
        [plural, name, sub] => {
            let res = lookup(plural)?;
            if res.namespaced || !res.has_subresource(sub) {
                return Err(not_found());
            }
            Target::Subresource {
                res,
                ns: None,
                name: (*name).into(),
                sub: (*sub).into(),
            }
        }
        _ => return Err(not_found()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaced_and_cluster_paths() {
        let Target::Collection { res, ns } = parse("/api/v1/namespaces/a/pods").unwrap() else {
            panic!()
        };
        assert_eq!((res.plural, ns.as_deref()), ("pods", Some("a")));
        let Target::Subresource { res, name, sub, .. } =
            parse("/api/v1/namespaces/a/status").unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (res.plural, name.as_str(), sub.as_str()),
            ("namespaces", "a", "status")
        );
        let Target::Object { res, ns, name } = parse("/api/v1/namespaces/a").unwrap() else {
            panic!()
        };
        assert_eq!((res.plural, ns, name.as_str()), ("namespaces", None, "a"));
        let Target::Subresource { res, sub, .. } =
            parse("/apis/apps/v1/namespaces/d/deployments/w/status").unwrap()
        else {
            panic!()
        };
        assert_eq!((res.plural, sub.as_str()), ("deployments", "status"));
        assert!(matches!(
            parse("/api/v1/pods").unwrap(),
            Target::Collection { ns: None, .. }
        ));
        assert!(parse("/api/v1/widgets").is_err());
        assert!(parse("/api/v1/pods/x").is_err());
        assert!(parse("/api/v2/pods").is_err());
        assert!(parse("/api/v1/namespaces/a/pods/p/exec").is_err());
    }
}
