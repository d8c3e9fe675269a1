//! The server's ed25519 signing key (Server-Server API: "Retrieving server keys"):
//! generated on first start into the data directory, or read from a configured file.

use std::{io::Write, path::Path};

use anyhow::Context;
use feathur_federation::SigningKey;

/// Loads the key file at `path`, creating it (mode 0600) with a new key if absent.
pub fn load_or_generate(path: &Path) -> anyhow::Result<SigningKey> {
    if path.exists() {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the signing key {}", path.display()))?;
        return SigningKey::from_key_file(&text)
            .with_context(|| format!("the signing key {} is not valid", path.display()));
    }
    let key = SigningKey::generate().context("generating a signing key")?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let tmp = path.with_extension("tmp");
    {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options
            .open(&tmp)
            .with_context(|| format!("creating the signing key {}", tmp.display()))?;
        file.write_all(key.to_key_file().as_bytes())?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    tracing::info!(key_id = key.key_id(), path = %path.display(), "generated a new signing key");
    Ok(key)
}

#[cfg(test)]
mod tests {
    #[test]
    fn generated_key_is_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing.key");
        let first = super::load_or_generate(&path).unwrap();
        let second = super::load_or_generate(&path).unwrap();
        assert_eq!(first.key_id(), second.key_id());
        assert_eq!(first.public_key_base64(), second.public_key_base64());
    }
}
