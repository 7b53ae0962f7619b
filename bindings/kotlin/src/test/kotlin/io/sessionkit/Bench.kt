package io.sessionkit

import kotlinx.coroutines.runBlocking

/**
 * Not a test: the median time of a synchronous getter (`User.accessToken()`) called from
 * Kotlin, through JNA and the generated bindings. Run with `bindings/kotlin/bench.sh`.
 */
fun main(args: Array<String>) {
    val iterations = args.getOrNull(0)?.toInt() ?: 200_000
    val warmup = iterations / 5
    TestServer.start().use { server ->
        server.app().use { app ->
            val user = runBlocking { app.logIn(Creds.anonymous()) }
            var sink = 0
            repeat(warmup) { sink += user.accessToken()!!.length }
            val samples = LongArray(iterations)
            for (i in 0 until iterations) {
                val start = System.nanoTime()
                val token = user.accessToken()
                samples[i] = System.nanoTime() - start
                sink += token!!.length
            }
            samples.sort()
            fun us(q: Double) = samples[((samples.size - 1) * q).toInt()] / 1000.0
            println("access_token from Kotlin: $iterations calls, token ${user.accessToken()!!.length} chars")
            println("median %.2f µs, p90 %.2f µs, p99 %.2f µs (sink $sink)".format(us(0.5), us(0.9), us(0.99)))
        }
    }
}
