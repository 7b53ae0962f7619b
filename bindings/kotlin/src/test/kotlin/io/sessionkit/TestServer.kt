package io.sessionkit

import java.io.BufferedReader
import java.io.File
import java.io.InputStreamReader
import java.net.URI
import java.net.http.HttpClient
import java.net.http.HttpRequest
import java.net.http.HttpResponse
import java.nio.file.Files
import java.nio.file.Path
import java.time.Duration
import java.util.Base64
import java.util.UUID
import java.util.concurrent.TimeUnit
import javax.crypto.Mac
import javax.crypto.spec.SecretKeySpec
import kotlinx.coroutines.delay
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeout

const val APP_ID = "kotlin-app"
const val JWT_KEY = "kotlin-custom-token-key"
private const val ADMIN_PUBLIC = "kotlin-admin-public"
private const val ADMIN_PRIVATE = "kotlin-admin-private"

/** One sessionkit-server process with a fresh data dir, and its admin API. */
class TestServer private constructor(
    private val process: Process,
    private val dir: Path,
    val baseUrl: String,
) : AutoCloseable {
    private val http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(5)).build()
    private var adminToken: String? = null

    companion object {
        private val repo: File = File(System.getProperty("user.dir")).resolve("../..").canonicalFile

        fun serverBin(): File {
            val path = System.getenv("SESSIONKIT_SERVER_BIN")?.takeIf { it.isNotEmpty() }
                ?: System.getProperty("sessionkit.server.bin")?.takeIf { it.isNotEmpty() }
                ?: repo.resolve("target/debug/sessionkit-server").path
            val file = File(path).let { if (it.isAbsolute) it else repo.resolve(path) }
            check(file.canExecute()) { "$file not found: run `cargo build -p sessionkit-server`" }
            return file
        }

        /**
         * Starts the server on a free loopback port; token lifetimes in seconds; [extraToml] is
         * appended to the app's table (e.g. a TestIssuer's social providers); [rateLimits] is the
         * `[rate_limits]` table inline (off unless given); [dpop] is the app's `dpop` setting (#29:
         * `"off"`, `"optional"` or `"required"`; the server's default, off, unless given).
         */
        fun start(
            access: Int = 1800,
            refresh: Int = 86400,
            extraToml: String = "",
            rateLimits: String = "{ enabled = false }",
            dpop: String? = null,
        ): TestServer {
            val dir = Files.createTempDirectory("sessionkit-kotlin-")
            val config = dir.resolve("server.toml")
            Files.writeString(
                config,
                """
                listen = "127.0.0.1:0"
                data_dir = "${dir.resolve("data")}"
                test_clock = true
                rate_limits = $rateLimits

                [admin]
                public_key = "$ADMIN_PUBLIC"
                private_key = "$ADMIN_PRIVATE"

                [[app]]
                id = "$APP_ID"
                access_token_lifetime_secs = $access
                refresh_token_lifetime_secs = $refresh
                ${dpop?.let { "dpop = \"$it\"" } ?: ""}

                [app.providers.anon-user]
                [app.providers.local-userpass]
                auto_confirm = true
                reset_function = "success"
                allow_insecure_reset_function = true
                [app.providers.api-key]
                [app.providers.custom-token]
                algorithm = "HS256"
                key = "$JWT_KEY"
                [app.providers.custom-function]
                id_field = "username"
                """.trimIndent() + "\n" + extraToml,
            )
            val process = ProcessBuilder(
                serverBin().path, "--config", config.toString(), "--listen", "127.0.0.1:0",
            ).redirectError(ProcessBuilder.Redirect.DISCARD).start()
            val line = BufferedReader(InputStreamReader(process.inputStream)).readLine()
            val prefix = "listening on "
            if (line == null || !line.startsWith(prefix)) {
                process.destroyForcibly()
                error("server did not start (first line: $line)")
            }
            return TestServer(process, dir, line.removePrefix(prefix).trim())
        }
    }

    override fun close() {
        process.destroy() // SIGTERM: graceful stop
        if (!process.waitFor(10, TimeUnit.SECONDS)) process.destroyForcibly().waitFor()
        dir.toFile().deleteRecursively()
    }

    fun config(
        storage: StorageConfig = StorageConfig.InMemory,
        logger: Logger? = null,
        requestTimeoutMs: Long = 10_000,
        dpop: Boolean = false,
        dpopSigner: DpopSigner? = null,
    ) = AppConfig(
        appId = APP_ID,
        baseUrl = baseUrl,
        storage = storage,
        requestTimeoutMs = requestTimeoutMs,
        logger = logger,
        dpop = dpop,
        dpopSigner = dpopSigner,
    )

    fun app(storage: StorageConfig = StorageConfig.InMemory, logger: Logger? = null) =
        App(config(storage, logger))

    /** An HTTP call; returns the status and the body text. */
    fun http(method: String, url: String, body: String? = null, token: String? = null): Pair<Int, String> {
        val request = HttpRequest.newBuilder(URI.create(url)).timeout(Duration.ofSeconds(10))
            .method(method, body?.let { HttpRequest.BodyPublishers.ofString(it) } ?: HttpRequest.BodyPublishers.noBody())
            .apply { if (body != null) header("Content-Type", "application/json") }
            .apply { if (token != null) header("Authorization", "Bearer $token") }
            .build()
        val response = http.send(request, HttpResponse.BodyHandlers.ofString())
        return response.statusCode() to response.body()
    }

    private fun adminToken(): String = adminToken ?: run {
        val (status, body) = http(
            "POST", "$baseUrl/api/admin/v3.0/auth/providers/mongodb-cloud/login",
            """{"username":"$ADMIN_PUBLIC","apiKey":"$ADMIN_PRIVATE"}""",
        )
        check(status == 200) { "admin login: $status $body" }
        jsonString(body, "access_token").also { adminToken = it }
    }

    /** A call to this app's admin API (`path` below `/groups/g/apps/{app}`). */
    fun admin(method: String, path: String, body: String? = null): Pair<Int, String> =
        asAdmin(method, "$baseUrl/api/admin/v3.0/groups/kotlin-group/apps/$APP_ID$path", body)

    // The cached admin token expires when a test moves the server clock: log in again once.
    private fun asAdmin(method: String, url: String, body: String?): Pair<Int, String> {
        val first = http(method, url, body, adminToken())
        if (first.first != 401) return first
        adminToken = null
        return http(method, url, body, adminToken())
    }

    /** How many refresh requests this app's server has answered. */
    fun refreshCount(): Int {
        val (status, body) = admin("GET", "/metrics")
        check(status == 200) { "metrics: $status $body" }
        return Regex(""""refresh"\s*:\s*(\d+)""").find(body)?.groupValues?.get(1)?.toInt() ?: 0
    }

    fun revokeSessions(userId: String) {
        val (status, body) = admin("PUT", "/users/$userId/logout")
        check(status == 204) { "revoke: $status $body" }
    }

    fun disableUser(userId: String) {
        val (status, body) = admin("PUT", "/users/$userId/disable")
        check(status == 204) { "disable: $status $body" }
    }

    /** Moves the server clock forward, so tokens expire without sleeping. */
    fun advanceClock(secs: Int) {
        val (status, body) = asAdmin("POST", "$baseUrl/api/admin/v3.0/test/clock", """{"advance_secs":$secs}""")
        check(status == 200) { "clock: $status $body" }
    }
}

