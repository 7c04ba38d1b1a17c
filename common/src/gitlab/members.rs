//! Members, users and groups (GitLab docs: `api/members`, `api/users`, `api/groups`).

use std::collections::BTreeMap;

use reqwest::Method;
use serde::Deserialize;
use serde_json::Value;

use super::{GitLabClient, encode_path};
use crate::error::Result;
use crate::http::Retry;

/// The user a token belongs to (`GET /user`).
#[derive(Debug, Clone, Deserialize)]
pub struct CurrentUser {
    /// GitLab's numeric user id.
    pub id: u64,
    /// The user's login name.
    pub username: String,
    /// `true` for an instance administrator (only reported to administrators).
    #[serde(default)]
    pub is_admin: bool,
}

/// One external identity of a user (admin view of the users API).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Identity {
    /// The identity provider's name in GitLab, e.g. `openid_connect` for Keycloak.
    pub provider: String,
    /// The user's id at that provider (Keycloak: the OIDC `sub`).
    pub extern_uid: String,
}

/// A user as `GET /users` lists it; `identities` and `user_type` only when an administrator asks.
#[derive(Debug, Clone, Deserialize)]
pub struct User {
    /// GitLab's numeric user id.
    pub id: u64,
    /// Login name, matched case-insensitively when no identity links the user.
    pub username: String,
    /// `active`, `blocked`, `deactivated`, …
    #[serde(default)]
    pub state: String,
    /// Project/group access-token bots (GitLab docs: api/users, `bot`).
    #[serde(default)]
    pub bot: bool,
    /// `human`, `project_bot`, `service_account`, … (admin view).
    #[serde(default)]
    pub user_type: Option<String>,
    /// Linked external identities, e.g. the user's Keycloak account.
    #[serde(default)]
    pub identities: Vec<Identity>,
}

impl User {
    /// A bot or service account: never pruned, never matched to a person.
    pub fn is_automation(&self) -> bool {
        self.bot
            || self
                .user_type
                .as_deref()
                .is_some_and(|t| t != "human" && !t.is_empty())
    }
}

/// A group as `GET /groups/:id` returns it.
#[derive(Debug, Clone, Deserialize)]
pub struct Group {
    /// GitLab's numeric group id.
    pub id: u64,
    /// The group's full path, e.g. `keycloak-groups/platform-admins`.
    pub full_path: String,
    /// The parent group's id; `None` for a top-level group.
    #[serde(default)]
    pub parent_id: Option<u64>,
}

/// A direct member of a group (`GET /groups/:id/members`).
#[derive(Debug, Clone, Deserialize)]
pub struct Member {
    /// The member's user id.
    pub id: u64,
    /// The member's login name.
    pub username: String,
    /// The member's role in the group, an [`super::access`] level.
    pub access_level: u8,
}

/// Users indexed for matching: by `(provider, extern_uid)` and by lower-case username.
#[derive(Debug, Default)]
pub struct UserIndex {
    by_identity: BTreeMap<(String, String), usize>,
    by_username: BTreeMap<String, usize>,
    /// The users, in the order given; the maps point into this list.
    pub users: Vec<User>,
}

impl UserIndex {
    /// Indexes `users` by their identities and lower-case usernames.
    pub fn new(users: Vec<User>) -> Self {
        let mut index = Self::default();
        for (i, user) in users.iter().enumerate() {
            for identity in &user.identities {
                index
                    .by_identity
                    .insert((identity.provider.clone(), identity.extern_uid.clone()), i);
            }
            index.by_username.insert(user.username.to_lowercase(), i);
        }
        index.users = users;
        index
    }

    /// The user linked to `extern_uid` at `provider`, else the one with that username.
    pub fn find(&self, provider: &str, extern_uid: &str, username: &str) -> Option<&User> {
        self.by_identity
            .get(&(provider.to_owned(), extern_uid.to_owned()))
            .or_else(|| self.by_username.get(&username.to_lowercase()))
            .map(|&i| &self.users[i])
    }

    /// The user with GitLab id `id` (a linear scan).
    pub fn by_id(&self, id: u64) -> Option<&User> {
        self.users.iter().find(|u| u.id == id)
    }
}

impl GitLabClient {
    /// `GET /user`: whose token this is.
    pub async fn current_user(&self) -> Result<CurrentUser> {
        self.get("reading the token's user", "user").await
    }

