//! The route-walking isolation test. Every route comes from the OpenAPI document, so
//! a new route cannot be forgotten: a route without a row in [`RULES`] fails the test with
//! "add a rule for METHOD PATH", and a row whose route is gone fails it too.
//!
//! For every protected route the walk checks, against a fresh database:
//! - no token, malformed tokens, an invite token, expired and revoked tokens, expired
//!   sessions and a disabled user's credentials: 401 `unauthorized`;
//! - wrong scopes (a `sandboxes:read` token on a write, an API token where a session is
//!   needed, an admin's narrowed token on an admin route) and a viewer on writes: 403;
//! - user B on user A's object: exactly the answer a missing object gets (404; 204 for the
//!   idempotent sandbox delete), so ids cannot be probed, and A's object is unchanged;
//!   listings never mention A's objects to B;
//! - the owner (where the rule lets them) and an admin get through.
//!
//! Every refused request must leave the object exactly as it was.
//!
//! To add a route: add a row to [`RULES`] (and, for a new kind of object in the path, a
//! variant of [`Obj`] and a line in `Walk::object`/`Walk::snapshot`).

use std::collections::BTreeSet;
use std::time::Duration;

use airlock::accounts::credential::{NewToken, TokenKind};
use airlock::accounts::user::{Role, TokenScope, UserId};
use airlock::api::openapi;
use airlock::folder::FolderId;
use airlock::sandbox::SandboxId;
use airlock::store::{NewInvite, Scope};
use airlock::volume::VolumeId;
use axum::http::{Method, StatusCode};
use time::OffsetDateTime;

use crate::harness::{harness, Account, Call, Db, Harness, Reply};

/// Who may call a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Who {
    /// Anyone, without a token.
    Public,
    /// Any signed-in user; what they get is their own (an admin's is everyone's).
    Anyone,
    /// The owner of the object in the path, or an admin. Anyone else gets the answer a
    /// missing object gets.
    Owner,
    /// Admins only.
    Admin,
    /// Objects named in the caller's own namespace (secrets): everyone, admins included,
    /// reaches only their own; another user's answers like a missing one.
    OwnOnly,
}

/// What the bearer must allow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Needs {
    /// No bearer (public routes).
    Nothing,
    /// Any valid bearer, a viewer's or a `sandboxes:read` token included.
    Read,
    /// The member or admin role, and `sandboxes:write` or `admin` on the token.
    Write,
    /// The admin role and the `admin` scope.
    Admin,
    /// A login session (any role), or an API token with `tokens:write` (to mint, an admin's):
    /// `sandboxes:*` and `admin`-only tokens are refused.
    Tokens,
    /// The caller's own login session, which the call may end (logout, password change):
    /// every API token is refused; each allowed call gets a fresh session.
    OwnSession,
}

/// What the `{…}` in a path names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Obj {
    None,
    Sandbox,
    Token,
    User,
    /// A secret, named by `{name}` in the caller's namespace.
    Secret,
    /// An unused invite.
    Invite,
    Volume,
    /// A host folder granted to the owner.
    Folder,
}

/// One route and the rule that guards it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Rule {
    pub(crate) method: &'static str,
    /// The path template exactly as the OpenAPI document has it.
    pub(crate) path: &'static str,
    pub(crate) who: Who,
    pub(crate) needs: Needs,
    pub(crate) obj: Obj,
    /// A sample JSON body (for an allowed caller it may well be refused as invalid: the walk
    /// only needs it to get past the guards).
    pub(crate) body: Option<&'static str>,
    /// A query string, without the `?`.
    pub(crate) query: &'static str,
    /// The status a missing object (and so another user's) gets.
    pub(crate) hidden: StatusCode,
}

const fn rule(method: &'static str, path: &'static str, who: Who, needs: Needs, obj: Obj) -> Rule {
    Rule {
        method,
        path,
        who,
        needs,
        obj,
        body: None,
        query: "",
        hidden: StatusCode::NOT_FOUND,
    }
}

impl Rule {
    const fn body(mut self, body: &'static str) -> Rule {
        self.body = Some(body);
        self
    }

