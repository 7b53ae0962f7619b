// The access token for hot paths, read with one direct native call instead of the generated
// getter's three JNA crossings and their call-status Structures (about 17 µs a read).

package io.sessionkit

import com.sun.jna.Native
import java.lang.ref.Reference
import java.lang.ref.ReferenceQueue
import java.lang.ref.WeakReference

/**
 * The stored access token, exactly what [User.accessToken] returns (it may be stale; `null`
 * once the user is logged out), but read with a single direct native call: made for code that
 * reads it very often, such as an HTTP interceptor that sets `Authorization` on every request.
 * Use [freshAccessToken] when the token must have time left.
 *
 * The first read through a User object takes a native handle of its own (one generated call);
 * later reads cost one direct call. So keep the User object rather than asking
 * `app.currentUser()` for a new one on every read.
 *
 * ```kotlin
 * val token = user.currentAccessToken() ?: return redirectToLogin()
 * request.header("Authorization", "Bearer $token")
 * ```
 *
 * @throws IllegalStateException if the user object was closed.
 */
fun User.currentAccessToken(): String? = DirectAccessToken.read(this)

/**
 * What [User.dpopProof] returns (a DPoP proof for one request with [token], or null for a bearer
 * session), made through one direct native call: the OkHttp interceptor's path for every request
 * of a bound session (#29; the generated call costs some 60 µs of crossings and buffers on top of
 * the signature). When the proof cannot be made this way, the generated call is made instead and
 * throws its [AppException] (`Storage` when the signer failed).
 */
internal fun User.directDpopProof(method: String, url: String, token: String, nonce: String?): String? =
    DirectAccessToken.proof(this, method, url, token, nonce)

internal object DirectAccessToken {
    private const val NO_TOKEN = -1
    private const val NOT_BOUND = -3

    // One owned native handle per User object, taken on its first read and released once that
    // object is unreachable. Keyed by identity, weakly: User.equals/hashCode are native calls
    // themselves (several µs), and this map must never keep a User alive.
    private val handles = HashMap<Any, Long>()
    private val collected = ReferenceQueue<User>()

    // Tokens are a few hundred bytes; the buffer grows if one is longer.
    private val buffers = ThreadLocal.withInitial { ByteArray(2048) }

    fun read(user: User): String? = into(user) { handle, buf ->
        Lib.sessionkit_ffi_user_access_token_into(handle, buf, buf.size)
    }.let { (n, text) ->
        when {
            n == NO_TOKEN -> null
            n < 0 -> throw InternalException("the SDK could not read the access token")
            else -> text
        }
    }

    fun proof(user: User, method: String, url: String, token: String, nonce: String?): String? {
        // Method, URL, token and nonce, each ended by a NUL (direct.rs); none holds a NUL.
        val request = "$method\u0000$url\u0000$token\u0000${nonce ?: ""}\u0000".toByteArray(Charsets.UTF_8)
        val (n, proof) = into(user) { handle, buf ->
            Lib.sessionkit_ffi_user_dpop_proof_into(handle, request, request.size, buf, buf.size)
        }
        return when {
            n == NOT_BOUND -> null
            // Not made here: the generated call says why (or makes it after all).
            n < 0 -> user.dpopProof(method, url, token, nonce)
            else -> proof
        }
    }

    /**
     * Calls [native] with the user's handle and this thread's buffer until the text fits: its
     * result (a length, or a negative code) and the text when there is one.
     */
    private inline fun into(user: User, native: (Long, ByteArray) -> Int): Pair<Int, String?> {
        check(!user.uniffiIsDestroyed) { "User object has already been destroyed" }
        try {
            val handle = handleOf(user)
            var buf = buffers.get()
            while (true) {
                val n = native(handle, buf)
                if (n < 0) return n to null
                if (n <= buf.size) return n to String(buf, 0, n, Charsets.UTF_8)
                buf = ByteArray(n)
                buffers.set(buf)
            }
        } finally {
            // The cleaner releases the handle once the User is unreachable: not mid-call.
            Reference.reachabilityFence(user)
        }
    }

    /** How many User objects hold a handle here now (for tests). */
    internal fun liveHandles(): Int = synchronized(handles) {
        forgetCollected()
        handles.size
    }

    // Forget the entries of collected Users (their cleaner released the handles).
    private fun forgetCollected() {
        while (true) handles.remove(collected.poll() ?: break)
    }

    private fun handleOf(user: User): Long = synchronized(handles) {
        handles[Probe(user)] ?: run {
            forgetCollected()
            // A clone of the object's handle, ours to release. callWithHandle keeps the object
            // from being destroyed while it is cloned (and throws if it already was).
            val handle = user.callWithHandle { it }
            // The generated code's cleaner: java.lang.ref.Cleaner, or its Android stand-in.
            UniffiLib.CLEANER.register(user, Release(handle))
            handles[WeakKey(user, collected)] = handle
            handle
        }
    }

    // A map key that holds its User weakly and compares by identity.
    private class WeakKey(user: User, queue: ReferenceQueue<User>) : WeakReference<User>(user, queue) {
        private val hash = System.identityHashCode(user)
        override fun hashCode() = hash
        override fun equals(other: Any?) = other === this
    }

    // A lookup key: equal to the WeakKey of the same User object.
    private class Probe(private val user: User) {
        override fun hashCode() = System.identityHashCode(user)
        override fun equals(other: Any?) = other is WeakKey && other.get() === user
    }

    // A static class, so that the clean action does not capture (and keep alive) the User.
    private class Release(private val handle: Long) : Runnable {
        override fun run() = Lib.sessionkit_ffi_user_release(handle)
    }

    /** JNA direct mapping: primitive arguments only, so no Structure is built per call. */
    private object Lib {
        init {
            // The same library, and the same override property, as the generated bindings.
            val name = System.getProperty("uniffi.component.sessionkit_ffi.libraryOverride")
                ?: "sessionkit_ffi"
            Native.register(Lib::class.java, name)
        }

        @JvmStatic
        external fun sessionkit_ffi_user_access_token_into(user: Long, out: ByteArray, cap: Int): Int

        @JvmStatic
        external fun sessionkit_ffi_user_dpop_proof_into(
            user: Long,
            request: ByteArray,
            len: Int,
            out: ByteArray,
            cap: Int,
        ): Int

        @JvmStatic
        external fun sessionkit_ffi_user_release(user: Long)
    }
}
