package io.sessionkit

import kotlinx.coroutines.runBlocking

/**
 * Not a test: the median time of a synchronous getter called from Kotlin, both the generated
 * `User.accessToken()` (UniFFI over JNA) and the Kotlin layer's `User.currentAccessToken()`
 * (one direct native call); and the OkHttp interceptor's token read. Run with
 * `bindings/kotlin/bench.sh`.
 */
fun main(args: Array<String>) {
    val iterations = args.getOrNull(0)?.toInt() ?: 200_000
    TestServer.start().use { server ->
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
