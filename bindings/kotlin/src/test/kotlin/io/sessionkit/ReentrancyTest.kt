package io.sessionkit

import java.util.Collections
import kotlinx.coroutines.async
import kotlinx.coroutines.awaitAll
import kotlinx.coroutines.coroutineScope
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeout
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test

/** Callbacks run on SDK threads and may call the SDK synchronously; it completes (#12, 18). */
class ReentrancyTest {
    @Test
    fun `listeners that block on SDK calls, many at once, neither hang nor starve the SDK`() = withServer { server ->
        val app = server.app()
        val results = Collections.synchronizedList(mutableListOf<String>())
        val sub = app.subscribe { event ->
            if (event.kind == AuthEventKind.TOKEN_REFRESHED) {
                // A blocking call from the SDK's own thread.
                results += runBlocking { app.currentUser()!!.callFunction("sum", "[1, 2]").trim() }
            }
        }
        val user = app.logIn(Creds.anonymous(reuse = false))
        withTimeout(30_000) {
            repeat(4) {
                coroutineScope {
                    (0 until 8).map { async { user.refreshAccessToken() } }.awaitAll()
                }
            }
            // Another App still gets its login through.
            server.app().use { it.logIn(Creds.anonymous(reuse = false)) }
        }
        assertTrue(results.isNotEmpty())
        assertEquals(setOf("3"), results.toSet())
        sub.close()
        app.close()
    }

    @Test
    fun `the token-expiry callback may log in synchronously`() = withServer { server ->
        val app = server.app()
        val relogged = Collections.synchronizedList(mutableListOf<String>())
        app.onSessionError { _, _ ->
            relogged += runBlocking { app.logIn(Creds.anonymous(reuse = false)).id() }
        }
        val user = app.logIn(Creds.anonymous(reuse = false))
        server.revokeSessions(user.id())
        withTimeout(30_000) {
            runCatching { user.refreshAccessToken() }
            waitFor(what = "the handler's login") { relogged.isNotEmpty() }
        }
        assertEquals(relogged.single(), app.currentUser()!!.id())
        app.close()
    }
}
