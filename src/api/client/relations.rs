//! Relations and threads (Client-Server API "Relationships API",
//! "Querying threads in a room"). Tokens are `s<position>`, shared with
//! `/messages` and `/sync`.

use axum::extract::State;
use ruma::{
    api::client::{
        relations::{
            get_relating_events, get_relating_events_with_rel_type,
            get_relating_events_with_rel_type_and_event_type,
        },
        threads::get_threads::{self, v1::IncludeThreads},
    },
    EventId, RoomId, UInt, UserId,
};

use super::rooms::raw;
use crate::{
    api::ruma::Ruma,
    error::{Error, Result},
    rooms::{self, Direction, RelationsQuery},
    AppState,
};

const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 1000;

/// A pagination token as a stream position; 400 `M_INVALID_PARAM` if unreadable.
fn position(token: Option<&str>) -> Result<Option<u64>> {
    token
        .map(|t| {
            rooms::parse_token(t)
                .ok_or_else(|| Error::invalid_param(format!("Invalid pagination token {t}")))
        })
        .transpose()
}

/// `limit` clamped to 1..=`max`, `default` when absent.
fn limit(limit: Option<UInt>, default: usize, max: usize) -> usize {
    limit.map_or(default, |l| usize::try_from(l).unwrap_or(max).clamp(1, max))
}

fn direction(dir: ruma::api::Direction) -> Direction {
    match dir {
        ruma::api::Direction::Forward => Direction::Forward,
        ruma::api::Direction::Backward => Direction::Backward,
    }
}

/// The parameters the three `/relations` endpoints share.
struct Params<'a> {
    from: Option<&'a str>,
    to: Option<&'a str>,
    dir: ruma::api::Direction,
    limit: Option<UInt>,
    recurse: bool,
}

/// The fields the three `/relations` responses share.
struct Chunk<T> {
    chunk: Vec<ruma::serde::Raw<T>>,
    next_batch: Option<String>,
    prev_batch: Option<String>,
    recursion_depth: Option<UInt>,
}

impl Params<'_> {
    /// Runs `/relations` for the caller with these parameters.
    fn run<T>(
        &self,
        state: &AppState,
        user_id: &UserId,
        (room_id, event_id): (&RoomId, &EventId),
        rel_type: Option<&str>,
        event_type: Option<&str>,
    ) -> Result<Chunk<T>> {
        let query = RelationsQuery {
            rel_type,
            event_type,
            from: position(self.from)?,
            to: position(self.to)?,
            dir: direction(self.dir),
            limit: limit(self.limit, DEFAULT_LIMIT, MAX_LIMIT),
            recurse: self.recurse,
        };
        let page = state.rooms.relations(user_id, room_id, event_id, &query)?;
        Ok(Chunk {
            chunk: page
                .events
                .iter()
                .map(|e| raw(&e.to_client_event()))
                .collect::<Result<_>>()?,
            next_batch: page.next.map(rooms::make_token),
            prev_batch: self.from.map(str::to_owned),
            recursion_depth: page.recursion_depth.map(UInt::from),
        })
    }
}

/// Fills one of the three `/relations` responses from a [`Chunk`].
macro_rules! response {
    ($endpoint:ident, $chunk:expr) => {{
        let chunk = $chunk;
        let mut response = $endpoint::v1::Response::new(chunk.chunk);
        response.next_batch = chunk.next_batch;
        response.prev_batch = chunk.prev_batch;
        response.recursion_depth = chunk.recursion_depth;
        response
    }};
}

/// The pagination part shared by the three `/relations` request types.
macro_rules! params {
    ($body:expr) => {
        Params {
            from: $body.from.as_deref(),
            to: $body.to.as_deref(),
            dir: $body.dir,
            limit: $body.limit,
            recurse: $body.recurse,
        }
    };
}

/// `GET /rooms/{roomId}/relations/{eventId}`.
pub async fn relations(
    State(state): State<AppState>,
    request: Ruma<get_relating_events::v1::Request>,
) -> Result<get_relating_events::v1::Response> {
    let body = &request.body;
    let params = params!(body);
    let ids = (&*body.room_id, &*body.event_id);
    let chunk = params.run(&state, &request.session()?.user_id, ids, None, None)?;
    Ok(response!(get_relating_events, chunk))
}

/// `GET /rooms/{roomId}/relations/{eventId}/{relType}`.
pub async fn relations_with_rel_type(
    State(state): State<AppState>,
    request: Ruma<get_relating_events_with_rel_type::v1::Request>,
) -> Result<get_relating_events_with_rel_type::v1::Response> {
    let body = &request.body;
    let params = params!(body);
    let ids = (&*body.room_id, &*body.event_id);
    let rel_type = Some(body.rel_type.as_str());
    let chunk = params.run(&state, &request.session()?.user_id, ids, rel_type, None)?;
    Ok(response!(get_relating_events_with_rel_type, chunk))
}

/// `GET /rooms/{roomId}/relations/{eventId}/{relType}/{eventType}`.
pub async fn relations_with_rel_type_and_event_type(
    State(state): State<AppState>,
    request: Ruma<get_relating_events_with_rel_type_and_event_type::v1::Request>,
) -> Result<get_relating_events_with_rel_type_and_event_type::v1::Response> {
    let body = &request.body;
    let params = params!(body);
    let ids = (&*body.room_id, &*body.event_id);
    let (rel_type, event_type) = (body.rel_type.as_str(), body.event_type.to_string());
    let chunk = params.run(
        &state,
        &request.session()?.user_id,
        ids,
        Some(rel_type),
        Some(&event_type),
    )?;
    Ok(response!(
        get_relating_events_with_rel_type_and_event_type,
        chunk
    ))
}

/// `GET /rooms/{roomId}/threads`.
pub async fn threads(
    State(state): State<AppState>,
    request: Ruma<get_threads::v1::Request>,
) -> Result<get_threads::v1::Response> {
    let session = request.session()?;
    let body = &request.body;
    let participated = match &body.include {
        IncludeThreads::All => false,
        IncludeThreads::Participated => true,
        other => {
            return Err(Error::invalid_param(format!(
                "Unknown include value {}",
                other.as_str()
            )))
        }
    };
    let page = state.rooms.threads(
        &session.user_id,
        &body.room_id,
        participated,
        position(body.from.as_deref())?,
        limit(body.limit, 20, 100),
    )?;
    let chunk = page
        .roots
        .iter()
        .map(|e| raw(&e.to_client_event()))
        .collect::<Result<_>>()?;
    let mut response = get_threads::v1::Response::new(chunk);
    response.next_batch = page.next.map(rooms::make_token);
    Ok(response)
}
