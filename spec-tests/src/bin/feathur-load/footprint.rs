//! W6, the `footprint` scenario: memory and disk, read from `/proc/<pid>`
//! and the data directory; plus the `/proc` readers the other scenarios use.

use std::{
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use spec_tests::{json, Value};

use crate::{bounded, create_room, register_many, send_text, Api, Options};

/// The process's user + system CPU time, from `/proc/<pid>/stat`.
pub fn cpu_time(pid: u32) -> Result<Duration, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|e| e.to_string())?;
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')').ok_or("bad /proc stat")? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().map_err(|e| e.to_string())?
        + fields[12].parse::<u64>().map_err(|e| e.to_string())?;
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Ok(Duration::from_secs_f64(ticks as f64 / per_second))
}

/// A line of `/proc/<pid>/status` such as `VmRSS` or `Threads`, as text.
pub fn status_field(pid: u32, field: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(&format!("{field}:")))
                .map(|l| l[field.len() + 1..].trim().to_owned())
        })
        .unwrap_or_else(|| "?".into())
}

/// Resident set size in bytes (`VmRSS`).
pub fn rss_bytes(pid: u32) -> Result<u64, String> {
    let text = status_field(pid, "VmRSS");
    let kb: u64 = text
        .trim_end_matches("kB")
        .trim()
        .parse()
        .map_err(|_| format!("no VmRSS for process {pid}: {text:?}"))?;
    Ok(kb * 1024)
}

/// Bytes of all regular files under `dir` (apparent sizes; sparse or
/// preallocated files count at their length).
pub fn dir_bytes(dir: &Path) -> Result<u64, String> {
    let mut total = 0;
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| e.to_string())?;
        let meta = entry.metadata().map_err(|e| e.to_string())?;
        if meta.is_dir() {
            total += dir_bytes(&entry.path())?;
        } else if meta.is_file() {
            total += meta.len();
        }
    }
    Ok(total)
}

const SENDERS: usize = 10;

/// RSS of the idle server; then `events` messages from ten senders, each in a
/// room of its own; RSS and data-directory bytes before and after.
pub async fn scenario(api: &Arc<Api>, options: &Options) -> Result<Value, String> {
    let pid = options.pid.ok_or("footprint needs --pid (or --feathur)")?;
    let settle = Duration::from_secs(2);
    tokio::time::sleep(settle).await;
    let rss_idle = rss_bytes(pid)?;
    let disk_empty = options.data_dir.as_deref().map(dir_bytes).transpose()?;

    let tokens = Arc::new(register_many(api, "w6s", SENDERS).await?);
    let mut rooms = Vec::new();
    for token in tokens.iter() {
        rooms.push(create_room(api, token, &options.room_version).await?);
    }
    let rooms = Arc::new(rooms);
    tokio::time::sleep(settle).await;
    let rss_before = rss_bytes(pid)?;
    let disk_before = options.data_dir.as_deref().map(dir_bytes).transpose()?;

    let per_sender = options.events.div_ceil(SENDERS);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(3 * 3600);
    let sent = bounded(SENDERS, SENDERS, |s| {
        let (api, tokens, rooms) = (api.clone(), tokens.clone(), rooms.clone());
        let total = options.events;
        async move {
            let mut n = 0;
            while n < per_sender && s * per_sender + n < total {
                if Instant::now() > deadline {
                    return Err("footprint sends passed their deadline".to_owned());
                }
                let text = format!(
                    "footprint message {n} from sender {s}: the quick brown fox jumps over the lazy dog"
                );
                send_text(&api, &tokens[s], &rooms[s], &format!("f{s}n{n}"), &text).await?;
                n += 1;
            }
            Ok(n)
        }
    })
    .await?;
    let events: usize = sent.iter().sum();
    let send_secs = started.elapsed().as_secs_f64();
    tokio::time::sleep(settle).await;
    let rss_after = rss_bytes(pid)?;
    let disk_after = options.data_dir.as_deref().map(dir_bytes).transpose()?;
    let per_event = match (disk_before, disk_after) {
        (Some(b), Some(a)) if events > 0 => Some(a.saturating_sub(b) as f64 / events as f64),
        _ => None,
    };
    let mb = |b: u64| b as f64 / 1e6;
    println!(
        "footprint RSS idle={:.1}MB before sends={:.1}MB after {events} events={:.1}MB  \
         disk empty={} before={} after={} bytes/event={}  ({:.0} sends/s)",
        mb(rss_idle),
        mb(rss_before),
        mb(rss_after),
        disk_empty.map_or("?".into(), |b| format!("{:.1}MB", mb(b))),
        disk_before.map_or("?".into(), |b| format!("{:.1}MB", mb(b))),
        disk_after.map_or("?".into(), |b| format!("{:.1}MB", mb(b))),
        per_event.map_or("?".into(), |b| format!("{b:.0}")),
        events as f64 / send_secs,
    );
    Ok(json!({
        "events": events,
        "send_secs": send_secs,
        "rss_bytes_idle": rss_idle,
        "rss_bytes_before": rss_before,
        "rss_bytes_after": rss_after,
        "disk_bytes_empty": disk_empty,
        "disk_bytes_before": disk_before,
        "disk_bytes_after": disk_after,
        "disk_bytes_per_event": per_event,
    }))
}
