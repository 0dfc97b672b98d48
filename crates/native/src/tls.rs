//! TLS to a storage server, authenticated by the SPKI hash pinned in its NURL.
//!
//! Tahoe's storage servers present self-signed X.509 **version 1**
//! certificates (Foolscap's `newpb_thingy`). `webpki`, which rustls uses for
//! everything certificate-related, refuses version 1 certificates, so this
//! module never hands the certificate to it:
//!
//! * [`PinnedVerifier::verify_server_cert`] extracts the SubjectPublicKeyInfo
//!   with a small DER walker ([`spki_of_certificate`]), hashes it with
//!   SHA-256 and compares it, in constant time, with the hash from the NURL
//!   (RFC 7469 style, as `http-storage-node-protocol.rst` asks). Names,
//!   validity dates and the self-signature are not checked, as in Tahoe
//!   (`_TLSContextFactory` accepts expired and self-signed certificates):
//!   the pin is the identity.
//! * The handshake signature (which proves the server holds the private key
//!   of that SPKI) is verified against the SPKI as a raw public key
//!   (`verify_tls13_signature_with_raw_key`, and webpki's
//!   `RawPublicKeyEntity` for TLS 1.2).
//!
//! A mismatch is remembered in [`PinState`], so that the caller can report
//! it by name instead of as a generic connection failure, and is never
//! retried.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, SubjectPublicKeyInfoDer, UnixTime};
use rustls::{DigitallySignedStruct, Error as TlsError, SignatureScheme};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// What the verifier learnt about the server's certificate.
#[derive(Debug, Default)]
pub struct PinState {
    /// The SPKI hash (URL-safe base64) of a certificate that did not match
    /// the pin, if one was presented.
    pub mismatch: Mutex<Option<String>>,
    /// SHA-1 of the matching certificate (DER): the server's Foolscap tub
    /// id, Tahoe's lease seed for it.
    pub cert_sha1: OnceLock<[u8; 20]>,
    /// Certificates accepted so far: one per TLS connection (keep-alive
    /// makes this much smaller than the number of requests).
    pub handshakes: AtomicU32,
}

/// A rustls verifier that accepts exactly the certificates whose SPKI hashes
/// to the pinned value.
#[derive(Debug)]
pub struct PinnedVerifier {
    expected: [u8; 32],
    state: Arc<PinState>,
    algs: WebPkiSupportedAlgorithms,
}

impl PinnedVerifier {
    pub fn new(expected: [u8; 32], state: Arc<PinState>) -> Self {
        PinnedVerifier {
            expected,
            state,
            algs: rustls::crypto::ring::default_provider().signature_verification_algorithms,
        }
    }
}

