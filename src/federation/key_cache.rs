//! Other servers' verified signing keys in the database
//! (`servername_signingkeys`), behind `feathur_federation`'s [`KeyCache`], so
//! a restart does not refetch every peer's keys.

use std::sync::Arc;

use feathur_federation::keys::{KeyCache, ServerKeyMap};
use ruma::{
    api::federation::discovery::ServerSigningKeys, serde::Raw, OwnedServerName, ServerName,
};

use crate::storage::{Cf, Storage, Table};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub struct StoredKeyCache {
    storage: Arc<Storage>,
    keys: Table<OwnedServerName, ServerKeyMap>,
    responses: Table<OwnedServerName, Box<serde_json::value::RawValue>>,
    /// Serialises read-merge-write of one table row.
    write: tokio::sync::Mutex<()>,
}

impl StoredKeyCache {
    pub fn new(storage: &Arc<Storage>) -> StoredKeyCache {
        StoredKeyCache {
            storage: storage.clone(),
            keys: storage.table(Cf::ServerNameSigningKeys),
            responses: storage.table(Cf::ServerNameKeyResponse),
            write: tokio::sync::Mutex::new(()),
        }
    }
}

impl KeyCache for StoredKeyCache {
    async fn get(&self, server: &ServerName) -> Result<ServerKeyMap, BoxError> {
        Ok(self.keys.get(&server.to_owned())?.unwrap_or_default())
    }

    async fn put(&self, server: &ServerName, keys: ServerKeyMap) -> Result<(), BoxError> {
        let _guard = self.write.lock().await;
        let server = server.to_owned();
        let mut all = self.keys.get(&server)?.unwrap_or_default();
        all.extend(keys);
        let mut batch = self.storage.batch();
        batch.put(&self.keys, &server, &all)?;
        self.storage.commit(batch).await?;
        Ok(())
    }

    async fn put_response(
        &self,
        server: &ServerName,
        response: Raw<ServerSigningKeys>,
    ) -> Result<(), BoxError> {
        let mut batch = self.storage.batch();
        batch.put(&self.responses, &server.to_owned(), &response.into_json())?;
        self.storage.commit(batch).await?;
        Ok(())
    }

    async fn get_response(
        &self,
        server: &ServerName,
    ) -> Result<Option<Raw<ServerSigningKeys>>, BoxError> {
        Ok(self.responses.get(&server.to_owned())?.map(Raw::from_json))
    }
}

#[cfg(test)]
mod tests {
    use feathur_federation::keys::CachedKey;
    use ruma::{serde::Base64, MilliSecondsSinceUnixEpoch, UInt};

    use super::*;
    use crate::storage::OpenMode;

    #[tokio::test]
    async fn keys_merge_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let server: OwnedServerName = "peer.example".try_into().unwrap();
        let key = |n: u8, expired| CachedKey {
            key: Base64::new(vec![n; 32]),
            valid_until_ts: MilliSecondsSinceUnixEpoch(UInt::from(1000u32 * u32::from(n))),
            expired,
        };
        {
            let storage = Storage::open(dir.path(), OpenMode::ReadWrite).unwrap();
            let cache = StoredKeyCache::new(&storage);
            assert!(cache.get(&server).await.unwrap().is_empty());
            cache
                .put(&server, [("ed25519:a".to_owned(), key(1, false))].into())
                .await
                .unwrap();
            // A key that moved to old_verify_keys replaces its current form;
            // the others stay.
            cache
                .put(&server, [("ed25519:b".to_owned(), key(2, false))].into())
                .await
                .unwrap();
            cache
                .put(&server, [("ed25519:a".to_owned(), key(3, true))].into())
                .await
                .unwrap();
        }
        let storage = Storage::open(dir.path(), OpenMode::ReadWrite).unwrap();
        let cache = StoredKeyCache::new(&storage);
        let keys = cache.get(&server).await.unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys["ed25519:a"], key(3, true));
        assert_eq!(keys["ed25519:b"], key(2, false));
    }
}
