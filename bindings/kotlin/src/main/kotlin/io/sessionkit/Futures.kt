// CompletableFuture forms of every suspend member, for Java callers (and Kotlin code that is
// not in a coroutine): `app.logInAsync(creds)` in Kotlin, `SessionKitFutures.logInAsync(app,
// creds)` in Java. Each starts the suspend call at once and completes with its result; the
// SDK's own errors (AppException) become the future's exceptional cause, so `get()` throws an
// ExecutionException and `join()` a CompletionException around it. Cancelling the future
// cancels the call, as cancelling its coroutine would.
@file:JvmName("SessionKitFutures")

package io.sessionkit

import java.util.concurrent.CompletableFuture
import kotlinx.coroutines.CoroutineScope
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.SupervisorJob
import kotlinx.coroutines.future.future

// Calls are independent (SupervisorJob: one failure cancels no other). Dispatchers.Default so
// that what the caller chains on the future runs on the JVM's pool, not on an SDK thread.
private val FutureScope = CoroutineScope(SupervisorJob() + Dispatchers.Default)

/**
 * [App.logIn]: logs in and makes the user current; completes with the User. Fails with
 * [App.logIn]'s errors (AppException) as the cause.
 */
fun App.logInAsync(credentials: Credentials): CompletableFuture<User> =
    FutureScope.future {
        logIn(credentials)
    }

/**
 * [App.removeUser]: logs the user out if needed and forgets it locally. Completes with null.
 * Fails with [App.removeUser]'s errors (AppException) as the cause.
 */
fun App.removeUserAsync(user: User): CompletableFuture<Void?> =
    FutureScope.future {
        removeUser(user)
        null
    }

/**
 * [App.deleteUser]: deletes the account on the server, then locally. Completes with null.
 * Fails with [App.deleteUser]'s errors (AppException) as the cause.
 */
fun App.deleteUserAsync(user: User): CompletableFuture<Void?> =
    FutureScope.future {
        deleteUser(user)
        null
    }

/**
 * [App.updateBaseUrl]: re-runs location against the new URL. Completes with null. Fails with
 * [App.updateBaseUrl]'s errors (AppException) as the cause.
 */
fun App.updateBaseUrlAsync(baseUrl: String): CompletableFuture<Void?> =
    FutureScope.future {
        updateBaseUrl(baseUrl)
        null
    }

/**
 * [User.validAccessToken]: an access token with at least [minTtlSecs] seconds to live
 * (default: the config's margin), refreshed first when needed. Fails with
 * [User.validAccessToken]'s errors (AppException) as the cause.
 */
@JvmOverloads
fun User.validAccessTokenAsync(minTtlSecs: Int? = null): CompletableFuture<String> =
    FutureScope.future {
        validAccessToken(minTtlSecs)
    }

/**
 * [User.refreshAccessToken]: a forced refresh. Completes with null. Fails with
 * [User.refreshAccessToken]'s errors (AppException) as the cause.
 */
fun User.refreshAccessTokenAsync(): CompletableFuture<Void?> =
    FutureScope.future {
        refreshAccessToken()
        null
    }

/**
 * [User.refreshCustomData]: completes with the new custom data as JSON text, or null. Fails
 * with [User.refreshCustomData]'s errors (AppException) as the cause.
 */
fun User.refreshCustomDataAsync(): CompletableFuture<String?> =
    FutureScope.future {
        refreshCustomData()
    }

/**
 * [User.refreshProfile]: fetches the profile again. Fails with [User.refreshProfile]'s errors
 * (AppException) as the cause.
 */
fun User.refreshProfileAsync(): CompletableFuture<UserProfile> =
    FutureScope.future {
        refreshProfile()
    }

/**
 * [User.linkCredentials]: adds an identity to this user. Completes with null. Fails with
 * [User.linkCredentials]'s errors (AppException) as the cause.
 */
fun User.linkCredentialsAsync(credentials: Credentials): CompletableFuture<Void?> =
    FutureScope.future {
        linkCredentials(credentials)
        null
    }

/**
 * [User.logOut]: logs out this device ([scope] null or [LogOutScope.THIS_DEVICE]: the tokens
 * are cleared locally, then the session is revoked on the server), every other device
 * ([LogOutScope.OTHER_DEVICES]: this one stays logged in) or all of them
 * ([LogOutScope.EVERYWHERE]) (#25). Completes with null. Fails with [User.logOut]'s errors
 * (AppException) as the cause.
 */
@JvmOverloads
fun User.logOutAsync(scope: LogOutScope? = null): CompletableFuture<Void?> =
    FutureScope.future {
        logOut(scope)
        null
    }

/**
 * [User.sessions]: completes with the user's live sessions on the server (one per device
 * signed in), oldest first, this device's with `current` true (#25). No secret in them. Fails
 * with [User.sessions]'s errors (AppException) as the cause: SessionExpired when this device's
 * own session has ended, Network, ...
 */
fun User.sessionsAsync(): CompletableFuture<List<SessionInfo>> =
    FutureScope.future {
        sessions()
    }

/**
 * [User.revokeSession]: ends the session [id] (a [SessionInfo.id] from [User.sessions]); that
 * device learns it at its next refresh (SessionExpired, kind SESSION_REVOKED). This device's
 * own id logs it out here too (#25). Completes with null. Fails with [User.revokeSession]'s
 * errors (AppException) as the cause: Service with code `SessionNotFound` (HTTP 404) for an id
 * that is not one of this user's live sessions, InvalidArgument for a text that is not an id.
 */
fun User.revokeSessionAsync(id: String): CompletableFuture<Void?> =
    FutureScope.future {
        revokeSession(id)
        null
    }

