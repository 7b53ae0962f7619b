// Typed forms of the JSON-string members (#13): Codable values in, Decodable values out, with
// Foundation's JSONEncoder/JSONDecoder. The string forms (`callFunction(name:argsJson:)`,
// `customDataJson()`) stay as they are.
import Foundation

extension User {
    /// Calls the server function `name` with `args` as its argument list (each encoded with
    /// `JSONEncoder`, so `callFunction("sum", 1, 2, 3)` sends `[1,2,3]`) and decodes its result
    /// as `T` with `JSONDecoder`: `let sum: Int = try await user.callFunction("sum", 1, 2, 3)`.
    /// The call is `callFunction(name:argsJson:)`: authenticated, refreshed and replayed once
    /// on a 401 (docs/API.md).
    ///
    /// Throws `EncodingError` when an argument cannot be encoded (nothing is sent),
    /// `DecodingError` when the result does not decode as `T`, and the `AppError`s of
    /// `callFunction(name:argsJson:)` (`Service` for a server error such as
    /// `FunctionNotFound`, `Network`, `SessionExpired`, ...).
    public func callFunction<T: Decodable>(_ name: String, _ args: any Encodable...,
                                           as type: T.Type = T.self) async throws -> T {
        let argsJson = String(decoding: try JSONEncoder().encode(ArgumentList(args)), as: UTF8.self)
        let result = try await callFunction(name: name, argsJson: argsJson)
        return try JSONDecoder().decode(T.self, from: Data(result.utf8))
    }

    /// The custom user data (the access token's `user_data` claim, as `customDataJson()`)
    /// decoded as `T` with `JSONDecoder`; nil when the token has none or there is no token.
    /// No network. Throws `DecodingError` when the data does not decode as `T`.
    public func customData<T: Decodable>(as type: T.Type) throws -> T? {
        try decodeCustomData(customDataJson())
    }

    /// `refreshCustomData()` (a token refresh, so the server's current custom data), decoded
    /// as `T` with `JSONDecoder`; nil when the user has none. Throws the `AppError`s of
    /// `refreshCustomData()` and `DecodingError` when the data does not decode as `T`.
    public func refreshCustomData<T: Decodable>(as type: T.Type) async throws -> T? {
        try decodeCustomData(try await refreshCustomData())
    }
}

/// Custom data as `T`: none, or a JSON null, is nil.
private func decodeCustomData<T: Decodable>(_ json: String?) throws -> T? {
    guard let json, json.trimmingCharacters(in: .whitespacesAndNewlines) != "null" else { return nil }
    return try JSONDecoder().decode(T.self, from: Data(json.utf8))
}

/// Arguments of different types as one JSON array.
private struct ArgumentList: Encodable {
    let items: [any Encodable]
    init(_ items: [any Encodable]) { self.items = items }
    func encode(to encoder: Encoder) throws {
        var container = encoder.unkeyedContainer()
        for item in items { try container.encode(item) }
    }
}
