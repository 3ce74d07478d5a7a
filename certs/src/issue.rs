//! The plan behind [`crate::init`]: load or create the CA, then decide for each leaf whether to
//! keep it or issue it again. Every new file is collected first and written in one
//! [`fsio::write_all`] at the end, so a failure while planning writes nothing at all.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SerialNumber, PKCS_ECDSA_P256_SHA256,
};
use time::{Duration, OffsetDateTime};

use crate::fsio::{self, Mode, PendingFile};
use crate::inspect::{inspect_cert, CertInfo};
use crate::layout::{API_DIR, CA, CA_DIR, CERT, CLIENT_DIR, KEY, SERVER_DIR};
use crate::{ActionKind, CertsError, InitOptions, InitReport, San, CA_DAYS, RENEW_WITHIN_DAYS};

/// The CA as loaded or created: what leaves need to be signed and checked against it.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
    info: CertInfo,
}

/// The two leaves Airlock uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// The DinD daemon (`dockerd --tlsverify`) and, later, the egress admin API.
    Server,
    /// The controller, the only holder of a client key.
    Client,
    /// The controller's API, when it serves HTTPS itself.
    Api,
}

/// Accumulates the files to write and the report lines.
struct Plan<'a> {
    out: &'a Path,
    files: Vec<PendingFile>,
    report: InitReport,
}

pub(crate) fn run(opts: &InitOptions, now: OffsetDateTime) -> Result<InitReport, CertsError> {
    let out = opts.out.as_path();
    fsio::ensure_dir(out, 0o755)?;
    fsio::ensure_dir(&out.join(CA_DIR), 0o700)?;
    fsio::ensure_dir(&out.join(SERVER_DIR), 0o755)?;
    fsio::ensure_dir(&out.join(CLIENT_DIR), 0o755)?;

    let mut plan = Plan {
        out,
        files: Vec::new(),
        report: InitReport::default(),
    };
    let ca = plan.ca(now)?;
    let mut server_sans = San::loopback().to_vec();
    for san in &opts.sans {
        if !server_sans.contains(san) {
            server_sans.push(san.clone());
        }
    }
    plan.leaf(&ca, Role::Server, &server_sans, opts.days, now)?;
    plan.leaf(&ca, Role::Client, &[], opts.days, now)?;
    if !opts.api_sans.is_empty() {
        fsio::ensure_dir(&out.join(API_DIR), 0o755)?;
        let mut api_sans = San::loopback().to_vec();
        for san in &opts.api_sans {
            if !api_sans.contains(san) {
                api_sans.push(san.clone());
            }
        }
        plan.leaf(&ca, Role::Api, &api_sans, opts.days, now)?;
    }
    fsio::write_all(&plan.files)?;
    Ok(plan.report)
}

// === impl Plan ===

