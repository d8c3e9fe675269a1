//! Push rules and unread notification counts (Client-Server API, "Push
//! Notifications": "Push Rules", "Predefined Rules", "Receiving
//! notifications"). Pushers and the push gateway are not implemented yet.
//!
//! - **Rules** are stored where the spec says clients see them: the user's
//!   global account data of type `m.push_rules`, content `{"global":
//!   Ruleset}` (written through [`Accounts::set_server_account_data`], since
//!   `/account_data` refuses that type). So `/sync` delivers them in
//!   `account_data` with no extra code. A user who never changed a rule has
//!   no row; their rules are the spec's predefined ones
//!   ([`Ruleset::server_default`]). Stored rule sets are merged with the
//!   current defaults when read ([`Ruleset::update_with_server_default`]),
//!   so a newer Feathur's default rules reach existing users. Parsed rule
//!   sets are cached per user; every write goes through [`Push`], so the
//!   cache stays exact.
//! - **Evaluation** (`eval`): [`Rooms`] calls [`Push`] (its [`EventHook`])
//!   after each event (local, or accepted from another server) is durable
//!   and before the committed stream position passes it, so a `/sync` that
//!   returns the event also returns counts that include it. Every local
//!   joined member but the sender is evaluated; notifying outcomes are one
//!   small batch of rows (`counts`), applied without a sync of their own
//!   (the next one covers them). The sender's own event counts as their
//!   read receipt (spec: "Receiving notifications").
//! - **Counts** (`counts`): rows per unread notification, deleted by read
//!   receipts ([`Push::mark_read`]); `/sync` counts the rows
//!   ([`unread_counts`]).
//!
//! Tables (key → value): `userroomscopepos_notification` (user, room,
//! scope, stream position) → notification; `userroomthread_pushreadpos`
//! (user, room, read scope) → newest receipt position.
//!
//! Not implemented: pushers (`/pushers`), sending to a push gateway,
//! `/notifications`, and counting events that relate to a thread event (an
//! edit or reaction) as part of that thread: only `m.thread` relations place
//! an event in a thread.

mod counts;
pub mod eval;
#[cfg(test)]
mod tests;

use std::{collections::HashMap, future::Future, pin::Pin, sync::Arc};

