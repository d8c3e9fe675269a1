//! The E2EE parts of `/sync` (Client-Server API "End-to-End Encryption":
//! "Extensions to /sync"): `device_lists` (`changed` / `left` over the
//! response's token range, incremental syncs only — an initial sync's
//! client queries every key it needs), `device_one_time_keys_count` and
//! `device_unused_fallback_key_types` of the requesting device. The logic
//! is `crate::e2ee`'s; this file only fills the response.

use ruma::{api::client::sync::sync_events::v3::Response, OwnedDeviceId, UserId};

use super::SyncService;
use crate::{error::Result, rooms::Rooms};

impl SyncService {
    /// Fills the E2EE sections of a response over `(since, upto]`.
    pub(super) fn e2ee_sections(
        &self,
        rooms: &Rooms,
        user: &UserId,
        device: Option<&OwnedDeviceId>,
        since: Option<u64>,
        upto: u64,
        response: &mut Response,
    ) -> Result<()> {
        let Some(e2ee) = self.e2ee.get() else {
            return Ok(());
        };
        if let Some(since) = since {
            let changes = e2ee.device_list_changes(rooms, user, since, upto)?;
            response.device_lists.changed = changes.changed;
            response.device_lists.left = changes.left;
        }
        if let Some(device) = device {
            response.device_one_time_keys_count = e2ee.one_time_key_counts(user, device)?;
            response.device_unused_fallback_key_types =
                Some(e2ee.unused_fallback_key_types(user, device)?);
        }
        Ok(())
    }
}