/**
 * [User.callFunction]: calls a server function with its arguments as a JSON array text;
 * completes with the result as JSON text. Fails with [User.callFunction]'s errors
 * (AppException) as the cause.
 */
fun User.callFunctionAsync(name: String, argsJson: String): CompletableFuture<String> =
    FutureScope.future {
        callFunction(name, argsJson)
    }

/**
 * [User.request]: any authenticated call to the app's server; [path] starts with `/`. Fails
 * with [User.request]'s errors (AppException) as the cause.
 */
@JvmOverloads
fun User.requestAsync(method: String, path: String, bodyJson: String? = null): CompletableFuture<HttpResponse> =
    FutureScope.future {
        request(method, path, bodyJson)
    }

/**
 * [EmailPasswordAuth.registerUser]. Completes with null. Fails with
 * [EmailPasswordAuth.registerUser]'s errors (AppException) as the cause.
 */
fun EmailPasswordAuth.registerUserAsync(email: String, password: String): CompletableFuture<Void?> =
    FutureScope.future {
        registerUser(email, password)
        null
    }

/**
 * [EmailPasswordAuth.confirmUser]. Completes with null. Fails with
 * [EmailPasswordAuth.confirmUser]'s errors (AppException) as the cause.
 */
fun EmailPasswordAuth.confirmUserAsync(token: String, tokenId: String): CompletableFuture<Void?> =
    FutureScope.future {
        confirmUser(token, tokenId)
        null
    }

/**
 * [EmailPasswordAuth.resendConfirmationEmail]. Completes with null. Fails with
 * [EmailPasswordAuth.resendConfirmationEmail]'s errors (AppException) as the cause.
 */
fun EmailPasswordAuth.resendConfirmationEmailAsync(email: String): CompletableFuture<Void?> =
    FutureScope.future {
        resendConfirmationEmail(email)
        null
    }

/**
 * [EmailPasswordAuth.retryCustomConfirmation]. Completes with null. Fails with
 * [EmailPasswordAuth.retryCustomConfirmation]'s errors (AppException) as the cause.
 */
fun EmailPasswordAuth.retryCustomConfirmationAsync(email: String): CompletableFuture<Void?> =
    FutureScope.future {
        retryCustomConfirmation(email)
        null
    }

/**
 * [EmailPasswordAuth.sendResetPasswordEmail]. Completes with null. Fails with
 * [EmailPasswordAuth.sendResetPasswordEmail]'s errors (AppException) as the cause.
 */
fun EmailPasswordAuth.sendResetPasswordEmailAsync(email: String): CompletableFuture<Void?> =
    FutureScope.future {
        sendResetPasswordEmail(email)
        null
    }

/**
 * [EmailPasswordAuth.resetPassword]. Completes with null. Fails with
 * [EmailPasswordAuth.resetPassword]'s errors (AppException) as the cause.
 */
fun EmailPasswordAuth.resetPasswordAsync(token: String, tokenId: String, password: String): CompletableFuture<Void?> =
    FutureScope.future {
        resetPassword(token, tokenId, password)
        null
    }

/**
 * [EmailPasswordAuth.callResetPasswordFunction]. Completes with null. Fails with
 * [EmailPasswordAuth.callResetPasswordFunction]'s errors (AppException) as the cause.
 */
fun EmailPasswordAuth.callResetPasswordFunctionAsync(email: String, password: String, argsJson: String): CompletableFuture<Void?> =
    FutureScope.future {
        callResetPasswordFunction(email, password, argsJson)
        null
    }

/**
 * [EmailOtpAuth.send]: asks the server to mail a one-time sign-in code (#23). Completes with
 * null once the server accepted. Fails with [EmailOtpAuth.send]'s errors (AppException) as the
 * cause.
 */
fun EmailOtpAuth.sendAsync(email: String): CompletableFuture<Void?> =
    FutureScope.future {
        send(email)
        null
    }

/**
 * [ApiKeyAuth.create]: completes with the new key, whose `key` is readable this once. Fails
 * with [ApiKeyAuth.create]'s errors (AppException) as the cause.
 */
fun ApiKeyAuth.createAsync(name: String): CompletableFuture<ApiKey> =
    FutureScope.future {
        create(name)
    }

/**
 * [ApiKeyAuth.fetch]. Fails with [ApiKeyAuth.fetch]'s errors (AppException) as the cause.
 */
fun ApiKeyAuth.fetchAsync(id: String): CompletableFuture<ApiKey> =
    FutureScope.future {
        fetch(id)
    }

/**
 * [ApiKeyAuth.fetchAll]. Fails with [ApiKeyAuth.fetchAll]'s errors (AppException) as the
 * cause.
 */
fun ApiKeyAuth.fetchAllAsync(): CompletableFuture<List<ApiKey>> =
    FutureScope.future {
        fetchAll()
    }

/**
 * [ApiKeyAuth.delete]: also ends the sessions logged in with the key. Completes with null.
 * Fails with [ApiKeyAuth.delete]'s errors (AppException) as the cause.
 */
fun ApiKeyAuth.deleteAsync(id: String): CompletableFuture<Void?> =
    FutureScope.future {
        delete(id)
        null
    }

/**
 * [ApiKeyAuth.enable]. Completes with null. Fails with [ApiKeyAuth.enable]'s errors
 * (AppException) as the cause.
 */
fun ApiKeyAuth.enableAsync(id: String): CompletableFuture<Void?> =
    FutureScope.future {
        enable(id)
        null
    }

/**
 * [ApiKeyAuth.disable]: also ends the sessions logged in with the key. Completes with null.
 * Fails with [ApiKeyAuth.disable]'s errors (AppException) as the cause.
 */
fun ApiKeyAuth.disableAsync(id: String): CompletableFuture<Void?> =
    FutureScope.future {
        disable(id)
        null
    }
