// Not a timed test: the median time of `User.dpopProof(...)` from Swift for a session bound with
// the SDK's own software key (#29), beside `User.accessToken()`, the plain FFI getter, for scale.
// Skipped unless SESSIONKIT_SWIFT_BENCH is set (to the number of timed calls, e.g. 20000), so
// that `scripts/test-swift` never runs it; it prints its figures and asserts nothing about time.
// Run with `bindings/swift/bench.sh [N]` (the release-ffi library, as shipped).
import Foundation
import XCTest
@testable import SessionKit

final class DpopBench: XCTestCase {
    func testDpopProofMedian() async throws {
        guard let n = ProcessInfo.processInfo.environment["SESSIONKIT_SWIFT_BENCH"].flatMap({ Int($0) }), n > 0 else {
            throw XCTSkip("a benchmark: set SESSIONKIT_SWIFT_BENCH to the number of calls to run it")
        }
        try await withServer(dpop: "required") { server in
            let user = try await App(config: server.config(dpop: true)).logIn(credentials: .anonymous(reuse: false))
            let token = try XCTUnwrap(user.accessToken())
            let url = server.baseUrl + "/api/client/v2.0/auth/profile"
            print("access token \(token.count) chars, \(n) timed calls each after \(n / 5) warm-up calls")
            measureMedian("User.accessToken()", n) { user.accessToken()?.count ?? 0 }
            measureMedian("User.dpopProof(method:url:accessToken:nonce:)", n) {
                (try? user.dpopProof(method: "GET", url: url, accessToken: token))??.count ?? 0
            }
        }
    }
}

/// Times each call on its own (a monotonic clock around it) after a fifth as many warm-up
/// calls; prints the median, p90 and p99.
private func measureMedian(_ name: String, _ n: Int, _ call: () -> Int) {
    var sink = 0
    for _ in 0..<(n / 5) { sink &+= call() }
    var samples = [UInt64](repeating: 0, count: n)
    for i in 0..<n {
        let start = DispatchTime.now().uptimeNanoseconds
        sink &+= call()
        samples[i] = DispatchTime.now().uptimeNanoseconds - start
    }
    samples.sort()
    func us(_ q: Double) -> String { String(format: "%.2f", Double(samples[Int(Double(n - 1) * q)]) / 1000) }
    print("\(name): median \(us(0.5)) µs, p90 \(us(0.9)) µs, p99 \(us(0.99)) µs (sink \(sink))")
}
