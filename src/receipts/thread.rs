//! `thread_id` of a receipt (Client-Server API "Threaded read receipts"):
//! unthreaded, `main`, or a thread root's event id; the checks behind the
//! receipt endpoint's 400 ("The `thread_id` is invalid in some way").

use ruma::{events::receipt::ReceiptThread, OwnedEventId};
use serde::Deserialize;

use crate::{
    error::{Error, Result},
    rooms::{Pdu, Rooms},
};

/// The spec recommends following at most 3 relationship hops to find an
/// event's thread.
const MAX_HOPS: usize = 3;

/// The special thread id of the main timeline.
pub const MAIN: &str = "main";

/// The stored form of a request's `thread_id`: `None` when unthreaded.
/// 400 `M_INVALID_PARAM` for an empty or otherwise meaningless string.
pub(super) fn validate_shape(thread: &ReceiptThread) -> Result<Option<String>> {
    match thread {
        ReceiptThread::Unthreaded => Ok(None),
        ReceiptThread::Main => Ok(Some(MAIN.to_owned())),
        ReceiptThread::Thread(root) => Ok(Some(root.to_string())),
        other => match other.as_str() {
            Some("") | None => Err(Error::invalid_param(
                "thread_id field must be a non-empty string",
            )),
            Some(_) => Err(Error::invalid_param(
                "thread_id must be \"main\" or a thread root's event id",
            )),
        },
    }
}

#[derive(Deserialize)]
struct Content {
    #[serde(rename = "m.relates_to")]
    relates_to: Option<RelatesTo>,
}

#[derive(Deserialize)]
struct RelatesTo {
    rel_type: Option<String>,
    event_id: Option<OwnedEventId>,
}

/// The thread `pdu` is in ("Threaded read receipts": an `m.thread` child,
/// or related to one within [`MAX_HOPS`]); `None` for the main timeline
/// (thread roots included).
pub(super) fn thread_of(rooms: &Rooms, pdu: &Pdu) -> Result<Option<OwnedEventId>> {
    let mut current = pdu.clone();
    for _ in 0..MAX_HOPS {
        let Ok(content) = serde_json::from_str::<Content>(current.content.get()) else {
            return Ok(None);
        };
        let Some(RelatesTo {
            rel_type,
            event_id: Some(parent),
        }) = content.relates_to
        else {
            return Ok(None);
        };
        if rel_type.as_deref() == Some("m.thread") {
            return Ok(Some(parent));
        }
        match rooms.get_pdu(&parent)? {
            Some(next) if next.room_id == pdu.room_id => current = next,
            _ => return Ok(None),
        }
    }
    Ok(None)
}

/// 400 `M_INVALID_PARAM` when the receipt's event is not related to its
/// thread: a `main` receipt on an event inside a thread, or a thread
/// receipt on an event neither the root nor in that thread.
pub(super) fn check_in_thread(rooms: &Rooms, pdu: &Pdu, thread: &str) -> Result<()> {
    let actual = thread_of(rooms, pdu)?;
    let fits = match thread {
        MAIN => actual.is_none(),
        root => pdu.event_id == root || actual.is_some_and(|a| a == root),
    };
    if fits {
        Ok(())
    } else {
        Err(Error::invalid_param(format!(
            "The event {} is not in thread {thread}",
            pdu.event_id
        )))
    }
}
