//! Per-user wake-ups for long-polling `/sync` requests (Client-Server API
//! "Syncing": with `timeout`, the server waits until something for the user
//! exists or the timeout passes).
//!
//! Only users with a waiting request have an entry: a `watch` channel whose
//! version every [`Notifier::notify_user`] bumps. A request *registers*
//! ([`Notifier::register`]) before it reads anything; the receiver marks the
//! version it started at, so a notification that lands between the read and
//! the wait still makes [`Waiter::wait_until`] return at once. The entry goes
//! when the last waiter of that user drops. An idle server holds no entries
//! and a change costs one hash lookup per member it concerns.

use std::{collections::HashMap, sync::Arc};

use parking_lot::Mutex;
use ruma::{OwnedUserId, UserId};
use tokio::{sync::watch, time::Instant};

use crate::rooms::stream::StreamListener;

/// The wake-up registry. Shared as `Arc<Notifier>`.
#[derive(Default)]
pub struct Notifier {
    users: Mutex<HashMap<OwnedUserId, watch::Sender<()>>>,
}

impl Notifier {
    pub fn new() -> Arc<Notifier> {
        Arc::new(Notifier::default())
    }

    /// Registers interest for `user`. Call before reading what to answer.
    pub fn register(self: &Arc<Self>, user: &UserId) -> Waiter {
        let mut users = self.users.lock();
        let sender = users
            .entry(user.to_owned())
            .or_insert_with(|| watch::channel(()).0);
        Waiter {
            notifier: Arc::clone(self),
            user: user.to_owned(),
            receiver: sender.subscribe(),
        }
    }

    /// Wakes every waiting request of `user`.
    pub fn notify_user(&self, user: &UserId) {
        if let Some(sender) = self.users.lock().get(user) {
            sender.send_replace(());
        }
    }

    /// Wakes every waiting request of each of `users`.
    pub fn notify_users(&self, users: &[OwnedUserId]) {
        let map = self.users.lock();
        for user in users {
            if let Some(sender) = map.get(user) {
                sender.send_replace(());
            }
        }
    }

    /// Users with at least one waiting request.
    pub fn waiting_users(&self) -> usize {
        self.users.lock().len()
    }
}

/// Rooms tell the notifier about committed events: `notify_room` is the
/// room's joined and invited members plus the target of a membership change
/// (`rooms::stream` works out the users, only when someone waits).
impl StreamListener for Notifier {
    fn is_idle(&self) -> bool {
        self.users.lock().is_empty()
    }

    fn wake(&self, users: &[OwnedUserId]) {
        self.notify_users(users);
    }
}

/// One registered request.
pub struct Waiter {
    notifier: Arc<Notifier>,
    user: OwnedUserId,
    receiver: watch::Receiver<()>,
}

impl Waiter {
    /// Waits until notified since registration (or since the last wake-up
    /// this returned) or until `deadline`. Returns whether it was woken.
    pub async fn wait_until(&mut self, deadline: Instant) -> bool {
        matches!(
            tokio::time::timeout_at(deadline, self.receiver.changed()).await,
            Ok(Ok(()))
        )
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        let mut users = self.notifier.users.lock();
        // Our receiver still counts: one left means it is the last.
        if users
            .get(&self.user)
            .is_some_and(|sender| sender.receiver_count() <= 1)
        {
            users.remove(&self.user);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn alice() -> OwnedUserId {
        ruma::owned_user_id!("@alice:x")
    }

    #[tokio::test]
    async fn a_notification_between_read_and_wait_is_not_lost() {
        let notifier = Notifier::new();
        let mut waiter = notifier.register(&alice());
        // ... the request reads, finds nothing; meanwhile an event lands:
        notifier.notify_user(&alice());
        let started = Instant::now();
        assert!(waiter.wait_until(started + Duration::from_secs(5)).await);
        assert!(started.elapsed() < Duration::from_secs(1));
        // Consumed: the next wait times out.
        let short = Instant::now() + Duration::from_millis(50);
        assert!(!waiter.wait_until(short).await);
    }

    #[tokio::test]
    async fn wakes_a_waiting_request_and_only_the_right_user() {
        let notifier = Notifier::new();
        let mut waiter = notifier.register(&alice());
        let other = notifier.register(&ruma::owned_user_id!("@bob:x"));
        let n = notifier.clone();
        let task = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(30)).await;
            n.notify_users(&[ruma::owned_user_id!("@carol:x")]);
            tokio::time::sleep(Duration::from_millis(30)).await;
            n.notify_users(&[alice()]);
        });
        let started = Instant::now();
        assert!(waiter.wait_until(started + Duration::from_secs(5)).await);
        assert!(started.elapsed() >= Duration::from_millis(50));
        task.await.unwrap();
        assert!(!other.receiver.has_changed().unwrap());
    }

    #[tokio::test]
    async fn entries_exist_only_while_someone_waits() {
        let notifier = Notifier::new();
        assert!(notifier.is_idle());
        let first = notifier.register(&alice());
        let second = notifier.register(&alice());
        assert_eq!(notifier.waiting_users(), 1);
        drop(first);
        assert_eq!(notifier.waiting_users(), 1);
        drop(second);
        assert_eq!(notifier.waiting_users(), 0);
        // Notifying nobody is a no-op.
        notifier.notify_user(&alice());
        assert!(notifier.is_idle());
    }
}