    const fn query(mut self, query: &'static str) -> Rule {
        self.query = query;
        self
    }

    /// Deleting a missing object succeeds (idempotent delete).
    const fn idempotent(mut self) -> Rule {
        self.hidden = StatusCode::NO_CONTENT;
        self
    }
}

use Needs::{Admin as NeedsAdmin, Nothing, OwnSession, Read, Tokens, Write};
use Who::{Admin, Anyone, OwnOnly, Owner, Public};

/// Every route. Keep it sorted by path; one row per method.
#[rustfmt::skip]
pub(crate) const RULES: &[Rule] = &[
    //    method    path                                who     needs       object
    rule("POST",   "/v1/auth/accept-invite",           Public, Nothing,    Obj::None).body("{}"),
    rule("POST",   "/v1/auth/login",                   Public, Nothing,    Obj::None).body("{}"),
    rule("GET",    "/v1/audit",                        Admin,  NeedsAdmin, Obj::None).query("limit=5"),
    rule("GET",    "/v1/folders",                      Anyone, Read,       Obj::None),
    rule("POST",   "/v1/folders",                      Admin,  NeedsAdmin, Obj::None).body(r#"{"name":"walk","path":"/nowhere","mode":"ro"}"#),
    rule("GET",    "/v1/folders/available",            Admin,  NeedsAdmin, Obj::None),
    rule("DELETE", "/v1/folders/{id}",                 Admin,  NeedsAdmin, Obj::Folder),
    rule("GET",    "/v1/folders/{id}",                 Admin,  NeedsAdmin, Obj::Folder),
    rule("PUT",    "/v1/folders/{id}/grants",          Admin,  NeedsAdmin, Obj::Folder).body(r#"{"grants":[]}"#),
    rule("GET",    "/v1/images",                       Anyone, Read,       Obj::None),
    rule("GET",    "/v1/me",                           Anyone, Read,       Obj::None),
    rule("GET",    "/v1/policy/ceilings",              Admin,  NeedsAdmin, Obj::None),
    rule("PUT",    "/v1/policy/ceilings",              Admin,  NeedsAdmin, Obj::None).body(r#"{"roles":{}}"#),
    rule("GET",    "/v1/policy/infrastructure",        Admin,  NeedsAdmin, Obj::None),
    rule("GET",    "/v1/pools",                        Admin,  NeedsAdmin, Obj::None),
    rule("PUT",    "/v1/pools",                        Admin,  NeedsAdmin, Obj::None).body("[]"),
    rule("GET",    "/v1/pools/config",                 Admin,  NeedsAdmin, Obj::None),
    rule("GET",    "/v1/presets",                      Anyone, Read,       Obj::None),
    rule("GET",    "/v1/providers",                    Anyone, Read,       Obj::None),
    rule("GET",    "/v1/sandboxes",                    Anyone, Read,       Obj::None),
    rule("POST",   "/v1/sandboxes",                    Anyone, Write,      Obj::None).body(r#"{"image":""}"#),
    rule("GET",    "/v1/sandboxes/{id}",               Owner,  Read,       Obj::Sandbox),
    rule("DELETE", "/v1/sandboxes/{id}",               Owner,  Write,      Obj::Sandbox).idempotent(),
    rule("GET",    "/v1/sandboxes/{id}/egress",        Owner,  Read,       Obj::Sandbox),
    rule("GET",    "/v1/sandboxes/{id}/egress/summary", Owner, Read,       Obj::Sandbox),
    rule("POST",   "/v1/sandboxes/{id}/exec",          Owner,  Write,      Obj::Sandbox).body(r#"{"cmd":["true"]}"#),
    rule("GET",    "/v1/sandboxes/{id}/exec/ws",       Owner,  Write,      Obj::Sandbox).query("cmd=true"),
    rule("GET",    "/v1/sandboxes/{id}/files",         Owner,  Read,       Obj::Sandbox).query("path=/"),
    rule("PUT",    "/v1/sandboxes/{id}/files",         Owner,  Write,      Obj::Sandbox).query("path=/"),
    rule("PUT",    "/v1/sandboxes/{id}/files/content", Owner,  Write,      Obj::Sandbox).query("path=/x"),
    rule("GET",    "/v1/sandboxes/{id}/files/list",    Owner,  Read,       Obj::Sandbox).query("path=/"),
    rule("GET",    "/v1/sandboxes/{id}/files/stat",    Owner,  Read,       Obj::Sandbox).query("path=/"),
    rule("GET",    "/v1/sandboxes/{id}/logs",          Owner,  Read,       Obj::Sandbox),
    rule("PUT",    "/v1/sandboxes/{id}/policy",        Owner,  Write,      Obj::Sandbox).body(r#"{"mode":"enforce"}"#),
    rule("GET",    "/v1/sandboxes/{id}/selftest",      Owner,  Read,       Obj::Sandbox),
    rule("POST",   "/v1/sandboxes/{id}/selftest",      Owner,  Write,      Obj::Sandbox),
    rule("POST",   "/v1/sandboxes/{id}/stop",          Owner,  Write,      Obj::Sandbox),
    rule("GET",    "/v1/sandboxes/{id}/wait",          Owner,  Read,       Obj::Sandbox).query("timeout_s=1"),
    rule("GET",    "/v1/secrets",                      Anyone, Read,       Obj::None),
    rule("DELETE", "/v1/secrets/{name}",               OwnOnly, Write,     Obj::Secret),
    rule("PUT",    "/v1/secrets/{name}",               OwnOnly, Write,     Obj::Secret).body(r#"{"value":"walk"}"#),
    rule("GET",    "/v1/tokens",                       Anyone, Read,       Obj::None),
    rule("POST",   "/v1/tokens",                       Anyone, Tokens,     Obj::None).body(r#"{"name":"walk","scopes":["sandboxes:read"]}"#),
    rule("DELETE", "/v1/tokens/{id}",                  Owner,  Tokens,     Obj::Token),
    rule("POST",   "/v1/auth/logout",                  Anyone, OwnSession, Obj::None),
    rule("POST",   "/v1/me/password",                  Anyone, OwnSession, Obj::None).body(r#"{"current_password":"not it at all","new_password":"a new long password"}"#),
    rule("DELETE", "/v1/users/invites/{id}",           Admin,  NeedsAdmin, Obj::Invite),
    rule("GET",    "/v1/users",                        Admin,  NeedsAdmin, Obj::None),
    rule("POST",   "/v1/users/invites",                Admin,  NeedsAdmin, Obj::None).body(r#"{"email":"walk@example.org"}"#),
    rule("PATCH",  "/v1/users/{id}",                   Admin,  NeedsAdmin, Obj::User).body(r#"{"disabled":false}"#),
    rule("GET",    "/v1/users/{id}/quota",             Owner,  Read,       Obj::User),
    rule("PUT",    "/v1/users/{id}/quota",             Admin,  NeedsAdmin, Obj::User).body(r#"{"max_sandboxes":7}"#),
    rule("GET",    "/v1/volumes",                      Anyone, Read,       Obj::None),
    rule("POST",   "/v1/volumes",                      Anyone, Write,      Obj::None).body(r#"{"name":"","size_mb":1}"#),
    rule("DELETE", "/v1/volumes/{id}",                 Owner,  Write,      Obj::Volume),
    rule("GET",    "/v1/volumes/{id}",                 Owner,  Read,       Obj::Volume),
    rule("GET",    "/v1/volumes/{id}/files",           Owner,  Read,       Obj::Volume).query("path=/"),
    rule("PUT",    "/v1/volumes/{id}/files",           Owner,  Write,      Obj::Volume).query("path=/"),
    rule("PUT",    "/v1/volumes/{id}/files/content",   Owner,  Write,      Obj::Volume).query("path=/x"),
    rule("GET",    "/v1/volumes/{id}/files/list",      Owner,  Read,       Obj::Volume).query("path=/"),
    rule("GET",    "/v1/volumes/{id}/files/stat",      Owner,  Read,       Obj::Volume).query("path=/"),
];

/// Every (METHOD, path template) in the OpenAPI document.
pub(crate) fn documented_routes(h: &Harness) -> BTreeSet<(String, String)> {
    let doc = openapi::document(&h.state);
    let mut routes = BTreeSet::new();
    for (path, item) in &doc.paths.paths {
        let operations = [
            ("GET", &item.get),
            ("PUT", &item.put),
            ("POST", &item.post),
            ("DELETE", &item.delete),
            ("OPTIONS", &item.options),
            ("HEAD", &item.head),
            ("PATCH", &item.patch),
            ("TRACE", &item.trace),
        ];
        for (method, operation) in operations {
            if operation.is_some() {
                routes.insert((method.to_owned(), path.clone()));
            }
        }
    }
    routes
}

/// The people and credentials of one walk.
struct Walk {
    h: Harness,
    admin: Account,
    /// The owner of the objects under test (a member).
    a: Account,
    /// Another member.
    b: Account,
    /// A viewer.
    v: Account,
    /// A's API tokens: `sandboxes:read` only, and `sandboxes:read sandboxes:write`.
    a_read: String,
    a_write: String,
    /// The admin's API tokens: `sandboxes:write` only, and `admin`.
    admin_write: String,
    admin_scoped: String,
    /// The admin's API token with `admin tokens:write`.
    admin_tokens: String,
    /// Credentials that must all be refused with 401.
    refused: Vec<(String, Option<String>)>,
    /// Texts that must never appear in B's answers.
    a_secrets: Vec<String>,
}

/// A concrete object in a path.
#[derive(Clone, Debug)]
enum Target {
    None,
    Sandbox(SandboxId),
    Token(airlock::store::TokenId),
    User(UserId),
    /// A secret's owner and name.
    Secret(UserId, String),
    /// An invite's id and token hash.
    Invite(uuid::Uuid, String),
    Volume(VolumeId),
    Folder(FolderId),
}

// === impl Walk ===

impl Walk {
    async fn new(db: Db) -> Walk {
        let h = harness(db).await;
        let admin = h.account("admin@example.org", Role::Admin).await;
        let a = h.account("alice@example.org", Role::Member).await;
        let b = h.account("bob@example.org", Role::Member).await;
        let v = h.account("vera@example.org", Role::Viewer).await;
        let d = h.account("dora@example.org", Role::Member).await;
        let read = [TokenScope::SandboxesRead];
        let write = [TokenScope::SandboxesRead, TokenScope::SandboxesWrite];
        let a_read = h.api_token(a.id, &read, None).await.0;
        let a_write = h.api_token(a.id, &write, None).await.0;
        let admin_write = h
            .api_token(admin.id, &[TokenScope::SandboxesWrite], None)
            .await
            .0;
        let admin_scoped = h.api_token(admin.id, &[TokenScope::Admin], None).await.0;
        let admin_tokens = [TokenScope::Admin, TokenScope::TokensWrite];
        let admin_tokens = h.api_token(admin.id, &admin_tokens, None).await.0;
        let d_token = h.api_token(d.id, &write, None).await.0;
        h.disable(d.id).await;
        let invite = NewToken::generate(TokenKind::Invite);
        let new_invite = NewInvite {
            email: "invitee@example.org".to_owned(),
            role: Role::Member,
            hash: invite.hash.clone(),
            created_by: admin.id,
            expires_at: OffsetDateTime::now_utc() + Duration::from_secs(3600),
        };
        h.store.create_invite(new_invite).await.unwrap();
        let past = OffsetDateTime::now_utc() - Duration::from_secs(1);
        let expired_session = h.session_until(a.id, past).await;
        let bearer = |token: &str| Some(format!("Bearer {token}"));
        let refused = vec![
            ("no token".to_owned(), None),
            ("empty bearer".to_owned(), Some("Bearer ".to_owned())),
            ("garbage".to_owned(), bearer("garbage")),
            (
                "unknown api token".to_owned(),
                bearer(&format!("alt_{}", "0".repeat(64))),
            ),
            (
                "unknown session".to_owned(),
                bearer(&format!("als_{}", "0".repeat(64))),
            ),
            (
                "session with a suffix".to_owned(),
                bearer(&format!("{}x", a.session)),
            ),
            (
                "basic scheme".to_owned(),
                Some(format!("Basic {}", a.session)),
            ),
            ("no scheme".to_owned(), Some(a.session.clone())),
            ("invite token".to_owned(), bearer(&invite.text)),
            (
                "expired api token".to_owned(),
                bearer(&h.expired_token(a.id).await),
            ),
            ("expired session".to_owned(), bearer(&expired_session)),
            (
                "revoked api token".to_owned(),
                bearer(&h.revoked_token(a.id).await),
            ),
            ("disabled user's session".to_owned(), bearer(&d.session)),
            ("disabled user's api token".to_owned(), bearer(&d_token)),
        ];
        // Objects of A's that B's listings must never mention.
        let a_sandbox = h.sandbox(a.id).await;
        let (_, a_token) = h.api_token(a.id, &read, None).await;
        let a_secrets = vec![
            a_sandbox.to_string(),
            a_token.id.to_string(),
            a.id.to_string(),
            a.email.clone(),
        ];
        Walk {
            h,
            admin,
            a,
            b,
            v,
            a_read,
            a_write,
            admin_write,
            admin_scoped,
            admin_tokens,
            refused,
            a_secrets,
        }
    }

    /// A fresh object of the rule's kind owned by `owner`.
    async fn object(&self, rule: &Rule, owner: UserId) -> Target {
        match rule.obj {
            Obj::None => Target::None,
            Obj::Sandbox => Target::Sandbox(self.h.sandbox(owner).await),
            Obj::Token => {
                let scopes = [TokenScope::SandboxesRead];
                Target::Token(self.h.api_token(owner, &scopes, None).await.1.id)
            }
            Obj::User => Target::User(owner),
            Obj::Invite => {
                let token = NewToken::generate(TokenKind::Invite);
                let new = NewInvite {
                    email: format!("walk-{}@example.org", uuid::Uuid::now_v7().simple()),
                    role: Role::Member,
                    hash: token.hash.clone(),
                    created_by: self.admin.id,
                    expires_at: time::OffsetDateTime::now_utc() + Duration::from_secs(3600),
                };
                Target::Invite(self.h.store.create_invite(new).await.unwrap(), token.hash)
            }
            Obj::Secret => {
                let name = format!("walk-{}", uuid::Uuid::now_v7().simple());
                // The walk never opens it: any bytes stand for a sealed value.
                let stored = self.h.store.put_secret(owner, &name, b"sealed", None);
                let stored = stored.await;
                assert!(stored.unwrap(), "a fresh secret");
                Target::Secret(owner, name)
            }
            Obj::Volume => Target::Volume(self.h.volume(owner).await),
            Obj::Folder => Target::Folder(self.h.folder(owner).await),
        }
    }

    /// An object of the rule's kind that does not exist.
    fn missing(rule: &Rule) -> Target {
        let uuid = uuid::Uuid::now_v7().to_string();
        match rule.obj {
            Obj::None => Target::None,
            Obj::Sandbox => Target::Sandbox(uuid.parse().unwrap()),
            Obj::Token => Target::Token(uuid.parse().unwrap()),
            Obj::Invite => Target::Invite(uuid.parse().unwrap(), String::new()),
            Obj::User => Target::User(UserId::from_uuid(uuid.parse().unwrap())),
            Obj::Secret => Target::Secret(
                UserId::from_uuid(uuid.parse().unwrap()),
                format!("missing-{}", uuid.replace('-', "")),
            ),
            Obj::Volume => Target::Volume(uuid.parse().unwrap()),
            Obj::Folder => Target::Folder(uuid.parse().unwrap()),
        }
    }

    /// Everything about the object as stored, to prove a refused request changed nothing.
    async fn snapshot(&self, target: &Target) -> String {
        let store = &self.h.store;
        match target {
            Target::None => String::new(),
            Target::Sandbox(id) => {
                format!("{:?}", store.get_sandbox(Scope::All, *id).await.unwrap())
            }
            Target::Token(id) => {
                let tokens = store.list_api_tokens(Scope::All).await.unwrap();
                format!("{:?}", tokens.iter().find(|t| t.id == *id))
            }
            Target::User(id) => format!("{:?}", store.get_user(*id).await.unwrap()),
            Target::Invite(_, hash) => format!("{:?}", store.invite_is_open(hash).await.unwrap()),
            Target::Secret(owner, name) => {
                let secrets = store.list_secrets(*owner).await.unwrap();
                let meta = secrets.iter().find(|s| s.name == *name);
                let sealed = store.sealed_secret(*owner, name).await.unwrap();
                format!("{meta:?} {sealed:?}")
            }
            Target::Volume(id) => {
                format!("{:?}", store.get_volume(Scope::All, *id).await.unwrap())
            }
            Target::Folder(id) => format!("{:?}", store.get_folder(*id).await.unwrap()),
        }
    }

    fn uri(rule: &Rule, target: &Target) -> String {
        let id = match target {
            Target::None => String::new(),
            Target::Sandbox(id) => id.to_string(),
            Target::Token(id) => id.to_string(),
            Target::User(id) => id.to_string(),
            Target::Secret(_, name) => name.clone(),
            Target::Invite(id, _) => id.to_string(),
            Target::Volume(id) => id.to_string(),
            Target::Folder(id) => id.to_string(),
        };
        let mut uri = rule.path.replace("{id}", &id).replace("{name}", &id);
        assert!(
            !uri.contains('{'),
            "{} {}: give Walk::uri its parameter",
            rule.method,
            rule.path
        );
        if !rule.query.is_empty() {
            uri = format!("{uri}?{}", rule.query);
        }
        uri
    }

    async fn send(&self, rule: &Rule, target: &Target, authorization: Option<String>) -> Reply {
        let mut call = Call::new(
            rule.method.parse::<Method>().unwrap(),
            Self::uri(rule, target),
        );
        call.authorization = authorization;
        call.body = rule.body;
        self.h.send(call).await
    }

    async fn as_(&self, rule: &Rule, target: &Target, token: &str) -> Reply {
        self.send(rule, target, Some(format!("Bearer {token}")))
            .await
    }

    /// Sends as `token` and asserts the answer is `status` and the object did not change.
    async fn refused(
        &self,
        rule: &Rule,
        target: &Target,
        token: Option<String>,
        status: StatusCode,
        what: &str,
    ) -> Reply {
        let before = self.snapshot(target).await;
        let reply = self.send(rule, target, token).await;
        let name = format!("{} {} ({what})", rule.method, rule.path);
        assert_eq!(reply.status, status, "{name}: {}", reply.text);
        let after = self.snapshot(target).await;
        assert_eq!(
            before, after,
            "{name}: a refused request changed the object"
        );
        reply
    }

    /// Sends as `token`, which the rule allows, and asserts it got past every guard to the
    /// object.
    async fn allowed(&self, rule: &Rule, owner: UserId, token: &str, what: &str) {
        let target = self.object(rule, owner).await;
        let reply = self.as_(rule, &target, token).await;
        let name = format!("{} {} ({what})", rule.method, rule.path);
        assert!(
            ![
                StatusCode::UNAUTHORIZED,
                StatusCode::FORBIDDEN,
                StatusCode::METHOD_NOT_ALLOWED
            ]
            .contains(&reply.status),
            "{name}: refused: {} {}",
            reply.status,
            reply.text
        );
        if let Target::None = target {
            assert_ne!(
                reply.status,
                StatusCode::NOT_FOUND,
                "{name}: {}",
                reply.text
            );
            return;
        }
        let missing = self.as_(rule, &Self::missing(rule), token).await;
        if rule.hidden == StatusCode::NO_CONTENT {
            // An idempotent delete answers a missing object like a deleted one: the effect
            // shows that it reached the object.
            let gone = match target {
                Target::Sandbox(id) => self
                    .h
                    .store
                    .get_sandbox(Scope::All, id)
                    .await
                    .unwrap()
                    .is_none(),
                other => panic!("{name}: no effect check for {other:?}"),
            };
            assert!(gone, "{name}: the object was not deleted: {}", reply.text);
        } else {
            assert!(
                (reply.status, &reply.body) != (missing.status, &missing.body),
                "{name}: answered like a missing object: {} {}",
                reply.status,
                reply.text
            );
        }
    }

    async fn public(&self, rule: &Rule) {
        let reply = self.send(rule, &Target::None, None).await;
        let name = format!("{} {}", rule.method, rule.path);
        assert!(
            ![StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN].contains(&reply.status)
                && reply.body["error"] != "unauthorized"
                && reply.body["error"] != "not_bootstrapped",
            "{name}: a public route refused an anonymous caller: {} {}",
            reply.status,
            reply.text
        );
    }

    /// A route on the caller's own session: every API token is refused, and every role's
    /// fresh session gets through.
    async fn own_session(&self, rule: &Rule) {
        for (what, authorization) in &self.refused {
            let reply = self.send(rule, &Target::None, authorization.clone()).await;
            assert_eq!(
                reply.status,
                StatusCode::UNAUTHORIZED,
                "{what}: {}",
                reply.text
            );
        }
        let tokens = [
            &self.a_read,
            &self.a_write,
            &self.admin_scoped,
            &self.admin_tokens,
        ];
        for token in tokens {
            let bearer = Some(format!("Bearer {token}"));
            let reply = self.send(rule, &Target::None, bearer).await;
            assert_eq!(reply.status, StatusCode::FORBIDDEN, "{}", reply.text);
        }
        for user in [self.a.id, self.v.id, self.admin.id] {
            let fresh = self.h.session(user, Duration::from_secs(600)).await;
            self.allowed(rule, user, &fresh, "own fresh session").await;
        }
    }

    async fn protected(&self, rule: &Rule) {
        if rule.needs == OwnSession {
            return self.own_session(rule).await;
        }
        let forbidden = StatusCode::FORBIDDEN;
        // 401s, on an object A owns.
        let target = self.object(rule, self.a.id).await;
        for (what, authorization) in &self.refused {
            let reply = self
                .refused(
                    rule,
                    &target,
                    authorization.clone(),
                    StatusCode::UNAUTHORIZED,
                    what,
                )
                .await;
            assert_eq!(
                reply.body["error"], "unauthorized",
                "{what}: {}",
                reply.text
            );
        }
        // Wrong scopes and roles.
        match rule.needs {
            Nothing | Read => {}
            Write => {
                let a_read = Some(format!("Bearer {}", self.a_read));
                self.refused(rule, &target, a_read, forbidden, "sandboxes:read token")
                    .await;
                let own = self.object(rule, self.v.id).await;
                let viewer = Some(format!("Bearer {}", self.v.session));
                self.refused(rule, &own, viewer, forbidden, "viewer, own object")
                    .await;
            }
            OwnSession => {}
            Tokens => {
                let callers = [
                    ("read token", &self.a_read),
                    ("write token", &self.a_write),
                    (
                        "admin-scoped token without tokens:write",
                        &self.admin_scoped,
                    ),
                ];
                for (what, token) in callers {
                    let bearer = Some(format!("Bearer {token}"));
                    self.refused(rule, &target, bearer, forbidden, what).await;
                }
            }
            NeedsAdmin => {
                let callers = [
                    ("member", &self.a.session),
                    ("viewer", &self.v.session),
                    ("admin's sandboxes:write token", &self.admin_write),
                ];
                for (what, token) in callers {
                    let bearer = Some(format!("Bearer {token}"));
                    self.refused(rule, &target, bearer, forbidden, what).await;
                }
            }
        }
        self.others(rule, &target).await;
        // The allowed callers.
        if rule.who != Admin {
            let token = match rule.needs {
                Read => &self.a_read,
                Write => &self.a_write,
                _ => &self.a.session,
            };
            self.allowed(rule, self.a.id, token, "owner").await;
        }
        if matches!(rule.needs, Read | Tokens) && rule.who != Admin {
            self.allowed(rule, self.v.id, &self.v.session, "viewer, own object")
                .await;
        }
        // An admin reaches everyone's objects, except in per-caller namespaces (secrets).
        let admins_object = if rule.who == OwnOnly {
            self.admin.id
        } else {
            self.a.id
        };
        self.allowed(rule, admins_object, &self.admin.session, "admin session")
            .await;
        let (admin_token, what) = if rule.needs == Tokens {
            (&self.admin_tokens, "admin token with tokens:write")
        } else {
            (&self.admin_scoped, "admin-scoped token")
        };
        self.allowed(rule, admins_object, admin_token, what).await;
    }

    /// B and the viewer on A's object get what a missing object gets; B never sees A's
    /// objects in any answer.
    async fn others(&self, rule: &Rule, target: &Target) {
        let others = [("member B", &self.b.session), ("viewer", &self.v.session)];
        for (what, token) in others {
            let bearer = Some(format!("Bearer {token}"));
            if rule.who == Anyone && !(rule.needs == Write && what == "viewer") {
                // Whatever it answers, nothing of A's is in it.
                let reply = self.as_(rule, target, token).await;
                self.assert_no_secrets(rule, what, &reply);
                continue;
            }
            let name = format!("{} {} ({what})", rule.method, rule.path);
            let before = self.snapshot(target).await;
            let reply = self.send(rule, target, bearer).await;
            assert_eq!(
                before,
                self.snapshot(target).await,
                "{name}: the object changed"
            );
            self.assert_no_secrets(rule, what, &reply);
            if !matches!(rule.who, Owner | OwnOnly) {
                assert_eq!(
                    reply.status,
                    StatusCode::FORBIDDEN,
                    "{name}: {}",
                    reply.text
                );
                continue;
            }
            let missing = self.as_(rule, &Self::missing(rule), token).await;
            if rule.who == OwnOnly {
                // B's request names B's own object (a PUT makes one): it must answer exactly as
                // for a name B never used, and A's stays unchanged (checked above).
                assert_eq!(
                    reply.status, missing.status,
                    "{name}: another user's object must answer like a missing one: {}",
                    reply.text
                );
                continue;
            }
            assert_eq!(
                (reply.status, &reply.body),
                (missing.status, &missing.body),
                "{name}: another user's object must answer like a missing one"
            );
            assert!(
                [StatusCode::NOT_FOUND, rule.hidden].contains(&reply.status),
                "{name}: {} {}",
                reply.status,
                reply.text
            );
        }
    }

    fn assert_no_secrets(&self, rule: &Rule, what: &str, reply: &Reply) {
        for secret in &self.a_secrets {
            assert!(
                !reply.text.contains(secret.as_str()),
                "{} {} ({what}): the answer mentions A's {secret}: {}",
                rule.method,
                rule.path,
                reply.text
            );
        }
    }
}

async fn walk(db: Db) {
    let walk = Walk::new(db).await;
    let documented = documented_routes(&walk.h);
    let mut missing = Vec::new();
    for (method, path) in &documented {
        if !RULES.iter().any(|r| r.method == method && r.path == path) {
            missing.push(format!("add a rule for {method} {path}"));
        }
    }
    assert!(
        missing.is_empty(),
        "routes without a rule in RULES:\n{}",
        missing.join("\n")
    );
    for rule in RULES {
        let key = (rule.method.to_owned(), rule.path.to_owned());
        assert!(
            documented.contains(&key),
            "stale rule: no route {} {}",
            rule.method,
            rule.path
        );
        match rule.who {
            Public => walk.public(rule).await,
            Anyone | Owner | Admin | OwnOnly => walk.protected(rule).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_is_guarded_sqlite() {
    walk(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_is_guarded_postgres() {
    walk(Db::Postgres).await;
}

/// The rule table as the report's route table: METHOD PATH → who, scope.
#[test]
fn print_route_table() {
    for rule in RULES {
        let who = match rule.who {
            Public => "public",
            Anyone => "any authenticated (own objects only)",
            Owner => "owner-or-admin",
            Admin => "admin-only",
            OwnOnly => "own only (admins too; others' answer 404)",
        };
        let needs = match rule.needs {
            Nothing => "none",
            Read => "read",
            Write => "write",
            NeedsAdmin => "admin",
            Tokens => "session, or tokens:write (admin's to mint)",
            OwnSession => "the caller's own login session",
        };
        // Shown with `--nocapture`.
        eprintln!("{:<6} {:<36} {who}; scope {needs}", rule.method, rule.path);
    }
}
