// The Int32 form of foreign_runtime_exiting: the FFI export takes and returns u32, and
// scripts/test-swift makes the generated UInt32 function internal, so that the public Swift API
// has no unsigned types (#13), as Kotlin's AppExit.kt does.

/// Tells the SDK that the process is about to end: no SDK thread calls into Swift afterwards
/// (callbacks are skipped, store saves answered `Unavailable`), and calls already running are
/// waited for, at most `timeoutMs` milliseconds. Returns how many were still running when the
/// wait ended (0: none). Not undone: call it only when the process is ending, and only if it
/// ends in a way that could leave SDK threads calling into Swift (docs/API.md,
/// `foreign_runtime_exiting`). Throws `AppError.InvalidArgument` if `timeoutMs` is negative.
@discardableResult
public func foreignRuntimeExiting(timeoutMs: Int32) throws -> Int32 {
    guard timeoutMs >= 0 else {
        throw AppError.InvalidArgument(message: "timeoutMs must be 0 or more (got \(timeoutMs))")
    }
    let left = foreignRuntimeExitingUnsigned(timeoutMs: UInt32(timeoutMs))
    return Int32(clamping: left)
}
