//! Plain C functions, outside UniFFI, for what apps call on hot paths: an HTTP interceptor reads
//! the access token for every request, and makes a DPoP proof for each one of a bound session.
//!
//! Through the generated Kotlin code a getter crosses JNA three times and allocates call-status
//! and buffer `Structure`s each time: about 17 µs. These take and return primitives only, so
//! JNA's direct mapping calls them without any `Structure`; the Kotlin layer
//! (`User.currentAccessToken()`) uses them. `user` is a handle the foreign side owns: a clone of
//! a `User`'s handle, as UniFFI makes for every call, released with
//! [`sessionkit_ffi_user_release`].

use std::panic::{AssertUnwindSafe, catch_unwind};

use uniffi::{Handle, HandleAlloc};

use crate::UniFfiTag;
use crate::user::User;

/// The user has no access token (logged out or removed).
pub const NO_TOKEN: i32 = -1;
/// Bad arguments, or the SDK panicked: nothing was written.
pub const FAILED: i32 = -2;

/// Copies the stored access token of `user` (as `User::access_token`, UTF-8) into
/// `out[..cap]` and returns its length. When the token is longer than `cap`, nothing is written
/// and the length is returned all the same: call again with a buffer that large.
///
/// # Safety
/// `user` must be a live handle of a `User` that the caller owns (a clone of a `User`'s
/// handle, not yet released), and `out` must be valid for `cap` bytes of writes (or null with
/// `cap` 0).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sessionkit_ffi_user_access_token_into(
    user: u64,
    out: *mut u8,
    cap: i32,
) -> i32 {
    if user == 0 || cap < 0 || (out.is_null() && cap > 0) {
        return FAILED;
    }
    // SAFETY: the caller owns the handle, so the Arc it stands for is alive during this call.
    let user =
        unsafe { <User as HandleAlloc<UniFfiTag>>::get_arc(Handle::from_raw_unchecked(user)) };
    // An unwinding panic must not leave an `extern "C"` function (it would abort the process).
    let Ok(token) = catch_unwind(AssertUnwindSafe(|| user.inner.access_token())) else {
        return FAILED;
    };
    let Some(token) = token else {
        return NO_TOKEN;
    };
    let Ok(len) = i32::try_from(token.len()) else {
        return FAILED;
    };
    if len <= cap && len > 0 {
        // SAFETY: `out` is valid for `cap >= len` bytes and cannot overlap a fresh String.
        unsafe { std::ptr::copy_nonoverlapping(token.as_ptr(), out, token.len()) };
    }
    len
}

/// The user's session is not bound with DPoP: no proof, send `Authorization: Bearer`.
pub const NOT_BOUND: i32 = -3;

/// Makes a DPoP proof as `User::dpop_proof` does, for the request described by
/// `request[..len]`: its method, URL, access token and nonce (empty: none), UTF-8, each followed
/// by one NUL byte. Writes the proof into `out[..cap]` and returns its length; when it is longer
/// than `cap`, nothing is written and the length is returned (call again with a buffer that
/// large: the new call makes a new proof). [`NOT_BOUND`] for a bearer session; [`FAILED`] for
/// bad arguments, a panic, or a proof that could not be signed (the generated
/// `User.dpopProof` then gives the error itself). The OkHttp interceptor's path (#29): one
/// direct call instead of the generated call's crossings and buffers.
///
/// # Safety
/// As [`sessionkit_ffi_user_access_token_into`], and `request` must be valid for `len` bytes of
/// reads.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sessionkit_ffi_user_dpop_proof_into(
    user: u64,
    request: *const u8,
    len: i32,
    out: *mut u8,
    cap: i32,
) -> i32 {
    let Ok(len) = usize::try_from(len) else {
        return FAILED;
    };
    if user == 0 || request.is_null() || cap < 0 || (out.is_null() && cap > 0) {
        return FAILED;
    }
    // SAFETY: the caller gives `len` readable bytes at `request`.
    let request = unsafe { std::slice::from_raw_parts(request, len) };
    let Ok(text) = std::str::from_utf8(request) else {
        return FAILED;
    };
    let parts: Vec<&str> = text.split('\0').collect();
    let [method, url, token, nonce, ""] = parts[..] else {
        return FAILED;
    };
    // SAFETY: the caller owns the handle, so the Arc it stands for is alive during this call.
    let user =
        unsafe { <User as HandleAlloc<UniFfiTag>>::get_arc(Handle::from_raw_unchecked(user)) };
    let nonce = (!nonce.is_empty()).then_some(nonce);
    let made = catch_unwind(AssertUnwindSafe(|| {
        user.inner.dpop_proof(method, url, token, nonce)
    }));
    let proof = match made {
        Ok(Ok(Some(proof))) => proof,
        Ok(Ok(None)) => return NOT_BOUND,
        Ok(Err(_)) | Err(_) => return FAILED,
    };
    let Ok(n) = i32::try_from(proof.len()) else {
        return FAILED;
    };
    if n <= cap {
        // SAFETY: `out` is valid for `cap >= n` bytes and cannot overlap a fresh String.
        unsafe { std::ptr::copy_nonoverlapping(proof.as_ptr(), out, proof.len()) };
    }
    n
}

/// Releases a handle given to the foreign side (the counterpart of cloning a `User`'s handle).
///
/// # Safety
/// `user` must be a live handle the caller owns; it must not be used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn sessionkit_ffi_user_release(user: u64) {
    if user != 0 {
        // SAFETY: the caller gives up its owned handle; dropping the Arc releases it.
        drop(unsafe {
            <User as HandleAlloc<UniFfiTag>>::consume_handle(Handle::from_raw_unchecked(user))
        });
    }
}
