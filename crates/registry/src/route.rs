//! Parsing of `/v2/<name>/…` paths, whose `<name>` may contain slashes, and validation of
//! repository names, tags and digests (which also keeps every path component safe to use as a
//! file name).

use crate::error::ApiError;

/// What a `/v2/…` path addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    /// `/v2/` itself.
    Base,
    /// `<name>/blobs/<digest>`; the digest is validated when used.
    Blob { name: String, digest: String },
    /// `<name>/blobs/uploads/`.
    UploadStart { name: String },
    /// `<name>/blobs/uploads/<id>`.
    Upload { name: String, id: String },
    /// `<name>/manifests/<tag or digest>`.
    Manifest { name: String, reference: String },
    /// `<name>/tags/list`.
    TagsList { name: String },
}

/// Parses the path after `/v2/`. `None` if it addresses nothing the registry serves.
pub(crate) fn parse(rest: &str) -> Result<Option<Route>, ApiError> {
    if rest.is_empty() {
        return Ok(Some(Route::Base));
    }
    let segments: Vec<&str> = rest.split('/').collect();
    let n = segments.len();
    let name_of = |len: usize| -> Result<String, ApiError> {
        let name = segments[..len].join("/");
        validate_name(&name)?;
        Ok(name)
    };
    let route = match segments.as_slice() {
        [.., "tags", "list"] if n > 2 => Route::TagsList {
            name: name_of(n - 2)?,
        },
        [.., "blobs", "uploads", ""] if n > 3 => Route::UploadStart {
            name: name_of(n - 3)?,
        },
        [.., "blobs", "uploads"] if n > 2 => Route::UploadStart {
            name: name_of(n - 2)?,
        },
        [.., "blobs", "uploads", id] if n > 3 => Route::Upload {
            name: name_of(n - 3)?,
            id: (*id).to_string(),
        },
        [.., "blobs", digest] if n > 2 && !digest.is_empty() => Route::Blob {
            name: name_of(n - 2)?,
            digest: (*digest).to_string(),
        },
        [.., "manifests", reference] if n > 2 && !reference.is_empty() => Route::Manifest {
            name: name_of(n - 2)?,
            reference: (*reference).to_string(),
        },
        _ => return Ok(None),
    };
    Ok(Some(route))
}

/// A repository name: `/`-separated components of `[a-z0-9]+` joined by `.`, `_`, `__` or `-+`
/// (the distribution spec's grammar), at most 255 characters.
pub(crate) fn validate_name(name: &str) -> Result<(), ApiError> {
    let valid = !name.is_empty() && name.len() <= 255 && name.split('/').all(valid_component);
    if valid {
        Ok(())
    } else {
        Err(ApiError::name_invalid(format!(
            "invalid repository name {name:?}"
        )))
    }
}

fn valid_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else {
        return false;
    };
    if !alnum(first) || !alnum(last) {
        return false;
    }
    // Between alphanumeric runs: one '.', one or two '_', or any number of '-'.
    let mut separator: Vec<u8> = Vec::new();
    for b in bytes {
        if alnum(b) {
            let ok = match separator.as_slice() {
                [] | [b'.'] | [b'_'] | [b'_', b'_'] => true,
                dashes => dashes.iter().all(|d| *d == b'-'),
            };
            if !ok {
                return false;
            }
            separator.clear();
        } else if matches!(b, b'.' | b'_' | b'-') {
            separator.push(*b);
        } else {
            return false;
        }
    }
    true
}

/// A tag: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
pub(crate) fn validate_tag(tag: &str) -> Result<(), ApiError> {
    let bytes = tag.as_bytes();
    let valid = matches!(bytes.first(), Some(b) if b.is_ascii_alphanumeric() || *b == b'_')
        && bytes.len() <= 128
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(ApiError::tag_invalid(format!("invalid tag {tag:?}")))
    }
}

/// The hex of a `sha256:<64 lowercase hex>` digest, the only algorithm this registry stores.
pub(crate) fn sha256_hex(digest: &str) -> Result<&str, ApiError> {
    digest
        .strip_prefix("sha256:")
        .filter(|hex| {
            hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        })
        .ok_or_else(|| {
            ApiError::digest_invalid(format!("invalid or unsupported digest {digest:?}"))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(rest: &str) -> Option<Route> {
        parse(rest).unwrap()
    }

    #[test]
    fn names_with_slashes_are_parsed_from_the_end() {
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(route(""), Some(Route::Base));
        assert_eq!(
            route(&format!("a/b/c/blobs/{d}")),
            Some(Route::Blob {
                name: "a/b/c".into(),
                digest: d.clone()
            })
        );
        assert_eq!(
            route("a/b/blobs/uploads/"),
            Some(Route::UploadStart { name: "a/b".into() })
        );
        assert_eq!(
            route("a/blobs/uploads"),
            Some(Route::UploadStart { name: "a".into() })
        );
        assert_eq!(
            route("a/blobs/uploads/1234"),
            Some(Route::Upload {
                name: "a".into(),
                id: "1234".into()
            })
        );
        assert_eq!(
            route("x/manifests/y/manifests/v1"),
            Some(Route::Manifest {
                name: "x/manifests/y".into(),
                reference: "v1".into()
            })
        );
        assert_eq!(
            route("blobs/blobs/sha256:x"),
            Some(Route::Blob {
                name: "blobs".into(),
                digest: "sha256:x".into()
            })
        );
        assert_eq!(
            route("a/b/tags/list"),
            Some(Route::TagsList { name: "a/b".into() })
        );
        assert_eq!(route("_catalog"), None);
        assert_eq!(route("a/manifests/"), None);
        assert_eq!(route("tags/list"), None);
    }

    #[test]
    fn unsafe_names_are_rejected() {
        for bad in [
            "../etc/manifests/v1",
            "a/../b/manifests/v1",
            "A/manifests/v1",
            "a//b/tags/list",
            "_x/tags/list",
        ] {
            let err = parse(bad).unwrap_err();
            assert_eq!(err.code, "NAME_INVALID", "{bad}");
        }
    }

    #[test]
    fn name_grammar() {
        for ok in [
            "a",
            "a/b",
            "a.b",
            "a_b",
            "a__b",
            "a---b",
            "library/hello-wasm",
            "x0/y1.z2",
        ] {
            assert!(validate_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "a.",
            ".a",
            "a..b",
            "a___b",
            "a.-b",
            "a/",
            "a b",
            "Ab",
            &"a".repeat(256),
        ] {
            assert!(validate_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tags_and_digests() {
        assert!(validate_tag("v1.0_rc-1").is_ok());
        assert!(validate_tag("latest").is_ok());
        for bad in ["", ".x", "-x", "a/b", "a:b", &"a".repeat(129)] {
            assert!(validate_tag(bad).is_err(), "{bad}");
        }
        let hex = "0123456789abcdef".repeat(4);
        assert_eq!(sha256_hex(&format!("sha256:{hex}")).unwrap(), hex);
        assert!(sha256_hex("sha256:../../x").is_err());
        assert!(sha256_hex(&format!("sha256:{}", hex.to_uppercase())).is_err());
        assert!(sha256_hex(&format!("sha512:{hex}")).is_err());
    }
}
