package io.sessionkit

/**
 * The JVM shutdown hook that tells the SDK the JVM is ending ([foreignRuntimeExiting]): from
 * then on no SDK thread calls into Kotlin (listeners, the session error handler, the logger, a
 * custom store, resuming a coroutine), and calls already running get up to [WAIT_MS] ms to
 * finish. An App left open at exit therefore cannot call into a JVM that is going away.
 * Installed by the first App created; apps never call it themselves.
 */
internal object AppExit {
    /** How long the hook waits for SDK threads already running Kotlin code, in milliseconds. */
    private const val WAIT_MS = 5_000u

    @Volatile private var installed = false

    /** Registers the hook once per JVM; later calls do nothing. */
    fun install() {
        if (installed) return
        synchronized(this) {
            if (installed) return
            Runtime.getRuntime().addShutdownHook(Thread({ foreignRuntimeExiting(WAIT_MS) }, "sessionkit-exit"))
            installed = true
        }
    }
}