/** Runs [block] against a fresh server, stopped afterwards; [dpop] as [TestServer.start]'s. */
fun withServer(access: Int = 1800, refresh: Int = 86400, dpop: String? = null, block: suspend (TestServer) -> Unit) =
    TestServer.start(access, refresh, dpop = dpop).use { server -> runBlocking { block(server) } }

/** The string value of a top-level-or-nested `"key": "value"` in a JSON text (tests only). */
fun jsonString(json: String, key: String): String =
    Regex(""""${Regex.escape(key)}"\s*:\s*"([^"]*)"""").find(json)?.groupValues?.get(1)
        ?: error("no \"$key\" in $json")

/** An HS256 JWT, as the app's own identity provider would sign it. */
fun signJwt(claimsJson: String, key: String = JWT_KEY): String {
    val b64 = Base64.getUrlEncoder().withoutPadding()
    val header = b64.encodeToString("""{"alg":"HS256","typ":"JWT"}""".toByteArray())
    val payload = b64.encodeToString(claimsJson.toByteArray())
    val mac = Mac.getInstance("HmacSHA256").apply { init(SecretKeySpec(key.toByteArray(), "HmacSHA256")) }
    val signature = b64.encodeToString(mac.doFinal("$header.$payload".toByteArray()))
    return "$header.$payload.$signature"
}

fun uniqueEmail(): String = "kt-${UUID.randomUUID().toString().take(12)}@example.com"

fun nowSecs(): Long = System.currentTimeMillis() / 1000

/** Callbacks arrive on SDK threads: poll briefly instead of sleeping a fixed time. */
suspend fun waitFor(timeoutMs: Long = 5_000, what: String = "a callback", predicate: () -> Boolean) {
    try {
        withTimeout(timeoutMs) { while (!predicate()) delay(5) }
    } catch (e: kotlinx.coroutines.TimeoutCancellationException) {
        throw AssertionError("timed out waiting for $what")
    }
}

suspend fun App.emailUser(email: String = uniqueEmail(), password: String = "correct-horse"): User {
    emailPasswordAuth().registerUser(email, password)
    return logIn(Creds.emailPassword(email, password))
}

/** Records every event it is given, from whatever SDK thread delivers it. */
class Recorder : AuthEventListener {
    val events: MutableList<AuthEvent> = java.util.Collections.synchronizedList(mutableListOf())
    override fun onEvent(event: AuthEvent) {
        events.add(event)
    }
    fun kinds(): List<AuthEventKind> = synchronized(events) { events.map { it.kind } }
}
