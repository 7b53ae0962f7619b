package io.sessionkit

import kotlinx.coroutines.runBlocking
import okhttp3.Request

/**
 * Not a test: the median time of a synchronous getter called from Kotlin, both the generated
 * `User.accessToken()` (UniFFI over JNA) and the Kotlin layer's `User.currentAccessToken()`
 * (one direct native call); the OkHttp interceptor's token read; and, for a session bound with
 * DPoP (#29), `User.dpopProof()` (a new signed proof per request: UniFFI over JNA, then an ES256
 * signature) and the interceptor's token and proof together. Run with `bindings/kotlin/bench.sh`.
 */
fun main(args: Array<String>) {
    val iterations = args.getOrNull(0)?.toInt() ?: 200_000
    // DPoP optional: the bearer user below is served as before, the DPoP App's session is bound.
    TestServer.start(dpop = "optional").use { server ->
        server.app().use { app ->
            val user = runBlocking { app.logIn(Creds.anonymous()) }
            check(user.currentAccessToken() == user.accessToken())
            println("token ${user.accessToken()!!.length} chars, $iterations timed calls each")
            measure("accessToken() (generated)", iterations) { user.accessToken()!!.length }
            measure("currentAccessToken() (direct)", iterations) { user.currentAccessToken()!!.length }
            // The OkHttp interceptor's token (#15): the direct read plus its claims check, against
            // the generated async validAccessToken() that it falls back to when the token is due.
            val tokens = io.sessionkit.okhttp.Tokens(user, 60)
            measure("okhttp interceptor's token (fresh)", iterations) { tokens.valid().length }
            measure("validAccessToken(60) (generated, runBlocking)", iterations / 10) {
                runBlocking { user.validAccessToken(60) }.length
            }
            // The whole Authorization step for a bearer session: no proof call after the first.
            val request = Request.Builder().url("${server.baseUrl}/api/client/v2.0/auth/profile").build()
            measure("okhttp interceptor's token and header (bearer session)", iterations) {
                tokens.authorize(request, tokens.valid()).header("Authorization")!!.length
            }
        }
        App(server.config(dpop = true)).use { app ->
            val user = runBlocking { app.logIn(Creds.anonymous()) }
            checkNotNull(user.dpopThumbprint()) { "the session is not bound" }
            val token = user.accessToken()!!
            val url = "${server.baseUrl}/api/client/v2.0/auth/profile"
            measure("dpopProof(GET, url, token) (generated, bound session)", iterations / 10) {
                user.dpopProof("GET", url, token)!!.length
            }
            val tokens = io.sessionkit.okhttp.Tokens(user, 60)
            val request = Request.Builder().url(url).build()
            measure("okhttp interceptor's token and proof (bound session)", iterations / 10) {
                tokens.authorize(request, tokens.valid()).header("DPoP")!!.length
            }
        }
    }
}

/** Times each call on its own (System.nanoTime around it) after a fifth as many warm-up calls. */
private fun measure(name: String, iterations: Int, call: () -> Int) {
    var sink = 0
    repeat(iterations / 5) { sink += call() }
    val samples = LongArray(iterations)
    for (i in 0 until iterations) {
        val start = System.nanoTime()
        sink += call()
        samples[i] = System.nanoTime() - start
    }
    samples.sort()
    fun us(q: Double) = samples[((samples.size - 1) * q).toInt()] / 1000.0
    println("%s: median %.2f µs, p90 %.2f µs, p99 %.2f µs (sink %d)".format(name, us(0.5), us(0.9), us(0.99), sink))
}
