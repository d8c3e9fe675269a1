//! TLS for the federation listener. Other servers connect over HTTPS and,
//! unless they skip verification on a test network, check that the
//! certificate is valid for our server name (Server-Server API, "Server
//! discovery" and "TLS").
//!
//! One certificate is served for every connection, whatever the SNI and also
//! without one: Synapse sends no SNI when the server name is an IP literal.

use std::{path::Path, sync::Arc};

use anyhow::{bail, Context};
use ruma::ServerName;
use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::config::FederationConfig;

/// The rustls configuration of the federation listener: the configured PEM
/// certificate chain and key, or else a development certificate generated
/// now (`self_signed = true`; configuration validation ensures one of them).
pub fn server_config(
    config: &FederationConfig,
    server_name: &ServerName,
) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let (chain, key) = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => load_pem(cert, key)?,
        _ if config.self_signed => self_signed(server_name)?,
        _ => bail!("federation TLS needs tls_cert and tls_key, or self_signed = true"),
    };
    // ring, as everywhere in this build (see `server::serve`).
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("setting up TLS")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("the federation certificate and key do not match or are not usable")?;
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(tls))
}

/// A certificate chain and its private key from PEM files.
fn load_pem(
    cert: &Path,
    key: &Path,
) -> anyhow::Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("reading the certificate chain {}", cert.display()))?;
    if chain.is_empty() {
        bail!("{} holds no PEM certificate", cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("reading the private key {}", key.display()))?;
    Ok((chain, key))
}

/// A self-signed certificate valid for the server name's host and for
/// loopback (`localhost`, 127.0.0.1, ::1), held in memory only: it is
/// regenerated on every start, which peers that skip verification accept.
fn self_signed(
    server_name: &ServerName,
) -> anyhow::Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let host = server_name
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    let mut names = vec![host.to_owned()];
    for loopback in ["localhost", "127.0.0.1", "::1"] {
        if !names.iter().any(|n| n == loopback) {
            names.push(loopback.to_owned());
        }
    }
    let generated = rcgen::generate_simple_self_signed(names)
        .context("generating a self-signed federation certificate")?;
    let key = PrivatePkcs8KeyDer::from(generated.signing_key.serialize_der());
    Ok((vec![generated.cert.der().clone()], key.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> FederationConfig {
        FederationConfig {
            enabled: true,
            self_signed: true,
            ..FederationConfig::default()
        }
    }

    #[test]
    fn self_signed_certificates_cover_the_server_name() {
        for name in [
            "example.org:8448",
            "127.0.0.1:8448",
            "[::1]:8448",
            "localhost",
        ] {
            let name: &ServerName = name.try_into().unwrap();
            server_config(&config(), name).unwrap();
        }
    }

    #[test]
    fn pem_files_are_loaded_and_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let generated = rcgen::generate_simple_self_signed(vec!["example.org".into()]).unwrap();
        let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert, generated.cert.pem()).unwrap();
        std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();
        let mut config = FederationConfig {
            enabled: true,
            tls_cert: Some(cert.clone()),
            tls_key: Some(key.clone()),
            ..FederationConfig::default()
        };
        let name: &ServerName = "example.org".try_into().unwrap();
        server_config(&config, name).unwrap();

        std::fs::write(&key, "not a key").unwrap();
        let err = format!("{:#}", server_config(&config, name).unwrap_err());
        assert!(err.contains("key.pem"), "{err}");
        config.tls_cert = Some(dir.path().join("missing.pem"));
        let err = format!("{:#}", server_config(&config, name).unwrap_err());
        assert!(err.contains("missing.pem"), "{err}");
    }
}
