//! Reading a config file: parse, validate, resolve; and the deeper check `tidemark check
//! config` runs on top (every file the config names exists, file_sd files parse).

use std::path::{Path, PathBuf};

use super::error::{ConfigError, Reporter, problem_from};
use super::file_sd;
use super::resolve::resolve;
use super::schema::{Authorization, BasicAuth, Config, TlsConfig};
use super::validate::validate;
use super::yaml::{self, KeyPath, Node};

impl Config {
    /// Parses and validates config text; `file_name` is used in error messages only. Relative
    /// file names stay as written (there is no file to resolve them against).
    pub fn parse(text: &str, file_name: &str) -> Result<Config, ConfigError> {
        let (parsed, _) = parse_valid(text, file_name)?;
        Ok(resolve(parsed, None))
    }

    /// Reads, parses and validates a config file, resolving relative file names against its
    /// directory.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        load_with_tree(path).map(|(c, _)| c)
    }

    /// What `tidemark check config` runs: [`Config::load`], then checks that every file the
    /// config names exists and that file_sd files matched by its patterns parse.
    pub fn check_file(path: &Path) -> Result<Config, ConfigError> {
        let (config, root) = load_with_tree(path)?;
        let file = path.display().to_string();
        let mut check = Reporter::new(&file, root.as_ref());
        for (at, f) in config.referenced_files() {
            if !f.is_file() {
                check.report(&at, format!("file {} does not exist", f.display()));
            }
        }
        for (i, sc) in config.scrape_configs.iter().enumerate() {
            for (j, sd) in sc.file_sd_configs.iter().enumerate() {
                let at = KeyPath::default()
                    .key("scrape_configs")
                    .index(i)
                    .key("file_sd_configs")
                    .index(j)
                    .key("files");
                match file_sd::expand(&sd.files) {
                    Ok(files) => {
                        for f in files {
                            if let Err(e) = file_sd::read_file(&f) {
                                check.nested(&at, e);
                            }
                        }
                    }
                    Err(e) => check.nested(&at, e),
                }
            }
        }
        let problems = check.into_problems();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }

    /// Every file name in the config with its key path, for existence checks.
    fn referenced_files(&self) -> Vec<(KeyPath, PathBuf)> {
        let mut out = Vec::new();
        let root = KeyPath::default();
        for (i, sc) in self.scrape_configs.iter().enumerate() {
            let at = root.key("scrape_configs").index(i);
            http_files(
                &at,
                &sc.basic_auth,
                &sc.authorization,
                &sc.tls_config,
                &mut out,
            );
        }
        for (i, rw) in self.remote_write.iter().enumerate() {
            let at = root.key("remote_write").index(i);
            http_files(
                &at,
                &rw.basic_auth,
                &rw.authorization,
                &rw.tls_config,
                &mut out,
            );
        }
        if let Some(tls) = &self.web.tls {
            let at = root.key("web").key("tls");
            out.push((at.key("cert_file"), tls.cert_file.clone()));
            out.push((at.key("key_file"), tls.key_file.clone()));
            out.extend(
                tls.client_ca_file
                    .clone()
                    .map(|f| (at.key("client_ca_file"), f)),
            );
        }
        out
    }
}

/// The config as written in `text` once it is valid, and its document tree (for locating
/// problems found later); every problem at once when it is not.
fn parse_valid(text: &str, file: &str) -> Result<(Config, Option<Node>), ConfigError> {
    let root = yaml::parse(text).map_err(|e| ConfigError::Invalid(vec![problem_from(file, e)]))?;
    let config: Config = match &root {
        None => Config::default(),
        Some(node) => {
            yaml::from_node(node).map_err(|e| ConfigError::Invalid(vec![problem_from(file, e)]))?
        }
    };
    let problems = validate(&config, file, root.as_ref());
    if problems.is_empty() {
        Ok((config, root))
    } else {
        Err(ConfigError::Invalid(problems))
    }
}

/// [`Config::load`], keeping the document tree.
fn load_with_tree(path: &Path) -> Result<(Config, Option<Node>), ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let (parsed, root) = parse_valid(&text, &path.display().to_string())?;
    let dir = path.parent().unwrap_or(Path::new(""));
    Ok((resolve(parsed, Some(dir)), root))
}

fn http_files(
    at: &KeyPath,
    ba: &Option<BasicAuth>,
    auth: &Option<Authorization>,
    tls: &TlsConfig,
    out: &mut Vec<(KeyPath, PathBuf)>,
) {
    if let Some(ba) = ba {
        let b = at.key("basic_auth");
        out.extend(
            ba.username_file
                .clone()
                .map(|f| (b.key("username_file"), f)),
        );
        out.extend(
            ba.password_file
                .clone()
                .map(|f| (b.key("password_file"), f)),
        );
    }
    if let Some(f) = auth.as_ref().and_then(|a| a.credentials_file.clone()) {
        out.push((at.key("authorization").key("credentials_file"), f));
    }
    let t = at.key("tls_config");
    for (k, f) in [
        ("ca_file", &tls.ca_file),
        ("cert_file", &tls.cert_file),
        ("key_file", &tls.key_file),
    ] {
        out.extend(f.clone().map(|f| (t.key(k), f)));
    }
}
