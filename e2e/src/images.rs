//! The image table: which local program stands in for which container image.
//!
//! There is no container runtime and no registry, so an image name is only a key. An entry maps an image
//! (matched without its tag or digest) to the program that plays its entrypoint. A container with an
//! empty `command` runs that program with the container's `args`; a container with a `command` runs
//! `command[0]` (an absolute path, a program on `PATH`, or the entry's own file name) with the rest of
//! `command` and then `args`, like an entrypoint override.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Errors resolving a container's program.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    /// The image has no entry in the table.
    #[error("image {0:?} is not in the node agent's image table (add it with ImageTable::with)")]
    Unknown(String),
    /// `command[0]` is neither absolute, on PATH, nor the entry's program.
    #[error("command {0:?} not found: not an absolute path, not on PATH, not the image's program")]
    CommandNotFound(String),
}

/// Image name (without tag) → local program.
#[derive(Debug, Clone, Default)]
pub struct ImageTable {
    entries: BTreeMap<String, PathBuf>,
}

impl ImageTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) an entry; `image` may carry a tag, which is ignored.
    pub fn with(mut self, image: &str, program: impl Into<PathBuf>) -> Self {
        self.entries
            .insert(strip_tag(image).to_string(), program.into());
        self
    }

    /// Adds `anshin/<name>` → `<dir>/anshin-<name>` for every `anshin-*` executable in `dir`
    /// (e.g. cargo's `target/debug`), so the project's own binaries are images.
    pub fn with_project_binaries(mut self, dir: &Path) -> Self {
        let Ok(read) = std::fs::read_dir(dir) else {
            return self;
        };
        for entry in read.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let is_exe = entry
                .metadata()
                .map(|m| m.is_file() && is_executable(&m))
                .unwrap_or(false);
            if let Some(short) = name
                .strip_prefix("anshin-")
                .filter(|s| !s.contains('.') && is_exe)
            {
                self.entries.insert(format!("anshin/{short}"), entry.path());
            }
        }
        self
    }

    /// All entries, image → program.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &Path)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v.as_path()))
    }

    /// The program for `image`, if any.
    pub fn program(&self, image: &str) -> Option<&Path> {
        self.entries.get(strip_tag(image)).map(PathBuf::as_path)
    }

    /// The argv (`[program, args…]`) for a container's image, command and args.
    pub fn argv(
        &self,
        image: &str,
        command: &[String],
        args: &[String],
    ) -> Result<Vec<String>, ImageError> {
        let program = self
            .program(image)
            .ok_or_else(|| ImageError::Unknown(image.to_string()))?;
        let mut argv = match command.split_first() {
            None => vec![program.to_string_lossy().into_owned()],
            Some((first, rest)) => {
                let resolved = resolve_command(first, program)
                    .ok_or_else(|| ImageError::CommandNotFound(first.clone()))?;
                std::iter::once(resolved)
                    .chain(rest.iter().cloned())
                    .collect()
            }
        };
        argv.extend(args.iter().cloned());
        Ok(argv)
    }
}

/// The image name without `:tag` or `@digest` (a `:` inside a registry host:port is kept).
pub fn strip_tag(image: &str) -> &str {
    let image = image.split('@').next().unwrap_or(image);
    match image.rfind(':') {
        Some(i) if !image[i..].contains('/') => &image[..i],
        _ => image,
    }
}

fn resolve_command(first: &str, program: &Path) -> Option<String> {
    if program
        .file_name()
        .is_some_and(|n| n.to_string_lossy() == first)
    {
        return Some(program.to_string_lossy().into_owned());
    }
    if first.starts_with('/') {
        return Path::new(first).is_file().then(|| first.to_string());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(first))
        .find(|p| p.is_file())
        .map(|p| p.to_string_lossy().into_owned())
}

fn is_executable(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o111 != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> ImageTable {
        ImageTable::new().with("anshin/testpod:v1", "/opt/bin/anshin-testpod")
    }

    #[test]
    fn tags_and_digests_are_ignored() {
        assert_eq!(strip_tag("anshin/testpod:v2"), "anshin/testpod");
        assert_eq!(
            strip_tag("registry:5000/anshin/x"),
            "registry:5000/anshin/x"
        );
        assert_eq!(strip_tag("anshin/x@sha256:abc"), "anshin/x");
        assert!(table().program("anshin/testpod:latest").is_some());
    }

    #[test]
    fn args_follow_the_entrypoint() {
        let argv = table()
            .argv("anshin/testpod", &[], &["--port".into(), "8080".into()])
            .unwrap();
        assert_eq!(argv, ["/opt/bin/anshin-testpod", "--port", "8080"]);
    }

    #[test]
    fn command_overrides_the_entrypoint() {
        let cmd = vec!["sh".to_string(), "-c".to_string()];
        let argv = table()
            .argv("anshin/testpod", &cmd, &["exit 1".into()])
            .unwrap();
        assert!(argv[0].ends_with("/sh"), "{argv:?}");
        assert_eq!(&argv[1..], ["-c", "exit 1"]);
        let own = table()
            .argv("anshin/testpod", &["anshin-testpod".into()], &[])
            .unwrap();
        assert_eq!(own, ["/opt/bin/anshin-testpod"]);
    }

    #[test]
    fn unknown_image_is_an_error() {
        assert_eq!(
            table().argv("nginx", &[], &[]),
            Err(ImageError::Unknown("nginx".into()))
        );
    }
}
