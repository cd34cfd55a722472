//! Where a ModelVersion's files are, and whether the operator may mount them.
//!
//! `parse_source` reads `spec.artifact.uri` (pvc:// or file:///; other schemes are reported as not
//! supported yet; `.`/`..` path segments are refused) → `admit` checks a `file://` directory against
//! the admin's [`HostPathPolicy`] → [`crate::pods::artifact_volume`] turns the source into the pod
//! volume that the verification Job and the serving pods mount.

use anshin_crds::model_version::ModelVersion;

use crate::policy::HostPathPolicy;

/// Where an artifact's files are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A PersistentVolumeClaim in the version's namespace, and a directory inside it.
    Pvc {
        /// Claim name.
        claim: String,
        /// Directory inside the claim ("" for its root).
        path: String,
    },
    /// A directory on the node (`file:///PATH`).
    HostPath {
        /// Absolute directory.
        path: String,
    },
}

/// Why an artifact cannot be verified here.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// The scheme is valid in the schema but Anshin cannot read it yet.
    #[error(
        "artifact URIs with scheme {scheme}:// are not supported yet: copy the files to a PersistentVolumeClaim and use pvc://CLAIM/PATH"
    )]
    Unsupported {
        /// The scheme.
        scheme: String,
    },
    /// The URI has no scheme or no claim name.
    #[error("artifact URI {0:?} is malformed: use pvc://CLAIM/PATH")]
    Malformed(String),
    /// A path segment is `.` or `..`.
    #[error("artifact URI {0:?} has a `.` or `..` path segment: name the directory directly")]
    DotSegment(String),
    /// A `file://` directory outside the prefixes the operator was started with.
    #[error(
        "artifact host path {path:?} is not under a directory this operator allows (allowed: {allowed}): put the files on a PersistentVolumeClaim and use pvc://CLAIM/PATH, or ask the cluster admin to start the operator with --allow-host-path PREFIX"
    )]
    HostPathNotAllowed {
        /// The refused directory.
        path: String,
        /// The allowed prefixes, as a list for the message.
        allowed: String,
    },
}

impl SourceError {
    /// The `ArtifactVerified` condition reason for this error.
    pub fn reason(&self) -> &'static str {
        match self {
            SourceError::HostPathNotAllowed { .. } => "HostPathNotAllowed",
            _ => "UnsupportedSource",
        }
    }
}

/// Parses `spec.artifact.uri`.
pub fn parse_source(uri: &str) -> Result<Source, SourceError> {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return Err(SourceError::Malformed(uri.to_owned()));
    };
    let has_dot_segment = rest.split('/').any(|s| s == "." || s == "..");
    match scheme {
        "pvc" | "file" if has_dot_segment => Err(SourceError::DotSegment(uri.to_owned())),
        "pvc" => {
            let (claim, path) = rest.split_once('/').unwrap_or((rest, ""));
            if claim.is_empty() {
                return Err(SourceError::Malformed(uri.to_owned()));
            }
            Ok(Source::Pvc {
                claim: claim.to_owned(),
                path: path.trim_matches('/').to_owned(),
            })
        }
        "file" if rest.starts_with('/') && rest.len() > 1 => Ok(Source::HostPath {
            path: rest.to_owned(),
        }),
        "file" => Err(SourceError::Malformed(uri.to_owned())),
        other => Err(SourceError::Unsupported {
            scheme: other.to_owned(),
        }),
    }
}

/// `source` if the operator may mount it: a claim always, a host path only under `host_paths`.
pub fn admit(source: Source, host_paths: &HostPathPolicy) -> Result<Source, SourceError> {
    match &source {
        Source::HostPath { path } if !host_paths.allows(path) => {
            Err(SourceError::HostPathNotAllowed {
                path: path.clone(),
                allowed: host_paths.to_string(),
            })
        }
        _ => Ok(source),
    }
}

/// The source of `mv`, parsed and admitted.
pub fn source_of(mv: &ModelVersion, host_paths: &HostPathPolicy) -> Result<Source, SourceError> {
    admit(parse_source(&mv.spec.artifact.uri)?, host_paths)
}