/// A rustls client configuration that trusts only the certificate pinned by
/// `expected` (SPKI SHA-256). No ALPN: Tahoe's storage server speaks
/// HTTP/1.1.
pub fn client_config(expected: [u8; 32], state: Arc<PinState>) -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("ring supports TLS 1.2 and 1.3")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedVerifier::new(expected, state)))
        .with_no_client_auth()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn bad_cert(msg: &str) -> TlsError {
    TlsError::General(msg.to_string())
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, TlsError> {
        let spki = spki_of_certificate(end_entity)
            .ok_or_else(|| bad_cert("the server's certificate is not DER X.509"))?;
        let hash = Sha256::digest(spki);
        if !constant_time_eq(&hash, &self.expected) {
            let seen = data_encoding::BASE64URL_NOPAD.encode(&hash);
            *self
                .state
                .mismatch
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = Some(seen);
            return Err(TlsError::InvalidCertificate(
                rustls::CertificateError::ApplicationVerificationFailure,
            ));
        }
        let sha1: [u8; 20] = Sha1::digest(end_entity.as_ref()).into();
        let _ = self.state.cert_sha1.set(sha1);
        self.state.handshakes.fetch_add(1, Ordering::Relaxed);
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        let spki = spki_of_certificate(cert)
            .ok_or_else(|| bad_cert("the server's certificate is not DER X.509"))?;
        let spki = SubjectPublicKeyInfoDer::from(spki);
        let key = webpki::RawPublicKeyEntity::try_from(&spki)
            .map_err(|e| bad_cert(&format!("bad server public key: {e}")))?;
        let algs = self
            .algs
            .mapping
            .iter()
            .find(|(s, _)| *s == dss.scheme)
            .map(|(_, a)| *a)
            .ok_or(TlsError::PeerMisbehaved(
                rustls::PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme,
            ))?;
        for alg in algs {
            if key.verify_signature(*alg, message, dss.signature()).is_ok() {
                return Ok(HandshakeSignatureValid::assertion());
            }
        }
        Err(TlsError::InvalidCertificate(
            rustls::CertificateError::BadSignature,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, TlsError> {
        let spki = spki_of_certificate(cert)
            .ok_or_else(|| bad_cert("the server's certificate is not DER X.509"))?;
        rustls::crypto::verify_tls13_signature_with_raw_key(
            message,
            &SubjectPublicKeyInfoDer::from(spki),
            dss,
            &self.algs,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// One DER element: its tag, the whole element, its contents, and what
/// follows it.
type Tlv<'a> = (u8, &'a [u8], &'a [u8], &'a [u8]);

fn der_tlv(input: &[u8]) -> Option<Tlv<'_>> {
    let tag = *input.first()?;
    if tag & 0x1f == 0x1f {
        return None; // high tag numbers do not occur in certificates' outer structure
    }
    let first = *input.get(1)? as usize;
    let (len, header) = if first < 0x80 {
        (first, 2)
    } else {
        let n = first & 0x7f;
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | *input.get(2 + i)? as usize;
        }
        (len, 2 + n)
    };
    let end = header.checked_add(len)?;
    if end > input.len() {
        return None;
    }
    Some((tag, &input[..end], &input[header..end], &input[end..]))
}

/// The DER SubjectPublicKeyInfo (whole `SEQUENCE`, as hashed for the pin) of
/// a DER X.509 certificate of any version.
pub fn spki_of_certificate(cert: &[u8]) -> Option<&[u8]> {
    const SEQUENCE: u8 = 0x30;
    let (tag, _, cert_body, _) = der_tlv(cert)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, _, mut tbs, _) = der_tlv(cert_body)?;
    if tag != SEQUENCE {
        return None;
    }
    // [0] EXPLICIT version, absent in version 1 certificates.
    if tbs.first() == Some(&0xa0) {
        tbs = der_tlv(tbs)?.3;
    }
    // serialNumber, signature, issuer, validity, subject.
    let (tag, _, _, rest) = der_tlv(tbs)?;
    if tag != 0x02 {
        return None;
    }
    tbs = rest;
    for _ in 0..4 {
        let (tag, _, _, rest) = der_tlv(tbs)?;
        if tag != SEQUENCE {
            return None;
        }
        tbs = rest;
    }
    let (tag, spki, _, _) = der_tlv(tbs)?;
    (tag == SEQUENCE).then_some(spki)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A storage server certificate from a tahoe-lafs 1.20.0 grid (X.509 v1,
    /// self-signed, RSA 2048); its NURL carried the SPKI hash below.
    const CERT_B64: &str = "MIICojCCAYoCAQEwDQYJKoZIhvcNAQELBQAwFzEVMBMGA1UEAwwMbmV3cGJfdGhpbmd5MB4XDTI2MTEyNTA4NTcxOVoXDTI3MTEyNTA4NTcxOVowFzEVMBMGA1UEAwwMbmV3cGJfdGhpbmd5MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAofmwNFFMcxBi0yTazzT+uUOS0jIsaPglj4XAX/wdD9FP5eKP86U51idjhYira6a4nKVqF461BQgOKgrTn+nVS/wBVM6DukUP3/ToWA108cGQfmAGdVjfz37zNjVIJhuWryV8d4va+3l6Ej/kE8e/YBQRSUJdlWO0b7V1ArBNZ7Pof/rXtSHxe3bw/q3m7E6endWdfx0jcbiJYBKMr2wzKCtmOYHPdtOwjyWjT/CFJ/+oWURMEeRK4CJXGFttBOGsPrA43GGKd0dC9RrrvKurUdD7QoiJCw/Xs/3Y2QiR7iYhKIXiCpwoapJOqhZ+9qo7Kp9QpgkJ4qN7R1fIW4H+lwIDAQABMA0GCSqGSIb3DQEBCwUAA4IBAQB6IpRV0+Z8mBGLsykKTek28gARMM9icIbmvYiOg8kFvDV+/BJEuGelojpWrVfgDfzRf7c93B9C6Pqcmhf345YPxAeP1o1vxxk4OFRWNU6hHxgBHk2z2wagr4hiZvGxdBNbDVERsrMcs0kVXY7AoJ8Rd45hXRn/ssbl1yIAw323vjrlFjxcZXTfTryk2wZZgYYEFQeu56YYymrWUya5GyYW7Jx23hyy9/g4bGwoxUNtEgVB1iYKzhtr+eJLDrsh+a65pfAzqptvQdQvAQKKX5TPgHYrf+nCMfxWwYVJo2S5Kyikvv5pcI/c5KqFtRKe+UK+hFaGGFSXhkTOotTiN+B1";

    #[test]
    fn spki_hash_of_a_tahoe_certificate_matches_its_nurl() {
        let der = data_encoding::BASE64.decode(CERT_B64.as_bytes()).unwrap();
        let spki = spki_of_certificate(&der).unwrap();
        assert_eq!(
            data_encoding::BASE64URL_NOPAD.encode(&Sha256::digest(spki)),
            "Lc7Prfjy_eXJTLX1U--NjbbiI8WJiDdPfzDVkbP0CWg"
        );
        // ... and its SHA-1 is the tub id of the same server's FURL.
        assert_eq!(
            steward_cap::base32::encode(&Sha1::digest(&der)),
            "5s2n4diiohteqlcls2xbk657q25vphwy"
        );
    }

    #[test]
    fn der_walker_rejects_garbage() {
        assert!(spki_of_certificate(b"").is_none());
        assert!(spki_of_certificate(&[0x30, 0x05, 0x30]).is_none());
        assert!(spki_of_certificate(&[0x30, 0x00]).is_none());
        let der = data_encoding::BASE64.decode(CERT_B64.as_bytes()).unwrap();
        assert!(spki_of_certificate(&der[..der.len() - 300]).is_none());
    }

    #[test]
    fn verifier_accepts_the_pin_and_refuses_others() {
        let der = data_encoding::BASE64.decode(CERT_B64.as_bytes()).unwrap();
        let cert = CertificateDer::from(der);
        let pin: [u8; 32] = Sha256::digest(spki_of_certificate(&cert).unwrap()).into();
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let state = Arc::new(PinState::default());
        let v = PinnedVerifier::new(pin, state.clone());
        assert!(v
            .verify_server_cert(&cert, &[], &name, &[], UnixTime::now())
            .is_ok());
        assert!(state.cert_sha1.get().is_some());
        let mut other = pin;
        other[0] ^= 1;
        let state = Arc::new(PinState::default());
        let v = PinnedVerifier::new(other, state.clone());
        assert!(v
            .verify_server_cert(&cert, &[], &name, &[], UnixTime::now())
            .is_err());
        assert_eq!(
            state.mismatch.lock().unwrap().as_deref(),
            Some("Lc7Prfjy_eXJTLX1U--NjbbiI8WJiDdPfzDVkbP0CWg")
        );
    }
}
