//! Live streams end with their credential: [`ended`] completes once the request's bearer
//! token stops authenticating (a revoked token, an ended session, a disabled user, an
//! expiry). It re-checks at once whenever the accounts service signals a credential change,
//! and every second besides (expiries signal nothing), so a followed log or an interactive
//! exec stops within a second of the change.

use std::future::Future;
use std::time::Duration;

use axum::http::HeaderMap;
use tokio::time::MissedTickBehavior;

use super::AppState;

/// How often a live stream re-checks its credential without a signal.
const RECHECK: Duration = Duration::from_secs(1);

/// Completes when the bearer token in `headers` no longer authenticates.
pub(crate) fn ended(state: &AppState, headers: &HeaderMap) -> impl Future<Output = ()> + Send {
    let token = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(|token| token.trim().to_owned())
        .unwrap_or_default();
    let accounts = state.services.accounts.clone();
    let auth = state.auth.clone();
    let mut changes = accounts.revocations();
    async move {
        let mut tick = tokio::time::interval(RECHECK);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        tick.tick().await;
        let mut signalled = true;
        loop {
            tokio::select! {
                changed = changes.changed(), if signalled => signalled = changed.is_ok(),
                _ = tick.tick() => {}
            }
            // A store error keeps the stream: the next check decides.
            if let Ok(None) = auth.authenticate(&accounts, &token, None).await {
                return;
            }
        }
    }
}
