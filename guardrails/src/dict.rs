//! The compiled dictionary: IPADIC (Debian's `mecab-ipadic` sources) compiled for vibrato, plus the
//! romaji forms of the dictionary's family and given names.
//!
//! `scripts/setup.d/20-guardrails.sh` converts the EUC-JP sources to UTF-8 and runs
//! `anshin-guardrails build-dict`, which calls [`Dictionary::build`]. The result lives in one directory
//! ([`Dictionary::default_dir`], overridable with `ANSHIN_GUARDRAILS_DICT`) and is loaded once per
//! process with [`Dictionary::load`].

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::romaji::{passport_form, to_romaji};

/// File name of the compiled vibrato dictionary inside the dictionary directory.
pub const SYSTEM_DIC: &str = "system.dic";
/// File name of the name list (romaji forms and surface forms) inside the dictionary directory.
pub const ROMAJI_NAMES: &str = "names-romaji.tsv";
/// Environment variable that points at the dictionary directory.
pub const DICT_ENV: &str = "ANSHIN_GUARDRAILS_DICT";

/// The morphological dictionary and name lists, loaded once and shared (it is `Send + Sync`). Load it
/// once per process: its ~50 MB are kept until the process exits.
pub struct Dictionary {
    /// Leaked on purpose: the dictionary is loaded once per process and lives until it exits, and a
    /// `'static` tokenizer lets the detector keep a pool of reusable analyser workers.
    pub(crate) tokenizer: &'static vibrato::Tokenizer,
    pub(crate) romaji_surnames: HashSet<String>,
    pub(crate) romaji_given: HashSet<String>,
    /// Surface forms of the lexicon's 人名,姓 entries (a word the analyser tagged 地域 may still be one).
    pub(crate) surnames: HashSet<String>,
    /// Surface forms of the lexicon's 人名,名 entries.
    pub(crate) given_names: HashSet<String>,
}

impl Dictionary {
    /// The directory used when `ANSHIN_GUARDRAILS_DICT` is unset:
    /// `$ANSHIN_CACHE/guardrails/ipadic`, with `ANSHIN_CACHE` defaulting to `~/.cache/anshin`.
    pub fn default_dir() -> PathBuf {
        if let Some(dir) = std::env::var_os(DICT_ENV) {
            return PathBuf::from(dir);
        }
        let cache = std::env::var_os("ANSHIN_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                let home = std::env::var_os("HOME")
                    .map(PathBuf::from)
                    .unwrap_or_default();
                home.join(".cache").join("anshin")
            });
        cache.join("guardrails").join("ipadic")
    }

    /// Loads the dictionary from [`Dictionary::default_dir`].
    pub fn load_default() -> Result<Dictionary> {
        Dictionary::load(&Dictionary::default_dir())
    }

    /// Loads a dictionary directory written by [`Dictionary::build`].
    pub fn load(dir: &Path) -> Result<Dictionary> {
        let dic_path = dir.join(SYSTEM_DIC);
        let names_path = dir.join(ROMAJI_NAMES);
        for p in [&dic_path, &names_path] {
            if !p.is_file() {
                return Err(Error::DictionaryMissing { path: p.clone() });
            }
        }
        let file = File::open(&dic_path).map_err(|source| io_err(&dic_path, source))?;
        let dict = vibrato::Dictionary::read(BufReader::new(file)).map_err(|source| {
            Error::Dictionary {
                path: dic_path.clone(),
                source,
            }
        })?;
        let mut romaji_surnames = HashSet::new();
        let mut romaji_given = HashSet::new();
        let mut surnames = HashSet::new();
        let mut given_names = HashSet::new();
        let names = File::open(&names_path).map_err(|source| io_err(&names_path, source))?;
        for line in BufReader::new(names).lines() {
            let line = line.map_err(|source| io_err(&names_path, source))?;
            match line.split_once('\t') {
                Some(("S", name)) => romaji_surnames.insert(name.to_string()),
                Some(("G", name)) => romaji_given.insert(name.to_string()),
                Some(("SK", name)) => surnames.insert(name.to_string()),
                Some(("GK", name)) => given_names.insert(name.to_string()),
                _ => false,
            };
        }
        let tokenizer: &'static vibrato::Tokenizer =
            Box::leak(Box::new(vibrato::Tokenizer::new(dict).max_grouping_len(24)));
        Ok(Dictionary {
            tokenizer,
            romaji_surnames,
            romaji_given,
            surnames,
            given_names,
        })
    }

    /// Compiles IPADIC sources (UTF-8: every `*.csv`, `matrix.def`, `char.def`, `unk.def` in `src`)
    /// into `out` (created if needed). Debian ships them EUC-JP encoded: convert with
    /// `iconv -f EUC-JP -t UTF-8` first (the setup script does).
    pub fn build(src: &Path, out: &Path) -> Result<()> {
        let mut csvs: Vec<PathBuf> = std::fs::read_dir(src)
            .map_err(|source| io_err(src, source))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "csv"))
            .collect();
        csvs.sort();
        if csvs.is_empty() {
            return Err(Error::DictionaryMissing {
                path: src.join("*.csv"),
            });
        }
        let mut lexicon = String::new();
        let mut names = Vec::new();
        for csv in &csvs {
            let mut text = String::new();
            File::open(csv)
                .and_then(|mut f| f.read_to_string(&mut text))
                .map_err(|source| io_err(csv, source))?;
            collect_romaji_names(&text, &mut names);
            lexicon.push_str(&text);
            if !text.ends_with('\n') {
                lexicon.push('\n');
            }
        }
        let open = |name: &str| {
            let p = src.join(name);
            File::open(&p)
                .map(BufReader::new)
                .map_err(|source| io_err(&p, source))
        };
        let dict = vibrato::SystemDictionaryBuilder::from_readers(
            lexicon.as_bytes(),
            open("matrix.def")?,
            open("char.def")?,
            open("unk.def")?,
        )
        .map_err(|source| Error::Dictionary {
            path: src.to_path_buf(),
            source,
        })?;
        std::fs::create_dir_all(out).map_err(|source| io_err(out, source))?;
        let dic_path = out.join(SYSTEM_DIC);
        let file = File::create(&dic_path).map_err(|source| io_err(&dic_path, source))?;
        let mut w = BufWriter::new(file);
        dict.write(&mut w).map_err(|source| Error::Dictionary {
            path: dic_path.clone(),
            source,
        })?;
        w.flush().map_err(|source| io_err(&dic_path, source))?;
        names.sort();
        names.dedup();
        let names_path = out.join(ROMAJI_NAMES);
        let body: String = names.iter().map(|(k, n)| format!("{k}\t{n}\n")).collect();
        std::fs::write(&names_path, body).map_err(|source| io_err(&names_path, source))
    }
}

/// Collects the 人名,姓 / 人名,名 entries of one lexicon CSV: `(S|G, romaji)` and `(SK|GK, surface)`.
fn collect_romaji_names(csv: &str, out: &mut Vec<(&'static str, String)>) {
    for line in csv.lines() {
        let f: Vec<&str> = line.split(',').collect();
        if f.len() < 12 || f[4] != "名詞" || f[5] != "固有名詞" || f[6] != "人名" {
            continue;
        }
        let (kind, surface_kind) = match f[7] {
            "姓" => ("S", "SK"),
            "名" => ("G", "GK"),
            _ => continue,
        };
        out.push((surface_kind, f[0].to_string()));
        if let Some(r) = to_romaji(f[11]).filter(|r| r.len() >= 3) {
            out.push((kind, passport_form(&r)));
            out.push((kind, r));
        }
    }
}

fn io_err(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        source,
    }
}
