package io.sessionkit

import java.lang.ref.WeakReference
import java.util.concurrent.atomic.AtomicInteger
import java.util.concurrent.atomic.AtomicReference
import java.util.Collections
import kotlinx.coroutines.cancelAndJoin
import kotlinx.coroutines.coroutineScope
import kotlinx.coroutines.flow.Flow
import kotlinx.coroutines.flow.first
import kotlinx.coroutines.launch
import kotlinx.coroutines.withTimeout
import kotlinx.coroutines.yield
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertNull
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test

/** Auth events: the Flow layer and plain listeners. */
class EventsTest {
    /** Collects [flow] in the background until [block] returns; waits for the initial state. */
    private suspend fun collecting(
        flow: Flow<AuthEvent>,
        block: suspend (MutableList<AuthEvent>) -> Unit,
    ) = coroutineScope {
        val events = Collections.synchronizedList(mutableListOf<AuthEvent>())
        val job = launch { flow.collect { events.add(it) } }
        try {
            waitFor(what = "the initial state") { events.isNotEmpty() }
            block(events)
        } finally {
            job.cancel()
        }
    }

    @Test
    fun `app events arrive in order as a Flow`() = withServer { server ->
        val app = server.app()
        collecting(app.authEvents()) { events ->
            val user = app.logIn(Creds.anonymous())
            user.refreshAccessToken()
            user.logOut() // anonymous: signed out, then removed
            waitFor { events.any { it.kind == AuthEventKind.USER_REMOVED } }
            val snapshot = synchronized(events) { events.toList() }
            val kinds = snapshot.map { it.kind }
            // The first event is the state at subscription time: nobody was logged in.
            assertEquals(AuthEventKind.INITIAL_STATE, kinds.first(), "$kinds")
            assertNull(snapshot.first().userId)
            val signedIn = kinds.indexOf(AuthEventKind.SIGNED_IN)
            val refreshed = kinds.indexOf(AuthEventKind.TOKEN_REFRESHED)
            val signedOut = kinds.indexOf(AuthEventKind.SIGNED_OUT)
            assertTrue(signedIn in 1 until refreshed && refreshed < signedOut, "$kinds")
            assertEquals(user.id(), snapshot[signedIn].userId)
            assertTrue(snapshot[signedIn].userInitiated, "${snapshot[signedIn]}")
        }
    }

    @Test
    fun `user events as a Flow carry only that user`() = withServer { server ->
        val app = server.app()
        val ada = app.logIn(Creds.anonymous(reuse = false))
        val bob = app.logIn(Creds.anonymous(reuse = false))
        collecting(ada.authEvents()) { events ->
            bob.refreshAccessToken()
            ada.refreshAccessToken()
            waitFor { events.size >= 2 }
            val snapshot = synchronized(events) { events.toList() }
            assertEquals(
                listOf(AuthEventKind.INITIAL_STATE, AuthEventKind.TOKEN_REFRESHED),
                snapshot.map { it.kind },
            )
            assertTrue(snapshot.all { it.userId == ada.id() }, "$snapshot")
        }
    }

    @Test
    fun `a Flow collector that stops cancels its subscription`() = withServer { server ->
        val app = server.app()
        // Collect only the initial state: the flow ends and must unsubscribe.
        val first = withTimeout(5_000) { app.authEvents().first() }
        assertEquals(AuthEventKind.INITIAL_STATE, first.kind)
        // A plain listener, closed, receives nothing more either.
        val seen = AtomicInteger()
        val subscription = app.subscribe { seen.incrementAndGet() }
        waitFor { seen.get() == 1 } // its initial state
        subscription.close()
        app.logIn(Creds.anonymous())
        yield()
        assertEquals(1, seen.get())
    }

    @Test
    fun `cancelling the collector releases the listener`() = withServer { server ->
        val app = server.app()
        // The JVM side of every listener the SDK holds (UniFFI's callback handles).
        val handles = { FfiConverterTypeAuthEventListener.handleMap.size }
        val before = handles()
        val listener = AtomicReference<WeakReference<AuthEventListener>>()
        // App.authEvents() is this flow; here the listener it subscribes is kept, weakly.
        val flow = eventFlow { l -> listener.set(WeakReference(l)); app.subscribe(l) }
        val events = Collections.synchronizedList(mutableListOf<AuthEvent>())
        coroutineScope {
            val job = launch { flow.collect { events.add(it) } }
            waitFor(what = "the initial state") { events.isNotEmpty() }
            assertTrue(handles() > before, "subscribed: ${handles()} handles, $before before")
            job.cancelAndJoin()
        }
        // Cancelled: the SDK lets go of the listener at once, not when a GC finds the
        // Subscription object unreachable (no System.gc() here).
        waitFor(timeoutMs = 2_000, what = "the listener's handle to be freed") { handles() <= before }
        // And nothing else keeps it.
        waitFor(what = "the listener to be collected") {
            System.gc()
            listener.get().get() == null
        }
        val seen = events.size
        app.logIn(Creds.anonymous())
        assertEquals(seen, events.size)
    }

    @Test
    fun `cancelled listeners hear nothing more`() = withServer { server ->
        val app = server.app()
        val everything = Recorder()
        val subscription = app.subscribe(everything)
        waitFor { everything.events.size == 1 }
        val user = app.logIn(Creds.anonymous())
        val mine = Recorder()
        val userSubscription = user.subscribe(mine)
        user.refreshAccessToken()
        waitFor { AuthEventKind.TOKEN_REFRESHED in mine.kinds() }
        assertEquals(AuthEventKind.INITIAL_STATE, mine.events[0].kind)
        assertEquals(user.id(), mine.events[0].userId)
        subscription.cancel()
        userSubscription.cancel()
        subscription.cancel() // twice does nothing
        val seen = everything.events.size
        val mineSeen = mine.events.size
        user.refreshAccessToken()
        app.logIn(Creds.anonymous(reuse = false))
        assertEquals(seen, everything.events.size)
        assertEquals(mineSeen, mine.events.size)
    }

    @Test
    fun `a throwing Kotlin listener breaks nothing`() = withServer { server ->
        val app = server.app()
        val calls = AtomicInteger()
        val bad = object : AuthEventListener {
            override fun onEvent(event: AuthEvent) {
                calls.incrementAndGet()
                throw IllegalStateException("listener bug")
            }
        }
        val good = Recorder()
        app.subscribe(bad).use {
            app.subscribe(good).use {
                val user = app.logIn(Creds.anonymous())
                user.refreshAccessToken()
                waitFor { AuthEventKind.TOKEN_REFRESHED in good.kinds() }
                assertTrue(calls.get() >= 3, "initial state, signed in, refreshed: ${calls.get()}")
                assertEquals(user.accessToken(), user.validAccessToken())
            }
        }
    }
}
