// DpopSigner implementations for the DPoP tests (#29). A working one needs ECDSA P-256, which
// Swift on Linux has no module for (no CryptoKit, no swift-crypto here): `OpenSSLSigner` calls
// the system's OpenSSL 3 (`libcrypto.so.3`, in every Debian root that has Python or curl) through
// dlopen, so the keys live outside the SDK as a Secure Enclave's would. Where that library
// cannot be loaded (macOS), `OpenSSLSigner.make` is nil and the tests that need it are skipped.
// The others fail on purpose, each in one way.
import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
@testable import SessionKit

/// The few libcrypto functions a P-256 signer needs (OpenSSL 3's EC_KEY API: deprecated, still
/// exported, and with no variadic calls, which Swift cannot make through a pointer).
private struct LibCrypto {
    typealias NewByCurveName = @convention(c) (Int32) -> OpaquePointer?
    typealias KeyFn = @convention(c) (OpaquePointer?) -> Int32
    typealias Get0 = @convention(c) (OpaquePointer?) -> OpaquePointer?
    typealias Point2Oct = @convention(c) (OpaquePointer?, OpaquePointer?, Int32, UnsafeMutablePointer<UInt8>?,
                                          Int, OpaquePointer?) -> Int
    typealias I2dPubkey = @convention(c) (OpaquePointer?, UnsafeMutablePointer<UnsafeMutablePointer<UInt8>?>?) -> Int32
    typealias Sha256 = @convention(c) (UnsafePointer<UInt8>?, Int, UnsafeMutablePointer<UInt8>?)
        -> UnsafeMutablePointer<UInt8>?
    typealias EcdsaSign = @convention(c) (Int32, UnsafePointer<UInt8>?, Int32, UnsafeMutablePointer<UInt8>?,
                                          UnsafeMutablePointer<UInt32>?, OpaquePointer?) -> Int32
    typealias Free = @convention(c) (OpaquePointer?) -> Void

    let newByCurveName: NewByCurveName
    let generateKey: KeyFn
    let group: Get0
    let publicPoint: Get0
    let point2oct: Point2Oct
    let i2dPubkey: I2dPubkey
    let sha256: Sha256
    let ecdsaSign: EcdsaSign
    let ecdsaSize: KeyFn
    let free: Free

    static let shared: LibCrypto? = LibCrypto()

    private init?() {
        let names: [String] = ["libcrypto.so.3", "libcrypto.3.dylib"]
        guard let lib = names.lazy.compactMap({ (name: String) in dlopen(name, RTLD_NOW) }).first else { return nil }
        func fn<T>(_ name: String, _ type: T.Type) -> T? {
            dlsym(lib, name).map { unsafeBitCast($0, to: type) }
        }
        guard let a = fn("EC_KEY_new_by_curve_name", NewByCurveName.self),
              let b = fn("EC_KEY_generate_key", KeyFn.self),
              let c = fn("EC_KEY_get0_group", Get0.self),
              let d = fn("EC_KEY_get0_public_key", Get0.self),
              let e = fn("EC_POINT_point2oct", Point2Oct.self),
              let f = fn("i2d_EC_PUBKEY", I2dPubkey.self),
              let g = fn("SHA256", Sha256.self),
              let h = fn("ECDSA_sign", EcdsaSign.self),
              let i = fn("ECDSA_size", KeyFn.self),
              let j = fn("EC_KEY_free", Free.self) else { return nil }
        newByCurveName = a; generateKey = b; group = c; publicPoint = d; point2oct = e
        i2dPubkey = f; sha256 = g; ecdsaSign = h; ecdsaSize = i; free = j
    }
}

/// P-256 keys held by OpenSSL, as an app's key store would hold them: the SDK gets handles,
/// public keys and signatures (DER, as `SecKeyCreateSignature` gives them). `form` picks how
/// the public key is given: the 65-byte point (`SecKeyCopyExternalRepresentation`) or the 91-byte
/// SubjectPublicKeyInfo (Java's `getEncoded()`). `locked` makes every call fail as a locked
/// device does. Records what it was asked, never the keys.
final class OpenSSLSigner: DpopSigner, @unchecked Sendable {
    enum PublicForm { case point, spki }

    private let lib: LibCrypto
    private let form: PublicForm
    private let lock = NSLock()
    private var keys: [String: OpaquePointer] = [:]
    private var _locked = false
    private var _signatures = 0
    private var _deleted: [String] = []