impl Plan<'_> {
    fn rel(&self, dir: &str, file: &str) -> PathBuf {
        Path::new(dir).join(file)
    }

    fn write(&mut self, rel: PathBuf, contents: String, mode: Mode, kind: ActionKind) {
        self.files.push(PendingFile {
            path: self.out.join(&rel),
            contents,
            mode,
        });
        self.report.push(rel, kind);
    }

    /// Keeps a valid key file, tightening its mode if needed.
    fn keep_key(&mut self, rel: PathBuf) -> Result<(), CertsError> {
        let kind = if fsio::restrict(&self.out.join(&rel))? {
            ActionKind::PermissionsFixed
        } else {
            ActionKind::Kept
        };
        self.report.push(rel, kind);
        Ok(())
    }

    fn ca(&mut self, now: OffsetDateTime) -> Result<Ca, CertsError> {
        let (cert_rel, key_rel) = (self.rel(CA_DIR, CERT), self.rel(CA_DIR, KEY));
        let cert_path = self.out.join(&cert_rel);
        let key_path = self.out.join(&key_rel);
        let existing = (
            fsio::read_optional(&cert_path)?,
            fsio::read_optional(&key_path)?,
        );
        let renew_reason = match existing {
            (None, None) => None,
            (Some(cert_pem), Some(key_pem)) => {
                let key = parse_key(&key_pem, &key_path)?;
                let info = inspect_cert(&cert_pem, &cert_path)?;
                if !info.is_ca {
                    return Err(corrupt(&cert_path, "is not a CA certificate"));
                }
                if info.public_key_der != key.subject_public_key_info() {
                    return Err(corrupt(&key_path, "does not match ca/cert.pem"));
                }
                match expiry_problem(&info, now) {
                    None => {
                        let issuer = Issuer::from_ca_cert_pem(&cert_pem, key)
                            .map_err(|e| corrupt(&cert_path, &e.to_string()))?;
                        self.report.push(cert_rel, ActionKind::Kept);
                        self.keep_key(key_rel)?;
                        return Ok(Ca {
                            issuer,
                            pem: cert_pem,
                            info,
                        });
                    }
                    Some(why) => Some(why),
                }
            }
            (Some(_), None) => return Err(corrupt(&key_path, "is missing but ca/cert.pem exists")),
            (None, Some(_)) => return Err(corrupt(&cert_path, "is missing but ca/key.pem exists")),
        };
        let (ca, key_pem) = new_ca(now)?;
        let kind = renew_reason.map_or(ActionKind::Created, ActionKind::Reissued);
        self.write(cert_rel, ca.pem.clone(), Mode::Public, kind.clone());
        self.write(key_rel, key_pem, Mode::Secret, kind);
        Ok(ca)
    }

    fn leaf(
        &mut self,
        ca: &Ca,
        role: Role,
        sans: &[San],
        days: u32,
        now: OffsetDateTime,
    ) -> Result<(), CertsError> {
        let dir = role.dir();
        let ca_rel = self.rel(dir, CA);
        match fsio::read_optional(&self.out.join(&ca_rel))? {
            Some(pem) if pem == ca.pem => self.report.push(ca_rel, ActionKind::Kept),
            Some(_) => self.write(
                ca_rel,
                ca.pem.clone(),
                Mode::Public,
                ActionKind::Reissued("differs from ca/cert.pem".into()),
            ),
            None => self.write(ca_rel, ca.pem.clone(), Mode::Public, ActionKind::Created),
        }

        let (cert_rel, key_rel) = (self.rel(dir, CERT), self.rel(dir, KEY));
        let kind = match self.leaf_problem(ca, &cert_rel, &key_rel, sans, now)? {
            LeafState::Valid => {
                self.report.push(cert_rel, ActionKind::Kept);
                return self.keep_key(key_rel);
            }
            LeafState::Missing => ActionKind::Created,
            LeafState::Stale(why) => ActionKind::Reissued(why),
        };
        let (cert_pem, key_pem) = issue_leaf(ca, role, sans, days, now)?;
        self.write(cert_rel, cert_pem, Mode::Public, kind.clone());
        self.write(key_rel, key_pem, Mode::Secret, kind);
        Ok(())
    }

    fn leaf_problem(
        &self,
        ca: &Ca,
        cert_rel: &Path,
        key_rel: &Path,
        sans: &[San],
        now: OffsetDateTime,
    ) -> Result<LeafState, CertsError> {
        let cert_path = self.out.join(cert_rel);
        let key_path = self.out.join(key_rel);
        let (cert_pem, key_pem) = match (
            fsio::read_optional(&cert_path)?,
            fsio::read_optional(&key_path)?,
        ) {
            (None, None) => return Ok(LeafState::Missing),
            (Some(_), None) => return Ok(LeafState::Stale("key was missing".into())),
            (None, Some(_)) => return Ok(LeafState::Stale("certificate was missing".into())),
            (Some(c), Some(k)) => (c, k),
        };
        let key = parse_key(&key_pem, &key_path)?;
        let info = inspect_cert(&cert_pem, &cert_path)?;
        if info.public_key_der != key.subject_public_key_info() {
            return Ok(LeafState::Stale("key did not match certificate".into()));
        }
        if info.authority_key_id.is_none() || info.authority_key_id != ca.info.subject_key_id {
            return Ok(LeafState::Stale("issued by another CA".into()));
        }
        if let Some(why) = expiry_problem(&info, now) {
            return Ok(LeafState::Stale(why));
        }
        if let Some(missing) = sans.iter().find(|s| !info.sans.contains(s)) {
            return Ok(LeafState::Stale(format!("lacked SAN {missing}")));
        }
        Ok(LeafState::Valid)
    }
}

