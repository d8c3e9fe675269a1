//! Tests of the whole layer against real RocksDB databases in temp dirs.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ruma::{OwnedDeviceId, OwnedUserId};

use super::*;

fn open(dir: &Path) -> Arc<Storage> {
    Storage::open(dir, OpenMode::ReadWrite).unwrap()
}

fn user(s: &str) -> OwnedUserId {
    OwnedUserId::try_from(s).unwrap()
}

#[test]
fn new_database_is_versioned_and_complete() {
    let dir = tempfile::tempdir().unwrap();
    let storage = open(dir.path());
    let report = storage.check().unwrap();
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.schema_version, Some(SCHEMA_VERSION));
    assert_eq!(report.tables.len(), Cf::ALL.len());
    assert!(report.missing_tables().is_empty());
    assert!(report.unknown_tables.is_empty());
    storage.flush().unwrap();
}

#[test]
fn put_get_delete_and_prefix_iteration() {
    let dir = tempfile::tempdir().unwrap();
    let storage = open(dir.path());
    let devices: Table<(OwnedUserId, OwnedDeviceId), String> =
        storage.table(Cf::UserDeviceIdDevice);
    let (alice, alicia) = (user("@ab:x.org"), user("@abc:x.org"));

    let mut batch = storage.batch();
    for (u, d) in [(&alice, "B"), (&alice, "A"), (&alicia, "C")] {
        let key = (u.clone(), OwnedDeviceId::from(d));
        batch.put(&devices, &key, &format!("{u}/{d}")).unwrap();
    }
    assert_eq!(batch.len(), 3);
    storage.commit_blocking(batch).unwrap();

    let key = (alice.clone(), OwnedDeviceId::from("A"));
    assert_eq!(devices.get(&key).unwrap().as_deref(), Some("@ab:x.org/A"));
    assert!(devices.contains(&key).unwrap());
    assert!(!devices.contains(&(alice.clone(), "Z".into())).unwrap());

    // "@ab:x.org" must not pick up "@abc:x.org"'s device; keys come sorted.
    let listed: Vec<_> = devices.iter_prefix(&alice).map(Result::unwrap).collect();
    let ids: Vec<_> = listed.iter().map(|((_, d), _)| d.as_str()).collect();
    assert_eq!(ids, ["A", "B"]);
    assert_eq!(devices.iter_prefix(&alicia).count(), 1);
    assert_eq!(devices.iter().count(), 3);

    let mut batch = storage.batch();
    batch.delete(&devices, &key);
    storage.commit_blocking(batch).unwrap();
    assert_eq!(devices.get(&key).unwrap(), None);
    assert_eq!(devices.iter_prefix(&alice).count(), 1);

    // Empty batches are fine and cost no write.
    let before = storage.write_stats();
    storage.commit_blocking(storage.batch()).unwrap();
    assert_eq!(storage.write_stats(), before);
}

#[test]
fn three_part_prefixes_and_numeric_order() {
    let dir = tempfile::tempdir().unwrap();
    let storage = open(dir.path());
    let t: Table<(String, String, u64), u64> = storage.table(Cf::UserRoomIdTypeAccountData);
    let mut batch = storage.batch();
    for (a, b, n) in [
        ("a", "b", 256),
        ("a", "b", 1),
        ("a", "bc", 0),
        ("ab", "b", 0),
    ] {
        batch.put(&t, &(a.into(), b.into(), n), &n).unwrap();
    }
    storage.commit_blocking(batch).unwrap();
    let ns: Vec<u64> = t
        .iter_prefix(&("a".to_owned(), "b".to_owned()))
        .map(|r| r.unwrap().1)
        .collect();
    assert_eq!(ns, [1, 256]);
    assert_eq!(t.iter_prefix(&"a".to_owned()).count(), 3);
}

