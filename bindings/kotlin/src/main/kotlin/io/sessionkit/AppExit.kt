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
    private const val WAIT_MS = 5_000

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

/**
 * Tells the SDK that the JVM is about to end: no SDK thread calls into Kotlin afterwards, and
 * calls already running are waited for, at most [timeoutMs] milliseconds. Returns how many were
 * still running when the wait ended (0: none). Not undone. The JVM shutdown hook that every App
 * installs already calls it; call it yourself only if the runtime ends another way. The FFI
 * export (`foreign_runtime_exiting`, API.md) takes an unsigned u32; this is its Int form, so the
 * public Kotlin API has no unsigned types.
 *
 * @throws AppException.InvalidArgument if [timeoutMs] is negative.
 */
fun foreignRuntimeExiting(timeoutMs: Int): Int {
    if (timeoutMs < 0) throw AppException.InvalidArgument("timeoutMs must be 0 or more, not $timeoutMs")
    val left = foreignRuntimeExitingUnsigned(timeoutMs.toUInt())
    return if (left > Int.MAX_VALUE.toUInt()) Int.MAX_VALUE else left.toInt()
}
