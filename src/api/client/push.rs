//! Push rule handlers (Client-Server API, "Push Notifications" → "Push
//! Rules: API"): `GET /pushrules/`, `GET /pushrules/global/`, and per rule
//! `GET`/`PUT`/`DELETE /pushrules/global/{kind}/{ruleId}` with its
//! `/enabled` and `/actions`. Only the `global` scope exists.
//!
//! Errors: an unknown rule is 404 `M_NOT_FOUND`; a rule id starting with
//! `.` or holding `/` or `\`, a `before`/`after` that names a missing or
//! predefined rule, or deleting a predefined rule is 400 `M_INVALID_PARAM`.

use axum::extract::State;
use ruma::{
    api::client::push::{
        delete_pushrule, get_pushrule, get_pushrule_actions, get_pushrule_enabled,
        get_pushrules_all, get_pushrules_global_scope, set_pushrule, set_pushrule_actions,
        set_pushrule_enabled,
    },
    push::{InsertPushRuleError, RemovePushRuleError, RuleKind, Ruleset},
};

use crate::{
    api::ruma::Ruma,
    error::{Error, Result},
    AppState,
};

fn rule_not_found() -> Error {
    Error::not_found("The push rule was not found")
}

fn insert_error(e: InsertPushRuleError) -> Error {
    match e {
        InsertPushRuleError::UnknownRuleId => {
            Error::invalid_param("The before/after rule was not found")
        }
        e => Error::invalid_param(e.to_string()),
    }
}

fn remove_error(e: RemovePushRuleError) -> Error {
    match e {
        RemovePushRuleError::ServerDefault => {
            Error::invalid_param("Predefined push rules cannot be deleted")
        }
        _ => rule_not_found(),
    }
}

fn ruleset(state: &AppState, user: &ruma::UserId) -> Result<Ruleset> {
    Ok(state.push.ruleset(user)?.as_ref().clone())
}

pub async fn get_all(
    State(state): State<AppState>,
    request: Ruma<get_pushrules_all::v3::Request>,
) -> Result<get_pushrules_all::v3::Response> {
    let user = &request.session()?.user_id;
    Ok(get_pushrules_all::v3::Response::new(ruleset(&state, user)?))
}

pub async fn get_global(
    State(state): State<AppState>,
    request: Ruma<get_pushrules_global_scope::v3::Request>,
) -> Result<get_pushrules_global_scope::v3::Response> {
    let user = &request.session()?.user_id;
    Ok(get_pushrules_global_scope::v3::Response::new(ruleset(
        &state, user,
    )?))
}

pub async fn get_rule(
    State(state): State<AppState>,
    request: Ruma<get_pushrule::v3::Request>,
) -> Result<get_pushrule::v3::Response> {
    let user = &request.session()?.user_id;
    let body = &request.body;
    let rules = state.push.ruleset(user)?;
    let rule = rules
        .get(body.kind.clone(), &body.rule_id)
        .ok_or_else(rule_not_found)?;
    Ok(get_pushrule::v3::Response::new(rule.into()))
}

pub async fn set_rule(
    State(state): State<AppState>,
    request: Ruma<set_pushrule::v3::Request>,
) -> Result<set_pushrule::v3::Response> {
    let user = request.session()?.user_id.clone();
    let body = request.body;
    state
        .push
        .update_rules(&state.accounts, &user, |rules| {
            rules
                .insert(body.rule, body.after.as_deref(), body.before.as_deref())
                .map_err(insert_error)
        })
        .await?;
    Ok(set_pushrule::v3::Response::new())
}

pub async fn delete_rule(
    State(state): State<AppState>,
    request: Ruma<delete_pushrule::v3::Request>,
) -> Result<delete_pushrule::v3::Response> {
    let user = request.session()?.user_id.clone();
    let body = request.body;
    state
        .push
        .update_rules(&state.accounts, &user, |rules| {
            rules.remove(body.kind, &body.rule_id).map_err(remove_error)
        })
        .await?;
    Ok(delete_pushrule::v3::Response::new())
}

pub async fn get_enabled(
    State(state): State<AppState>,
    request: Ruma<get_pushrule_enabled::v3::Request>,
) -> Result<get_pushrule_enabled::v3::Response> {
    let user = &request.session()?.user_id;
    let body = &request.body;
    let rules = state.push.ruleset(user)?;
    let rule = rules
        .get(body.kind.clone(), &body.rule_id)
        .ok_or_else(rule_not_found)?;
    Ok(get_pushrule_enabled::v3::Response::new(rule.enabled()))
}

pub async fn set_enabled(
    State(state): State<AppState>,
    request: Ruma<set_pushrule_enabled::v3::Request>,
) -> Result<set_pushrule_enabled::v3::Response> {
    let user = request.session()?.user_id.clone();
    let body = request.body;
    let kind: RuleKind = body.kind;
    state
        .push
        .update_rules(&state.accounts, &user, |rules| {
            rules
                .set_enabled(kind, &body.rule_id, body.enabled)
                .map_err(|_| rule_not_found())
        })
        .await?;
    Ok(set_pushrule_enabled::v3::Response::new())
}

pub async fn get_actions(
    State(state): State<AppState>,
    request: Ruma<get_pushrule_actions::v3::Request>,
) -> Result<get_pushrule_actions::v3::Response> {
    let user = &request.session()?.user_id;
    let body = &request.body;
    let rules = state.push.ruleset(user)?;
    let rule = rules
        .get(body.kind.clone(), &body.rule_id)
        .ok_or_else(rule_not_found)?;
    Ok(get_pushrule_actions::v3::Response::new(
        rule.actions().to_vec(),
    ))
}

pub async fn set_actions(
    State(state): State<AppState>,
    request: Ruma<set_pushrule_actions::v3::Request>,
) -> Result<set_pushrule_actions::v3::Response> {
    let user = request.session()?.user_id.clone();
    let body = request.body;
    state
        .push
        .update_rules(&state.accounts, &user, |rules| {
            rules
                .set_actions(body.kind, &body.rule_id, body.actions)
                .map_err(|_| rule_not_found())
        })
        .await?;
    Ok(set_pushrule_actions::v3::Response::new())
}
