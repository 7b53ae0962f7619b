//! What presenting a refresh token means, decided once for both back ends (#28): whether its
//! session lives ([`judge_refresh`]), reuse of a rotated-out token (revokes the session, also
//! for a pruned token, [`pruned_token_session`]), the grace window and the lost answer
//! (PROTOCOL.md, "Refresh token rotation"), the successor made again for a token accepted a
//! second time ([`successor_again`]), and the rotation. The back ends run [`use_refresh_token`]
//! over their [`Transaction`].

use serde_json::json;

use super::transaction::{TokenSession, Transaction};
use super::{
    CheckedSession, NextRefreshToken, PresentedRefresh, PresentedToken, ROTATION_GRACE_SECS,
    RefreshUse, SessionRow, StoreResult, Successor, UserRow,
};
use crate::audit::{self, Event, kind};
use crate::error::{ApiError, Reason};

/// Presents `p`'s token for `purpose` in `t` ([`super::Store::use_refresh_token`]).
/// `Ok(Err(e))`: refused, with what was written kept (a reuse revokes its session though the
/// call fails); `Err(e)`: a database failure, nothing to keep. Its audit events are in
/// `audit` (the request's context, [`crate::audit::context`]).
pub(crate) async fn use_refresh_token<T: Transaction>(
    t: &mut T,
    p: &PresentedRefresh,
    purpose: RefreshUse,
    audit: audit::Context,
) -> StoreResult<Result<CheckedSession, ApiError>> {
    let reuse = Event::in_context(&p.app_id, kind::REFRESH_TOKEN_REUSE, audit).at(p.now);
    // The session first, locked: two instances presented tokens of one session (the same old
    // token, say) take turns, and the second judges what the first committed. After a wait for
    // the lock the session row is the committed one; the token's columns are as of before the
    // wait, which matters not: only a rotation changes them, and a rotation that came between
    // is within the grace window, where both readings are judged alike.
    let (found, prune_from) = match t.token_session(&p.token_hash).await? {
        Some(TokenSession {
            session,
            token,
            prune_from,
        }) => (Some((session, token)), prune_from),
        None => (None, 0),
    };
    // The user after the session, without a lock of its own: a deletion (or a disable) of the
    // user also needs the session row (the cascade, the revocation), so it either committed
    // before the lock (no session, no user: `deleted`) or waits for this use and then ends the
    // session and whatever it hands out (#22).
    let user = t.user(&p.app_id, &p.user_id).await?;
    if let Some(sid) = pruned_token_session(p, user.as_ref(), found.as_ref()) {
        // The reuse of a bound session's token counts only with a proof from its key: without
        // one, whoever presents it cannot be told from an attacker, who must not be able to
        // end the real device's session (#29).
        if let Some(Some(bound)) = t.session_jkt(sid).await?
            && p.proof_jkt.as_deref() != Some(bound.as_str())
        {
            return Ok(Err(wrong_key(p)));
        }
        if t.revoke_session(sid, &p.user_id).await? {
            tracing::warn!(session = %sid, "rotated refresh token reused: revoking the session");
            t.insert_event(&reuse.user(&p.user_id).session(sid)).await?;
            return Ok(Err(ApiError::reuse_detected()));
        }
        return Ok(Err(ApiError::session_ended(Reason::Revoked)));
    }
    let past_grace = match judge_refresh(p, user.as_ref(), found.as_ref()) {
        Ok(g) => g,
        Err(reason) => return Ok(Err(ApiError::session_ended(reason))),
    };
    let (Some(user), Some((mut session, presented))) = (user, found) else {
        return Err(ApiError::internal());
    };
    // The key, before anything is written: a bound session's token without a proof from its
    // key is refused and changes nothing, not even as reuse (#29).
    match (&session.jkt, &p.proof_jkt) {
        (Some(bound), Some(jkt)) if bound == jkt => {}
        (Some(_), _) => return Ok(Err(wrong_key(p))),
        // An app that binds every session binds one from before at its first use with a key.
        (None, Some(jkt)) if p.dpop_required => {
            t.bind_session(&session.id, jkt).await?;
            session.jkt = Some(jkt.clone());
        }
        (None, None) if p.dpop_required => {
            return Ok(Err(crate::dpop::invalid(
                "this app binds every session to a key: send a DPoP proof",
            )));
        }
        (None, _) => {}
    }
    // A rotated-out token's successors: whether its answer was lost, and the successor to
    // answer again. The current token has none as read; it may have been rotated out by the
    // use this one waited for: the rotation below then finds its successor.
    let mut successors = if presented.superseded_at.is_some() {
        t.successors(&session.id, presented.generation).await?
    } else {
        Vec::new()
    };
    if past_grace.is_some() && !successors.iter().any(|s| s.current_unused) {
        tracing::warn!(session = %session.id, "rotated refresh token reused: revoking the session");
        t.revoke_session(&session.id, &user.id).await?;
        t.insert_event(&reuse.user(&user.id).session(&session.id))
            .await?;
        return Ok(Err(ApiError::reuse_detected()));
    }
    let mut rotated = None;
    match purpose {
        RefreshUse::Refresh(next) => {
            // With `looked`, `successors` are this transaction's latest: one made again is the
            // answer, and when none can be (made before successors were derived) the token
            // rotates to a new one. Without, the refresh rotates only when the presented token
            // has no successor; when it has (rotated out by the use this one waited for), they
            // are looked up and made again.
            let mut looked = presented.superseded_at.is_some();
            loop {
                let again = next
                    .as_ref()
                    .and_then(|next| successor_again(next, &session, &p.token_hash, &successors));
                let fresh = match (&again, &next) {
                    (None, Some(next)) => Some(next(&session, &p.token_hash, p.now)),
                    _ => None,
                };
                let inserted = t
                    .refresh(
                        p,
                        &session.id,
                        presented.generation,
                        prune_from,
                        fresh.as_deref(),
                        !looked,
                    )
                    .await?;
                if fresh.is_some() && !inserted && !looked {
                    successors = t.successors(&session.id, presented.generation).await?;
                    looked = true;
                    continue;
                }
                // Accepted again: the successor it already produced, nothing rotated.
                rotated = again.or(fresh);
                break;
            }
        }
        purpose => {
            t.mark_used(&p.token_hash, p.now).await?;
            if let RefreshUse::Logout = purpose {
                t.revoke_session(&session.id, &user.id).await?;
                let event = reuse
                    .kind(kind::SESSIONS_REVOKED)
                    .user(&user.id)
                    .session(&session.id)
                    .detail(json!({"scope": "this_device", "count": 1}));
                t.insert_event(&event).await?;
            }
        }
    }
    Ok(Ok(CheckedSession {
        session,
        user,
        rotated,
    }))
}