    /// `GET /version` (`doc/api/version.md`): `version`, `revision`, `enterprise`.
    pub async fn version(&self) -> Result<Value> {
        self.get("reading the GitLab version", "version").await
    }

    /// The scopes of the token in use (`doc/api/personal_access_tokens.md`, "Get single personal
    /// access token", `self`); `None` where GitLab has no such route (404).
    pub async fn token_scopes(&self) -> Result<Option<Vec<String>>> {
        let token: Option<Value> = self
            .api
            .get_optional("reading the token's scopes", "personal_access_tokens/self")
            .await?;
        Ok(token.map(|t| {
            t["scopes"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        }))
    }

    /// `GET /groups/:id` by full path; `None` when it does not exist (or is not visible).
    pub async fn group(&self, full_path: &str) -> Result<Option<Group>> {
        self.api
            .get_optional(
                &format!("reading group {full_path}"),
                &format!("groups/{}", encode_path(full_path)),
            )
            .await
    }

    /// `POST /groups` (private), under `parent_id` when given.
    pub async fn create_group(&self, path: &str, parent_id: Option<u64>) -> Result<Group> {
        let mut body = serde_json::json!({"name": path, "path": path, "visibility": "private"});
        if let Some(parent) = parent_id {
            body["parent_id"] = parent.into();
        }
        self.write(
            &format!("creating group {path}"),
            Method::POST,
            "groups",
            &body,
            Retry::Never,
        )
        .await
    }

    /// Direct members of a group, all pages (`GET /groups/:id/members`).
    pub async fn group_members(&self, group: u64) -> Result<Vec<Member>> {
        self.list(
            &format!("listing members of group {group}"),
            &format!("groups/{group}/members?per_page=100"),
        )
        .await
    }

    /// `POST /groups/:id/members`.
    pub async fn add_group_member(&self, group: u64, user: u64, level: u8) -> Result<Member> {
        self.write(
            &format!("adding user {user} to group {group}"),
            Method::POST,
            &format!("groups/{group}/members"),
            &serde_json::json!({"user_id": user, "access_level": level}),
            Retry::Never,
        )
        .await
    }

    /// `PUT /groups/:id/members/:user_id`.
    pub async fn edit_group_member(&self, group: u64, user: u64, level: u8) -> Result<Member> {
        self.write(
            &format!("changing the role of user {user} in group {group}"),
            Method::PUT,
            &format!("groups/{group}/members/{user}"),
            &serde_json::json!({"access_level": level}),
            Retry::Safe,
        )
        .await
    }

    /// `DELETE /groups/:id/members/:user_id`.
    pub async fn remove_group_member(&self, group: u64, user: u64) -> Result<()> {
        self.api
            .call(
                &format!("removing user {user} from group {group}"),
                Method::DELETE,
                &format!("groups/{group}/members/{user}"),
                None,
                Retry::Safe,
            )
            .await
            .map(|_| ())
    }

    /// Every active user, all pages, with identities when the token is an administrator's.
    pub async fn active_users(&self) -> Result<Vec<User>> {
        self.list(
            "listing users",
            "users?active=true&order_by=id&sort=asc&per_page=100",
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: u64, username: &str, identities: &[(&str, &str)]) -> User {
        User {
            id,
            username: username.into(),
            state: "active".into(),
            bot: false,
            user_type: Some("human".into()),
            identities: identities
                .iter()
                .map(|(p, u)| Identity {
                    provider: (*p).into(),
                    extern_uid: (*u).into(),
                })
                .collect(),
        }
    }

    #[test]
    fn identity_wins_over_username() {
        let index = UserIndex::new(vec![
            user(1, "alice", &[]),
            user(2, "alice.smith", &[("openid_connect", "kc-uuid-1")]),
        ]);
        assert_eq!(
            index
                .find("openid_connect", "kc-uuid-1", "alice")
                .unwrap()
                .id,
            2
        );
        assert_eq!(
            index
                .find("openid_connect", "kc-uuid-9", "Alice")
                .unwrap()
                .id,
            1
        );
        assert!(index.find("openid_connect", "kc-uuid-9", "bob").is_none());
    }

    #[test]
    fn bots_and_service_accounts_are_automation() {
        let mut bot = user(3, "project_7_bot_abc", &[]);
        bot.bot = true;
        assert!(bot.is_automation());
        let mut sa = user(4, "service_account_x", &[]);
        sa.user_type = Some("service_account".into());
        assert!(sa.is_automation());
        assert!(!user(5, "carol", &[]).is_automation());
    }
}
