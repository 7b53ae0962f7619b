// Calling the app's own API with the user's session through OkHttp (#15): an Interceptor that
// sets `Authorization: Bearer <access token>` and an Authenticator that, on a 401, refreshes once
// and replays once. OkHttp is an optional dependency of this jar: only apps that use these
// classes need it on their classpath. The Swift counterpart is URLSession.data(for:user:).
// Java sees this file's functions as static methods of SessionKitOkHttp:
// `SessionKitOkHttp.authorizeWith(new OkHttpClient.Builder(), user).build()`.
@file:JvmName("SessionKitOkHttp")

package io.sessionkit.okhttp

import io.sessionkit.AppException
import io.sessionkit.User
import io.sessionkit.currentAccessToken
import java.io.IOException
import java.io.InterruptedIOException
import java.util.Base64
import java.util.concurrent.CompletableFuture
import java.util.concurrent.ExecutionException
import kotlinx.coroutines.runBlocking
import kotlinx.serialization.json.Json
import kotlinx.serialization.json.jsonObject
import kotlinx.serialization.json.jsonPrimitive
import kotlinx.serialization.json.longOrNull
import okhttp3.Authenticator
import okhttp3.HttpUrl
import okhttp3.Interceptor
import okhttp3.OkHttpClient
import okhttp3.Request
import okhttp3.Response
import okhttp3.Route

/** `AppConfig.refreshMarginSecs`'s default: the token time left that these classes ask for. */
const val DEFAULT_MIN_TTL_SECS: Int = 60

/**
 * An OkHttp call failed because the SDK could not authorize it. OkHttp calls can only fail with
 * an [IOException] (an `enqueue` callback's `onFailure` gets nothing else), so the SDK's error
 * travels as [error], also the [cause]:
 * [AppException.SessionExpired] when the session has ended (the refresh token was rejected; the
 * App's session error handler has been called, once, and the user is logged out: show the login
 * screen), [AppException.ClientUserNotLoggedIn] when the user is logged out,
 * [AppException.Network] / [AppException.Timeout] when a needed refresh could not be made,
 * [AppException.InsecureUrl] when the request was refused before sending (plain http to a host
 * that is not a loopback address). The message is the error's sentence; it never holds a token.
 */
class SessionKitIOException(val error: AppException) : IOException(error.message, error)

/**
 * Installs [SessionKitInterceptor] and [SessionKitAuthenticator] for [user]: every call of the
 * built client carries the user's access token, refreshed when due or refused.
 *
 * ```kotlin
 * val client = OkHttpClient.Builder().authorizeWith(user).build()
 * client.newCall(Request.Builder().url("https://api.example.com/orders").build()).execute()
 * ```
 *
 * Replaces an authenticator set before. [minTtlSecs] and [allowInsecureHttp]: as
 * [SessionKitInterceptor].
 */
@JvmOverloads
fun OkHttpClient.Builder.authorizeWith(
    user: User,
    minTtlSecs: Int = DEFAULT_MIN_TTL_SECS,
    allowInsecureHttp: Boolean = false,
): OkHttpClient.Builder {
    val tokens = Tokens(user, minTtlSecs)
    return addInterceptor(SessionKitInterceptor(tokens, allowInsecureHttp))
        .authenticator(SessionKitAuthenticator(tokens))
}

/**
 * An application interceptor (`addInterceptor`, not `addNetworkInterceptor`) that sets
 * `Authorization: Bearer <token>` on every request, replacing any it had. The token has at least
 * [minTtlSecs] seconds to live (pass your `AppConfig.refreshMarginSecs` if you changed it; a value
 * a new token could not meet becomes half a token's lifetime, as in the SDK):
 *
 * - While the stored token has that time left, it is read with one direct native call
 *   ([currentAccessToken], about 0.3 µs) and its time left is taken from its own `exp` and `iat`
 *   claims against this device's clock: no call into the SDK's runtime.
 * - Otherwise (or when the claims cannot be read) it is `user.validAccessToken(minTtlSecs)`,
 *   which refreshes first, one refresh however many requests ask at once. This blocks the calling
 *   thread (OkHttp's, or yours in `execute()`) for that refresh.
 *
 * A device clock that is behind lets a token past its end through; the API's 401 then makes
 * [SessionKitAuthenticator] refresh and replay. A clock that is ahead only sends every request
 * down the second, slower, path.
 *
 * Fails the call with a [SessionKitIOException] (nothing is sent) when there is no valid token:
 * session ended ([AppException.SessionExpired]), logged out, refresh impossible; or, unless
 * [allowInsecureHttp], when the URL is plain http to a host that is not a loopback address
 * ([AppException.InsecureUrl]: the token must not cross a network in clear, the rule of the
 * SDK's own `allowInsecureHttp`). Never logs the token.
 */
