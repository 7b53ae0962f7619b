// Calling the app's own API with the user's session through OkHttp (#15): an Interceptor that
// sets `Authorization: Bearer <access token>` (or, for a session bound with DPoP, #29,
// `Authorization: DPoP <access token>` and a `DPoP` proof, answering a nonce challenge once) and
// an Authenticator that, on a 401, refreshes once and replays once. OkHttp is an optional
// dependency of this jar: only apps that use these classes need it on their classpath. The Swift
// counterpart is URLSession.data(for:user:).
// Java sees this file's functions as static methods of SessionKitOkHttp:
// `SessionKitOkHttp.authorizeWith(new OkHttpClient.Builder(), user).build()`.
@file:JvmName("SessionKitOkHttp")

package io.sessionkit.okhttp

import io.sessionkit.AppException
import io.sessionkit.User
import io.sessionkit.currentAccessToken
import io.sessionkit.directDpopProof
import java.io.IOException
import java.io.InterruptedIOException
import java.util.Base64
import java.util.concurrent.CompletableFuture
import java.util.concurrent.ConcurrentHashMap
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
 * that is not a loopback address), [AppException.Storage] when the session is bound with DPoP and
 * no proof could be signed (the app's `DpopSigner` failed: a locked device; the session is kept).
 * The message is the error's sentence; it never holds a token or a proof.
 */
class SessionKitIOException(val error: AppException) : IOException(error.message, error)

/**
 * Installs [SessionKitInterceptor] and [SessionKitAuthenticator] for [user]: every call of the
 * built client carries the user's access token, refreshed when due or refused, and a DPoP proof
 * when the user's session is bound to a key (`AppConfig.dpop`, #29).
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
 * a new token could not meet becomes half a token's lifetime, as in the SDK).
 *
 * When the user's session is bound to a key with DPoP (`AppConfig(dpop = true)` on a server that
 * binds it, #29; `user.dpopThumbprint()` is then not null), every request instead carries
 * `Authorization: DPoP <token>` and a `DPoP` header (replacing any it had) with a new proof for
 * that request: `user.dpopProof(method, url, token, nonce)`, signed by the session's key (RFC 9449
 * section 7: a copied token is useless without it). A bearer session costs no proof call: the
 * first request with each new token learns that it needs none.
 *
 * - **Nonce challenge.** When the API answers a request with a proof with 401 (or 400) and
 *   `WWW-Authenticate` names `use_dpop_nonce` (RFC 9449 section 9: the API wants its nonce in
 *   proofs, e.g. because the device clock is off), the request is sent once more, body included
 *   (a one-shot body cannot be: its answer is returned), with a new proof carrying the
 *   `DPoP-Nonce` the answer gave, without refreshing. That nonce, and any later `DPoP-Nonce` an
 *   answer brings, is kept for its origin (scheme, host and port) and put in that origin's next
 *   proofs. A second challenge is returned as the response.
 * - Every other 401 goes to [SessionKitAuthenticator], whose replay carries a fresh proof for
 *   the new token.
 *
 * How the token is read:
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
 * session ended ([AppException.SessionExpired]), logged out, refresh impossible; when no proof
 * could be signed ([AppException.Storage]: the app's `DpopSigner` failed; the session is kept);
 * or, unless [allowInsecureHttp], when the URL is plain http to a host that is not a loopback
 * address ([AppException.InsecureUrl]: the token must not cross a network in clear, the rule of
 * the SDK's own `allowInsecureHttp`). Never logs the token or the proof.
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
        val sent = tokens.authorize(request, tokens.valid())
        val response = chain.proceed(sent)
        if (!sent.hasProof()) return response
        val nonce = Nonces.learn(response) ?: return response
        // The API asked for its nonce in the proof: once more with it, no refresh (RFC 9449
        // section 9). A one-shot body cannot be sent again: its answer is returned.
        if (!isNonceChallenge(response) || request.body?.isOneShot() == true) return response
        response.close()
        return chain.proceed(tokens.authorize(request, tokens.valid(), nonce))
    }
}

/**
 * The OkHttp `Authenticator` for the API's 401 answers to requests that carry an access token
 * (`Bearer`, or `DPoP` with a proof, from [SessionKitInterceptor]): the token is taken as no longer
 * accepted, refreshed once (`user.refreshAccessToken()`), and the request is sent once more, body
 * included (OkHttp sends it again; a one-shot body cannot be, and its 401 is returned), with the
 * new token (and a new proof for it, when the session is bound with DPoP).
 *
 * - Requests refused the same token share one refresh; none is made when the user holds another
 *   token by now (it was replaced meanwhile), the replay then takes that one.
 * - A second 401 for the same call is returned as the response: never a loop.
 * - When the refresh token is rejected, the call fails with a [SessionKitIOException] holding
 *   [AppException.SessionExpired] (every call refused that token gets it); the App's session
 *   error handler has then been called once, by the SDK, and the user is logged out. Other
 *   refresh failures fail the call the same way with their own [AppException].
 * - A 401 to a request without such a token is left alone (null: the response is returned), and
 *   so is a DPoP nonce challenge (`WWW-Authenticate` naming `use_dpop_nonce` with a `DPoP-Nonce`):
 *   the token is fine, [SessionKitInterceptor] sends the request again with the nonce.
 */
class SessionKitAuthenticator internal constructor(private val tokens: Tokens) : Authenticator {
    /** See the class; [minTtlSecs] is the replay's token time left, as [SessionKitInterceptor]'s. */
    @JvmOverloads
    constructor(user: User, minTtlSecs: Int = DEFAULT_MIN_TTL_SECS) : this(Tokens(user, minTtlSecs))

    override fun authenticate(route: Route?, response: Response): Request? {
        if (response.code != 401 || isNonceChallenge(response)) return null
        val sent = response.request.header("Authorization")?.let { sentToken(it) } ?: return null
        // Already answered a 401 in this call: one refresh and one replay, no more.
        if (generateSequence(response.priorResponse) { it.priorResponse }.any { it.code == 401 }) return null
        Refreshes.afterRejection(tokens.user, sent)
        // The refused request's proof is for the old token: a new one, or none for a bearer token.
        return tokens.authorize(response.request.newBuilder().removeHeader(DPOP).build(), tokens.valid())
    }
}

private const val BEARER = "Bearer "
private const val DPOP_SCHEME = "DPoP "
private const val DPOP = "DPoP"

/** The access token of an `Authorization` header this file set. */
private fun sentToken(authorization: String): String? = when {
    authorization.startsWith(BEARER) -> authorization.removePrefix(BEARER)
    authorization.startsWith(DPOP_SCHEME) -> authorization.removePrefix(DPOP_SCHEME)
    else -> null
}

/** Whether [Tokens.authorize] gave this request a proof (its scheme is then `DPoP`). */
private fun Request.hasProof(): Boolean = header("Authorization")?.startsWith(DPOP_SCHEME) == true

/**
 * A DPoP nonce challenge (RFC 9449 section 9): 401 (an API) or 400 (a token endpoint) whose
 * `WWW-Authenticate` names `use_dpop_nonce`, with the nonce in `DPoP-Nonce`.
 */
private fun isNonceChallenge(response: Response): Boolean =
    (response.code == 401 || response.code == 400) &&
        response.header(Nonces.HEADER) != null &&
        response.headers("WWW-Authenticate").any { it.contains("use_dpop_nonce") }

/**
 * The latest `DPoP-Nonce` each origin (scheme, host, port) gave, for its next proofs (RFC 9449
 * section 8.2: a server may send a new one with any answer). Shared by every client of the
 * process: the nonce is the server's, not the user's. Nonces are not secrets. Bounded: an app
 * talks to few origins; past [MAX] of them every nonce is forgotten (the next challenge of each
 * origin teaches its nonce again).
 */
internal object Nonces {
    const val HEADER = "DPoP-Nonce"
    private const val MAX = 64
    private val byOrigin = ConcurrentHashMap<String, String>()

    /** The nonce to put in a proof for [url], if its origin gave one. */
    fun of(url: HttpUrl): String? = if (byOrigin.isEmpty()) null else byOrigin[origin(url)]

    /** Keeps the `DPoP-Nonce` of [response] for its request's origin; returns it (null: none). */
    fun learn(response: Response): String? {
        val nonce = response.header(HEADER)?.takeIf { it.isNotEmpty() } ?: return null
        if (byOrigin.size >= MAX) byOrigin.clear()
        byOrigin[origin(response.request.url)] = nonce
        return nonce
    }

    private fun origin(url: HttpUrl) = "${url.scheme}://${url.host}:${url.port}"
}

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

    /**
     * A token read once, with when it expires (device clock, ms) and the time left it needs;
     * [bearer] once a proof was asked for it and none came (the session is not bound: no proof
     * call for its later requests).
     */
    private class Known(val token: String, val expiresAtMs: Long, val neededMs: Long) {
        @Volatile var bearer = false
    }

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

    /**
     * [request] with [token]: `Authorization: DPoP` and a new `DPoP` proof (with [nonce], or the
     * one its origin gave last) when the session is bound, else `Authorization: Bearer`.
     */
    fun authorize(request: Request, token: String, nonce: String? = Nonces.of(request.url)): Request {
        val k = known?.takeIf { it.token == token }
        if (k?.bearer != true) {
            val proof = try {
                user.directDpopProof(request.method, request.url.toString(), token, nonce)
            } catch (e: AppException) {
                throw SessionKitIOException(e)
            } catch (e: IllegalStateException) {
                throw IOException("the User object was closed", e)
            }
            if (proof != null) {
                return request.newBuilder().header("Authorization", DPOP_SCHEME + token).header(DPOP, proof).build()
            }
            k?.bearer = true
        }
        return request.newBuilder().header("Authorization", BEARER + token).build()
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
