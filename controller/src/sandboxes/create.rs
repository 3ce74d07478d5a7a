//! `CreateSandbox`: the whole create, in the order a reader should check it.
//!
//! 0. A preset fills the image, command and policy the caller left out
//!    ([`super::presets`]).
//! 1. The policy: the caller's fields over their ceiling's default, checked against that
//!    ceiling ([`crate::egress::PolicyAuthority`]); a policy needs the egress plane.
//! 2. The owner's quota, the default timeout (capped at the owner's lifetime quota) and the
//!    spec's validation; then the secret environment (names checked, values opened).
//! 3. The quota is checked before Docker is asked (a cheap early refusal), then the image is
//!    admitted ([`crate::images::Images`]) (a disk limit needs a node that enforces one,
//!    [`crate::docker::DiskLimit`]) and its `USER` decides who the sandbox runs as
//!    ([`crate::sandbox::user::resolve`]: root refused, a uid outside the allowed ranges runs
//!    as nobody) with a writable home; the mounts are bound to the owner's volumes (another
//!    user's is missing like an unknown one), and the host folders to those granted to the
//!    owner, each resolved again (a changed realpath is refused; `ro` stays read-only); then
//!    the row is reserved in the transaction that checks the quota again (the check that
//!    counts) and holds the volume mounts (one live read-write holder per volume; none on a
//!    volume sampled over its size).
//! 4. A repeat of an idempotency key returns the first sandbox. When a warm pool member fits
//!    the request (`pool::claim`), the row is created in the transaction that claims it and
//!    the member is bound (proxy entry, limits, the frame); otherwise the row is reserved as
//!    above and a new sandbox is provisioned (network, proxy entry, container, start through
//!    init). Either is rolled back on failure.
//! 5. With `selftest`, the isolation self-test runs; in `required` mode a result other than
//!    `passed` fails the sandbox closed.
//! 6. The audit row: `POST /v1/sandboxes`, the sandbox's id, the answer's status. A new one's
//!    row (201) commits with its reservation (step 3); a repeat files 200, a failed required
//!    self-test 422; a later failure is also recorded by the API's refusal recorder.
//!
//! Secret values go only into the binding frame (and the run file it seeds inside the
//! sandbox): they are not stored with the sandbox, logged, returned or audited.

use std::collections::BTreeMap;
use std::time::Instant;

use tracing::{instrument, warn};

use super::provision::{step, Provision};
pub(super) use super::secret_env::SecretEnv;
use super::{SandboxError, Sandboxes};
use crate::accounts::quota::{self, Quota};
use crate::accounts::user::UserId;
use crate::audit::{status, Actor, AuditLog, Command, Entry};
use crate::docker::ImageRun;
use crate::egress::providers::CredentialRequest;
use crate::egress::TenantPolicy;
use crate::sandbox::selftest::{Selftest, SelftestMode, SelftestStatus};
use crate::sandbox::user;
use crate::sandbox::{Home, SandboxRequest, SandboxSpec};
use crate::store::{
    Claim, ClaimOutcome, ClaimedMember, Created, Holds, NewAuditRecord, NewSandbox, PoolMember,
    Sandbox,
};

/// The audit action of a create.
const ACTION: &str = "POST /v1/sandboxes";

/// `POST /v1/sandboxes`: a new sandbox for the acting account.
#[derive(Clone, Debug, Default)]
pub struct CreateSandbox {
    /// What to run.
    pub request: SandboxRequest,
    /// The egress policy as the caller wrote it; `None`: the default policy. Absent fields
    /// come from the applicable ceiling's default policy.
    pub policy: Option<TenantPolicy>,
    /// `ENV_NAME` → the name of one of the owner's secrets.
    pub secret_env: BTreeMap<String, String>,
    /// Replay-safe creates: a repeat returns the first sandbox, whatever else it asks for.
    pub idempotency_key: Option<String>,
    /// Run the isolation self-test once the sandbox runs.
    pub selftest: Option<SelftestMode>,
    /// A preset filling the image, command and policy the caller left out.
    pub preset: Option<String>,
    /// Provider credentials the proxy adds on the way out (the sandbox gets placeholders).
    pub credentials: Vec<CredentialRequest>,
}