class SessionKitInterceptor internal constructor(
    private val tokens: Tokens,
    private val allowInsecureHttp: Boolean,
) : Interceptor {
    /** See the class; [minTtlSecs] must not be negative (IllegalArgumentException). */
    @JvmOverloads
    constructor(user: User, minTtlSecs: Int = DEFAULT_MIN_TTL_SECS, allowInsecureHttp: Boolean = false) :
        this(Tokens(user, minTtlSecs), allowInsecureHttp)

    override fun intercept(chain: Interceptor.Chain): Response {
        val request = chain.request()
        checkDestination(request.url, allowInsecureHttp)
        return chain.proceed(request.withBearer(tokens.valid()))
    }
}

/**
 * The OkHttp `Authenticator` for the API's 401 answers to requests that carry a bearer token
 * (from [SessionKitInterceptor]): the token is taken as no longer accepted, refreshed once
 * (`user.refreshAccessToken()`), and the request is sent once more, body included (OkHttp sends
 * it again; a one-shot body cannot be, and its 401 is returned), with the new token.
 *
 * - Requests refused the same token share one refresh; none is made when the user holds another
 *   token by now (it was replaced meanwhile), the replay then takes that one.
 * - A second 401 for the same call is returned as the response: never a loop.
 * - When the refresh token is rejected, the call fails with a [SessionKitIOException] holding
 *   [AppException.SessionExpired] (every call refused that token gets it); the App's session
 *   error handler has then been called once, by the SDK, and the user is logged out. Other
 *   refresh failures fail the call the same way with their own [AppException].
 * - A 401 to a request without a bearer token is left alone (null: the response is returned).
 */
class SessionKitAuthenticator internal constructor(private val tokens: Tokens) : Authenticator {
    /** See the class; [minTtlSecs] is the replay's token time left, as [SessionKitInterceptor]'s. */
    @JvmOverloads
    constructor(user: User, minTtlSecs: Int = DEFAULT_MIN_TTL_SECS) : this(Tokens(user, minTtlSecs))

    override fun authenticate(route: Route?, response: Response): Request? {
        if (response.code != 401) return null
        val sent = response.request.header("Authorization")
            ?.takeIf { it.startsWith(BEARER) }?.removePrefix(BEARER) ?: return null
        // Already answered a 401 in this call: one refresh and one replay, no more.
        if (generateSequence(response.priorResponse) { it.priorResponse }.any { it.code == 401 }) return null
        Refreshes.afterRejection(tokens.user, sent)
        return response.request.withBearer(tokens.valid())
    }
}

private const val BEARER = "Bearer "

private fun Request.withBearer(token: String): Request =
    newBuilder().header("Authorization", BEARER + token).build()

/** Runs an SDK call from OkHttp's blocking world, its errors as IOExceptions. */
private fun <T> blocking(block: suspend () -> T): T = try {
    runBlocking { block() }
} catch (e: AppException) {
    throw SessionKitIOException(e)
} catch (e: InterruptedException) {
    // OkHttp cancels a call by interrupting its thread.
    throw InterruptedIOException("interrupted while waiting for the access token").apply { initCause(e) }
}

/**
 * Only loopback hosts may be reached over plain http (unless allowed): the SDK's own rule for
 * its server, applied to the app's API.
 */
private fun checkDestination(url: HttpUrl, allowInsecureHttp: Boolean) {
    if (url.isHttps || allowInsecureHttp || isLoopback(url.host)) return
    // Scheme and host only: a query may carry secrets of its own.
    throw SessionKitIOException(AppException.InsecureUrl("http://${url.host}"))
}

internal fun isLoopback(host: String): Boolean {
    val h = host.lowercase().removePrefix("[").removeSuffix("]")
    if (h == "localhost" || h.endsWith(".localhost") || h == "::1" || h == "0:0:0:0:0:0:0:1") return true
    val parts = h.split(".")
    return parts.size == 4 && parts[0] == "127" && parts.all { p -> p.toIntOrNull()?.let { it in 0..255 } == true }
}

