//! The `/v1` routes and their OpenAPI document, built together: every route is registered
//! through utoipa-axum's `routes!`, which takes the path and method from the handler's
//! `#[utoipa::path]`, so a route cannot exist without being documented (the route-walking
//! isolation test enumerates the document, and a unit test here refuses a plain `.route(`
//! under `/v1`). The document is served without auth at `/v1/openapi.json`.
//!
//! Layers: the protected routes sit behind the bearer middleware, then the audit recorder
//! ([`super::audit`]), then the route guard (`guard`); `/v1/auth/*` need no bearer
//! (login records its own audit entries).

use axum::middleware;
use axum::routing::get;
use axum::{Json, Router};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::OpenApi as OpenApiDoc;
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{
    audit, auth, egress, exec, exec_ws, files, folders, guard, images, logs, policy, pools,
    presets, providers, quotas, sandboxes, secrets, selftest, tokens, users, volumes, AppState,
};

/// Where the document is served.
pub const OPENAPI_PATH: &str = "/v1/openapi.json";

/// The document's fixed parts; paths come from the router.
#[derive(OpenApi)]
#[openapi(
    info(title = "Airlock API", description = "Sandboxes for AI agents, per user."),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
    tags(
        (name = "sandboxes", description = "Sandbox lifecycle, exec and logs"),
        (name = "auth", description = "Login and invite acceptance (no bearer)"),
        (name = "tokens", description = "The caller's API tokens"),
        (name = "users", description = "Accounts (admin) and the caller's own"),
        (name = "secrets", description = "The caller's secrets (values never returned)"),
        (name = "audit", description = "The audit trail (admin)"),
        (name = "images", description = "Allowed images and the start-up pre-pull"),
        (name = "policy", description = "Egress ceilings and the infrastructure list (admin)"),
        (name = "volumes", description = "The caller's volumes (workspaces)"),
        (name = "folders", description = "Host folders (admin; users list their grants)")
    )
)]
struct ApiDoc;

/// Adds the bearer security scheme.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut OpenApiDoc) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// Routes that need a bearer token.
fn protected() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(sandboxes::create, sandboxes::list))
        .routes(routes!(sandboxes::get_one, sandboxes::delete))
        .routes(routes!(sandboxes::stop))
        .routes(routes!(sandboxes::wait))
        .routes(routes!(exec::exec))
        .routes(routes!(exec_ws::exec_ws))
        .routes(routes!(logs::logs))
        .routes(routes!(selftest::get, selftest::run))
        .routes(routes!(egress::put_policy))
        .routes(routes!(egress::events))
        .routes(routes!(egress::summary))
        .routes(routes!(tokens::list, tokens::create))
        .routes(routes!(tokens::revoke))
        .routes(routes!(users::me))
        .routes(routes!(users::list))
        .routes(routes!(users::invite))
        .routes(routes!(users::revoke_invite))
        .routes(routes!(users::logout))
        .routes(routes!(users::change_password))
        .routes(routes!(users::update))
        .routes(routes!(quotas::get, quotas::put))
        .routes(routes!(secrets::list))
        .routes(routes!(secrets::put, secrets::delete))
        .routes(routes!(audit::list))
        .routes(routes!(images::list))
        .routes(routes!(policy::get_ceilings, policy::put_ceilings))
        .routes(routes!(policy::infrastructure))
        .routes(routes!(presets::list))
        .routes(routes!(pools::list, pools::set))
        .routes(routes!(pools::config))
        .routes(routes!(providers::list))
        .routes(routes!(volumes::create, volumes::list))
        .routes(routes!(volumes::get_one, volumes::delete))
        .routes(routes!(folders::create, folders::list))
        .routes(routes!(folders::available))
        .routes(routes!(folders::get_one, folders::delete))
        .routes(routes!(folders::put_grants))
        .routes(routes!(files::sandbox_put, files::sandbox_get))
        .routes(routes!(files::sandbox_put_content))
        .routes(routes!(files::sandbox_list))
        .routes(routes!(files::sandbox_stat))
        .routes(routes!(files::volume_put, files::volume_get))
        .routes(routes!(files::volume_put_content))
        .routes(routes!(files::volume_list))
        .routes(routes!(files::volume_stat))
}

/// Routes anyone may call.
fn public() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(users::login))
        .routes(routes!(users::accept_invite))
}

/// The `/v1` router (including `/v1/openapi.json`) and its document.
pub fn v1(state: &AppState) -> (Router<AppState>, OpenApiDoc) {
    let protected = protected()
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            guard::require_role,
        ))
        // Inside the bearer layer (it needs the principal), around the guard (so refusals
        // are recorded too).
        .route_layer(middleware::from_fn_with_state(state.clone(), audit::record))
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_bearer,
        ));
    let (router, doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(protected)
        .merge(public())
        .split_for_parts();
    let served = doc.clone();
    let router = router.route(OPENAPI_PATH, get(move || async move { Json(served) }));
    (router, doc)
}

/// The OpenAPI document of the whole API (what `/v1/openapi.json` serves).
pub fn document(state: &AppState) -> OpenApiDoc {
    v1(state).1
}

#[cfg(test)]
mod tests {
    /// Every `/v1` route goes through `routes!`: a plain `.route(` in the API sources may only
    /// add the unauthenticated, undocumented service endpoints.
    #[test]
    fn no_undocumented_routes() {
        let sources = [
            ("mod.rs", include_str!("mod.rs")),
            ("openapi.rs", include_str!("openapi.rs")),
        ];
        let allowed = [
            "\"/healthz\"",
            "\"/readyz\"",
            "\"/metrics\"",
            "OPENAPI_PATH",
        ];
        for (file, text) in sources {
            // The code before the tests module, without comments.
            let body = text.split("#[cfg(test)]").next().unwrap_or(text);
            let code = body
                .lines()
                .filter(|line| !line.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            for (at, _) in code.match_indices(".route(") {
                let rest = &code[at + ".route(".len()..];
                let arg = rest.trim_start();
                assert!(
                    allowed.iter().any(|a| arg.starts_with(a)),
                    "{file}: undocumented route {}: register /v1 routes with routes!() in \
                     api/openapi.rs",
                    &arg[..arg.len().min(40)]
                );
            }
        }
    }
}
