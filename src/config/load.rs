//! Reading and parsing the file, and the errors that say `file:line:col`.
//!
//! Positions come from a second, span-preserving parse of the same text ([`DeTable`]), kept
//! in a [`Checker`] that validation asks for the span of any key path.

use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::Config;
use super::environment::{self, Environment};

/// Why the configuration cannot be used. Each says where and what a valid value looks like.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("cannot read configuration file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// Not TOML, an unknown key, or a value of the wrong type.
    #[error("{}:{line}:{column}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The parser's message.
        message: String,
    },
    /// An `EXO_AUTHPROXY_*` variable's value cannot be used.
    #[error("{variable}: {problem}; for example: {example}")]
    Env {
        /// The variable.
        variable: String,
        /// What is wrong.
        problem: String,
        /// A valid setting, `VARIABLE=value`.
        example: String,
    },
    /// The file and the `EXO_AUTHPROXY_*` variables together do not make a configuration
    /// (e.g. a required key neither sets).
    #[error("{} with {variables}: {message}", path.display())]
    WithEnv {
        /// The file.
        path: PathBuf,
        /// The variables that were applied, comma-separated.
        variables: String,
        /// The parser's message.
        message: String,
    },
    /// Well-formed, but a value is not acceptable.
    #[error("{}:{line}:{column}: {key}: {problem}; for example: {example}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The dotted key, e.g. `tenant[1].tenant_id`.
        key: String,
        /// What is wrong.
        problem: String,
        /// A valid value or snippet.
        example: String,
    },
}

impl Config {
    /// Reads, parses and validates the file at `path`.
    ///
    /// # Errors
    /// [`Error::Read`] when the file cannot be read, otherwise as for [`Config::parse`].
    pub fn load(path: &Path) -> Result<Self, Error> {
        Self::load_with_env(path, &std::collections::BTreeMap::new())
    }

