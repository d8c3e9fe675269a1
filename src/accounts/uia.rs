//! User-interactive authentication (Client-Server API: "User-Interactive
//! Authentication API"). A session remembers which stages a client completed for
//! one purpose (registering, deleting devices, …) and one user; it lives in memory
//! for at most [`SESSION_TTL`] — an interrupted flow after a restart simply starts over.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use axum::http::StatusCode;
use parking_lot::Mutex;
use ruma::{
    api::{
        client::uiaa::{AuthData, AuthFlow, AuthType, UiaaInfo, UserIdentifier},
        error::{ErrorKind, StandardErrorBody},
    },
    OwnedUserId,
};

use super::{tokens::random_string, Accounts};
use crate::error::{Error, Result};

const SESSION_TTL: Duration = Duration::from_secs(30 * 60);

/// What a UIA session was opened for; a session cannot be replayed for another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purpose {
    Register,
    ChangePassword,
    Deactivate,
    DeleteDevices,
    /// Replacing cross-signing keys (`/keys/device_signing/upload`).
    UploadSigningKeys,
}

#[derive(Default)]
pub struct UiaSessions {
    sessions: Mutex<HashMap<String, UiaSession>>,
}

struct UiaSession {
    purpose: Purpose,
    user: Option<OwnedUserId>,
    completed: Vec<AuthType>,
    registration_token: Option<String>,
    started: Instant,
}

/// A completed flow, with what its stages established.
#[derive(Debug, Default)]
pub struct Completed {
    /// The registration token the client proved, to be consumed on success.
    pub registration_token: Option<String>,
}

impl Accounts {
    /// Runs one step of user-interactive auth. Returns `Ok` once some flow in
    /// `flows` is complete; otherwise a 401 [`Error::Uiaa`] telling the client
    /// what is left (with the stage's error when the stage failed).
    pub async fn authorize(
        &self,
        purpose: Purpose,
        user: Option<&OwnedUserId>,
        flows: Vec<AuthFlow>,
        auth: Option<&AuthData>,
    ) -> Result<Completed> {
        let Some(auth) = auth else {
            return Err(self.uia.challenge(purpose, user, flows));
        };
        let session_id = match auth.session() {
            Some(id) => {
                if !self.uia.matches(id, &purpose, user) {
                    return Err(Error::new(
                        StatusCode::BAD_REQUEST,
                        ErrorKind::Unknown,
                        "Unknown or expired user-interactive auth session",
                    ));
                }
                id.to_owned()
            }
            // A client may try a stage straight away, without asking for flows first.
            None => self.uia.open(purpose.clone(), user),
        };

        let stage = auth.auth_type();
        let allowed = stage
            .as_ref()
            .is_some_and(|s| flows.iter().any(|f| f.stages.contains(s)));
        let outcome = match (auth, allowed) {
            (_, false) => Err(StandardErrorBody::new(
                ErrorKind::Unrecognized,
                "This authentication stage is not offered here".into(),
            )),
            (AuthData::Dummy(_), true) => Ok(None),
            (AuthData::Password(p), true) => {
                self.password_stage(user, &p.identifier, &p.password).await
            }
            (AuthData::RegistrationToken(t), true) => {
                if self.registration_token_valid(&t.token)? {
                    Ok(Some(t.token.clone()))
                } else {
                    Err(StandardErrorBody::new(
                        ErrorKind::Unauthorized,
                        "Invalid or used-up registration token".into(),
                    ))
                }
            }
            (_, true) => Err(StandardErrorBody::new(
                ErrorKind::Unrecognized,
                "Unsupported authentication stage".into(),
            )),
        };

        match outcome {
            Ok(token) => {
                if let Some(done) = self.uia.complete_stage(&session_id, stage, token, &flows) {
                    return Ok(done);
                }
                Err(self.uia.info(&session_id, flows, None))
            }
            Err(stage_error) => Err(self.uia.info(&session_id, flows, Some(stage_error))),
        }
    }

    /// `m.login.password` inside UIA: the identifier must name the user the
    /// action is for, and the password must be theirs.
    async fn password_stage(
        &self,
        user: Option<&OwnedUserId>,
        identifier: &UserIdentifier,
        password: &str,
    ) -> std::result::Result<Option<String>, StandardErrorBody> {
        let forbidden = || StandardErrorBody::new(ErrorKind::Forbidden, "Invalid password".into());
        let (Some(user), UserIdentifier::Matrix(id)) = (user, identifier) else {
            return Err(forbidden());
        };
        match self.local_user_id(&id.user) {
            Ok(named) if &named == user => {}
            _ => return Err(forbidden()),
        }
        match self.check_password(user, password).await {
            Ok(_) => Ok(None),
            Err(Error::Matrix { kind, message, .. }) => Err(StandardErrorBody::new(kind, message)),
            Err(_) => Err(forbidden()),
        }
    }
}

impl UiaSessions {
    fn open(&self, purpose: Purpose, user: Option<&OwnedUserId>) -> String {
        let id = random_string(18);
        let mut sessions = self.sessions.lock();
        sessions.retain(|_, s| s.started.elapsed() < SESSION_TTL);
        sessions.insert(
            id.clone(),
            UiaSession {
                purpose,
                user: user.cloned(),
                completed: Vec::new(),
                registration_token: None,
                started: Instant::now(),
            },
        );
        id
    }

    fn matches(&self, id: &str, purpose: &Purpose, user: Option<&OwnedUserId>) -> bool {
        self.sessions.lock().get(id).is_some_and(|s| {
            &s.purpose == purpose && s.user.as_ref() == user && s.started.elapsed() < SESSION_TTL
        })
    }

    /// A fresh session and the flows on offer: the first 401 of a flow.
    fn challenge(
        &self,
        purpose: Purpose,
        user: Option<&OwnedUserId>,
        flows: Vec<AuthFlow>,
    ) -> Error {
        let id = self.open(purpose, user);
        self.info(&id, flows, None)
    }

    fn info(&self, id: &str, flows: Vec<AuthFlow>, error: Option<StandardErrorBody>) -> Error {
        let completed = self
            .sessions
            .lock()
            .get(id)
            .map(|s| s.completed.clone())
            .unwrap_or_default();
        let mut info = UiaaInfo::new(flows);
        info.completed = completed;
        info.session = Some(id.to_owned());
        info.auth_error = error.map(Box::new);
        Error::Uiaa(Box::new(info))
    }

    /// Records a passed stage; when some flow is now complete the session ends.
    fn complete_stage(
        &self,
        id: &str,
        stage: Option<AuthType>,
        registration_token: Option<String>,
        flows: &[AuthFlow],
    ) -> Option<Completed> {
        let mut sessions = self.sessions.lock();
        let session = sessions.get_mut(id)?;
        if let Some(stage) = stage {
            if !session.completed.contains(&stage) {
                session.completed.push(stage);
            }
        }
        if registration_token.is_some() {
            session.registration_token = registration_token;
        }
        let done = flows.iter().any(|f| {
            f.stages
                .iter()
                .all(|stage| session.completed.contains(stage))
        });
        if !done {
            return None;
        }
        let session = sessions.remove(id)?;
        Some(Completed {
            registration_token: session.registration_token,
        })
    }
}