#[test]
fn corrupt_entries_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let storage = open(dir.path());
    let as_text: Table<String, String> = storage.table(Cf::UserIdProfile);
    let mut batch = storage.batch();
    batch
        .put(&as_text, &"k".to_owned(), &"not a number".to_owned())
        .unwrap();
    storage.commit_blocking(batch).unwrap();

    let as_number: Table<String, u64> = storage.table(Cf::UserIdProfile);
    let err = as_number.get(&"k".to_owned()).unwrap_err();
    assert!(
        matches!(
            err,
            StorageError::CorruptValue {
                table: "userid_profile",
                ..
            }
        ),
        "{err}"
    );
    let as_user: Table<OwnedUserId, String> = storage.table(Cf::UserIdProfile);
    let err = as_user.iter().next().unwrap().unwrap_err();
    assert!(matches!(err, StorageError::CorruptKey { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_commits_survive_reopen() {
    const TASKS: u64 = 32;
    const PER_TASK: u64 = 25;
    let dir = tempfile::tempdir().unwrap();
    let storage = open(dir.path());
    let table: Table<(u64, u64), String> = storage.table(Cf::UserDeviceIdTxnIdResponse);
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let (storage, table) = (Arc::clone(&storage), table.clone());
            tokio::spawn(async move {
                for i in 0..PER_TASK {
                    let mut batch = storage.batch();
                    batch.put(&table, &(task, i), &format!("{task}.{i}"))?;
                    batch.put(&table, &(task, i + 1000), &String::new())?;
                    storage.commit(batch).await?;
                }
                Ok::<_, StorageError>(())
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    let stats = storage.write_stats();
    assert_eq!(stats.batches, TASKS * PER_TASK + 1); // + schema version
    drop((storage, table));

    let storage = open(dir.path());
    let table: Table<(u64, u64), String> = storage.table(Cf::UserDeviceIdTxnIdResponse);
    assert_eq!(table.iter().count() as u64, TASKS * PER_TASK * 2);
    for task in 0..TASKS {
        let got = table.get(&(task, PER_TASK - 1)).unwrap();
        assert_eq!(got, Some(format!("{task}.{}", PER_TASK - 1)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writer_groups_waiting_batches_into_one_write() {
    const N: u64 = 200;
    let dir = tempfile::tempdir().unwrap();
    let storage = open(dir.path());
    let table: Table<u64, u64> = storage.table(Cf::RegistrationTokenInfo);
    let before = storage.write_stats();
    let writer = storage.writer.as_ref().unwrap();
    let submitted = writer.submitted();

    // Hold the thread so all N batches are queued before it drains.
    writer.pause();
    let tasks: Vec<_> = (0..N)
        .map(|i| {
            let (storage, table) = (Arc::clone(&storage), table.clone());
            tokio::spawn(async move {
                let mut batch = storage.batch();
                batch.put(&table, &i, &i)?;
                storage.commit(batch).await
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while writer.submitted() < submitted + N {
        assert!(Instant::now() < deadline, "batches were not queued");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    writer.resume();
    for task in tasks {
        task.await.unwrap().unwrap();
    }

    let after = storage.write_stats();
    assert_eq!(after.batches - before.batches, N);
    assert_eq!(after.wal_writes - before.wal_writes, 1);
    assert_eq!(table.iter().count() as u64, N);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applied_batches_are_visible_and_unlocked_before_they_are_durable() {
    let dir = tempfile::tempdir().unwrap();
    let storage = open(dir.path());
    let table: Table<u64, u64> = storage.table(Cf::RegistrationTokenInfo);
    let lock = Arc::new(tokio::sync::Mutex::new(()));
    let writer = storage.writer.as_ref().unwrap();

    // The syncer is held: nothing becomes durable.
    writer.pause();
    let guard = Arc::clone(&lock).lock_owned().await;
    let mut batch = storage.batch();
    batch.put(&table, &1, &10).unwrap();
    let durable = storage.apply_holding(batch, guard).await.unwrap();
    assert_eq!(table.get(&1).unwrap(), Some(10));
    assert!(lock.try_lock().is_ok(), "the lock outlived the apply");
    let wait = tokio::spawn(durable.wait());
    let barrier = {
        let storage = Arc::clone(&storage);
        tokio::spawn(async move { storage.sync_barrier().await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!wait.is_finished() && !barrier.is_finished());

    writer.resume();
    wait.await.unwrap().unwrap();
    barrier.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn applied_batches_cost_a_sync_only_when_awaited() {
    let dir = tempfile::tempdir().unwrap();
    let storage = open(dir.path());
    let table: Table<u64, u64> = storage.table(Cf::RegistrationTokenInfo);
    let writer = storage.writer.as_ref().unwrap();
    let before = storage.write_stats();
    let submitted = writer.submitted();

    let mut batch = storage.batch();
    batch.put(&table, &1, &10).unwrap();
    drop(storage.apply(batch).await.unwrap());
    let mut batch = storage.batch();
    batch.put(&table, &2, &20).unwrap();
    let durable = storage.apply(batch).await.unwrap();
    assert_eq!(table.get(&1).unwrap(), Some(10));
    // Nobody has asked the syncer for anything yet.
    assert_eq!(writer.submitted(), submitted);
    assert_eq!(storage.write_stats().wal_writes, before.wal_writes);

    // One sync covers both: the dropped batch was applied before it.
    durable.wait().await.unwrap();
    let after = storage.write_stats();
    assert_eq!(writer.submitted(), submitted + 1);
    assert_eq!(after.batches - before.batches, 2);
    assert_eq!(after.wal_writes - before.wal_writes, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poisoned_writer_refuses_every_later_batch() {
    let dir = tempfile::tempdir().unwrap();
    let storage = open(dir.path());
    let table: Table<u64, u64> = storage.table(Cf::RegistrationTokenInfo);
    storage.writer.as_ref().unwrap().poison();
    let mut batch = storage.batch();
    batch.put(&table, &1, &1).unwrap();
    let err = storage.commit(batch).await.unwrap_err();
    assert!(matches!(err, StorageError::WriterPoisoned), "{err}");
    assert_eq!(table.get(&1).unwrap(), None);
}

#[test]
fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let storage = open(dir.path());
        let mut batch = storage.batch();
        batch
            .put(
                &storage.meta(),
                &SCHEMA_KEY.to_owned(),
                &(SCHEMA_VERSION + 1),
            )
            .unwrap();
        storage.commit_blocking(batch).unwrap();
    }
    for mode in [OpenMode::ReadWrite, OpenMode::ReadOnly] {
        let err = Storage::open(dir.path(), mode).unwrap_err();
        assert!(
            matches!(err, StorageError::NewerSchema { found, supported }
                if found == SCHEMA_VERSION + 1 && supported == SCHEMA_VERSION),
            "{err}"
        );
        assert!(err.to_string().contains("newer Feathur"), "{err}");
    }
}

#[test]
fn second_open_in_process_is_locked_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let _first = open(dir.path());
    let start = Instant::now();
    let err = Storage::open(dir.path(), OpenMode::ReadWrite).unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(matches!(err, StorageError::Locked { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.contains(&dir.path().display().to_string()),
        "{message}"
    );
    assert!(message.contains("in use by another process"), "{message}");
}

const LOCK_DIR_ENV: &str = "FEATHUR_STORAGE_TEST_LOCK_DIR";

/// Child half of `second_process_is_locked`: holds the database open until
/// its stdin closes. Does nothing when run normally.
#[test]
#[ignore = "helper run by second_process_is_locked"]
fn lock_holder_child() {
    let Some(dir) = std::env::var_os(LOCK_DIR_ENV) else {
        return;
    };
    let _storage = open(Path::new(&dir));
    println!("ready");
    let mut sink = String::new();
    while std::io::stdin().read_line(&mut sink).unwrap_or(0) > 0 {}
}

#[test]
fn second_process_is_locked_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "storage::tests::lock_holder_child",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env(LOCK_DIR_ENV, dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = stdout
        .by_ref()
        .map_while(Result::ok)
        .any(|line| line.contains("ready"));
    assert!(ready, "child did not open the database");

    let start = Instant::now();
    let err = Storage::open(dir.path(), OpenMode::ReadWrite).unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(matches!(err, StorageError::Locked { .. }), "{err}");

    // Read-only inspection still works beside the other process.
    let ro = Storage::open(dir.path(), OpenMode::ReadOnly).unwrap();
    assert!(ro.check().unwrap().is_ok());

    drop(child.stdin.take()); // lets the child exit
    stdout.for_each(drop); // keep its stdout open until it is done
    assert!(child.wait().unwrap().success());
}

#[test]
fn read_only_beside_a_writer() {
    let dir = tempfile::tempdir().unwrap();
    let rw = open(dir.path());
    let names: Table<String, String> = rw.table(Cf::UserIdAccount);
    let mut batch = rw.batch();
    batch
        .put(&names, &"@a:x.org".to_owned(), &"alice".to_owned())
        .unwrap();
    rw.commit_blocking(batch).unwrap();

    let ro = Storage::open(dir.path(), OpenMode::ReadOnly).unwrap();
    let report = ro.check().unwrap();
    assert!(report.is_ok(), "{report}");
    let ro_names: Table<String, String> = ro.table(Cf::UserIdAccount);
    assert_eq!(
        ro_names.get(&"@a:x.org".to_owned()).unwrap().as_deref(),
        Some("alice")
    );

    let mut batch = ro.batch();
    batch
        .put(&ro_names, &"b".to_owned(), &"b".to_owned())
        .unwrap();
    assert!(matches!(
        ro.commit_blocking(batch),
        Err(StorageError::ReadOnly)
    ));
    ro.flush().unwrap();
    rw.flush().unwrap();
}

#[test]
fn read_only_open_of_missing_database_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let err = Storage::open(dir.path(), OpenMode::ReadOnly).unwrap_err();
    assert!(matches!(err, StorageError::Missing { .. }), "{err}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);

    let absent = dir.path().join("nope");
    let err = Storage::open(&absent, OpenMode::ReadOnly).unwrap_err();
    assert!(matches!(err, StorageError::Missing { .. }), "{err}");
    assert!(!absent.exists());
}

#[test]
fn handles_are_send_sync_and_cheap() {
    fn assert_send_sync<T: Send + Sync + Clone>() {}
    assert_send_sync::<Table<(OwnedUserId, OwnedDeviceId), serde_json::Value>>();
    fn assert_storage<T: Send + Sync>() {}
    assert_storage::<Storage>();
    assert_storage::<Batch>();
}
