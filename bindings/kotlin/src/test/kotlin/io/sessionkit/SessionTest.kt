package io.sessionkit

import java.util.Collections
import kotlinx.coroutines.async
import kotlinx.coroutines.awaitAll
import kotlinx.coroutines.coroutineScope
import kotlinx.coroutines.delay
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertFalse
import org.junit.jupiter.api.Assertions.assertNotEquals
import org.junit.jupiter.api.Assertions.assertNull
import org.junit.jupiter.api.Assertions.assertSame
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.assertThrows

/** User switching, refresh and the token-expiry callback. */
class SessionTest {
    @Test
    fun `switch user and log out`() = withServer { server ->
        val app = server.app()
        val ada = app.emailUser()
        val bob = app.emailUser()
        assertEquals(bob, app.currentUser())
        app.switchUser(ada)
        assertEquals(ada, app.currentUser())
        ada.logOut()
        assertEquals(UserState.LOGGED_OUT, ada.state())
        assertNull(ada.accessToken())
        assertNull(ada.refreshToken())
        assertEquals(bob, app.currentUser()) // the most recently used logged-in user takes over
        assertThrows<AppException.ClientUserNotLoggedIn> { app.switchUser(ada) }
        assertEquals(2, app.allUsers().size)
        app.removeUser(ada)
        assertEquals(listOf(bob.id()), app.allUsers().map { it.id() })
        assertEquals(UserState.REMOVED, ada.state())
        val err = assertThrows<AppException> { app.switchUser(ada) }
        assertTrue(err is AppException.ClientUserNotFound || err is AppException.ClientUserNotLoggedIn, "$err")
    }

    @Test
    fun `anonymous log out removes the user`() = withServer { server ->
        val app = server.app()
        val anon = app.logIn(Creds.anonymous())
        anon.logOut()
        assertEquals(UserState.REMOVED, anon.state())
        assertNull(app.currentUser())
        assertEquals(emptyList<User>(), app.allUsers())
    }

    @Test
    fun `delete user`() = withServer { server ->
        val app = server.app()
        val user = app.emailUser()
        assertEquals(200, server.admin("GET", "/users/${user.id()}").first)
        app.deleteUser(user)
        assertEquals(emptyList<User>(), app.allUsers())
        assertEquals(404, server.admin("GET", "/users/${user.id()}").first)
    }

    @Test
    fun `valid and forced refresh`() = withServer { server ->
        val user = server.app().logIn(Creds.anonymous())
        val first = user.accessToken()
        // Fresh from login: handed out as it is, no refresh.
        assertEquals(first, user.freshAccessToken())
        assertEquals(0, server.refreshCount())
        // Forced: one request each time, a new token each time.
        user.refreshAccessToken()
        assertEquals(1, server.refreshCount())
        val second = user.accessToken()
        assertNotEquals(first, second)
        assertEquals(second, user.freshAccessToken())
        user.refreshAccessToken()
        assertEquals(2, server.refreshCount())
        assertFalse(user.accessToken() in listOf(first, second))
        // A minimum lifetime no token of this server can meet counts as half its life, so it
        // does not cause a refresh on every call.
        assertEquals(user.accessToken(), user.freshAccessToken(minTtlSecs = 7200))
        assertEquals(2, server.refreshCount())
    }

    // Whenever each caller arrives, exactly one request is made: callers that come after the
    // refresh find a token that is no longer expiring.
    @Test
    fun `concurrent callers of an expiring token share one refresh`() =
        withServer(access = 4) { server ->
            val user = server.app().logIn(Creds.anonymous())
            val first = user.accessToken()
            assertEquals(first, user.validAccessToken())
            assertEquals(0, server.refreshCount())
            // A 4 s token counts as expiring once half its life is gone (the margin is longer);
            // 2 s on either side of each check, so that a busy machine cannot make a fresh
            // token due.
            delay(2_200)
            val tokens = coroutineScope { (1..8).map { async { user.freshAccessToken() } }.awaitAll() }
            assertEquals(1, server.refreshCount())
            assertEquals(setOf(user.accessToken()), tokens.toSet())
            assertNotEquals(first, tokens[0])
        }

    private class Expiry(val app: App, val user: User) {
        val calls: MutableList<Triple<User, SessionError, String>> = Collections.synchronizedList(mutableListOf())
    }

    private suspend fun expirySetup(server: TestServer): Expiry {
        val app = server.app()
        val user = app.emailUser()
        return Expiry(app, user).also { e ->
            app.onSessionError { u, error -> e.calls.add(Triple(u, error, Thread.currentThread().name)) }
        }
    }

    @Test
    fun `expiry callback when the refresh token has expired`() = withServer(refresh = 3600) { server ->
        val e = expirySetup(server)
        server.advanceClock(3601) // the refresh token's life is over on the server
        val err = assertThrows<AppException.SessionExpired> { e.user.refreshAccessToken() }
        assertEquals(SessionErrorKind.TOKEN_EXPIRED, err.kind)
        waitFor { e.calls.size == 1 }
        val (handed, error, _) = e.calls[0]
        assertEquals(e.user, handed)
        assertEquals(UserState.LOGGED_OUT, handed.state())
        assertEquals(e.user.id(), error.userId)
        assertEquals(SessionErrorKind.TOKEN_EXPIRED, error.kind)
        assertNull(e.app.currentUser())
        // Logged out now: no second refresh, no second callback.
        assertThrows<AppException.ClientUserNotLoggedIn> { e.user.validAccessToken() }
        delay(50)
        assertEquals(1, e.calls.size)
    }

