// Errors a person can read (#13): the generated AppError and StoreError get their string forms
// here, because UniFFI's own LocalizedError conformance answers String(reflecting: self), i.e.
// `Service(code: "InvalidPassword", message: ..., httpStatus: 401, link: nil)`. uniffi.toml sets
// `omit_localized_error_conformance` so that these are the only ones.
import Foundation

extension AppError: LocalizedError, CustomStringConvertible {
    /// The error as a sentence: what went wrong, then what to do, e.g. `invalid
    /// username/password (server error InvalidPassword, HTTP 401)`. It is `describe()`, written
    /// by the Rust core (the same text as Kotlin's `message` and Python's `str()`); the case's
    /// associated values (`code`, `httpStatus`, ...) stay available with `case let`. Never
    /// contains a token.
    public var description: String { describe() }

    /// `description`; also what `localizedDescription` returns (Foundation reads it from
    /// `LocalizedError`), so an alert or a log line shows the sentence.
    public var errorDescription: String? { describe() }

    /// Seconds the server asked to wait before trying again: the `Retry-After` of its answer
    /// (RFC 9110 section 10.2.3), e.g. a login lockout's. Only `.Service` carries one (its last
    /// associated value); every other case, and an answer without one, is nil. Lets an app say
    /// "try again in N minutes" without a `switch` over the cases.
    public var retryAfterSecs: Int64? {
        if case let .Service(_, _, _, _, retryAfterSecs) = self { return retryAfterSecs }
        return nil
    }
}

extension StoreError: LocalizedError, CustomStringConvertible {
    /// The store error as a sentence, `session store unavailable: MESSAGE` or `session store
    /// corrupt: MESSAGE` (as Kotlin's StoreException message); the SDK passes `MESSAGE` on in
    /// the `AppError.Storage` it raises.
    public var description: String {
        switch self {
        case .Unavailable(let message): return "session store unavailable: \(message)"
        case .Corrupt(let message): return "session store corrupt: \(message)"
        }
    }

    /// `description`, so that `localizedDescription` is the sentence too.
    public var errorDescription: String? { description }
}
