//! The in-process app the abuse tests drive: requests from a chosen peer address, with
//! headers, and the audit trail with the counted rows flushed.
#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr};

use airlock::accounts::user::Role;
use airlock::accounts::CreateUser;
use airlock::api::edge::Edge;
use airlock::api::{app, AppState};
use airlock::audit::Actor;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::common::{self, app_with, AppOptions, TestApp};

pub(crate) const PASSWORD: &str = "correct horse battery staple";
pub(crate) const TOKEN: &str = "admin-token-for-the-abuse-tests";

pub(crate) struct Abuse {
    pub(crate) app: TestApp,
    pub(crate) state: AppState,
    /// The router, built once as `airlock serve` builds it (building it per request would
    /// measure the OpenAPI document, not the server).
    router: axum::Router,
}

/// One answer: status, `Retry-After`, body.
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) retry_after: Option<u64>,
    pub(crate) body: Value,
}

impl Abuse {
    pub(crate) async fn new(vars: &[(&str, &str)]) -> Abuse {
        let test = app_with(AppOptions {
            token: Some(TOKEN),
            vars,
            ..AppOptions::default()
        })
        .await;
        let state = test
            .state
            .clone()
            .with_edge(Edge::new(&test.config.http, false));
        let router = app(state.clone());
        Abuse {
            app: test,
            state,
            router,
        }
    }

    pub(crate) async fn user(&self, email: &str, role: Role) {
        let create = CreateUser {
            email: email.to_owned(),
            display_name: String::new(),
            role,
            password: Some(PASSWORD.to_owned()),
        };
        let accounts = &self.state.services.accounts;
        accounts.run(&Actor::boot(), create).await.unwrap();
    }

    /// `POST uri` with `body` from `peer`, with extra `headers`.
    pub(crate) async fn post(
        &self,
        uri: &str,
        body: Value,
        peer: IpAddr,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut request = Request::post(uri).header("content-type", "application/json");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let mut request = request.body(Body::from(body.to_string())).unwrap();
        request
            .extensions_mut()
            .insert(ConnectInfo(SocketAddr::new(peer, 40_000)));
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()?.parse().ok());
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        Reply {
            status,
            retry_after,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        }
    }

    pub(crate) async fn login(
        &self,
        email: &str,
        password: &str,
        peer: IpAddr,
        xff: Option<&str>,
    ) -> Reply {
        let body = json!({"email": email, "password": password});
        let headers: Vec<(&str, &str)> = xff.map(|x| ("x-forwarded-for", x)).into_iter().collect();
        self.post("/v1/auth/login", body, peer, &headers).await
    }

    /// The audit rows, flushing the counted ones first.
    pub(crate) async fn audit(&self) -> Vec<Value> {
        self.state.services.audit.flush_all_noise().await;
        let (status, body) = common::call(
            &self.app,
            TOKEN,
            axum::http::Method::GET,
            "/v1/audit?limit=500",
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["items"].as_array().unwrap().clone()
    }
}

pub(crate) fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}
