//! One IAM identity per function on the emulator, holding that function's policy from
//! `template.yaml`, and the switch that makes the emulator enforce IAM.
//!
//! moto checks a request's action against the caller's policies, not its resources or
//! conditions (a statement naming the table's ARN refused an allowed call in a probe; `*`
//! accepted it), so each policy is rendered with `Resource: "*"`: the actions are enforced
//! here, the resources and conditions by the template test and `cfn-lint`. moto also names a
//! batch or transaction by its own API (`sqs:SendMessageBatch`, `dynamodb:TransactWriteItems`)
//! where AWS authorises each item under the single call's action, so the rendering adds those
//! names beside the action that AWS checks for them ([`emulator_actions`]).

use std::collections::BTreeSet;

use aws_sdk_iam::error::ProvideErrorMetadata;
use tastysync_shared::aws::SdkConfig;

/// Actions AWS checks for a batch or transaction item, and the call name moto checks instead.
const EMULATOR_ALIASES: &[(&str, &str)] = &[
    ("sqs:SendMessage", "sqs:SendMessageBatch"),
    ("sqs:DeleteMessage", "sqs:DeleteMessageBatch"),
    (
        "sqs:ChangeMessageVisibility",
        "sqs:ChangeMessageVisibilityBatch",
    ),
    ("dynamodb:PutItem", "dynamodb:TransactWriteItems"),
];

/// The identity that provisions stacks and that the tests inspect them with.
pub const ADMIN: &str = "admin";

/// `granted`, plus the names moto checks for the batches and transactions those allow.
pub fn emulator_actions<'a>(granted: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
    let mut actions: BTreeSet<String> = granted.into_iter().map(str::to_owned).collect();
    for (action, alias) in EMULATOR_ALIASES {
        if actions.contains(*action) {
            actions.insert((*alias).to_owned());
        }
    }
    actions
}

/// An access key: `key_id:secret`, as `TASTYSYNC_IDENTITY_<FUNCTION>` carries it. Fake keys of
/// the local emulator, worth nothing anywhere else; still, `Debug` shows only the key id.
#[derive(Clone)]
pub struct AccessKey {
    pub key_id: String,
    pub secret: String,
}

impl std::fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessKey")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl AccessKey {
    pub fn env_value(&self) -> String {
        format!("{}:{}", self.key_id, self.secret)
    }

    /// `base` signed with this key.
    pub fn sdk(&self, base: &SdkConfig) -> SdkConfig {
        tastysync_shared::aws::with_credentials(base, &self.key_id, &self.secret)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("IAM on the emulator: {operation} for {user}: {message}")]
pub struct IdentityError {
    operation: &'static str,
    user: String,
    message: String,
}

fn iam_error<E: ProvideErrorMetadata + std::fmt::Display>(
    operation: &'static str,
    user: &str,
) -> impl FnOnce(E) -> IdentityError {
    move |e| IdentityError {
        operation,
        user: user.to_owned(),
        message: e.message().map_or_else(|| e.to_string(), str::to_owned),
    }
}

/// The user `name` with one inline policy allowing `actions` on `*`, and a fresh access key
/// (its older keys deleted, so running it again changes nothing but the key).
pub async fn create(
    sdk: &SdkConfig,
    name: &str,
    actions: &BTreeSet<String>,
) -> Result<AccessKey, IdentityError> {
    let iam = aws_sdk_iam::Client::new(sdk);
    if iam.get_user().user_name(name).send().await.is_err() {
        iam.create_user()
            .user_name(name)
            .send()
            .await
            .map_err(iam_error("CreateUser", name))?;
    }
    let policy = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}],
    });
    iam.put_user_policy()
        .user_name(name)
        .policy_name("Ports")
        .policy_document(policy.to_string())
        .send()
        .await
        .map_err(iam_error("PutUserPolicy", name))?;
    let old = iam
        .list_access_keys()
        .user_name(name)
        .send()
        .await
        .map_err(iam_error("ListAccessKeys", name))?;
    for key in old.access_key_metadata() {
        if let Some(id) = key.access_key_id() {
            iam.delete_access_key()
                .user_name(name)
                .access_key_id(id)
                .send()
                .await
                .map_err(iam_error("DeleteAccessKey", name))?;
        }
    }
    let key = iam
        .create_access_key()
        .user_name(name)
        .send()
        .await
        .map_err(iam_error("CreateAccessKey", name))?
        .access_key
        .ok_or_else(|| IdentityError {
            operation: "CreateAccessKey",
            user: name.to_owned(),
            message: "no key in the answer".into(),
        })?;
    Ok(AccessKey {
        key_id: key.access_key_id,
        secret: key.secret_access_key,
    })
}

/// Turns the emulator's IAM enforcement on (`true`) or off, through moto's own API: while it
/// is off, any key may do anything (how a new stack creates its first identity).
pub async fn enforce(endpoint: &str, on: bool) -> Result<(), reqwest::Error> {
    // moto enforces once it has served this many requests since the switch.
    let after = if on { "0" } else { "inf" };
    tastysync_shared::tls::http()
        .build()?
        .post(format!(
            "{}/moto-api/reset-auth",
            endpoint.trim_end_matches('/')
        ))
        .header("content-type", "application/octet-stream")
        .body(after)
        .send()
        .await?
        .error_for_status()?;
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum IdentitiesError {
    #[error(transparent)]
    Template(#[from] crate::template::TemplateError),
    #[error(transparent)]
    Iam(#[from] IdentityError),
    #[error("template.yaml declares function {0}, which the code does not know")]
    UnknownFunction(String),
}

/// The stack's identities: an admin (every action, for provisioning and for the tests to
/// inspect what functions left) and one per function of `template.yaml` with its `Ports`
/// policy. Returns the admin's key and the `TASTYSYNC_IDENTITY_<FUNCTION>=key_id:secret` lines.
pub async fn provision(
    sdk: &SdkConfig,
    prefix: &str,
) -> Result<(AccessKey, Vec<String>), IdentitiesError> {
    let admin = create(
        sdk,
        &format!("{prefix}{ADMIN}"),
        &BTreeSet::from(["*".to_owned()]),
    )
    .await?;
    let template = crate::template::parse(crate::template::TEMPLATE)?;
    let mut lines = Vec::new();
    for (name, granted) in crate::template::policies(&template)? {
        let function = tastysync_shared::wiring::Function::from_name(&name)
            .ok_or_else(|| IdentitiesError::UnknownFunction(name.clone()))?;
        let actions = emulator_actions(granted.iter().map(String::as_str));
        let key = create(sdk, &format!("{prefix}{name}"), &actions).await?;
        lines.push(format!(
            "{}={}",
            function.identity_variable(),
            key.env_value()
        ));
    }
    Ok((admin, lines))
}
