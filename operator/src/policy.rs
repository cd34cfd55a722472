//! What the cluster admin allows, fixed at start-up: which node directories `file://` artifacts may
//! mount, and that the verifier image is pinned.
//!
//! A `file:///PATH` artifact becomes a `hostPath` volume in the verification Job and in every serving
//! pod, so it is refused unless PATH lies under a prefix given with `--allow-host-path` (none by
//! default). The match is per path segment (`/data/models` allows `/data/models/x`, not
//! `/data/models-old`), and `.`/`..` segments are refused outright. Paths are compared as written: the
//! operator cannot see the node, so an allowed prefix must not hold symlinks that users can write.

use std::fmt;

/// Default verifier image: the model server of this operator's own release, never a moving tag.
pub const DEFAULT_VERIFIER_IMAGE: &str = concat!("anshin/inference:", env!("CARGO_PKG_VERSION"));

/// Why a start-up setting is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The image has no tag and no digest, or the tag is `latest`.
    #[error(
        "verifier image {0:?} is not pinned: give a release tag (e.g. {DEFAULT_VERIFIER_IMAGE}) or a digest (anshin/inference@sha256:…); `latest` and untagged images can change after a version was verified"
    )]
    UnpinnedImage(String),
    /// An `--allow-host-path` prefix is not a clean absolute path.
    #[error(
        "--allow-host-path {0:?} must be an absolute path without `.` or `..` segments, e.g. /var/lib/anshin/models"
    )]
    BadPrefix(String),
}

/// Accepts `image` only when it is pinned: a digest (`@sha256:…`), or a tag other than `latest`.
pub fn check_pinned_image(image: &str) -> Result<(), PolicyError> {
    let unpinned = || PolicyError::UnpinnedImage(image.to_owned());
    if let Some((name, digest)) = image.split_once('@') {
        let hex = digest.strip_prefix("sha256:").unwrap_or_default();
        let valid = !name.is_empty()
            && hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
        return if valid { Ok(()) } else { Err(unpinned()) };
    }
    // The tag follows the last `:` after the last `/` (a registry's `host:port` comes before a `/`).
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        Some((name, tag)) if !name.is_empty() && !tag.is_empty() && tag != "latest" => Ok(()),
        _ => Err(unpinned()),
    }
}

/// The node directories `file://` artifacts may use (empty: none).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostPathPolicy {
    prefixes: Vec<Vec<String>>,
}

impl HostPathPolicy {
    /// A policy allowing the directories under each of `prefixes` (absolute, no `.`/`..` segments).
    pub fn new<S: AsRef<str>>(prefixes: &[S]) -> Result<HostPathPolicy, PolicyError> {
        let prefixes = prefixes
            .iter()
            .map(|p| {
                let p = p.as_ref();
                segments(p).ok_or_else(|| PolicyError::BadPrefix(p.to_owned()))
            })
            .collect::<Result<_, _>>()?;
        Ok(HostPathPolicy { prefixes })
    }

    /// Whether `path` (absolute) lies at or under an allowed prefix, segment by segment.
    pub fn allows(&self, path: &str) -> bool {
        let Some(path) = segments(path) else {
            return false;
        };
        self.prefixes.iter().any(|p| path.starts_with(p))
    }

    /// Whether no host path at all is allowed.
    pub fn is_empty(&self) -> bool {
        self.prefixes.is_empty()
    }
}

impl fmt::Display for HostPathPolicy {
    /// The allowed prefixes for messages: `/a, /b`, or `none`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.prefixes.is_empty() {
            return f.write_str("none");
        }
        let list: Vec<String> = self
            .prefixes
            .iter()
            .map(|p| format!("/{}", p.join("/")))
            .collect();
        f.write_str(&list.join(", "))
    }
}

/// The non-empty segments of an absolute path; `None` when it is relative or has a `.`/`..` segment.
fn segments(path: &str) -> Option<Vec<String>> {
    let rest = path.strip_prefix('/')?;
    let parts: Vec<String> = rest
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    (!parts.iter().any(|s| s == "." || s == "..")).then_some(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_images_are_accepted_and_moving_ones_refused() {
        for ok in [
            "anshin/inference:0.1.0",
            "registry.local:5000/anshin/inference:0.1.0",
            &format!("anshin/inference@sha256:{}", "ab".repeat(32)),
            &format!("anshin/inference:0.1.0@sha256:{}", "0".repeat(64)),
            DEFAULT_VERIFIER_IMAGE,
        ] {
            assert_eq!(check_pinned_image(ok), Ok(()), "{ok}");
        }
        for bad in [
            "anshin/inference:latest",
            "anshin/inference",
            "registry.local:5000/anshin/inference",
            "anshin/inference:",
            "anshin/inference@sha256:abc",
            "",
        ] {
            let err = check_pinned_image(bad).expect_err(bad);
            assert!(err.to_string().contains("not pinned"), "{err}");
        }
    }

    #[test]
    fn the_default_image_is_this_release() {
        assert_eq!(
            DEFAULT_VERIFIER_IMAGE,
            format!("anshin/inference:{}", env!("CARGO_PKG_VERSION"))
        );
    }

    #[test]
    fn prefixes_match_whole_segments_only() {
        let policy = HostPathPolicy::new(&["/var/lib/anshin/models/"]).expect("clean prefix");
        assert!(policy.allows("/var/lib/anshin/models"));
        assert!(policy.allows("/var/lib/anshin/models/smollm2"));
        assert!(policy.allows("/var/lib/anshin//models/smollm2/"));
        assert!(!policy.allows("/var/lib/anshin/models-old/smollm2"));
        assert!(!policy.allows("/var/lib/anshin"));
        assert!(!policy.allows("/var/lib/anshin/models/../../../etc"));
        assert!(!policy.allows("/var/lib/anshin/models/./x"));
        assert!(!policy.allows("var/lib/anshin/models/x"));
        assert_eq!(policy.to_string(), "/var/lib/anshin/models");
    }

    #[test]
    fn nothing_is_allowed_by_default() {
        let policy = HostPathPolicy::default();
        assert!(policy.is_empty() && !policy.allows("/tmp/x"));
        assert_eq!(policy.to_string(), "none");
    }

    #[test]
    fn unclean_prefixes_are_refused_at_start() {
        for bad in ["relative/dir", "/data/../etc", "/data/./x", ""] {
            assert_eq!(
                HostPathPolicy::new(&[bad]),
                Err(PolicyError::BadPrefix(bad.into()))
            );
        }
        assert!(HostPathPolicy::new(&["/"]).expect("root").allows("/any"));
    }
}
