// The loopback SMTP relay of the conformance scenarios with "server": {"mail": true}:
// tests/smtp/relay.py (aiosmtpd) as a child process, run by the Python of
// SESSIONKIT_TEST_SMTP_PYTHON (scripts/test-all makes it: $target/smtp-venv; inside the Swift
// root of scripts/swift-env it is that root's Python with Debian's aiosmtpd), on a port the
// kernel picks (--port 0; the port is in DIR/ready). Each mail it takes is DIR/mail-NNNN.json.
import Foundation

/// What to do when the relay cannot run: the scenario fails saying this, it is never skipped.
let howToGetTheRelay = "the mail scenarios need a Python with aiosmtpd for their SMTP relay: "
    + "python3 -m venv target/smtp-venv && target/smtp-venv/bin/pip install aiosmtpd cryptography, "
    + "then set SESSIONKIT_TEST_SMTP_PYTHON=$PWD/target/smtp-venv/bin/python (scripts/test-all does both)"

/// The sender, and the pages the mails link to, of the scenarios with `"mail": true`.
let mailFrom = "SessionKit Conformance <no-reply@example.com>"
let confirmUrl = "https://app.example/confirm"
let resetUrl = "https://app.example/reset"

/// One running relay, started for one scenario; `stop()` ends it and deletes its directory.
final class MailRelay {
    /// Its port on 127.0.0.1.
    let port: Int
    private let process: Process
    private let dir: URL

    /// Starts the relay and waits (up to 30 s) until it accepts connections. Throws a
    /// `TestFailure` saying why it could not, and how to get a Python with aiosmtpd.
    init() async throws {
        guard let python = ProcessInfo.processInfo.environment["SESSIONKIT_TEST_SMTP_PYTHON"], !python.isEmpty else {
            throw TestFailure(description: "SESSIONKIT_TEST_SMTP_PYTHON is not set; \(howToGetTheRelay)")
        }
        let dir = FileManager.default.temporaryDirectory
            .appendingPathComponent("sk-conformance-relay-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        // A file, not a pipe that nobody reads while the relay runs; a failed start quotes it.
        let stderrPath = dir.appendingPathComponent("relay.stderr")
        _ = FileManager.default.createFile(atPath: stderrPath.path, contents: nil)
        let stderr = try FileHandle(forWritingTo: stderrPath)
        defer { try? stderr.close() }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = [testsRepoRoot.appendingPathComponent("tests/smtp/relay.py").path,
                             "--dir", dir.path, "--port", "0"]
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = FileHandle.nullDevice
        process.standardError = stderr
        do {
            try process.run()
        } catch {
            try? FileManager.default.removeItem(at: dir)
            throw TestFailure(description: "cannot run the SMTP relay with \(python) (\(error)); \(howToGetTheRelay)")
        }
        self.process = process
        self.dir = dir
        let ready = dir.appendingPathComponent("ready")
        let deadline = Date().addingTimeInterval(30)
        var port: Int? = nil
        while port == nil {
            if let text = try? String(contentsOf: ready, encoding: .utf8) {
                port = Int(text.trimmingCharacters(in: .whitespacesAndNewlines))
                if port != nil { break }
            }
            if !process.isRunning {
                let err = (try? String(contentsOf: stderrPath, encoding: .utf8)) ?? ""
                let status = process.terminationStatus
                try? FileManager.default.removeItem(at: dir)
                throw TestFailure(description: "the SMTP relay exited (\(status)): "
                    + "\(String(err.trimmingCharacters(in: .whitespacesAndNewlines).suffix(500)))\n\(howToGetTheRelay)")
            }
            if Date() > deadline {
                kill(process.processIdentifier, SIGKILL)
                process.waitUntilExit()
                try? FileManager.default.removeItem(at: dir)
                throw TestFailure(description: "the SMTP relay did not start within 30 s")
            }
            try await Task.sleep(nanoseconds: 50_000_000)
        }
        self.port = port!
    }

    /// The server's `[mail]` table, pointing at this relay.
    func toml() -> String {
        "[mail]\nsmtp_url = \"smtp://127.0.0.1:\(port)\"\nfrom = \"\(mailFrom)\"\n"
    }

    /// Every mail received for `address` so far (by envelope recipient), in order of arrival.
    func mails(to address: String) -> [CJSON] {
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? [])
            .filter { $0.hasPrefix("mail-") && $0.hasSuffix(".json") }
            .sorted()
        return names.compactMap { name -> CJSON? in
            guard let text = try? String(contentsOf: dir.appendingPathComponent(name), encoding: .utf8),
                  let mail = parseJSONOrNil(text) else { return nil }
            let to = mail["rcpt_tos"]?.arrayValue ?? []
            return to.contains { $0.stringValue?.lowercased() == address.lowercased() } ? mail : nil
        }
    }

    func stop() {
        if process.isRunning {
            process.terminate()
            // Polled, not waitUntilExit(), which spins a run loop on this (concurrency) thread;
            // killed if it lingers.
            let deadline = Date().addingTimeInterval(5)
            while process.isRunning && Date() < deadline { usleep(20_000) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        }
        try? FileManager.default.removeItem(at: dir)
    }
}

/// The first link in a mail's text part to `page` (a `confirm_url` or `reset_url`) with a
/// query: from `page?` to the next white space.
func mailLink(_ text: String, _ page: String) -> String? {
    guard let start = text.range(of: "\(page)?") else { return nil }
    let rest = text[start.lowerBound...]
    return String(rest.prefix { !$0.isWhitespace })
}

/// One query component, URL-decoded as a form (`+` is a space, then %XX).
private func formDecode(_ s: Substring) -> String {
    let spaced = s.replacingOccurrences(of: "+", with: " ")
    return spaced.removingPercentEncoding ?? spaced
}

/// The `token` and `tokenId` of a mailed link, URL-decoded.
func linkToken(_ link: String) -> (String, String)? {
    guard let q = link.firstIndex(of: "?") else { return nil }
    let query = link[link.index(after: q)...].prefix { $0 != "#" }
    var params: [String: String] = [:]
    for pair in query.split(separator: "&") {
        let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
        let key = formDecode(parts[0])
        // The first of a repeated name counts, as in the other runners.
        if params[key] == nil { params[key] = parts.count > 1 ? formDecode(parts[1]) : "" }
    }
    guard let token = params["token"], let tokenId = params["tokenId"] else { return nil }
    return (token, tokenId)
}

/// The one-time code a mail carries: the first run of 6 to 10 digits (no digit on either side)
/// in its text part, with the words that hold a link left out (a token in a link may hold
/// digits).
func mailCode(_ text: String) -> String? {
    for word in text.split(whereSeparator: { $0.isWhitespace }) where !word.contains("://") {
        for run in word.split(whereSeparator: { !("0"..."9").contains($0) }) where (6...10).contains(run.count) {
            return String(run)
        }
    }
    return nil
}