enum LeafState {
    Valid,
    Missing,
    Stale(String),
}

// === impl Role ===

impl Role {
    fn dir(self) -> &'static str {
        match self {
            Role::Server => SERVER_DIR,
            Role::Client => CLIENT_DIR,
            Role::Api => API_DIR,
        }
    }

    fn common_name(self) -> &'static str {
        match self {
            Role::Server => "airlock-dind",
            Role::Client => "airlock-controller",
            Role::Api => "airlock-api",
        }
    }

    fn usage(self) -> ExtendedKeyUsagePurpose {
        match self {
            Role::Server | Role::Api => ExtendedKeyUsagePurpose::ServerAuth,
            Role::Client => ExtendedKeyUsagePurpose::ClientAuth,
        }
    }
}

/// Returns why a certificate must be renewed on time grounds, if it must.
fn expiry_problem(info: &CertInfo, now: OffsetDateTime) -> Option<String> {
    let date = info.not_after.date();
    if info.not_after <= now {
        Some(format!("expired {date}"))
    } else if info.not_after - now < Duration::days(RENEW_WITHIN_DAYS) {
        Some(format!("expires {date}, within {RENEW_WITHIN_DAYS} days"))
    } else {
        None
    }
}

fn corrupt(path: &Path, detail: &str) -> CertsError {
    CertsError::Corrupt {
        path: path.to_path_buf(),
        expected: "matching key and certificate",
        detail: detail.to_string(),
    }
}

fn parse_key(pem: &str, path: &Path) -> Result<KeyPair, CertsError> {
    KeyPair::from_pem(pem).map_err(|e| CertsError::Corrupt {
        path: path.to_path_buf(),
        expected: "private key",
        detail: e.to_string(),
    })
}

fn base_params(cn: &str, now: OffsetDateTime, not_after: OffsetDateTime) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Airlock");
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    // Allow an hour of clock skew between the controller and the DinD host.
    params.not_before = now - Duration::hours(1);
    params.not_after = not_after;
    params.serial_number = Some(SerialNumber::from(rand::random::<[u8; 16]>().to_vec()));
    params
}

fn new_ca(now: OffsetDateTime) -> Result<(Ca, String), CertsError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut params = base_params("Airlock CA", now, now + Duration::days(CA_DAYS.into()));
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key)?;
    let pem = cert.pem();
    let info = inspect_cert(&pem, Path::new(CA_DIR))?;
    let key_pem = key.serialize_pem();
    Ok((
        Ca {
            issuer: Issuer::new(params, key),
            pem,
            info,
        },
        key_pem,
    ))
}

fn issue_leaf(
    ca: &Ca,
    role: Role,
    sans: &[San],
    days: u32,
    now: OffsetDateTime,
) -> Result<(String, String), CertsError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let not_after = (now + Duration::days(days.into())).min(ca.info.not_after);
    let mut params = base_params(role.common_name(), now, not_after);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![role.usage()];
    params.use_authority_key_identifier_extension = true;
    params.subject_alt_names = sans.iter().map(San::to_rcgen).collect::<Result<_, _>>()?;
    let cert = params.signed_by(&key, &ca.issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}
