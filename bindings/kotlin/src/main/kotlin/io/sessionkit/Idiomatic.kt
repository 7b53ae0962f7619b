// The thin idiomatic layer over the UniFFI-generated bindings (sessionkit_ffi.kt, generated at
// build time): auth events as a Flow, lambdas for the callbacks, credential shorthands.
// Every generated object (App, User, Subscription, ...) is already AutoCloseable: `.use { }`.
// Java sees this file's functions as static methods of the class SessionKit.
@file:JvmName("SessionKit")

package io.sessionkit

import kotlinx.coroutines.channels.Channel
import kotlinx.coroutines.channels.awaitClose
import kotlinx.coroutines.flow.Flow
import kotlinx.coroutines.flow.buffer
import kotlinx.coroutines.flow.callbackFlow

/**
 * Every auth event of this app, an [AuthEventKind.INITIAL_STATE] first, for as long as the flow
 * is collected. The subscription is made when collection starts and cancelled (and its native
 * handle released) when the collector stops or is cancelled. Events are buffered without bound,
 * so the SDK thread that delivers them never waits for a slow collector.
 */
fun App.authEvents(): Flow<AuthEvent> = eventFlow { listener -> subscribe(listener) }

/** This user's events only, an [AuthEventKind.INITIAL_STATE] first; see [App.authEvents]. */
fun User.authEvents(): Flow<AuthEvent> = eventFlow { listener -> subscribe(listener) }

// Internal, not private: EventsTest checks that the listener is released when collection stops.
internal fun eventFlow(subscribe: (AuthEventListener) -> Subscription): Flow<AuthEvent> =
    callbackFlow {
        val subscription = subscribe(object : AuthEventListener {
            override fun onEvent(event: AuthEvent) {
                // Unlimited buffer: this only fails once the flow is closed, and then the event
                // has nobody left to go to.
                trySend(event)
            }
        })
        awaitClose { subscription.use { it.cancel() } }
    }.buffer(Channel.UNLIMITED)

/** [App.subscribe] with a lambda; close (or cancel) the returned subscription to stop. */
fun App.subscribe(block: (AuthEvent) -> Unit): Subscription = subscribe(listenerOf(block))

/** [User.subscribe] with a lambda; close (or cancel) the returned subscription to stop. */
fun User.subscribe(block: (AuthEvent) -> Unit): Subscription = subscribe(listenerOf(block))

private fun listenerOf(block: (AuthEvent) -> Unit) = object : AuthEventListener {
    override fun onEvent(event: AuthEvent) = block(event)
}

/**
 * Sets the token-expiry callback: called once, on an SDK thread, each time a user's refresh
 * token is rejected (expired, revoked, user disabled or deleted). The user is already logged
 * out when it runs; send them to the login screen.
 */
fun App.onSessionError(handler: (user: User, error: SessionError) -> Unit) =
    setSessionErrorHandler(object : SessionErrorHandler {
        override fun onSessionError(user: User, error: SessionError) = handler(user, error)
    })

/**
 * An access token with at least [minTtlSecs] seconds to live (default: the config's
 * refreshMarginSecs), refreshed first when needed: [User.validAccessToken] with a default
 * argument.
 *
 * @throws AppException.InvalidArgument if [minTtlSecs] is negative (from the FFI).
 * @throws AppException as [User.validAccessToken] does (SessionExpired, Network, ...).
 */
suspend fun User.freshAccessToken(minTtlSecs: Int? = null): String = validAccessToken(minTtlSecs)

/**
 * Shorthands for every provider's credentials (static methods for Java: `Creds.anonymous()`).
 * Each works for [App.logIn] and [User.linkCredentials]; their `toString()` never shows the
 * secret.
 */
object Creds {
    /** Anonymous credentials; [reuse]: return the logged-in anonymous user if there is one. */
    @JvmStatic @JvmOverloads
    fun anonymous(reuse: Boolean = true): Credentials = Credentials.Anonymous(reuse)

    /** Email/password credentials. */
    @JvmStatic
    fun emailPassword(email: String, password: String): Credentials =
        Credentials.EmailPassword(email, password)

    /**
     * The one-time code the server mailed to [email] (ask for it with `app.emailOtp().send(email)`),
     * as the user typed it: provider `email-otp` (#23). Logs into the user with that address, or
     * a new one; linked, it adds the address to the current user. A wrong code fails with
     * AppException.Service code `InvalidCode`, no live code (expired, used, voided after too many
     * wrong tries, never sent) with `CodeExpired`, both HTTP 401. `toString()` shows the address,
     * never the code.
     */
    @JvmStatic
    fun emailOtp(email: String, code: String): Credentials = Credentials.EmailOtp(email, code)