    /// [`Config::load`], then every `EXO_AUTHPROXY_<SECTION>_<KEY>` that `env` has overrides
    /// the file's value (README "Configuration from the environment"): what `serve` and the
    /// other commands use, with the process environment.
    ///
    /// # Errors
    /// As for [`Config::parse_with_env`].
    pub fn load_with_env(path: &Path, env: &dyn Environment) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse_with_env(&text, path, env)
    }

    /// Parses and validates `text`, which was read from `path` (used in messages and to resolve
    /// relative paths).
    ///
    /// # Errors
    /// [`Error::Parse`] for TOML and schema errors, [`Error::Invalid`] for values that fail
    /// validation.
    pub fn parse(text: &str, path: &Path) -> Result<Self, Error> {
        Self::parse_with_env(text, path, &std::collections::BTreeMap::new())
    }

    /// [`Config::parse`] with the values of the `EXO_AUTHPROXY_*` variables in `env` in place
    /// of the file's (file < environment). A variable may also supply a key the file lacks.
    ///
    /// # Errors
    /// As for [`Config::parse`]; [`Error::Env`] names the variable when its value is of the
    /// wrong type or fails validation; [`Error::WithEnv`] when file and variables together
    /// still lack a key.
    pub fn parse_with_env(text: &str, path: &Path, env: &dyn Environment) -> Result<Self, Error> {
        let source = Source { text, path };
        let positioned = |err: toml::de::Error| {
            let (line, column) = source.line_col(err.span().map_or(0, |s| s.start));
            Error::Parse {
                path: path.to_owned(),
                line,
                column,
                message: err.message().trim().to_owned(),
            }
        };
        let mut table: toml::Table = toml::from_str(text).map_err(positioned)?;
        let applied = environment::apply(env, &mut table).map_err(|bad| Error::Env {
            variable: bad.variable,
            problem: bad.problem,
            example: bad.example,
        })?;
        let mut config: Config = if applied.is_empty() {
            toml::from_str(text).map_err(positioned)?
        } else {
            toml::Value::Table(table)
                .try_into()
                .map_err(|merged: toml::de::Error| {
                    // The file's own mistakes keep their line and column.
                    match toml::from_str::<Config>(text) {
                        Err(own) if own.message().trim() == merged.message().trim() => {
                            positioned(own)
                        }
                        _ => Error::WithEnv {
                            path: path.to_owned(),
                            variables: applied
                                .iter()
                                .map(environment::Setting::variable)
                                .collect::<Vec<_>>()
                                .join(", "),
                            message: merged.message().trim().to_owned(),
                        },
                    }
                })?
        };
        let spans = DeTable::parse(text).map_err(|err| {
            let (line, column) = source.line_col(err.span().map_or(0, |s| s.start));
            Error::Parse {
                path: path.to_owned(),
                line,
                column,
                message: err.message().trim().to_owned(),
            }
        })?;
        let check = Checker {
            source,
            root: &spans,
        };
        config.validate(&check).map_err(|err| match err {
            // A value from a variable is blamed on the variable, not on the file's line.
            Error::Invalid { key, problem, .. }
                if let Some(setting) = applied.iter().find(|s| s.dotted() == key) =>
            {
                let variable = setting.variable();
                Error::Env {
                    example: format!("{variable}={}", setting.example),
                    variable,
                    problem,
                }
            }
            other => other,
        })?;
        let base = path.parent().unwrap_or(Path::new(""));
        config.resolve_paths(base);
        Ok(config)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        let fix_opt = |p: &mut Option<PathBuf>| {
            if let Some(p) = p {
                fix(p);
            }
        };
        fix(&mut self.state_dir);
        fix_opt(&mut self.listen.certificate);
        fix_opt(&mut self.listen.private_key);
        let e = &mut self.entra;
        for p in [
            &mut e.certificate,
            &mut e.private_key,
            &mut e.pfx,
            &mut e.pfx_password_file,
            &mut e.client_secret_file,
            &mut e.federated_token_file,
            &mut e.ca_file,
        ] {
            fix_opt(p);
        }
        fix_opt(&mut self.exchange.ca_file);
        fix_opt(&mut self.compliance.ca_file);
        if let Some(audit) = &mut self.audit {
            fix(&mut audit.file);
        }
        for t in &mut self.tenants {
            for p in [
                &mut t.certificate,
                &mut t.private_key,
                &mut t.pfx,
                &mut t.pfx_password_file,
                &mut t.client_secret_file,
                &mut t.federated_token_file,
            ] {
                fix_opt(p);
            }
        }
    }
}

#[derive(Clone, Copy)]
struct Source<'a> {
    text: &'a str,
    path: &'a Path,
}

impl Source<'_> {
    fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text[..offset];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, column)
    }
}

#[derive(Clone, Copy, Debug)]
pub(super) enum Seg<'a> {
    Key(&'a str),
    Idx(usize),
}

pub(super) struct Checker<'a> {
    source: Source<'a>,
    root: &'a Spanned<DeTable<'a>>,
}

impl Checker<'_> {
    /// The span of the value at `path`, or of the deepest existing ancestor.
    pub(super) fn span(&self, path: &[Seg<'_>]) -> Range<usize> {
        let mut best = 0..0;
        let mut table: Option<&DeTable<'_>> = Some(self.root.get_ref());
        let mut value: Option<&Spanned<DeValue<'_>>> = None;
        for seg in path {
            let next = match (seg, table, value) {
                (Seg::Key(k), Some(t), _) => t
                    .iter()
                    .find(|(key, _)| key.get_ref().as_ref() == *k)
                    .map(|(_, v)| v),
                (Seg::Idx(i), _, Some(v)) => match v.get_ref() {
                    DeValue::Array(a) => a.get(*i),
                    _ => None,
                },
                _ => None,
            };
            let Some(v) = next else { break };
            best = v.span();
            value = Some(v);
            table = match v.get_ref() {
                DeValue::Table(t) => Some(t),
                _ => None,
            };
        }
        best
    }

    pub(super) fn invalid(
        &self,
        at: &[Seg<'_>],
        key: &str,
        problem: String,
        example: &str,
    ) -> Error {
        let (line, column) = self.source.line_col(self.span(at).start);
        Error::Invalid {
            path: self.source.path.to_owned(),
            line,
            column,
            key: key.to_owned(),
            problem,
            example: example.to_owned(),
        }
    }
}