/**
 * The user's token with [minTtlSecs] left: the stored one when its claims say so (no call into
 * the runtime), else `validAccessToken`.
 */
internal class Tokens(val user: User, private val minTtlSecs: Int) {
    init {
        require(minTtlSecs >= 0) { "minTtlSecs must not be negative" }
    }

    /** A token read once, with when it expires (device clock, ms) and the time left it needs. */
    private class Known(val token: String, val expiresAtMs: Long, val neededMs: Long)

    // The last token read; a new token (after a refresh) is decoded once.
    @Volatile private var known: Known? = null

    fun valid(): String {
        val current = try {
            user.currentAccessToken()
        } catch (e: IllegalStateException) {
            throw IOException("the User object was closed", e)
        }
        if (current != null) {
            val k = known?.takeIf { it.token == current } ?: decode(current)?.also { known = it }
            if (k != null && k.expiresAtMs - System.currentTimeMillis() >= k.neededMs) return current
        }
        return blocking { user.validAccessToken(minTtlSecs) }
    }

    /** Its `exp` and `iat`; null when it is not a JWT with those (then every read asks the SDK). */
    private fun decode(token: String): Known? = try {
        val payload = token.split('.').getOrNull(1) ?: return null
        val claims = Json.parseToJsonElement(String(Base64.getUrlDecoder().decode(payload))).jsonObject
        val exp = claims["exp"]?.jsonPrimitive?.longOrNull
        val iat = claims["iat"]?.jsonPrimitive?.longOrNull
        if (exp == null || iat == null) {
            null
        } else {
            val lifetimeMs = (exp - iat).coerceAtLeast(0) * 1000
            val minTtlMs = minTtlSecs * 1000L
            // The SDK's rule: a margin that even a new token could not meet is half its lifetime,
            // so a server issuing tokens shorter than the margin does not cost a refresh per call.
            Known(token, exp * 1000, if (minTtlMs < lifetimeMs) minTtlMs else lifetimeMs / 2)
        }
    } catch (e: IllegalArgumentException) {
        null // not base64url, or not JSON (kotlinx's SerializationException is one)
    }
}

/**
 * The refreshes made after a 401, one per refused token and user. `refreshAccessToken()` alone
 * joins a refresh in flight, but one whose 401 arrives just after another request's refresh
 * ended would refresh again: so a request refused a token the user no longer holds makes none.
 * A session found ended is remembered (one entry per user id: the refused token and the error),
 * so that every request refused that token fails with the same SessionExpired.
 */
internal object Refreshes {
    private class Flight(val rejected: String) {
        val done = CompletableFuture<Unit>()
    }

    private val flights = HashMap<String, Flight>()

    fun afterRejection(user: User, rejected: String) {
        val id = blockingId(user)
        var mine = false
        val flight = synchronized(flights) {
            flights[id]?.takeIf { it.rejected == rejected } ?: run {
                // Replaced meanwhile (another refresh, or a log out: the replay's token says so).
                if (user.currentAccessToken() != rejected) return
                Flight(rejected).also {
                    flights[id] = it
                    mine = true
                }
            }
        }
        if (mine) {
            // Whatever happens, the flight ends: requests waiting for it must not wait forever.
            val failure = try {
                blocking { user.refreshAccessToken() }
                null
            } catch (e: Throwable) {
                e
            }
            finish(id, flight, failure)
        }
        try {
            flight.done.get()
        } catch (e: ExecutionException) {
            when (val cause = e.cause) {
                // A new exception per request, with the SDK's error, so each stack trace is its own.
                is SessionKitIOException -> throw SessionKitIOException(cause.error)
                is IOException -> throw cause
                else -> throw IOException(cause)
            }
        } catch (e: InterruptedException) {
            throw InterruptedIOException("interrupted while waiting for a refresh").apply { initCause(e) }
        }
    }

    // Forgotten when it succeeded or failed for a reason that may pass; kept when the session ended.
    private fun finish(id: String, flight: Flight, failure: Throwable?) {
        val ended = (failure as? SessionKitIOException)?.error is AppException.SessionExpired
        synchronized(flights) {
            if (flights[id] === flight && !ended) flights.remove(id)
        }
        if (failure == null) flight.done.complete(Unit) else flight.done.completeExceptionally(failure)
    }

    private fun blockingId(user: User): String = try {
        user.id()
    } catch (e: IllegalStateException) {
        throw IOException("the User object was closed", e)
    }
}
