package io.sessionkit

import com.sun.net.httpserver.HttpServer
import io.sessionkit.okhttp.SessionKitIOException
import io.sessionkit.okhttp.authorizeWith
import io.sessionkit.okhttp.isLoopback
import java.net.InetSocketAddress
import java.util.Collections
import java.util.concurrent.Callable
import java.util.concurrent.Executors
import java.util.concurrent.atomic.AtomicInteger
import java.io.IOException
import okhttp3.Call
import okhttp3.Callback
import okhttp3.MediaType.Companion.toMediaType
import okhttp3.OkHttpClient
import okhttp3.Request
import okhttp3.RequestBody.Companion.toRequestBody
import okhttp3.Response
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertFalse
import org.junit.jupiter.api.Assertions.assertNotEquals
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.assertThrows

/**
 * io.sessionkit.okhttp (#15): the Interceptor and Authenticator against the real server, whose
 * `GET /api/client/v2.0/auth/profile` answers 200 to a valid access token and 401 otherwise, and
 * against a local API (the JDK's HttpServer) that checks the bearer token with that endpoint and
 * records what each attempt carried. Refreshes are counted with the server's admin metrics.
 */
class OkHttpTest {
    private val json = "application/json".toMediaType()

    /** One attempt as the local API saw it. */
    data class Attempt(val token: String, val body: String, val status: Int)

    /**
     * A local API on loopback: answers 200 echoing the body when the bearer token is valid at
     * [server] (or 401 always, with [alwaysRefuse]), recording every attempt. With
     * [staggerRefusals] the n-th 401 is answered n × 100 ms late, so that some arrive after the
     * refresh the first one caused has ended (a refresh that merely joins one in flight would
     * then be made again).
     */
    class LocalApi(
        private val server: TestServer,
        alwaysRefuse: Boolean = false,
        staggerRefusals: Boolean = false,
    ) : AutoCloseable {
        private val refusals = AtomicInteger()
        val attempts: MutableList<Attempt> = Collections.synchronizedList(mutableListOf())
        private val http = HttpServer.create(InetSocketAddress("127.0.0.1", 0), 0)
        val url: String

        init {
            http.createContext("/echo") { exchange ->
                val token = exchange.requestHeaders.getFirst("Authorization").orEmpty().removePrefix("Bearer ")
                val body = exchange.requestBody.readBytes().decodeToString()
                val valid = !alwaysRefuse &&
                    server.http("GET", "${server.baseUrl}/api/client/v2.0/auth/profile", token = token).first == 200
                val status = if (valid) 200 else 401
                if (!valid && staggerRefusals) Thread.sleep(100L * refusals.getAndIncrement())
                attempts.add(Attempt(token, body, status))
                val answer = if (valid) body.toByteArray() else ByteArray(0)
                exchange.sendResponseHeaders(status, if (answer.isEmpty()) -1 else answer.size.toLong())
                exchange.responseBody.use { it.write(answer) }
            }
            http.executor = Executors.newFixedThreadPool(8)
            http.start()
            url = "http://127.0.0.1:${http.address.port}/echo"
        }

        override fun close() {
            http.stop(0)
            (http.executor as java.util.concurrent.ExecutorService).shutdownNow()
        }
    }

    private fun profileRequest(server: TestServer) =
        Request.Builder().url("${server.baseUrl}/api/client/v2.0/auth/profile").build()

    /** Runs [n] copies of [block] at once; their results. */
    private fun <T> concurrently(n: Int, block: () -> T): List<Result<T>> {
        val pool = Executors.newFixedThreadPool(n)
        try {
            val start = java.util.concurrent.CountDownLatch(1)
            val futures = (1..n).map { pool.submit(Callable { start.await(); runCatching(block) }) }
            start.countDown()
            return futures.map { it.get() }
        } finally {
            pool.shutdownNow()
        }
    }