/// How a create ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Creation {
    /// A new sandbox, with its self-test when one was asked for.
    Created {
        /// The running sandbox.
        sandbox: Sandbox,
        /// The self-test's result.
        selftest: Option<Selftest>,
    },
    /// The sandbox an earlier request with the same idempotency key created.
    Existing(Sandbox),
    /// A required self-test did not pass: the sandbox was cleaned up and ended `failed`.
    SelftestFailed {
        /// The failed sandbox.
        sandbox: Sandbox,
        /// Why.
        selftest: Selftest,
    },
}

// === impl Creation ===

impl Creation {
    /// The sandbox, whichever way the create ended.
    pub fn sandbox(&self) -> &Sandbox {
        match self {
            Self::Created { sandbox, .. }
            | Self::Existing(sandbox)
            | Self::SelftestFailed { sandbox, .. } => sandbox,
        }
    }

    /// The status the API answers with (and the audit row records).
    pub fn status(&self) -> u16 {
        match self {
            Self::Created { .. } => status::CREATED,
            Self::Existing(_) => status::OK,
            Self::SelftestFailed { .. } => status::UNPROCESSABLE,
        }
    }
}

// === impl CreateSandbox ===

impl Command<Sandboxes> for CreateSandbox {
    type Output = Creation;
    type Error = SandboxError;

    #[instrument(skip_all, fields(user.id = ?actor.user()))]
    async fn execute(self, sandboxes: &Sandboxes, actor: &Actor) -> Result<Creation, SandboxError> {
        let started = Instant::now();
        let selftest = self.selftest;
        let bound = super::credentials::bound_names(&self.credentials);
        let intent = Entry::new(ACTION, status::CREATED);
        let intent = AuditLog::row(actor, described(intent, selftest, bound.as_deref()));
        let reserved = self.reserve(sandboxes, actor, intent.as_ref()).await?;
        let creation = match reserved.created {
            Created::Existing(sandbox) => Creation::Existing(sandbox),
            Created::New(sandbox) => {
                sandboxes.peers.metrics.sandbox_created();
                // Boxed: the provisioning futures are large.
                let running = match reserved.member {
                    Some(member) => {
                        let claim =
                            sandboxes.finish_claim(sandbox, member, reserved.provision, started);
                        Box::pin(claim).await?
                    }
                    None => Box::pin(sandboxes.provision(sandbox, reserved.provision)).await?,
                };
                sandboxes.self_test_created(running, selftest).await?
            }
        };
        if let Creation::Created { .. } = creation {
            AuditLog::filed(actor);
        } else {
            let entry = entry(&creation, selftest, bound.as_deref());
            sandboxes.peers.audit.record(actor, entry).await;
        }
        Ok(creation)
    }
}

/// What steps 1 to 3 settled: the row, what provisioning a new one needs, and the pool
/// member it claimed when it is served warm.
struct Reserved {
    created: Created,
    provision: Provision,
    member: Option<PoolMember>,
}

