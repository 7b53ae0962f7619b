package io.sessionkit

import java.nio.file.Files
import java.util.Collections
import kotlinx.coroutines.flow.first
import kotlinx.coroutines.flow.take
import kotlinx.coroutines.flow.toList
import kotlinx.coroutines.launch
import kotlinx.coroutines.coroutineScope
import kotlinx.coroutines.withTimeout
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertSame
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test

/** Issue #13: the session as a StateFlow, a user's state as a Flow, events carrying the User. */
class FlowsTest {
    @Test
    fun `sessionState follows who is current`() = withServer { server ->
        val app = server.app()
        val state = app.sessionState
        assertEquals(SessionState.LoggedOut, state.value)
        assertSame(state.value, app.sessionState.value) // one state per App
        val seen = Collections.synchronizedList(mutableListOf<SessionState>())
        coroutineScope {
            val job = launch { state.collect { seen.add(it) } }
            waitFor(what = "the first value") { seen.isNotEmpty() }
            val ada = app.emailUser()
            waitFor(what = "ada current") { state.value == SessionState.LoggedIn(ada) }
            val bob = app.emailUser()
            waitFor(what = "bob current") { state.value == SessionState.LoggedIn(bob) }
            app.switchUser(ada)
            waitFor(what = "switched to ada") { state.value.user == ada }
            // Refreshes change nothing: equal states are not emitted.
            waitFor(what = "the collector") { synchronized(seen) { seen.last() } == state.value }
            val before = synchronized(seen) { seen.toList() }
            val recorder = Recorder()
            app.subscribe(recorder).use {
                ada.refreshAccessToken()
                bob.refreshAccessToken()
                waitFor { recorder.kinds().count { it == AuthEventKind.TOKEN_REFRESHED } == 2 }
            }
            assertEquals(before, synchronized(seen) { seen.toList() })
            ada.logOut()
            waitFor(what = "ada gone") { state.value.user != ada }
            assertEquals(app.currentUser()?.let { SessionState.LoggedIn(it) } ?: SessionState.LoggedOut, state.value)
            bob.logOut()
            waitFor(what = "nobody current") { state.value == SessionState.LoggedOut }
            job.cancel()
            val values = synchronized(seen) { seen.toList() }
            assertEquals(SessionState.LoggedOut, values.first())
            assertTrue(values.zipWithNext().all { (a, b) -> a != b }, "$values")
        }
    }

    @Test
    fun `sessionState starts with a restored user`() = withServer { server ->
        val dir = Files.createTempDirectory("sk-flows-")
        try {
            val storage = StorageConfig.File(dir = dir.toString(), encryptionKey = null)
            val id = server.app(storage).use { it.emailUser().id() }
            server.app(storage).use { app ->
                // Right from the first read, no event waited for.
                val value = app.sessionState.value
                assertTrue(value is SessionState.LoggedIn, "$value")
                assertEquals(id, value.user!!.id())
                assertEquals(UserState.LOGGED_IN, value.user!!.state())
            }
        } finally {
            dir.toFile().deleteRecursively()
        }
    }

    @Test
    fun `events carry the User, also a removed one`() = withServer { server ->
        val app = server.app()
        val user = app.logIn(Creds.anonymous())
        val events = Collections.synchronizedList(mutableListOf<AuthEvent>())
        coroutineScope {
            val job = launch { app.authEvents().collect { events.add(it) } }
            waitFor(what = "the initial state") { events.isNotEmpty() }
            assertEquals(user, events[0].user)
            user.logOut() // anonymous: signed out, then removed
            waitFor(what = "the removal") { events.any { it.kind == AuthEventKind.USER_REMOVED } }
            job.cancel()
        }
        val removed = events.first { it.kind == AuthEventKind.USER_REMOVED }
        val handle = removed.user!!
        assertEquals(user.id(), handle.id())
        assertEquals(UserState.REMOVED, handle.state())
        // Every event about a user carries its handle (CURRENT_USER_CHANGED to nobody has none).
        assertTrue(events.filter { it.userId != null }.all { it.user == user }, "$events")
        assertTrue(events.filter { it.userId == null }.all { it.user == null }, "$events")
    }

    @Test
    fun `a user's state as a Flow, ending with REMOVED`() = withServer { server ->
        val app = server.app()
        val user = app.emailUser()
        val states = Collections.synchronizedList(mutableListOf<UserState>())
        coroutineScope {
            val job = launch { user.stateAsFlow().collect { states.add(it) } }
            waitFor(what = "the first state") { states.isNotEmpty() }
            user.logOut()
            waitFor(what = "logged out") { UserState.LOGGED_OUT in states }
            app.removeUser(user)
            waitFor(what = "removed") { UserState.REMOVED in states }
            job.cancel()
        }
        assertEquals(listOf(UserState.LOGGED_IN, UserState.LOGGED_OUT, UserState.REMOVED), states.toList())
    }

    @Test
    fun `stateAsFlow reads the state when collection starts`() = withServer { server ->
        val app = server.app()
        val user = app.logIn(Creds.anonymous())
        // take(1) stops after the current state (and unsubscribes); a second collection
        // subscribes again and sees the state as it is then.
        val first = withTimeout(5_000) { user.stateAsFlow().take(1).toList() }
        assertEquals(listOf(UserState.LOGGED_IN), first)
        user.logOut()
        assertEquals(UserState.REMOVED, withTimeout(5_000) { user.stateAsFlow().first() })
    }
}