    /// nil where libcrypto cannot be loaded.
    static func make(_ form: PublicForm = .point) -> OpenSSLSigner? {
        LibCrypto.shared.map { OpenSSLSigner($0, form) }
    }

    private init(_ lib: LibCrypto, _ form: PublicForm) {
        self.lib = lib
        self.form = form
    }

    deinit { for key in keys.values { lib.free(key) } }

    private func locked<T>(_ body: () throws -> T) rethrows -> T {
        lock.lock()
        defer { lock.unlock() }
        return try body()
    }

    /// Every call throws `DpopSignerError.Failed("the device is locked")` while set.
    var isLocked: Bool {
        get { locked { _locked } }
        set { locked { _locked = newValue } }
    }
    var signatures: Int { locked { _signatures } }
    var deleted: [String] { locked { _deleted } }
    var handles: [String] { locked { Array(keys.keys) } }

    private func key(_ handle: String) throws -> OpaquePointer {
        if _locked { throw DpopSignerError.Failed(message: "the device is locked") }
        guard let key = keys[handle] else { throw DpopSignerError.Failed(message: "no key \(handle)") }
        return key
    }

    func createKey() throws -> String {
        try locked {
            if _locked { throw DpopSignerError.Failed(message: "the device is locked") }
            // NID_X9_62_prime256v1
            guard let key = lib.newByCurveName(415) else { throw DpopSignerError.Failed(message: "EC_KEY_new") }
            guard lib.generateKey(key) == 1 else {
                lib.free(key)
                throw DpopSignerError.Failed(message: "EC_KEY_generate_key")
            }
            let handle = "openssl-\(UUID().uuidString)"
            keys[handle] = key
            return handle
        }
    }

    func publicKey(handle: String) throws -> Data {
        try locked {
            let key = try key(handle)
            switch form {
            case .point:
                var out = [UInt8](repeating: 0, count: 65)
                // POINT_CONVERSION_UNCOMPRESSED
                let n = lib.point2oct(lib.group(key), lib.publicPoint(key), 4, &out, out.count, nil)
                guard n == 65 else { throw DpopSignerError.Failed(message: "EC_POINT_point2oct gave \(n)") }
                return Data(out)
            case .spki:
                let n = Int(lib.i2dPubkey(key, nil))
                guard n > 0 else { throw DpopSignerError.Failed(message: "i2d_EC_PUBKEY") }
                var out = [UInt8](repeating: 0, count: n)
                let written = out.withUnsafeMutableBufferPointer { buffer -> Int32 in
                    var cursor: UnsafeMutablePointer<UInt8>? = buffer.baseAddress
                    return lib.i2dPubkey(key, &cursor)
                }
                guard Int(written) == n else { throw DpopSignerError.Failed(message: "i2d_EC_PUBKEY wrote \(written)") }
                return Data(out)
            }
        }
    }

    func sign(handle: String, message: Data) throws -> Data {
        try locked {
            let key = try key(handle)
            var digest = [UInt8](repeating: 0, count: 32)
            _ = message.withUnsafeBytes { lib.sha256($0.bindMemory(to: UInt8.self).baseAddress, message.count, &digest) }
            var signature = [UInt8](repeating: 0, count: Int(lib.ecdsaSize(key)))
            var length: UInt32 = 0
            guard lib.ecdsaSign(0, digest, 32, &signature, &length, key) == 1 else {
                throw DpopSignerError.Failed(message: "ECDSA_sign")
            }
            _signatures += 1
            return Data(signature[0..<Int(length)])
        }
    }

    func deleteKey(handle: String) throws {
        try locked {
            if _locked { throw DpopSignerError.Failed(message: "the device is locked") }
            _deleted.append(handle)
            if let key = keys.removeValue(forKey: handle) { lib.free(key) }
        }
    }
}

/// A signer whose public key is not a key: three bytes.
final class GarbagePublicKeySigner: DpopSigner, @unchecked Sendable {
    func createKey() throws -> String { "garbage" }
    func publicKey(handle: String) throws -> Data { Data([1, 2, 3]) }
    func sign(handle: String, message: Data) throws -> Data {
        throw DpopSignerError.Failed(message: "never asked")
    }
    func deleteKey(handle: String) throws {}
}