impl CreateSandbox {
    /// Steps 1 to 3: checks everything, then reserves the row (or finds the first one) with
    /// its audit row `intent`.
    async fn reserve(
        mut self,
        sandboxes: &Sandboxes,
        actor: &Actor,
        intent: Option<&NewAuditRecord>,
    ) -> Result<Reserved, SandboxError> {
        let owner = actor.user().ok_or(SandboxError::NoAccount)?;
        self.apply_preset(sandboxes)?;
        let (policy, ceiling) = step(
            "effective_policy",
            sandboxes
                .peers
                .policy
                .effective_policy(actor, self.policy.as_ref()),
        )
        .await?;
        if self.policy.is_some() && sandboxes.egress.is_none() {
            return Err(SandboxError::EgressOff);
        }
        let (policy, bound) = step(
            "bind_credentials",
            sandboxes.bind_credentials(owner, &self.credentials, policy),
        )
        .await?;
        if let Some(bound) = &bound {
            super::credentials::add_placeholders(&mut self.request.env, &bound.env)?;
        }
        let env_names: Vec<String> = self.request.env.iter().map(|(n, _)| n.clone()).collect();
        let (quota, spec) = self.spec(sandboxes, owner).await?;
        let secret_env = sandboxes
            .resolve_secrets(owner, &env_names, &self.secret_env)
            .await?;
        let (settings, store) = (&sandboxes.settings, &sandboxes.store);
        let usage = store.quota_usage(owner).await?;
        quota::check(&quota, &usage, &spec).map_err(SandboxError::QuotaExceeded)?;
        let image = step(
            "admit_image",
            sandboxes.peers.images.admit(spec.image().as_str()),
        )
        .await?;
        sandboxes.check_disk_limit(&spec).await?;
        let defaults = super::launch::check_argv(&spec, &image)?;
        let digest = image.id.clone();
        let spec = sandboxes.run_as_image_user(spec, image)?;
        let spec = sandboxes.bind_mounts(owner, spec).await?;
        let spec = sandboxes.peers.folders.bind_mounts(owner, spec).await?;
        let (volumes, folders) = (
            super::mounts::holds(&spec),
            super::mounts::folder_holds(&spec),
        );
        let holds = Holds {
            volumes: &volumes,
            folders: &folders,
        };
        let warm = sandboxes.warm_key(&spec, digest.as_deref(), &defaults.working_dir);
        let new = NewSandbox {
            owner,
            spec,
            idempotency_key: self.idempotency_key,
            node: Some(settings.node.clone()),
        };
        let provision = Provision {
            secret_env,
            bound,
            policy,
            ceiling: ceiling.label,
            image: defaults,
        };
        if let Some(key) = warm {
            let claim = Claim {
                key: &key,
                new: new.clone(),
                quota: settings.quota,
                subnet_cap: settings.subnets_per_user,
                audit: intent,
            };
            let (created, member) = match step("claim_member", store.claim_member(claim)).await? {
                ClaimOutcome::Claimed(claimed) => {
                    let ClaimedMember { member, sandbox } = *claimed;
                    (Created::New(sandbox), Some(member))
                }
                ClaimOutcome::Existing(sandbox) => (Created::Existing(*sandbox), None),
                ClaimOutcome::NoReadyMember => {
                    sandboxes.warm_missed(&key);
                    (cold(sandboxes, new, holds, intent).await?, None)
                }
            };
            return Ok(Reserved {
                created,
                provision,
                member,
            });
        }
        let created = cold(sandboxes, new, holds, intent).await?;
        Ok(Reserved {
            created,
            provision,
            member: None,
        })
    }

    /// The owner's quota and the validated spec: a request without a timeout gets the
    /// default, capped at the owner's lifetime quota.
    async fn spec(
        &mut self,
        sandboxes: &Sandboxes,
        owner: UserId,
    ) -> Result<(Quota, SandboxSpec), SandboxError> {
        let settings = &sandboxes.settings;
        let overrides = sandboxes.store.quota_override(owner).await?;
        let quota = settings.quota.with(&overrides);
        if self.request.timeout.is_none() {
            let default = settings.maximums.default_timeout;
            self.request.timeout = Some(default.min(quota.max_lifetime));
        }
        let spec = std::mem::take(&mut self.request)
            .validate(&settings.maximums)
            .map_err(SandboxError::Invalid)?;
        Ok((quota, spec))
    }
}

// === impl Sandboxes ===

impl Sandboxes {
    /// The spec with the user its image's `USER` (`facts`, from admission) allows and the
    /// operator's home tmpfs; an image that declares `VOLUME` paths is refused
    /// (`image_declares_volume`).
    fn run_as_image_user(
        &self,
        spec: SandboxSpec,
        facts: ImageRun,
    ) -> Result<SandboxSpec, SandboxError> {
        let image = spec.image().as_str();
        if !facts.volumes.is_empty() {
            // Docker would back each with an anonymous, unbounded, writable volume.
            return Err(SandboxError::ImageDeclaresVolume {
                image: image.to_owned(),
                paths: facts.volumes,
            });
        }
        let run = &self.settings.run;
        let run_as = user::resolve(image, Some(&facts.user), &run.allowed_uids, run.root_images)?;
        let home = Home::Tmpfs {
            size_mb: run.home_tmpfs_mb,
        };
        spec.run_with(run_as, home)
            .map_err(|error| SandboxError::Invalid(vec![error]))
    }