    @Test
    fun `every request carries the stored token while it is fresh, with no refresh`() = withServer { server ->
        server.app().use { app ->
            val user = app.logIn(Creds.anonymous())
            val client = OkHttpClient.Builder().authorizeWith(user).build()
            val before = server.refreshCount()
            repeat(20) {
                // An Authorization header of the caller's own is replaced.
                val request = profileRequest(server).newBuilder().header("Authorization", "Bearer stale").build()
                client.newCall(request).execute().use { assertEquals(200, it.code) }
            }
            assertEquals(before, server.refreshCount())
            // Without the interceptor the same endpoint refuses: it does check the token.
            OkHttpClient().newCall(profileRequest(server)).execute().use { assertEquals(401, it.code) }
        }
    }

    @Test
    fun `a 401 refreshes once and replays the request with its body`() = withServer { server ->
        LocalApi(server).use { api ->
            server.app().use { app ->
                val user = app.logIn(Creds.anonymous())
                val client = OkHttpClient.Builder().authorizeWith(user).build()
                val old = user.accessToken()!!
                // The server's clock passes the token's end; the client's does not, so it sends it.
                server.advanceClock(3600)
                val before = server.refreshCount()
                val post = Request.Builder().url(api.url).post("""{"order":42}""".toRequestBody(json)).build()
                client.newCall(post).execute().use { response ->
                    assertEquals(200, response.code)
                    assertEquals("""{"order":42}""", response.body.string())
                }
                assertEquals(before + 1, server.refreshCount())
                val attempts = api.attempts.toList()
                assertEquals(2, attempts.size, "$attempts")
                assertEquals(Attempt(old, """{"order":42}""", 401), attempts[0])
                assertEquals("""{"order":42}""", attempts[1].body)
                assertEquals(200, attempts[1].status)
                assertNotEquals(old, attempts[1].token)
                assertEquals(user.accessToken(), attempts[1].token)
            }
        }
    }

    @Test
    fun `concurrent requests refused the same token share one refresh`() = withServer { server ->
        LocalApi(server, staggerRefusals = true).use { api ->
            server.app().use { app ->
                val user = app.logIn(Creds.anonymous())
                val client = OkHttpClient.Builder().authorizeWith(user).build()
                server.advanceClock(3600)
                val before = server.refreshCount()
                val results = concurrently(8) {
                    client.newCall(Request.Builder().url(api.url).post("x".toRequestBody(json)).build())
                        .execute().use { it.code }
                }
                assertEquals(List(8) { 200 }, results.map { it.getOrThrow() })
                assertEquals(before + 1, server.refreshCount())
                assertEquals(8, api.attempts.count { it.status == 200 })
                assertEquals(8, api.attempts.count { it.status == 401 })
            }
        }
    }

    @Test
    fun `a token due for refresh is refreshed before sending, once for concurrent requests`() =
        withServer(access = 4) { server ->
            LocalApi(server).use { api ->
                server.app().use { app ->
                    val user = app.logIn(Creds.anonymous())
                    val client = OkHttpClient.Builder().authorizeWith(user).build()
                    val old = user.accessToken()
                    // A 4 s token with the 60 s margin is due at half its life (the SDK's rule);
                    // the new one stays fresh for 2 s, however slowly the 8 requests go out.
                    Thread.sleep(2_200)
                    val before = server.refreshCount()
                    val results = concurrently(8) {
                        client.newCall(Request.Builder().url(api.url).build()).execute().use { it.code }
                    }
                    assertEquals(List(8) { 200 }, results.map { it.getOrThrow() })
                    assertEquals(before + 1, server.refreshCount())
                    // Refreshed before sending: the API never saw the old token, nor a 401.
                    assertTrue(api.attempts.none { it.token == old || it.status == 401 }, "${api.attempts}")
                }
            }
        }

