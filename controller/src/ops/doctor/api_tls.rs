//! `api-tls`: how the API is served. Plain HTTP is a skip (a TLS reverse proxy may front it;
//! docs/operator.md); with `AIRLOCK_TLS_CERT`/`AIRLOCK_TLS_KEY`, the certificate must parse
//! and the key be readable (fail), and the certificate must not expire within 30 days (warn).

use time::{Duration, OffsetDateTime};

use super::{Check, Verdict};
use crate::config::HttpConfig;

/// Days before expiry from which the check warns.
const RENEW_WITHIN: Duration = Duration::days(30);

/// The check for `http` at `now`.
pub(super) fn check(http: &HttpConfig, now: OffsetDateTime) -> Check {
    let name = "api-tls";
    let Some(files) = &http.tls else {
        let fix = "set AIRLOCK_TLS_CERT and AIRLOCK_TLS_KEY (airlock certs init issues a \
                   certificate from the stack CA), or serve behind a TLS reverse proxy";
        return Check::new(name, Verdict::Skip, "plain HTTP", fix);
    };
    let fix = "point AIRLOCK_TLS_CERT/AIRLOCK_TLS_KEY at a readable PEM certificate and key";
    let info = std::fs::read_to_string(&files.cert)
        .map_err(|e| e.to_string())
        .and_then(|pem| airlock_certs::inspect_cert(&pem, &files.cert).map_err(|e| e.to_string()));
    let info = match info {
        Ok(info) => info,
        Err(error) => {
            let detail = format!("{}: {error}", files.cert.display());
            return Check::new(name, Verdict::Fail, detail, fix);
        }
    };
    if let Err(error) = std::fs::File::open(&files.key) {
        let detail = format!("{}: {error}", files.key.display());
        return Check::new(name, Verdict::Fail, detail, fix);
    }
    let expires = info.not_after.date();
    let detail = format!("HTTPS with {}, valid until {expires}", files.cert.display());
    if info.not_after <= now {
        return Check::new(name, Verdict::Fail, detail, "renew the certificate");
    }
    if info.not_after - now < RENEW_WITHIN {
        return Check::new(name, Verdict::Warn, detail, "renew the certificate");
    }
    Check::pass(name, detail)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::config::TlsFiles;

    #[test]
    fn plain_skips_a_good_pair_passes_and_a_missing_file_fails() {
        let plain = check(&HttpConfig::default(), OffsetDateTime::now_utc());
        assert_eq!(plain.verdict, Verdict::Skip);
        let dir = tempfile::tempdir().unwrap();
        airlock_certs::init(&airlock_certs::InitOptions::new(dir.path())).unwrap();
        let mut http = HttpConfig {
            tls: Some(TlsFiles {
                cert: dir.path().join("server/cert.pem"),
                key: dir.path().join("server/key.pem"),
            }),
            ..HttpConfig::default()
        };
        let now = OffsetDateTime::now_utc();
        let good = check(&http, now);
        assert_eq!(good.verdict, Verdict::Pass, "{}", good.detail);
        assert_eq!(
            check(&http, now + Duration::days(820)).verdict,
            Verdict::Warn
        );
        assert_eq!(
            check(&http, now + Duration::days(900)).verdict,
            Verdict::Fail
        );
        if let Some(tls) = &mut http.tls {
            tls.key = dir.path().join("missing.pem");
        }
        assert_eq!(check(&http, now).verdict, Verdict::Fail);
    }
}