/// The refusal of a bound session's refresh token presented without a proof from its key.
fn wrong_key(p: &PresentedRefresh) -> ApiError {
    let why = if p.proof_jkt.is_some() {
        "the proof is not made with the key this session is bound to"
    } else {
        "this session is bound to a key: send a DPoP proof made with it"
    };
    crate::dpop::invalid(why)
}

/// The successor the presented token (SHA-256 `parent_hash`) already produced, made again by
/// `next` from one of the stored tokens of the next generation: the first whose hash the remade
/// token has. `None` when none is the presented token's (its successor was made before they
/// were derived, with a random `jti`, or under another app secret): the caller then rotates as
/// before, to a new successor. Accepting a token a second time thus answers the same successor,
/// so that copies of one session converge on one chain (PROTOCOL.md, "Refresh token rotation").
pub fn successor_again(
    next: &NextRefreshToken,
    session: &SessionRow,
    parent_hash: &str,
    successors: &[Successor],
) -> Option<String> {
    successors.iter().find_map(|s| {
        let token = next(session, parent_hash, s.issued_at);
        (crate::tokens::sha256_hex(&token) == s.token_hash).then_some(token)
    })
}

/// The part of judging a refresh token that needs no more queries. `Ok(Some(at))`: the token
/// was rotated out at `at`, beyond the grace window, and is reuse unless its answer was lost
/// ([`use_refresh_token`] looks); `Ok(None)`: the token is good.
pub fn judge_refresh(
    presented: &PresentedRefresh,
    user: Option<&UserRow>,
    found: Option<&(SessionRow, PresentedToken)>,
) -> Result<Option<i64>, Reason> {
    let user = user.ok_or(Reason::Deleted)?;
    if user.disabled {
        return Err(Reason::Disabled);
    }
    let (session, token) = found.ok_or(Reason::Revoked)?;
    if session.revoked || session.user_id != user.id {
        return Err(Reason::Revoked);
    }
    let now = presented.now;
    if session.expires_at <= now {
        return Err(Reason::Expired);
    }
    let idle = presented.inactivity_timeout_secs;
    if idle > 0 && now - session.last_used_at > idle {
        return Err(Reason::Expired);
    }
    Ok(token
        .superseded_at
        .filter(|at| now > at + ROTATION_GRACE_SECS))
}

/// The session to revoke when a presented refresh token is not stored: one of a live user's
/// tokens that names its session (`sid`) can only be a rotated-out token that was pruned, so
/// presenting it is reuse (store/mod.rs, "Pruning rotated-out refresh tokens"). `None` when
/// the token was found, or when its user is gone or disabled (`judge_refresh` says which).
pub fn pruned_token_session<'a>(
    presented: &'a PresentedRefresh,
    user: Option<&UserRow>,
    found: Option<&(SessionRow, PresentedToken)>,
) -> Option<&'a str> {
    if found.is_some() || user.is_none_or(|u| u.disabled) {
        return None;
    }
    presented.session_id.as_deref()
}