    @Test
    fun `expiry callback on a revoked session, through valid access token`() =
        withServer(access = 1) { server ->
            val e = expirySetup(server)
            server.revokeSessions(e.user.id())
            delay(600) // the 1 s access token now needs a refresh, which the server refuses
            val err = assertThrows<AppException.SessionExpired> { e.user.freshAccessToken() }
            assertEquals(SessionErrorKind.SESSION_REVOKED, err.kind)
            waitFor { e.calls.size == 1 }
            assertEquals(SessionErrorKind.SESSION_REVOKED, e.calls[0].second.kind)
            assertEquals(UserState.LOGGED_OUT, e.user.state())
            assertNull(e.user.refreshToken())
            delay(50)
            assertEquals(1, e.calls.size)
        }

    @Test
    fun `expiry callback when the user was disabled`() = withServer { server ->
        val e = expirySetup(server)
        server.disableUser(e.user.id())
        assertThrows<AppException.SessionExpired> { e.user.refreshAccessToken() }
        waitFor { e.calls.size == 1 }
        assertEquals(SessionErrorKind.USER_DISABLED, e.calls[0].second.kind)
        assertEquals(UserState.LOGGED_OUT, e.user.state())
    }

    @Test
    fun `the handler can be cleared`() = withServer { server ->
        val e = expirySetup(server)
        e.app.setSessionErrorHandler(null)
        server.revokeSessions(e.user.id())
        assertThrows<AppException.SessionExpired> { e.user.refreshAccessToken() }
        assertEquals(UserState.LOGGED_OUT, e.user.state())
        delay(50)
        assertEquals(0, e.calls.size)
    }

    @Test
    fun `auto refresh runs on the SDK runtime`() = withServer(access = 2) { server ->
        // Nobody calls the SDK while waiting: the scheduler refreshes on its own.
        val app = server.app()
        val events = Recorder()
        app.subscribe(events).use {
            val user = app.logIn(Creds.anonymous())
            val first = user.accessToken()
            app.setAutoRefresh(true)
            waitFor(10_000, "an automatic refresh") { AuthEventKind.TOKEN_REFRESHED in events.kinds() }
            val refreshed = events.events.first { it.kind == AuthEventKind.TOKEN_REFRESHED }
            assertFalse(refreshed.userInitiated)
            assertNotEquals(first, user.accessToken())
            assertTrue(server.refreshCount() >= 1)
            app.setAutoRefresh(false)
        }
    }

    @Test
    fun `same user handles compare equal`() = withServer { server ->
        val app = server.app()
        val user = app.logIn(Creds.anonymous())
        val again = app.currentUser()!!
        assertEquals(user, again)
        assertEquals(user.hashCode(), again.hashCode())
        assertSame(UserState.LOGGED_IN, again.state())
    }

    @Test
    fun `direct access token getter reads what the generated getter reads`() = withServer { server ->
        val app = server.app()
        val user = app.emailUser()
        val token = user.currentAccessToken()
        assertTrue(token != null && token.count { it == '.' } == 2, "a JWT: $token")
        assertEquals(user.accessToken(), token)
        // A refresh shows at once, through this object and another one for the same user.
        user.refreshAccessToken()
        assertNotEquals(token, user.currentAccessToken())
        assertEquals(user.accessToken(), user.currentAccessToken())
        val again = app.currentUser()!!
        assertEquals(user.currentAccessToken(), again.currentAccessToken())
        // Logged out: no token, as with accessToken().
        user.logOut()
        assertNull(user.currentAccessToken())
        assertNull(again.currentAccessToken())
        // A closed object is refused, like every generated method.
        again.close()
        assertThrows<IllegalStateException> { again.currentAccessToken() }
        assertNull(user.currentAccessToken())
    }

    @Test
    fun `direct getter handles of collected user objects are released`() = withServer { server ->
        val app = server.app()
        val user = app.logIn(Creds.anonymous())
        val before = DirectAccessToken.liveHandles()
        // 500 more User objects for the same user, each taking a handle of its own.
        var others: MutableList<User>? = MutableList(500) { app.currentUser()!! }
        others!!.forEach { assertEquals(user.accessToken(), it.currentAccessToken()) }
        // At least one handle each: `before` may have shrunk meanwhile, as the handles of other
        // tests' collected objects are released (a CI run once saw 500 where before + 500 = 508).
        val live = DirectAccessToken.liveHandles()
        assertTrue(live >= 500, "500 User objects hold $live handles")
        // Once they are unreachable, their handles go.
        others = null
        waitFor(10_000, "the handles of collected User objects to be forgotten") {
            System.gc()
            DirectAccessToken.liveHandles() <= before
        }
        // The one still referenced keeps working.
        assertEquals(user.accessToken(), user.currentAccessToken())
    }
}