use parking_lot::Mutex;
use ruma::{
    events::receipt::ReceiptThread,
    push::{FlattenedJson, Ruleset},
    OwnedRoomId, OwnedUserId, RoomId, UserId,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use self::{
    counts::{Counts, Notification},
    eval::{evaluate, event_json, thread_of, RoomContext},
};
use crate::{
    accounts::Accounts,
    error::{Error, Result},
    rooms::{EventHook, Pdu, Rooms},
    storage::{Cf, Storage, Table},
};

pub use self::counts::UnreadCounts;

/// Room contexts kept at most; the cache starts afresh when full.
const MAX_CACHED_ROOM_CONTEXTS: usize = 1024;

/// The account data type holding a user's push rules.
pub const PUSH_RULES_TYPE: &str = "m.push_rules";

/// The content of `m.push_rules` account data.
#[derive(Serialize, Deserialize)]
struct PushRulesContent {
    global: Ruleset,
}

/// The push domain: rules, evaluation, unread counts.
pub struct Push {
    storage: Arc<Storage>,
    /// The accounts' global account data table, read-only here.
    account_data: Table<(OwnedUserId, String), Value>,
    cache: Mutex<HashMap<OwnedUserId, Arc<Ruleset>>>,
    /// Rooms' push contexts, each valid for one state snapshot.
    contexts: Mutex<HashMap<OwnedRoomId, Arc<RoomContext>>>,
    /// One rule change at a time: read-modify-write of the whole rule set.
    write_lock: tokio::sync::Mutex<()>,
    counts: Counts,
}

impl Push {
    /// Opens the push domain (moving rows of an older table layout first).
    pub fn new(storage: Arc<Storage>) -> Result<Arc<Push>> {
        Counts::migrate_legacy(&storage)?;
        Ok(Arc::new(Push {
            account_data: storage.table(Cf::UserIdTypeAccountData),
            cache: Mutex::new(HashMap::new()),
            contexts: Mutex::new(HashMap::new()),
            write_lock: tokio::sync::Mutex::new(()),
            counts: Counts::with_cache(&storage),
            storage,
        }))
    }

    /// Makes `rooms` hand every committed local event to this service.
    pub fn attach(self: &Arc<Self>, rooms: &Rooms) {
        rooms.add_event_hook(self.clone());
    }

    /// The user's rule set: stored changes merged with the current defaults.
    pub fn ruleset(&self, user: &UserId) -> Result<Arc<Ruleset>> {
        if let Some(found) = self.cache.lock().get(user) {
            return Ok(found.clone());
        }
        let ruleset = Arc::new(self.load(user)?);
        self.cache.lock().insert(user.to_owned(), ruleset.clone());
        Ok(ruleset)
    }

    fn load(&self, user: &UserId) -> Result<Ruleset> {
        let key = (user.to_owned(), PUSH_RULES_TYPE.to_owned());
        let defaults = Ruleset::server_default(user);
        let Some(stored) = self.account_data.get(&key)? else {
            return Ok(defaults);
        };
        match serde_json::from_value::<PushRulesContent>(stored) {
            Ok(PushRulesContent { mut global }) => {
                global.update_with_server_default(defaults);
                Ok(global)
            }
            Err(e) => {
                tracing::warn!(%user, "unreadable m.push_rules, using the defaults: {e}");
                Ok(defaults)
            }
        }
    }

    /// Changes the user's rule set with `change` and stores the result as
    /// `m.push_rules` account data; nothing is written when `change` fails.
    pub async fn update_rules<R>(
        &self,
        accounts: &Accounts,
        user: &UserId,
        change: impl FnOnce(&mut Ruleset) -> Result<R>,
    ) -> Result<R> {
        let _guard = self.write_lock.lock().await;
        let mut ruleset = self.load(user)?;
        let out = change(&mut ruleset)?;
        let content = serde_json::to_value(PushRulesContent { global: ruleset })
            .map_err(|e| Error::internal(format!("push rules not serialisable: {e}")))?;
        let parsed: PushRulesContent = serde_json::from_value(content.clone())
            .map_err(|e| Error::internal(format!("push rules do not round-trip: {e}")))?;
        accounts
            .set_server_account_data(&user.to_owned(), PUSH_RULES_TYPE, content)
            .await?;
        self.cache
            .lock()
            .insert(user.to_owned(), Arc::new(parsed.global));
        Ok(out)
    }

    /// Stores the default rule set as the user's `m.push_rules` account data
    /// if they have none yet, so that a client's first `/sync` carries it in
    /// `account_data` as the spec describes. Called at registration and login.
    pub async fn ensure_stored(&self, accounts: &Accounts, user: &UserId) -> Result<()> {
        let key = (user.to_owned(), PUSH_RULES_TYPE.to_owned());
        if self.account_data.contains(&key)? {
            return Ok(());
        }
        self.update_rules(accounts, user, |_| Ok(())).await
    }

    /// A read receipt of `user` in `room` at the event with stream position
    /// `position`: the notifications it covers stop counting (Client-Server
    /// API "Receiving notifications"; "Threaded read receipts": an
    /// unthreaded receipt covers the whole room, `main` the main timeline,
    /// a thread id that thread). Positions are those of
    /// [`Rooms::position_of`]. An older receipt than one already applied
    /// changes nothing.
    pub async fn mark_read(
        &self,
        user: &UserId,
        room: &RoomId,
        thread: &ReceiptThread,
        position: u64,
    ) -> Result<()> {
        let mut batch = self.storage.batch();
        if self
            .counts
            .stage_read(&mut batch, user, room, thread, position)?
        {
            self.storage.commit(batch).await?;
            self.counts.read_applied(user, room, thread, position);
        }
        Ok(())
    }

    /// The unread counts of `user` in `room` for events at or below `upto`.
    pub fn unread(
        &self,
        user: &UserId,
        room: &RoomId,
        upto: u64,
        split_threads: bool,
    ) -> Result<UnreadCounts> {
        self.counts.unread(user, room, upto, split_threads)
    }

    /// The room's push context for its current state, built when the state
    /// changed since the cached one. Read just after the event commits: an
    /// event of the same instant may already have moved the state (a member
    /// joining), which the counts of this event then reflect.
    fn room_context(&self, rooms: &Rooms, room_id: &RoomId) -> Result<Option<Arc<RoomContext>>> {
        let current = rooms.current_state_id(room_id)?;
        if let Some(cached) = self.contexts.lock().get(room_id) {
            if Some(cached.snapshot) == current {
                return Ok(Some(cached.clone()));
            }
        }
        let Some(context) = RoomContext::load(rooms, room_id)? else {
            return Ok(None);
        };
        let context = Arc::new(context);
        let mut contexts = self.contexts.lock();
        if contexts.len() >= MAX_CACHED_ROOM_CONTEXTS {
            contexts.clear();
        }
        contexts.insert(room_id.to_owned(), context.clone());
        Ok(Some(context))
    }

    /// Evaluates a committed local event for the room's local members.
    async fn on_event(&self, rooms: &Rooms, pdu: &Pdu) -> Result<()> {
        let Some(position) = rooms.position_of(&pdu.event_id)? else {
            return Ok(());
        };
        let room_id = &pdu.room_id;
        let thread = thread_of(pdu);
        let mut batch = self.storage.batch();
        let mut own_read = None;
        if pdu.sender.server_name() == rooms.server_name() {
            let scope = match &thread {
                Some(root) => ReceiptThread::Thread(root.clone()),
                None => ReceiptThread::Main,
            };
            if self
                .counts
                .stage_read(&mut batch, &pdu.sender, room_id, &scope, position)?
            {
                own_read = Some(scope);
            }
        }
        let room = self.room_context(rooms, room_id)?;
        let recipients: Vec<_> = room
            .iter()
            .flat_map(|room| &room.members)
            .filter(|(user, _)| *user != pdu.sender)
            .collect();
        if !recipients.is_empty() {
            let event = FlattenedJson::from_raw(&event_json(pdu)?);
            for (user, context) in recipients {
                let ruleset = self.ruleset(user)?;
                let outcome = evaluate(&ruleset, &event, context).await;
                if outcome.notify {
                    let notification = Notification {
                        highlight: outcome.highlight,
                        thread: thread.clone(),
                    };
                    self.counts.stage_notification(
                        &mut batch,
                        user,
                        room_id,
                        position,
                        &notification,
                    )?;
                }
            }
        }
        // Not awaited to durability: the counts are derived from the event
        // (which is durable) and ride the next sync of the log; a power
        // loss in between costs counts, never an event. A killed process
        // loses nothing applied.
        drop(self.storage.apply(batch).await?);
        if let Some(scope) = own_read {
            self.counts
                .read_applied(&pdu.sender, room_id, &scope, position);
        }
        Ok(())
    }
}

impl EventHook for Push {
    fn committed<'a>(
        &'a self,
        rooms: &'a Rooms,
        pdu: &'a Pdu,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            // The event is durable whatever happens here: a failure costs
            // a count, never the event.
            if let Err(e) = self.on_event(rooms, pdu).await {
                tracing::warn!(event_id = %pdu.event_id, "push rule evaluation failed: {e}");
            }
        })
    }
}

/// The counts `/sync` shows for `user` in `room` (events at or below
/// `upto`); `split_threads` is the filter's `unread_thread_notifications`.
/// For the sync domain, which holds the storage but not this service.
pub fn unread_counts(
    storage: &Storage,
    user: &UserId,
    room: &RoomId,
    upto: u64,
    split_threads: bool,
) -> Result<UnreadCounts> {
    Counts::new(storage).unread(user, room, upto, split_threads)
}
