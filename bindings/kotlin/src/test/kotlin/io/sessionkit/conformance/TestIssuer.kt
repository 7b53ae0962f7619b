// The loopback stand-in for Google, Apple, Facebook and OpenID Connect issuers (tests/src/issuer.rs)
// as a child process, for the conformance scenarios with "server": {"social": true} and for the
// suite's own social sign-in tests (#14). Nothing here signs a token: the issuer mints them.

package io.sessionkit.conformance

import java.io.File
import java.net.URI
import java.net.http.HttpClient
import java.net.http.HttpRequest
import java.net.http.HttpResponse
import java.time.Duration
import java.util.concurrent.TimeUnit
import kotlinx.serialization.json.Json
import kotlinx.serialization.json.JsonElement
import kotlinx.serialization.json.JsonObject
import kotlinx.serialization.json.JsonPrimitive
import kotlinx.serialization.json.jsonObject
import kotlinx.serialization.json.jsonPrimitive

/** The issuer's OpenID Connect provider name in [TestIssuer.providersToml] (tests/src/issuer.rs, OIDC_NAME). */
const val OIDC_PROVIDER = "conformance"

/**
 * The `test_issuer` binary: `SESSIONKIT_TEST_ISSUER_BIN`, else `debug/test_issuer` in cargo's
 * target dir (`cargo build -p sessionkit-tests --bin test_issuer`, which scripts/test-kotlin does).
 */
fun issuerBin(): File {
    val path = System.getenv("SESSIONKIT_TEST_ISSUER_BIN")?.takeIf { it.isNotEmpty() }
        ?: targetDir().resolve("debug/test_issuer").path
    return File(path).let { if (it.isAbsolute) it else REPO.resolve(path) }
}

/**
 * One running test issuer. It prints `listening on URL` first and exits when its stdin closes,
 * so [close] (or this JVM's end) stops it.
 */
class TestIssuer : AutoCloseable {
    private val process: Process
    private val http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(10)).build()

    /** Its base URL, e.g. `http://127.0.0.1:41234`. */
    val url: String

    init {
        val bin = issuerBin()
        check(bin.canExecute()) { "$bin not found: run `cargo build -p sessionkit-tests --bin test_issuer`" }
        process = ProcessBuilder(bin.path).redirectError(ProcessBuilder.Redirect.DISCARD).start()
        val stdout = process.inputStream.bufferedReader()
        val line = stdout.readLine()?.trim()
        val prefix = "listening on "
        if (line == null || !line.startsWith(prefix)) {
            close()
            throw IllegalStateException("the test issuer did not start: $line")
        }
        url = line.removePrefix(prefix)
        Thread { runCatching { stdout.readText() } }.apply { isDaemon = true }.start()
    }

    /** The provider tables (TOML) that trust this issuer, to append to an `[[app]]` table. */
    fun providersToml(): String {
        val request = HttpRequest.newBuilder(URI.create("$url/control/providers.toml"))
            .timeout(Duration.ofSeconds(10)).GET().build()
        val response = http.send(request, HttpResponse.BodyHandlers.ofString())
        check(response.statusCode() == 200) { "providers.toml: HTTP ${response.statusCode()}" }
        return response.body()
    }

    /**
     * A token (the code, for `google_auth_code`) for a social credential [kind]
     * (`google_id_token`, `google_auth_code`, `apple_id_token`, `facebook_access_token`,
     * `oidc_id_token`) described by [spec] (`{"sub", "email"?, ...}`, see `credential` in
     * tests/src/issuer.rs). Throws IllegalArgumentException with the issuer's answer when it
     * refuses the kind or spec.
     */
    fun credential(kind: String, spec: JsonElement): String {
        val body = JsonObject(mapOf("kind" to JsonPrimitive(kind), "spec" to spec)).toString()
        val request = HttpRequest.newBuilder(URI.create("$url/control/credential"))
            .timeout(Duration.ofSeconds(10))
            .header("Content-Type", "application/json")
            .POST(HttpRequest.BodyPublishers.ofString(body)).build()
        val response = http.send(request, HttpResponse.BodyHandlers.ofString())
        // A refusal's body is the issuer's reason, never a token.
        require(response.statusCode() == 200) { "the issuer refused $kind: HTTP ${response.statusCode()} ${response.body().take(200)}" }
        return Json.parseToJsonElement(response.body()).jsonObject.getValue("token").jsonPrimitive.content
    }

    override fun close() {
        // Closing its stdin is its signal to stop; kill it if it lingers.
        runCatching { process.outputStream.close() }
        if (!process.waitFor(5, TimeUnit.SECONDS)) process.destroyForcibly().waitFor()
    }
}
