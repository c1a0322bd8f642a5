//! `hubgate-cp bootstrap`: first admin token, demo user, key and provider.
//! Idempotent: a second run with the same arguments changes nothing.

use anyhow::{bail, Context};
use sqlx::PgPool;

use crate::admin::keys::{self, KeyInput};
use crate::admin::providers::{self, ProviderInput};
use crate::admin::users::{self, UserInput};

pub const MIN_SECRET_CHARS: usize = 8;

// Debug is written by hand: it shows the secrets masked.
#[derive(Clone)]
pub struct BootstrapArgs {
    pub admin_token: String,
    /// Owner of the demo key.
    pub demo_user: String,
    pub demo_key: Option<String>,
    /// Both or neither.
    pub demo_provider: Option<DemoProvider>,
}

#[derive(Clone)]
pub struct DemoProvider {
    pub base_url: String,
    pub api_key: String,
}

impl std::fmt::Debug for BootstrapArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BootstrapArgs")
            .field("admin_token", &hubgate_wire::mask_key(&self.admin_token))
            .field("demo_user", &self.demo_user)
            .field(
                "demo_key",
                &self.demo_key.as_deref().map(hubgate_wire::mask_key),
            )
            .field("demo_provider", &self.demo_provider)
            .finish()
    }
}

impl std::fmt::Debug for DemoProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DemoProvider")
            .field("base_url", &self.base_url)
            .field("api_key", &hubgate_wire::mask_key(&self.api_key))
            .finish()
    }
}

pub const DEMO_PROVIDER_NAME: &str = "demo";
const DEMO_KEY_NAME: &str = "demo";

fn secret_ok(what: &str, value: &str) -> anyhow::Result<()> {
    if value.chars().count() < MIN_SECRET_CHARS {
        bail!("{what} must be at least {MIN_SECRET_CHARS} characters");
    }
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        bail!("{what} must not contain whitespace or control characters");
    }
    Ok(())
}

/// Ensures the admin token (stored hashed), and, when given, the demo user
/// with the demo key and the `demo` claude provider. Returns whether anything
/// changed.
pub async fn run(pool: &PgPool, args: &BootstrapArgs) -> anyhow::Result<bool> {
    secret_ok("--admin-token", &args.admin_token)?;
    if let Some(key) = &args.demo_key {
        secret_ok("--demo-key", key)?;
    }
    let demo_user: UserInput =
        serde_json::from_value(serde_json::json!({ "name": args.demo_user }))
            .context("building the demo user")?;
    let demo_provider = args
        .demo_provider
        .as_ref()
        .map(|p| ProviderInput::new(DEMO_PROVIDER_NAME, "claude", &p.base_url, &p.api_key));
    if args.demo_key.is_some() {
        demo_user
            .validate()
            .map_err(|e| anyhow::anyhow!("--demo-user: {e}"))?;
    }
    if let Some(p) = &demo_provider {
        p.validate()
            .map_err(|e| anyhow::anyhow!("demo provider: {e}"))?;
    }

    let mut tx = pool.begin().await?;
    // One bootstrap at a time, so two concurrent runs cannot both create.
    sqlx::query!("SELECT pg_advisory_xact_lock(hashtext('hubgate.bootstrap'))")
        .execute(&mut *tx)
        .await?;
    let mut changed = false;

    let token = sqlx::query!(
        "INSERT INTO admin_tokens (name, token_hash) VALUES ('bootstrap', $1) \
         ON CONFLICT (token_hash) DO UPDATE SET revoked_at = NULL WHERE admin_tokens.revoked_at IS NOT NULL",
        hubgate_wire::hash_key(&args.admin_token)
    )
    .execute(&mut *tx)
    .await?;
    changed |= token.rows_affected() > 0;

    if let Some(raw) = &args.demo_key {
        let existing = sqlx::query_scalar!(
            "SELECT id FROM users WHERE name_fold = $1 AND deleted_at IS NULL",
            crate::validate::fold(&demo_user.name)
        )
        .fetch_optional(&mut *tx)
        .await?;
        let user_id = match existing {
            Some(id) => id,
            None => {
                changed = true;
                users::insert(&mut tx, &demo_user).await?.id
            }
        };
        let hash = hubgate_wire::hash_key(raw);
        let key = sqlx::query!(
            r#"SELECT id, user_id, deleted_at IS NOT NULL AS "deleted!" FROM keys WHERE key_hash = $1"#,
            hash
        )
        .fetch_optional(&mut *tx)
        .await?
        .map(|k| (k.id, k.user_id, k.deleted));
        // An existing key is left as it is: never moved from another user,
        // never re-enabled or revived after an admin disabled or deleted it.
        match key {
            None => {
                keys::insert(&mut tx, user_id, &KeyInput::named(DEMO_KEY_NAME), raw).await?;
                changed = true;
            }
            Some((id, owner, _)) if owner != user_id => bail!(
                "--demo-key is already key {id} of user {owner}, not of --demo-user {:?} \
                 (user {user_id}); choose another demo key",
                demo_user.name
            ),
            Some((id, _, true)) => {
                bail!("--demo-key is key {id}, which an admin deleted; choose another demo key")
            }
            Some(_) => {}
        }
    }

    if let Some(wanted) = &demo_provider {
        let existing =
            providers::find_by_fold(&mut tx, &crate::validate::fold(DEMO_PROVIDER_NAME)).await?;
        match existing {
            None => {
                providers::insert(&mut tx, wanted).await?;
                changed = true;
            }
            Some(current)
                if current.base_url != wanted.base_url
                    || current.credential != wanted.api_key
                    || current.provider_type != wanted.provider_type =>
            {
                let mut updated = ProviderInput::from(&current);
                updated.base_url = wanted.base_url.clone();
                updated.api_key = wanted.api_key.clone();
                updated.provider_type = wanted.provider_type.clone();
                providers::replace(&mut tx, current.id, &updated).await?;
                changed = true;
            }
            Some(_) => {}
        }
    }

    tx.commit().await?;
    Ok(changed)
}
