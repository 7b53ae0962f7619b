// String forms of the types that hold secrets: the secret is never printed (`print`,
// string interpolation, `String(describing:)`, `dump`'s first line, debugger descriptions),
// as Rust's `Debug` of the same types (#12: bindings printed passwords and keys in clear).
import Foundation

private let redacted = "<redacted>"

extension Credentials: CustomStringConvertible, CustomDebugStringConvertible {
    /// The credentials with the password, one-time code, key, token or payload replaced by
    /// `<redacted>`.
    public var description: String {
        switch self {
        case .anonymous(let reuse): return "Credentials.anonymous(reuse: \(reuse))"
        case .emailPassword(let email, _):
            return "Credentials.emailPassword(email: \(email), password: \(redacted))"
        case .emailOtp(let email, _):
            return "Credentials.emailOtp(email: \(email), code: \(redacted))"
        case .apiKey: return "Credentials.apiKey(key: \(redacted))"
        case .jwt: return "Credentials.jwt(token: \(redacted))"
        case .function: return "Credentials.function(payloadJson: \(redacted))"
        case .googleIdToken: return "Credentials.googleIdToken(idToken: \(redacted))"
        case .googleAuthCode: return "Credentials.googleAuthCode(authCode: \(redacted))"
        case .appleIdToken: return "Credentials.appleIdToken(idToken: \(redacted))"
        case .facebookAccessToken:
            return "Credentials.facebookAccessToken(accessToken: \(redacted))"
        case .oidcIdToken(let provider, _):
            return "Credentials.oidcIdToken(provider: \(provider), idToken: \(redacted))"
        }
    }
    public var debugDescription: String { description }
}

extension ApiKey: CustomStringConvertible, CustomDebugStringConvertible {
    /// The key with its secret (present only right after creation) replaced by `<redacted>`.
    public var description: String {
        "ApiKey(id: \(id), key: \(key == nil ? "nil" : redacted), name: \(name), disabled: \(disabled))"
    }
    public var debugDescription: String { description }
}

extension StorageConfig: CustomStringConvertible, CustomDebugStringConvertible {
    /// The storage with its encryption key replaced by `<redacted>`.
    public var description: String {
        switch self {
        case .file(let dir, let key):
            return "StorageConfig.file(dir: \(dir), encryptionKey: \(key == nil ? "nil" : redacted))"
        case .inMemory: return "StorageConfig.inMemory"
        case .custom: return "StorageConfig.custom(store: …)"
        }
    }
    public var debugDescription: String { description }
}

extension AppConfig: CustomStringConvertible, CustomDebugStringConvertible {
    /// The config, its storage redacted as above; the logger is not printed.
    public var description: String {
        "AppConfig(appId: \(appId), baseUrl: \(baseUrl), storage: \(storage), "
            + "requestTimeoutMs: \(requestTimeoutMs), refreshMarginSecs: \(refreshMarginSecs), "
            + "autoRefresh: \(autoRefresh), allowInsecureHttp: \(allowInsecureHttp), "
            + "maxResponseBytes: \(maxResponseBytes))"
    }
    public var debugDescription: String { description }
}
