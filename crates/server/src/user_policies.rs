//! Identity policies attached to users through the admin API ([`UserPolicies`], the server's [`UserAdmin`]): checked
//! as identity policies, kept by the store so they survive restarts, and mirrored into the [`UserRegistry`] that
//! authorization reads.

use std::sync::Arc;

use coffer_admin_api::{UserAdmin, UserAdminError};
use coffer_store::{Store, StoreError};
use tracing::warn;

use crate::policy::{Policy, PolicyKind};
use crate::users::UserRegistry;

/// The admin API's user side.
pub struct UserPolicies {
    users: UserRegistry,
    store: Store,
}

impl UserPolicies {
    /// Loads the attached policies into `users`. A stored policy that no longer parses (it did when attached) is
    /// left out — its user has fewer rights, never more — and logged.
    pub async fn load(users: UserRegistry, store: Store) -> Result<Self, StoreError> {
        for (access_key, text) in store.user_policies().await? {
            match Policy::parse(&text, &PolicyKind::Identity) {
                Ok(policy) => users.attach(&access_key, Some(Arc::new(policy))),
                Err(err) => {
                    warn!(user = %access_key, error = %err, "an attached user policy does not parse; ignoring it")
                }
            }
        }
        Ok(Self { users, store })
    }

    fn existing_user(&self, user: &str) -> Result<(), UserAdminError> {
        match self.users.rights(user) {
            Some(_) => Ok(()),
            None => Err(UserAdminError::NoSuchUser(user.to_owned())),
        }
    }
}

#[async_trait::async_trait]
impl UserAdmin for UserPolicies {
    async fn user_policy(&self, user: &str) -> Result<String, UserAdminError> {
        let mut policies = self.store.user_policies().await.map_err(internal)?;
        policies.remove(user).ok_or_else(|| UserAdminError::NoSuchPolicy(user.to_owned()))
    }

    async fn put_user_policy(&self, user: &str, policy: &str) -> Result<(), UserAdminError> {
        self.existing_user(user)?;
        let parsed = Policy::parse(policy, &PolicyKind::Identity)
            .map_err(|err| UserAdminError::MalformedPolicy(err.to_string()))?;
        self.store.set_user_policy(user, Some(policy.to_owned())).await.map_err(internal)?;
        self.users.attach(user, Some(Arc::new(parsed)));
        Ok(())
    }

    async fn delete_user_policy(&self, user: &str) -> Result<(), UserAdminError> {
        if !self.store.user_policies().await.map_err(internal)?.contains_key(user) {
            return Err(UserAdminError::NoSuchPolicy(user.to_owned()));
        }
        self.store.set_user_policy(user, None).await.map_err(internal)?;
        self.users.attach(user, None);
        Ok(())
    }
}

fn internal(err: StoreError) -> UserAdminError {
    UserAdminError::Internal(err.to_string())
}