    /** An API key's credentials. */
    @JvmStatic
    fun apiKey(key: String): Credentials = Credentials.ApiKey(key)

    /** A JWT signed by the app's own identity provider. */
    @JvmStatic
    fun jwt(token: String): Credentials = Credentials.Jwt(token)

    /** A custom function's payload, a JSON object text. */
    @JvmStatic
    fun function(payloadJson: String): Credentials = Credentials.Function(payloadJson)

    // Social sign-in (#14). The app gets the token from the provider's own sign-in SDK; the
    // server checks it with the provider (signature against its published keys, audience = the
    // client ids it is configured with, issuer, expiry) and logs in the provider's subject, so a
    // later login without an email (Apple sends it only the first time) is the same user. A
    // token the server does not accept fails with AppException.Service, code "AuthError".

    /**
     * A Google ID token (a JWT, e.g. `GoogleIdTokenCredential.idToken` from Android's Credential
     * Manager): provider `oauth2-google`. Realm's `Credentials.google(token, GoogleAuthType.ID_TOKEN)`.
     */
    @JvmStatic
    fun googleIdToken(idToken: String): Credentials = Credentials.GoogleIdToken(idToken)

    /**
     * A Google server auth code (`serverAuthCode` of Google Sign-In, requested for the server's
     * client id), which the server exchanges with Google for an ID token using its client secret;
     * a code works once. Provider `oauth2-google`. Realm's
     * `Credentials.google(code, GoogleAuthType.AUTH_CODE)`.
     */
    @JvmStatic
    fun googleAuthCode(authCode: String): Credentials = Credentials.GoogleAuthCode(authCode)

    /**
     * A Sign in with Apple identity token (the JWT `identityToken`, as text): provider
     * `oauth2-apple`. Realm's `Credentials.apple(idToken)`.
     */
    @JvmStatic
    fun apple(idToken: String): Credentials = Credentials.AppleIdToken(idToken)

    /**
     * A Facebook Login user access token (`AccessToken.getCurrentAccessToken().token`), which
     * the server checks with Facebook's Graph API (issued to the app it is configured with):
     * provider `oauth2-facebook`. Realm's `Credentials.facebook(accessToken)`.
     */
    @JvmStatic
    fun facebook(accessToken: String): Credentials = Credentials.FacebookAccessToken(accessToken)

    /**
     * An ID token of an OpenID Connect issuer that the server knows by the name [provider] (its
     * `[app.providers.oidc.<provider>]` table): provider `oidc-<provider>`. Not in the Realm SDKs,
     * which reach other issuers through custom JWT credentials ([jwt]).
     */
    @JvmStatic
    fun oidc(provider: String, idToken: String): Credentials = Credentials.OidcIdToken(provider, idToken)
}

/**
 * An [AppConfig] with every optional field at its default (API.md, Values), for Java, which
 * cannot leave out Kotlin's default arguments: `SessionKit.appConfig(id, url, storage)`, then
 * the setters (`setRequestTimeoutMs(5000)`, ...). Kotlin code calls the AppConfig constructor
 * with named arguments instead. Nothing is checked here: [App] checks the config.
 */
@JvmOverloads
fun appConfig(appId: String, baseUrl: String, storage: StorageConfig = StorageConfig.InMemory): AppConfig =
    AppConfig(appId = appId, baseUrl = baseUrl, storage = storage)

/** A [SessionStore] from two lambdas (say, over Android's EncryptedSharedPreferences). */
fun sessionStore(loader: () -> ByteArray?, saver: (ByteArray) -> Unit): SessionStore =
    object : SessionStore {
        override fun load(): ByteArray? = loader()
        override fun save(bytes: ByteArray) = saver(bytes)
    }

/**
 * Seconds the server asked to wait before trying again: the `Retry-After` of its answer (RFC
 * 9110 section 10.2.3), e.g. a login lockout's; only [AppException.Service] carries one (its
 * `retryAfterSecs` property), every other variant answers null. Lets an app that catches
 * [AppException] say "try again in N minutes" without a `when` over the variants.
 */
val AppException.retryAfterSecs: Long?
    get() = (this as? AppException.Service)?.retryAfterSecs
