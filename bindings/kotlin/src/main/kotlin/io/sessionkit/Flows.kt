// Session state as a StateFlow, and a user's state as a Flow: the shapes supabase-kt
// (`sessionStatus: StateFlow<SessionStatus>`) and realm-kotlin (`authenticationChangeAsFlow()`,
// events that carry the User) give Kotlin apps, built on the SDK's auth events.

package io.sessionkit

import java.lang.ref.WeakReference
import java.util.Collections
import java.util.WeakHashMap
import kotlinx.coroutines.flow.Flow
import kotlinx.coroutines.flow.MutableStateFlow
import kotlinx.coroutines.flow.StateFlow
import kotlinx.coroutines.flow.asStateFlow
import kotlinx.coroutines.flow.distinctUntilChanged
import kotlinx.coroutines.flow.map
import kotlinx.coroutines.flow.onStart

/**
 * Who is using the app: the current user (see [App.currentUser]), or nobody. The value of
 * [App.sessionState].
 */
sealed interface SessionState {
    /** The current user; `null` in [LoggedOut]. */
    val user: User?

    /** [user] is the current user and is logged in (the SDK's current user always is). */
    data class LoggedIn(override val user: User) : SessionState

    /**
     * No current user: nobody logged in yet, or the current user logged out, expired or was
     * removed and no other logged-in user took its place.
     */
    data object LoggedOut : SessionState {
        override val user: User? get() = null
    }
}

/**
 * The current user as a [StateFlow]: its value is right from the first read (computed from
 * [App.currentUser]), and it changes with every auth event that changes who is current (log in,
 * switch, log out, session expired, removal). Token refreshes and profile updates do not change
 * it: two states are equal when their users are (User equality is the SDK's: same user id).
 *
 * One subscription per App, made on the first read and kept as long as the App is open: the SDK
 * releases it in [App.close], after which the value stays what it was. The SDK thread that
 * delivers events only sets the value, so collectors never slow it down; a collector sees the
 * latest state (StateFlow conflates), not every step: collect [authEvents] for every event.
 */
val App.sessionState: StateFlow<SessionState>
    get() = SessionStates.of(this)

/** The state of [app]'s current user now: [SessionState.LoggedIn] or [SessionState.LoggedOut]. */
private fun currentState(app: App): SessionState =
    app.currentUser()?.let { SessionState.LoggedIn(it) } ?: SessionState.LoggedOut

private object SessionStates {
    // Weak keys (App compares by identity): the map never keeps an App alive; the listener
    // holds the App weakly for the same reason.
    private val states = Collections.synchronizedMap(WeakHashMap<App, Holder>())

    private class Holder(val flow: MutableStateFlow<SessionState>, val subscription: Subscription)

    fun of(app: App): StateFlow<SessionState> = synchronized(states) {
        states[app]?.let { return it.flow.asStateFlow() }
        val flow = MutableStateFlow(currentState(app))
        val ref = WeakReference(app)
        val subscription = app.subscribe(object : AuthEventListener {
            override fun onEvent(event: AuthEvent) {
                // Who is current is asked, not derived from the event: the SDK picks the next
                // current user after a log out, and events of other users change nothing.
                val live = ref.get() ?: return
                if (live.isClosed()) return
                flow.value = currentState(live)
            }
        })
        states[app] = Holder(flow, subscription)
        flow.asStateFlow()
    }
}

/**
 * This user's state ([UserState.LOGGED_IN], [UserState.LOGGED_OUT], [UserState.REMOVED]) now
 * and after each change, read from the user's own auth events ([User.authEvents]); repeated
 * values are dropped. The subscription lives while the flow is collected and is cancelled
 * with the collector. Once the state is REMOVED no further event comes for this user.
 */
fun User.stateAsFlow(): Flow<UserState> =
    authEvents().map { event -> event.user?.state() ?: state() }
        .onStart { emit(state()) }
        .distinctUntilChanged()
