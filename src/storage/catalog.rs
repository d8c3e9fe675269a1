//! The catalog: every table (RocksDB column family) of the database, with its
//! tuning. Adding a table is one line in the `catalog!` invocation below.
//!
//! Names follow Conduit's `key_value` convention, so a name says what maps to
//! what (`userid_account`: user id → account).

use rocksdb::{BlockBasedOptions, Cache, DBCompressionType, Options};

/// How a table is mostly read; selects its tuning.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// Mostly `get` by full key: bloom filters let misses skip disk reads.
    Point,
    /// Mostly `iter_prefix` / full scans: bigger blocks, no bloom filter
    /// (whole-key blooms do not help prefix scans).
    Scan,
}

macro_rules! catalog {
    ($($(#[$doc:meta])* $variant:ident => $name:literal, $access:ident;)*) => {
        /// A table of the catalog (one RocksDB column family).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Cf {
            $($(#[$doc])* $variant,)*
        }

        impl Cf {
            /// Every table, in declaration order.
            pub const ALL: &'static [Cf] = &[$(Cf::$variant),*];

            /// The column family name on disk. Never rename one: that
            /// orphans its data.
            pub const fn name(self) -> &'static str {
                match self {
                    $(Cf::$variant => $name,)*
                }
            }

            /// How the table is mostly read.
            pub const fn access(self) -> Access {
                match self {
                    $(Cf::$variant => Access::$access,)*
                }
            }
        }
    };
}

catalog! {
    /// Database facts: `"schema_version"` → u64.
    Meta => "meta", Point;
    /// User id → account (password hash, deactivation, ...).
    UserIdAccount => "userid_account", Point;
    /// (user id, device id) → device; also listed per user.
    UserDeviceIdDevice => "userdeviceid_device", Point;
    /// SHA-256 of an access token → session. Hit on every request.
    TokenHashSession => "tokenhash_session", Point;
    /// (user id, device id) → token hash, to revoke a device's token.
    UserDeviceIdTokenHash => "userdeviceid_tokenhash", Point;
    /// User id → profile (displayname, avatar).
    UserIdProfile => "userid_profile", Point;
    /// (user id, type) → global account data; listed per user on sync.
    UserIdTypeAccountData => "useridtype_accountdata", Scan;
    /// (user id, room id, type) → per-room account data.
    UserRoomIdTypeAccountData => "userroomidtype_accountdata", Scan;
    /// Registration token → its info (uses left, expiry).
    RegistrationTokenInfo => "registrationtoken_info", Point;
    /// (user id, device id, txn id) → cached response, for idempotent retries.
    UserDeviceIdTxnIdResponse => "userdeviceidtxnid_response", Point;
    /// Room id → short room id (interning, `rooms::short`).
    RoomIdShortRoomId => "roomid_shortroomid", Point;
    /// Short room id → room id; its last key is the short-id high-water mark.
    ShortRoomIdRoomId => "shortroomid_roomid", Point;
    /// Event id → short event id.
    EventIdShortEventId => "eventid_shorteventid", Point;
    /// Short event id → event id.
    ShortEventIdEventId => "shorteventid_eventid", Point;
    /// (event type, state key) → short state key.
    StateKeyShortStateKey => "statekey_shortstatekey", Point;
    /// Short state key → (event type, state key).
    ShortStateKeyStateKey => "shortstatekey_statekey", Point;
    /// Snapshot id → state layer: parent + added/removed pairs (`rooms::state`).
    ShortStateHashStateDiff => "shortstatehash_statediff", Point;
    /// Short event id → snapshot of the room state before the event.
    ShortEventIdShortStateHash => "shorteventid_shortstatehash", Point;
    /// Short room id → snapshot of the room's current state.
    RoomIdShortStateHash => "roomid_shortstatehash", Point;
    /// (short room id, stream position) → event id: a room's timeline in order.
    RoomIdPosEventId => "roomidpos_eventid", Scan;
    /// Event id → (short room id, stream position).
    EventIdRoomPos => "eventid_roompos", Point;
    /// Stream position → short room id: the global stream, for the position
    /// high-water mark and "which rooms changed since this token".
    PosShortRoomId => "pos_shortroomid", Scan;
    /// Event id → the signed PDU (`rooms`).
    EventIdPdu => "eventid_pdu", Point;
    /// Event id → why the auth rules rejected it (`rooms::remote`): such
    /// events are never served nor used, and not refetched.
    EventIdRejected => "eventid_rejected", Point;
    /// Event id of an invite from another server → the stripped state it
    /// came with, shown to the invitee (`rooms::remote`).
    EventIdInviteState => "eventid_invitestate", Point;
    /// (short room id, n) → event id: history fetched from other servers,
    /// `n` growing towards the past (`rooms::history`).
    RoomIdBackSeqEventId => "roomidbackseq_eventid", Scan;
    /// Event id → its `n` in its room's fetched history.
    EventIdBackSeq => "eventid_backseq", Point;
    /// Origin server name → its verified signing keys (`federation`).
    ServerNameSigningKeys => "servername_signingkeys", Point;
    /// Server name → the last key document it served us, self-signed, kept
    /// to answer notary queries for it (`federation`).
    ServerNameKeyResponse => "servername_keyresponse", Point;
    /// (origin server, transaction id) → the per-PDU results we answered,
    /// so a retried transaction gets the same answer (`federation`).
    OriginTxnIdResults => "origintxnid_results", Point;
    /// Room id → room facts kept outside its state (room version).
    RoomIdInfo => "roomid_info", Point;
    /// Room id → the DAG's forward extremities (the next event's prev_events).
    RoomIdForwardExtremities => "roomid_forwardextremities", Point;
    /// (user id, room id) → membership: a user's rooms.
    UserRoomIdMembership => "userroomid_membership", Scan;
    /// (room id, user id) → membership: a room's members.
    RoomUserIdMembership => "roomuserid_membership", Scan;
    /// Local room alias → its room and creator (`directory`).
    AliasRoomId => "alias_roomid", Point;
    /// (room id, alias) → (): a room's local aliases (`directory`).
    RoomIdAlias => "roomid_alias", Scan;
    /// Room id → (): the rooms published in the room directory (`directory`).
    RoomIdPublished => "roomid_published", Scan;
    /// (parent event id, child's stream position) → relation: an event's
    /// children in order (`rooms::relations`).
    EventIdPosRelation => "eventidpos_relation", Scan;
    /// (parent event id, rel_type, child's stream position) → relation: an
    /// event's children of one relationship type.
    EventIdRelTypePosRelation => "eventidreltypepos_relation", Scan;
    /// (short room id, position of the newest reply) → thread root: a room's
    /// threads by latest activity.
    RoomIdPosThreadRoot => "roomidpos_threadroot", Scan;
    /// (user id, filter id) → filter definition (`sync::filter`).
    UserIdFilterIdFilter => "useridfilterid_filter", Point;
    /// (user id, room id or "", type) → (content digest, stream position of
    /// the last change): account data changes for `/sync` (`sync::account_data`).
    UserScopeTypeAccountDataPos => "userscopetype_accountdatapos", Scan;
    /// (room id, user id, "receipt type thread") → receipt: one per user,
    /// type and thread (`receipts`).
    RoomUserSlotReceipt => "roomuserslot_receipt", Scan;
    /// (room id, stream position) → (user id, slot): a room's receipt
    /// changes in stream order, for incremental `/sync` (`receipts`).
    RoomIdPosReceipt => "roomidpos_receipt", Scan;
    /// Legacy layout of `userroomscopepos_notification`, without the scope:
    /// emptied into it at start-up (`push`).
    UserRoomPosNotificationLegacy => "userroompos_notification", Scan;
    /// (user id, room id, "" | thread root, stream position) → unread
    /// notification (highlight, thread): one row per notifying event until
    /// a receipt covers it (`push`).
    UserRoomScopePosNotification => "userroomscopepos_notification", Scan;
    /// (user id, room id, "" | "main" | thread root) → newest read receipt
    /// position in that scope, as applied to the counts (`push`).
    UserRoomThreadPushReadPos => "userroomthread_pushreadpos", Point;
    /// (recipient user id, device id, stream position) → to-device message,
    /// until the device acknowledges it by syncing past it (`to_device`).
    UserDeviceIdPosToDevice => "userdeviceidpos_todevice", Scan;
    /// (user id, device id) → the device's signed identity keys as uploaded
    /// (`e2ee::device_keys`).
    UserDeviceIdDeviceKeys => "userdeviceid_devicekeys", Point;
    /// (user id, device id, algorithm, upload sequence) → one-time key: a
    /// device's unclaimed keys per algorithm in upload order (`e2ee::one_time`).
    UserDeviceIdAlgSeqOneTimeKey => "userdeviceidalgseq_onetimekey", Scan;
    /// (user id, device id, algorithm) → number of unclaimed one-time keys.
    UserDeviceIdAlgOneTimeKeyCount => "userdeviceidalg_onetimekeycount", Scan;
    /// (user id, device id, algorithm) → the device's fallback key and
    /// whether it was handed out.
    UserDeviceIdAlgFallbackKey => "userdeviceidalg_fallbackkey", Scan;
    /// (user id, "master" | "self_signing" | "user_signing") → cross-signing
    /// key as uploaded (`e2ee::cross_signing`).
    UserIdUsageCrossSigningKey => "useridusage_crosssigningkey", Point;
    /// (user id, signed key, signer user id) → signatures uploaded through
    /// `/keys/signatures/upload`, merged into `/keys/query` answers.
    UserIdTargetSignerSignatures => "useridtargetsigner_signatures", Scan;
    /// Stream position → user whose device list or keys changed
    /// (`e2ee::changes`): `/sync` `device_lists` and `/keys/changes`.
    PosKeyChange => "pos_keychange", Scan;
    /// (user id, backup version) → backup version info, etag and key count
    /// (`e2ee::backup`); deleted versions stay as tombstones.
    UserIdVersionBackup => "useridversion_backup", Scan;
    /// (user id, backup version, room id, session id) → backed-up room key.
    UserIdVersionRoomSessionBackupKey => "useridversionroomsession_backupkey", Scan;
    /// (destination server, sequence number) → PDU event id or EDU waiting
    /// to be sent there, in order (`sending`).
    DestinationSeqSendingItem => "destinationseq_sendingitem", Scan;
    /// Destination server → the transaction being sent there (its id and
    /// items), so a retry, also after a restart, resends the same one (`sending`).
    DestinationSendingTxn => "destination_sendingtxn", Point;
}

/// Block cache shared by every table: one memory budget for the database.
pub(crate) const BLOCK_CACHE_BYTES: usize = 64 << 20;

impl Cf {
    /// Looks a table up by its on-disk name.
    pub fn from_name(name: &str) -> Option<Cf> {
        Cf::ALL.iter().copied().find(|cf| cf.name() == name)
    }

    /// Column family options for this table.
    pub(crate) fn options(self, cache: &Cache) -> Options {
        let mut block = BlockBasedOptions::default();
        block.set_block_cache(cache);
        // Index and filter blocks live in (and are bounded by) the shared
        // cache; level-0 ones stay pinned since every read consults them.
        block.set_cache_index_and_filter_blocks(true);
        block.set_pin_l0_filter_and_index_blocks_in_cache(true);
        match self.access() {
            Access::Point => {
                block.set_bloom_filter(10.0, false);
                block.set_block_size(4 << 10);
            }
            Access::Scan => block.set_block_size(16 << 10),
        }

        let mut opts = Options::default();
        opts.set_block_based_table_factory(&block);
        // Cheap lz4 for the churning upper levels, denser zstd for the
        // bottom level where most data settles.
        opts.set_compression_type(DBCompressionType::Lz4);
        opts.set_bottommost_compression_type(DBCompressionType::Zstd);
        opts.set_level_compaction_dynamic_level_bytes(true);
        // Small memtables: many tables, small machine. The database-wide
        // cap (`db_options`) bounds the total anyway.
        opts.set_write_buffer_size(8 << 20);
        opts
    }
}

/// Database-wide options. Read-only opens must not create anything.
pub(crate) fn db_options(create: bool) -> Options {
    let mut opts = Options::default();
    opts.create_if_missing(create);
    opts.create_missing_column_families(create);
    // Two background threads for flushes and compactions: small machines.
    opts.set_max_background_jobs(2);
    // Bound all memtables together, and the WAL, which otherwise grows
    // until the least-written table flushes.
    opts.set_db_write_buffer_size(64 << 20);
    opts.set_max_total_wal_size(64 << 20);
    opts.set_max_open_files(512);
    // The log write of one group of writers overlaps the memtable inserts
    // of the previous one (a send's batch and the push rows of the one
    // before): 6-10 % more sends/s with ten senders in one room.
    opts.set_enable_pipelined_write(true);
    // RocksDB's own info log: a few small files, not an unbounded history.
    opts.set_keep_log_file_num(3);
    opts.set_max_log_file_size(4 << 20);
    opts
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn names_are_unique_and_round_trip() {
        let names: HashSet<_> = Cf::ALL.iter().map(|cf| cf.name()).collect();
        assert_eq!(names.len(), Cf::ALL.len());
        for &cf in Cf::ALL {
            assert_eq!(Cf::from_name(cf.name()), Some(cf));
            assert_ne!(cf.name(), rocksdb::DEFAULT_COLUMN_FAMILY_NAME);
        }
        assert_eq!(Cf::from_name("nope"), None);
    }
}