    /// Step 5: the self-test of a sandbox that was just created, when one was asked for.
    async fn self_test_created(
        &self,
        sandbox: Sandbox,
        mode: Option<SelftestMode>,
    ) -> Result<Creation, SandboxError> {
        let Some(mode) = mode else {
            return Ok(Creation::Created {
                sandbox,
                selftest: None,
            });
        };
        let selftest = self.probe_and_store(&sandbox).await?;
        if mode == SelftestMode::Required && selftest.status != SelftestStatus::Passed {
            warn!(
                sandbox.id = %sandbox.id,
                selftest.status = selftest.status.as_str(),
                "Required self-test did not pass; failing the sandbox"
            );
            let sandbox = self
                .fail_created(&sandbox, super::selftest::SELFTEST_FAILED)
                .await?;
            return Ok(Creation::SelftestFailed { sandbox, selftest });
        }
        Ok(Creation::Created {
            sandbox,
            selftest: Some(selftest),
        })
    }
}

/// The cold reservation: the row, in the transaction that checks the quota and holds the
/// mounts.
async fn cold(
    sandboxes: &Sandboxes,
    new: NewSandbox,
    holds: Holds<'_>,
    intent: Option<&NewAuditRecord>,
) -> Result<Created, SandboxError> {
    let (settings, store) = (&sandboxes.settings, &sandboxes.store);
    let reserve = store.create_sandbox_within_quota_holding(new, settings.quota, holds, intent);
    Ok(step("reserve_row", reserve).await?)
}

/// The create's audit row: the sandbox, whichever way the create ended, its status, the
/// self-test mode when one was asked for, and the bound credentials (names only).
fn entry(creation: &Creation, selftest: Option<SelftestMode>, bound: Option<&str>) -> Entry {
    let entry = Entry::new(ACTION, creation.status()).object(creation.sandbox().id);
    described(entry, selftest, bound)
}

/// `entry` with the self-test mode and the bound credentials (names only) as its detail.
fn described(entry: Entry, selftest: Option<SelftestMode>, bound: Option<&str>) -> Entry {
    let selftest = match selftest {
        Some(SelftestMode::Record) => Some("selftest record"),
        Some(SelftestMode::Required) => Some("selftest required"),
        None => None,
    };
    let detail: Vec<&str> = [selftest, bound].into_iter().flatten().collect();
    if detail.is_empty() {
        entry
    } else {
        entry.detail(detail.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use time::OffsetDateTime;

    use super::*;
    use crate::sandbox::{Cpus, DesiredState, Limits, Maximums, SandboxId, SandboxState};

    fn sandbox(state: SandboxState) -> Sandbox {
        let spec = SandboxRequest {
            image: "airlock/testbox:dev".to_owned(),
            ..SandboxRequest::default()
        }
        .validate(&Maximums {
            limits: Limits {
                cpus: Cpus::from_millis(1000),
                memory_mb: 512,
                pids: 64,
                disk_mb: None,
            },
            timeout: Duration::from_secs(600),
            default_timeout: Duration::from_secs(60),
        })
        .unwrap();
        let now = OffsetDateTime::now_utc();
        Sandbox {
            id: SandboxId::new(),
            owner: UserId::new(),
            spec,
            desired: DesiredState::Running,
            state,
            end_reason: None,
            generation: 1,
            node: None,
            network_name: None,
            subnet: None,
            container_id: None,
            idempotency_key: None,
            created_at: now,
            updated_at: now,
            ended_at: None,
        }
    }

    #[test]
    fn every_create_row_names_its_sandbox() {
        let running = sandbox(SandboxState::Running);
        let failed = sandbox(SandboxState::Failed);
        let selftest = Selftest::error(1, "no probe".to_owned(), OffsetDateTime::now_utc());
        let table = [
            (
                Creation::Created {
                    sandbox: running.clone(),
                    selftest: Some(selftest.clone()),
                },
                running.id,
                status::CREATED,
            ),
            (Creation::Existing(running.clone()), running.id, status::OK),
            (
                Creation::SelftestFailed {
                    sandbox: failed.clone(),
                    selftest,
                },
                failed.id,
                status::UNPROCESSABLE,
            ),
        ];
        for (creation, id, code) in table {
            let want = Entry::new("POST /v1/sandboxes", code).object(id);
            assert_eq!(entry(&creation, None, None), want, "{creation:?}");
            let required = want.clone().detail("selftest required");
            let got = entry(&creation, Some(SelftestMode::Required), None);
            assert_eq!(got, required, "{creation:?}");
            let both = want
                .clone()
                .detail("selftest record, credentials anthropic:key");
            let got = entry(
                &creation,
                Some(SelftestMode::Record),
                Some("credentials anthropic:key"),
            );
            assert_eq!(got, both, "{creation:?}");
        }
    }
}