    @Test
    fun `a second 401 is returned as the response, never a loop`() = withServer { server ->
        LocalApi(server, alwaysRefuse = true).use { api ->
            server.app().use { app ->
                val user = app.logIn(Creds.anonymous())
                val client = OkHttpClient.Builder().authorizeWith(user).build()
                val before = server.refreshCount()
                client.newCall(Request.Builder().url(api.url).post("body".toRequestBody(json)).build())
                    .execute().use { assertEquals(401, it.code) }
                assertEquals(2, api.attempts.size, "${api.attempts}")
                assertEquals(listOf("body", "body"), api.attempts.map { it.body })
                assertEquals(before + 1, server.refreshCount())
            }
        }
    }

    @Test
    fun `an ended session fails every request with SessionExpired and calls the handler once`() =
        withServer { server ->
            LocalApi(server, staggerRefusals = true).use { api ->
                server.app().use { app ->
                    val handled = AtomicInteger()
                    app.onSessionError { _, _ -> handled.incrementAndGet() }
                    // Not anonymous: an anonymous user whose session ends is removed, not logged out.
                    val user = app.emailUser()
                    val client = OkHttpClient.Builder().authorizeWith(user).build()
                    server.revokeSessions(user.id())
                    server.advanceClock(3600)
                    val results = concurrently(6) {
                        client.newCall(Request.Builder().url(api.url).build()).execute().use { it.code }
                    }
                    for (r in results) {
                        val e = r.exceptionOrNull()
                        assertTrue(e is SessionKitIOException, "expected SessionKitIOException, got $r")
                        val error = (e as SessionKitIOException).error
                        assertTrue(error is AppException.SessionExpired, "got $error")
                        assertEquals(SessionErrorKind.SESSION_REVOKED, (error as AppException.SessionExpired).kind)
                    }
                    assertEquals(1, handled.get())
                    assertEquals(UserState.LOGGED_OUT, user.state())
                    // Later requests fail before sending: there is no token left.
                    val later = assertThrows<SessionKitIOException> {
                        client.newCall(Request.Builder().url(api.url).build()).execute()
                    }
                    assertTrue(later.error is AppException.ClientUserNotLoggedIn, "${later.error}")
                    assertEquals(1, handled.get())
                }
            }
        }

    @Test
    fun `an enqueued call on an ended session fails in onFailure with SessionExpired`() = withServer { server ->
        LocalApi(server).use { api ->
            server.app().use { app ->
                val user = app.emailUser()
                val client = OkHttpClient.Builder().authorizeWith(user).build()
                server.revokeSessions(user.id())
                server.advanceClock(3600)
                // OkHttp hands an enqueued call's IOException to onFailure (anything else would be
                // thrown on its dispatcher thread): the SDK's error must arrive there.
                val failure = java.util.concurrent.CompletableFuture<IOException>()
                client.newCall(Request.Builder().url(api.url).build()).enqueue(object : Callback {
                    override fun onFailure(call: Call, e: IOException) { failure.complete(e) }
                    override fun onResponse(call: Call, response: Response) {
                        response.close()
                        failure.completeExceptionally(AssertionError("got HTTP ${response.code}"))
                    }
                })
                val e = failure.get(10, java.util.concurrent.TimeUnit.SECONDS)
                assertTrue(e is SessionKitIOException && e.error is AppException.SessionExpired, "$e")
            }
        }
    }

    @Test
    fun `plain http to a host that is not loopback is refused before sending`() = withServer { server ->
        server.app().use { app ->
            val user = app.logIn(Creds.anonymous())
            val client = OkHttpClient.Builder().authorizeWith(user).build()
            val e = assertThrows<SessionKitIOException> {
                client.newCall(Request.Builder().url("http://api.example.com/orders?key=secret").build()).execute()
            }
            assertTrue(e.error is AppException.InsecureUrl, "${e.error}")
            assertFalse(e.message!!.contains("secret"), e.message)
            assertFalse(e.message!!.contains(user.accessToken()!!))
            assertTrue(isLoopback("127.0.0.1") && isLoopback("localhost") && isLoopback("::1") && isLoopback("[::1]"))
            assertFalse(isLoopback("127.example.com") || isLoopback("10.0.0.1") || isLoopback("localhost.example.com"))
        }
    }
}
