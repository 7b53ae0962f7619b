// The Kotlin conformance runner: every scenario of tests/conformance/scenarios through the Kotlin
// binding, each against a fresh sessionkit-server (or a server given with --base-url), written
// as target/conformance/kotlin.json for tests/conformance/report.py. A faithful translation of
// tests/conformance/runners/python_runner.py; the scenario format is in tests/conformance/README.md.
// Scenarios with "server": {"social": true} also get the loopback test issuer (TestIssuer.kt), and
// those with "server": {"mail": true} a loopback SMTP relay (MailRelay.kt). `hook_request` goes
// through the OkHttp interceptor (io.sessionkit.okhttp), the Kotlin hook for an app's own API.
//
// Two entry points: the JUnit test below (run by `mvn test`, so scripts/test-kotlin counts it)
// and `main` for the command line, with the same options as the other runners:
//   --base-url URL --app-id ID --admin PUBLIC:PRIVATE --jwt-key KEY --filter TEXT
//   --scenarios DIR --out FILE [--server-bin PATH]

package io.sessionkit.conformance

import io.sessionkit.App
import io.sessionkit.AppConfig
import io.sessionkit.AppException
import io.sessionkit.ApiKey
import io.sessionkit.AuthEvent
import io.sessionkit.AuthEventListener
import io.sessionkit.Credentials
import io.sessionkit.DeviceInfo
import io.sessionkit.LogOutScope
import io.sessionkit.SessionError
import io.sessionkit.SessionErrorHandler
import io.sessionkit.StorageConfig
import io.sessionkit.Subscription
import io.sessionkit.User
import io.sessionkit.okhttp.authorizeWith
import java.io.File
import java.math.BigDecimal
import java.net.URI
import java.net.http.HttpClient
import java.net.http.HttpRequest
import java.net.http.HttpResponse
import java.nio.file.Files
import java.time.Duration
import java.util.Base64
import java.util.Collections
import java.util.concurrent.TimeUnit
import javax.crypto.Mac
import javax.crypto.spec.SecretKeySpec
import kotlin.system.exitProcess
import kotlinx.coroutines.runBlocking
import kotlinx.serialization.json.Json
import kotlinx.serialization.json.JsonArray
import kotlinx.serialization.json.JsonElement
import kotlinx.serialization.json.JsonNull
import kotlinx.serialization.json.JsonObject
import kotlinx.serialization.json.JsonPrimitive
import kotlinx.serialization.json.booleanOrNull
import kotlinx.serialization.json.intOrNull
import kotlinx.serialization.json.jsonArray
import kotlinx.serialization.json.jsonObject
import kotlinx.serialization.json.jsonPrimitive
import kotlinx.serialization.json.longOrNull
import okhttp3.OkHttpClient
import okhttp3.Request
import okhttp3.RequestBody.Companion.toRequestBody
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test

const val APP_ID = "sk-test"
const val JWT_KEY = "test-jwt-signing-key-0123456789"
val ADMIN = "test-admin-public" to "test-admin-private"

/** The repository root: the first directory up from here that holds the scenarios. */
val REPO: File = generateSequence(File(System.getProperty("user.dir")).canonicalFile) { it.parentFile }
    .firstOrNull { File(it, "tests/conformance/scenarios").isDirectory }
    ?: File(System.getProperty("user.dir")).resolve("../..").canonicalFile

/** Cargo's target dir, as scripts/test-all and scripts/test-kotlin see it. */
fun targetDir(): File {
    val t = System.getenv("CARGO_TARGET_DIR")?.takeIf { it.isNotEmpty() } ?: "target"
    return File(t).let { if (it.isAbsolute) it else REPO.resolve(t) }
}

private fun serverConfig(
    dataDir: String, access: String, refresh: String, rotation: String,
    autoConfirm: String, resetFunction: String, jwtKey: String, mailLinks: String, dpop: String,
) = """
listen = "127.0.0.1:0"
data_dir = "$dataDir"
test_clock = true
rate_limits = { enabled = false }

[admin]
public_key = "${ADMIN.first}"
private_key = "${ADMIN.second}"

[[app]]
id = "$APP_ID"
access_token_lifetime_secs = $access
refresh_token_lifetime_secs = $refresh
refresh_token_rotation = $rotation
dpop = "$dpop"

[app.providers.anon-user]
[app.providers.local-userpass]
auto_confirm = $autoConfirm
reset_function = "$resetFunction"
allow_insecure_reset_function = true
$mailLinks
[app.providers.api-key]
[app.providers.custom-token]
algorithm = "HS256"
key = "$jwtKey"
[app.providers.custom-function]
id_field = "username"
"""

/** `"server": {"email_otp": true}`: one-time codes by mail, living 300 s of the server's clock. */
private const val EMAIL_OTP_TOML = "[app.providers.email-otp]\ncode_lifetime_secs = 300\n"

/** How long `read_mail` waits for a mail, in seconds. */
private const val MAIL_WAIT_SECS = 15L

/** The scenario is wrong (unknown label, bad step): the scenario fails. */
class Script(message: String) : Exception(message)

/** UniFFI's Kotlin enums are UPPER_SNAKE; transcripts use the Rust names. */
fun pascal(name: String): String =
    name.split("_").joinToString("") { part -> part.lowercase().replaceFirstChar { it.uppercase() } }

fun normaliseError(e: AppException): JsonObject {
    val out = linkedMapOf<String, JsonElement>("type" to JsonPrimitive(e::class.simpleName ?: "?"))
    if (e is AppException.Service) out["code"] = JsonPrimitive(e.code)
    if (e is AppException.SessionExpired) out["kind"] = JsonPrimitive(pascal(e.kind.name))
    return JsonObject(out)
}

// ---- JSON helpers -----------------------------------------------------------------------------

private fun obj(vararg pairs: Pair<String, JsonElement>) = JsonObject(linkedMapOf(*pairs))
private fun str(s: String?): JsonElement = if (s == null) JsonNull else JsonPrimitive(s)

/** A string field of a step, or null when absent or not a string. */
private fun JsonObject.string(key: String): String? =
    (this[key] as? JsonPrimitive)?.takeIf { it.isString }?.content

private fun parseOrNull(text: String): JsonElement? =
    try { Json.parseToJsonElement(text) } catch (e: Exception) { null }

/**
 * JSON equality as the Python runner's `==` sees it: numbers by value (1 == 1.0), object keys in
 * any order. Booleans are not numbers here.
 */
fun jsonEquals(a: JsonElement, b: JsonElement): Boolean = when {
    a is JsonNull || b is JsonNull -> a is JsonNull && b is JsonNull
    a is JsonObject && b is JsonObject ->
        a.keys == b.keys && a.all { (k, v) -> jsonEquals(v, b.getValue(k)) }
    a is JsonArray && b is JsonArray -> a.size == b.size && a.indices.all { jsonEquals(a[it], b[it]) }
    a is JsonPrimitive && b is JsonPrimitive -> when {
        a.isString || b.isString -> a.isString && b.isString && a.content == b.content
        a.booleanOrNull != null || b.booleanOrNull != null -> a.booleanOrNull == b.booleanOrNull
        else -> {
            val x = a.content.toBigDecimalOrNull()
            val y = b.content.toBigDecimalOrNull()
            if (x != null && y != null) x.compareTo(y) == 0 else a.content == b.content
        }
    }
    else -> false
}

// ---- the local server -------------------------------------------------------------------------

/**
 * A sessionkit-server process for one scenario; [extraToml] is appended to its app's table (the
 * social providers of a [TestIssuer]); with a [relay] it sends its mail there (`"mail": true`).
 */
class LocalServer(binary: String, opts: JsonObject, extraToml: String = "", relay: MailRelay? = null) : AutoCloseable {
    private val dir = Files.createTempDirectory("sk-conformance-").toFile()
    private val process: Process
    val baseUrl: String

    init {
        fun opt(key: String, default: String) = (opts[key] as? JsonPrimitive)?.content ?: default
        val config = serverConfig(
            dataDir = dir.path,
            access = opt("access_token_lifetime_secs", "1800"),
            refresh = opt("refresh_token_lifetime_secs", "3600"),
            rotation = opt("refresh_token_rotation", "false").lowercase(),
            autoConfirm = opt("auto_confirm", "true").lowercase(),
            resetFunction = opt("reset_function", "pending"),
            jwtKey = JWT_KEY,
            mailLinks = if (relay != null) "confirm_url = \"$CONFIRM_URL\"\nreset_url = \"$RESET_URL\"" else "",
            dpop = opt("dpop", "optional"),
        ) + extraToml +
            (if ((opts["email_otp"] as? JsonPrimitive)?.booleanOrNull == true) "\n$EMAIL_OTP_TOML" else "") +
            (relay?.let { "\n${it.toml()}" } ?: "")
        val path = File(dir, "server.toml")
        path.writeText(config)
        process = ProcessBuilder(binary, "--config", path.path, "--listen", "127.0.0.1:0")
            // A file, not a pipe nobody reads; a failed start quotes it.
            .redirectError(File(dir, "server.stderr"))
            .start()
        val stdout = process.inputStream.bufferedReader()
        val line = stdout.readLine()?.trim()
        val prefix = "listening on "
        if (line == null || !line.startsWith(prefix)) {
            process.waitFor(10, TimeUnit.SECONDS)
            val stderr = runCatching { File(dir, "server.stderr").readText().trim().takeLast(2000) }.getOrDefault("")
            close()
            throw IllegalStateException("the server did not start: $line; stderr: ${stderr.ifEmpty { "(empty)" }}")
        }
        baseUrl = line.removePrefix(prefix)
        // Keep draining stdout so the server never blocks on a full pipe.
        Thread { runCatching { stdout.readText() } }.apply { isDaemon = true }.start()
    }

    override fun close() {
        process.destroy()
        if (!process.waitFor(10, TimeUnit.SECONDS)) process.destroyForcibly().waitFor()
        dir.deleteRecursively()
    }
}

fun serverBin(): String {
    val path = System.getenv("SESSIONKIT_SERVER_BIN")?.takeIf { it.isNotEmpty() }
        ?: System.getProperty("sessionkit.server.bin")?.takeIf { it.isNotEmpty() }
        ?: targetDir().resolve("debug/sessionkit-server").path
    return File(path).let { if (it.isAbsolute) it else REPO.resolve(path) }.path
}

// ---- the runner -------------------------------------------------------------------------------

class Recorder : AuthEventListener {
    val events: MutableList<AuthEvent> = mutableListOf()
    override fun onEvent(event: AuthEvent) {
        synchronized(this) { events.add(event) }
    }
    fun take(): List<AuthEvent> = synchronized(this) { events.toList().also { events.clear() } }
}

/** The label of the scenario's first App among its devices (`open_device` adds others). */
const val MAIN_DEVICE = "main"

/** The device `open_process` opens: a second App on the main device's file store. */
const val PROCESS_DEVICE = "process"

/** Records each session error with the device ([device]) whose App reported it. */
class ErrorHandler(
    private val sink: MutableList<Triple<String, String, String>>,
    private val device: String = MAIN_DEVICE,
) : SessionErrorHandler {
    override fun onSessionError(user: User, error: SessionError) {
        sink.add(Triple(device, user.id(), pascal(error.kind.name)))
    }
}

/** A listener of the scenario: its recorder, its subscription, and the device it listens on. */
class Listener(val recorder: Recorder, val subscription: Subscription, val device: String)

class Runner(
    private val baseUrl: String,
    private val appId: String,
    private val admin: Pair<String, String>?,
    private val jwtKey: String,
    fileStorage: Boolean,
    /** `"client": {"dpop": true}`: `AppConfig.dpop` for the main App, its restarts and processes. */
    private val clientDpop: Boolean = false,
    /** The scenario's issuer when it has `"server": {"social": true}`. */
    private val issuer: TestIssuer? = null,
    /** The scenario's SMTP relay when it has `"server": {"mail": true}`. */
    private val relay: MailRelay? = null,
) : AutoCloseable {
    companion object {
        private var counter = 0
        private val pid = ProcessHandle.current().pid()
    }

    private val http = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(10)).build()
    private var adminToken: String? = null
    private val storageDir: File? =
        if (fileStorage) Files.createTempDirectory("sk-conformance-client-").toFile() else null
    /** Every device's session errors, in the order they were reported: (device, user id, kind). */
    private val sessionErrors: MutableList<Triple<String, String, String>> =
        Collections.synchronizedList(mutableListOf())
    private var app: App = newApp()
    /** The devices `open_device` opened, by name; the scenario's first App is [MAIN_DEVICE]. */
    private val devices = linkedMapOf<String, App>()
    private var users = mutableMapOf<String, User>()
    /** Which device each user label belongs to. */
    private val userDevice = mutableMapOf<String, String>()
    /** Labels per (device, user id): the same user on two devices has two labels. */
    private val labels = mutableMapOf<Pair<String, String>, String>()
    /** The session ids of each label's last `sessions` list, in the server's order. */
    private val lastSessions = mutableMapOf<String, List<String>>()
    private val emails = linkedMapOf<String, String>()
    private val keys = mutableMapOf<String, Pair<String, String?>>()
    private val listeners = linkedMapOf<String, Listener>()
    private val refreshBase: Long = if (admin != null) refreshCount() else 0
    /** Per address: how many of its mails `read_mail` has read, and the last one's text part. */
    private val mailsRead = mutableMapOf<String, Int>()
    private val lastMail = mutableMapOf<String, String>()
    /** `hook_request`'s OkHttp client; each step adds the SDK's interceptor for its user. */
    private val okHttpClient = lazy { OkHttpClient() }
    private val okHttp by okHttpClient

    /** The main App's config: also each restart's and each process's. */
    private fun mainConfig(): AppConfig {
        val storage = storageDir?.let { StorageConfig.File(it.path, null) } ?: StorageConfig.InMemory
        return AppConfig(appId = appId, baseUrl = baseUrl, storage = storage, requestTimeoutMs = 10_000, dpop = clientDpop)
    }

    private fun newApp(): App {
        val app = App(mainConfig())
        app.setSessionErrorHandler(ErrorHandler(sessionErrors))
        return app
    }

    // ---- helpers ------------------------------------------------------------------------------
    private fun user(step: JsonObject, key: String = "user"): User {
        val label = step.string(key)
        return users[label] ?: throw Script("unknown user label ${label?.let { "'$it'" } ?: "None"}")
    }

    private fun label(user: User, asName: String?, device: String = MAIN_DEVICE): String {
        val key = device to user.id()
        val label = labels[key] ?: (asName ?: "user${labels.size + 1}").also { labels[key] = it }
        users[label] = user
        userDevice[label] = device
        if (asName != null) {
            users[asName] = user
            userDevice[asName] = device
        }
        return label
    }

    private fun labelOfId(userId: String?, device: String = MAIN_DEVICE): String? =
        userId?.let { labels[device to it] ?: "?" }

    /** The App of the device named [name] ([MAIN_DEVICE] when null). */
    private fun deviceApp(name: String?): App =
        if (name == null || name == MAIN_DEVICE) app
        else devices[name] ?: throw Script("unknown device '$name' (open_device first)")

    /** A second App on the same server and app: its own in-memory store, this [platform]. */
    private fun openDevice(name: String, platform: String, dpop: Boolean) {
        if (name == MAIN_DEVICE || name in devices) throw Script("device '$name' is already open")
        val device = DeviceInfo(platform = platform, platformVersion = "1.0", deviceName = "$platform test device")
        val other = App(
            AppConfig(
                appId = appId, baseUrl = baseUrl, storage = StorageConfig.InMemory,
                requestTimeoutMs = 10_000, device = device, dpop = dpop,
            ),
        )
        other.setSessionErrorHandler(ErrorHandler(sessionErrors, name))
        devices[name] = other
    }

    /**
     * `open_process`: another App with the main App's config on its file store, as a second
     * process of the app would be (device [PROCESS_DEVICE]); its handle of [user] is labelled
     * [asName].
     */
    private fun openProcess(user: User, asName: String?) {
        if (storageDir == null) throw Script("open_process needs \"client\": {\"storage\": \"file\"}")
        if (asName == null) throw Script("open_process needs \"as\"")
        if (PROCESS_DEVICE in devices) throw Script("a process is already open")
        val process = App(mainConfig())
        process.setSessionErrorHandler(ErrorHandler(sessionErrors, PROCESS_DEVICE))
        devices[PROCESS_DEVICE] = process
        val id = user.id()
        val same = process.allUsers().firstOrNull { it.id() == id }
            ?: throw Script("the process's App has no user $id in the shared store")
        label(same, asName, PROCESS_DEVICE)
    }

    /**
     * `dpop_bound`: whether the session is bound, and what the stored access token's `cnf.jkt`
     * is: `"thumbprint"` (the session's key's), `"other"`, or null (no `cnf`, no token).
     */
    private fun dpopBound(user: User): JsonObject {
        val thumbprint = user.dpopThumbprint()
        val jkt = user.accessToken()?.let { token ->
            val payload = token.split('.').getOrNull(1) ?: return@let null
            val claims = parseOrNull(String(Base64.getUrlDecoder().decode(payload))) as? JsonObject
            ((claims?.get("cnf") as? JsonObject)?.get("jkt") as? JsonPrimitive)?.content
        }
        val cnf = when {
            jkt == null -> null
            jkt == thumbprint -> "thumbprint"
            else -> "other"
        }
        return obj("bound" to JsonPrimitive(thumbprint != null), "cnf_jkt" to str(cnf))
    }

    /** `hook_request`: the request through the OkHttp interceptor (and authenticator) for [user]. */
    private fun hookRequest(user: User, method: String, path: String): JsonObject {
        val client = okHttp.newBuilder()
            .authorizeWith(user, allowInsecureHttp = baseUrl.startsWith("http://"))
            .build()
        val body = if (method.uppercase() in setOf("POST", "PUT", "PATCH")) ByteArray(0).toRequestBody() else null
        val request = Request.Builder().url(baseUrl + path).method(method, body).build()
        return client.newCall(request).execute().use { obj("status" to JsonPrimitive(it.code)) }
    }

    private fun logOutScope(name: String?): LogOutScope? = when (name) {
        null -> null
        "this_device" -> LogOutScope.THIS_DEVICE
        "other_devices" -> LogOutScope.OTHER_DEVICES
        "everywhere" -> LogOutScope.EVERYWHERE
        else -> throw Script("log_out \"scope\" is this_device, other_devices or everywhere, not '$name'")
    }

    /** The id a `revoke_session` step names: index N of a label's last list, or "unknown". */
    private fun sessionId(spec: JsonElement?): String {
        if ((spec as? JsonPrimitive)?.content == "unknown") return "000000000000000000000000"
        val o = spec as? JsonObject ?: throw Script("revoke_session needs \"session\": {\"of\", \"index\"} or \"unknown\"")
        val of = o.string("of") ?: throw Script("revoke_session \"session\" needs \"of\"")
        val ids = lastSessions[of] ?: throw Script("no sessions list of '$of' yet (a sessions step first)")
        val index = (o["index"] as? JsonPrimitive)?.intOrNull ?: throw Script("revoke_session \"session\" needs \"index\"")
        return ids.getOrNull(index) ?: throw Script("'$of' had ${ids.size} sessions, no index $index")
    }

    private fun email(name: String): String = emails.getOrPut(name) {
        counter += 1
        "$name-$pid-$counter@example.com"
    }

    private fun text(v: JsonElement?): String {
        val s = (v as? JsonPrimitive)?.takeIf { it.isString }?.content ?: ""
        return if (s.startsWith("\$email:")) email(s.removePrefix("\$email:")) else s
    }

    /** A required field, as Python's `step["key"]`. */
    private fun JsonObject.need(key: String): JsonElement =
        this[key] ?: throw Script("missing \"$key\"")

    fun placeholders(value: JsonElement): JsonElement = when (value) {
        is JsonPrimitive -> if (value.isString) {
            emails.entries.firstOrNull { it.value == value.content }
                ?.let { JsonPrimitive("\$email:${it.key}") } ?: value
        } else value
        is JsonArray -> JsonArray(value.map { placeholders(it) })
        is JsonObject -> JsonObject(value.mapValuesTo(linkedMapOf()) { placeholders(it.value) })
    }

    private fun credentials(c: JsonObject): Credentials {
        c["anonymous"]?.let { a ->
            val reuse = (a as? JsonObject)?.get("reuse")?.jsonPrimitive?.booleanOrNull ?: true
            return Credentials.Anonymous(reuse)
        }
        c["email_password"]?.let { e ->
            val o = e.jsonObject
            return Credentials.EmailPassword(text(o.need("email")), text(o.need("password")))
        }
        c["api_key"]?.let { k ->
            val label = (k as? JsonPrimitive)?.content ?: ""
            val key = keys[label]?.second
            return Credentials.ApiKey(key ?: label)
        }
        c["jwt"]?.let { j -> return Credentials.Jwt(signJwt(j.jsonObject, jwtKey, appId)) }
        c["function"]?.let { f -> return Credentials.Function(f.toString()) }
        c["email_otp"]?.let { e ->
            val o = e.jsonObject
            val email = text(o.need("email"))
            return Credentials.EmailOtp(email, mailedCode(email, o["code"]))
        }
        for (kind in SOCIAL_KINDS) {
            val spec = c[kind] ?: continue
            val issuer = issuer ?: throw Script("social credentials need \"server\": {\"social\": true}")
            val token = try {
                issuer.credential(kind, spec)
            } catch (e: IllegalArgumentException) {
                throw Script(e.message ?: "the issuer refused $kind")
            }
            return when (kind) {
                "google_id_token" -> Credentials.GoogleIdToken(token)
                "google_auth_code" -> Credentials.GoogleAuthCode(token)
                "apple_id_token" -> Credentials.AppleIdToken(token)
                "facebook_access_token" -> Credentials.FacebookAccessToken(token)
                else -> Credentials.OidcIdToken(OIDC_PROVIDER, token)
            }
        }
        throw Script("unknown credentials $c")
    }

    /** An HTTP call; returns the status and the body as JSON (null when empty or not JSON). */
    private fun http(method: String, url: String, body: JsonElement?, token: String?): Pair<Int, JsonElement?> {
        val data = body?.takeIf { it !is JsonNull }?.toString()
        val request = HttpRequest.newBuilder(URI.create(url)).timeout(Duration.ofSeconds(10))
            .method(method, data?.let { HttpRequest.BodyPublishers.ofString(it) } ?: HttpRequest.BodyPublishers.noBody())
            .apply { if (data != null) header("Content-Type", "application/json") }
            .apply { if (token != null) header("Authorization", "Bearer $token") }
            .build()
        val response = http.send(request, HttpResponse.BodyHandlers.ofString())
        val text = response.body()
        return response.statusCode() to (if (text.isEmpty()) null else parseOrNull(text))
    }

    private fun adminLogin(): String {
        val (public, private) = admin ?: throw Script("this step needs the admin API (--admin)")
        val url = "$baseUrl/api/admin/v3.0/auth/providers/mongodb-cloud/login"
        val (status, doc) = http("POST", url, obj("username" to str(public), "apiKey" to str(private)), null)
        if (status != 200) throw Script("admin login: $status $doc")
        val token = (doc as? JsonObject)?.string("access_token") ?: throw Script("admin login: $doc")
        adminToken = token
        return token
    }

    private fun adminCall(method: String, path: String, body: JsonElement? = null): Pair<Int, JsonElement?> {
        val url = if (path.startsWith("/api/")) "$baseUrl$path"
        else "$baseUrl/api/admin/v3.0/groups/conformance/apps/$appId$path"
        // A cached admin token expires when a scenario moves the server clock: log in again.
        for (fresh in listOf(false, true)) {
            val token = adminToken?.takeIf { !fresh } ?: adminLogin()
            val (status, doc) = http(method, url, body, token)
            if (status != 401 || fresh) return status to doc
        }
        error("unreachable")
    }

    private fun adminOk(method: String, path: String, body: JsonElement? = null) {
        val (status, doc) = adminCall(method, path, body)
        if (status !in 200..299) throw Script("admin $path: $status $doc")
    }

    private fun refreshCount(): Long {
        val (_, doc) = adminCall("GET", "/metrics")
        val requests = (doc as? JsonObject)?.get("requests") as? JsonObject
        return (requests?.get("refresh") as? JsonPrimitive)?.longOrNull ?: 0
    }

    private fun outboxToken(email: String, kind: String): Pair<String, String> {
        val (_, doc) = adminCall("GET", "/outbox?email=$email")
        val items = (doc as? JsonArray).orEmpty().filterIsInstance<JsonObject>()
            .filter { it.string("kind") == kind }
        val last = items.lastOrNull() ?: throw Script("no $kind token in the outbox for $email")
        return (last.string("token") ?: "") to (last.string("tokenId") ?: "")
    }

    /** Waits for the next mail to [email] not read yet; remembers it as its last mail. */
    private fun readMail(email: String): JsonObject {
        val relay = relay ?: throw Script("read_mail needs \"server\": {\"mail\": true}")
        val n = mailsRead[email] ?: 0
        val deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(MAIL_WAIT_SECS)
        var mail: JsonObject?
        while (true) {
            mail = relay.mailsTo(email).getOrNull(n)
            if (mail != null) break
            if (System.nanoTime() > deadline) {
                throw Script("no mail number ${n + 1} to $email within $MAIL_WAIT_SECS s ($n read)")
            }
            Thread.sleep(50)
        }
        val text = mail!!.string("text") ?: ""
        mailsRead[email] = n + 1
        lastMail[email] = text
        val link = when {
            mailLink(text, CONFIRM_URL) != null -> "confirm"
            mailLink(text, RESET_URL) != null -> "reset"
            else -> null
        }
        return obj("link" to str(link), "code" to JsonPrimitive(mailCode(text) != null))
    }

    /** The token and tokenId of the link to [page] in the last mail read for [email]. */
    private fun mailedToken(email: String, page: String): Pair<String, String> {
        val link = lastMail[email]?.let { mailLink(it, page) }
            ?: throw Script("the last mail read for $email has no link to $page (read_mail first)")
        return linkToken(link) ?: throw Script("the link to $page has no token and tokenId")
    }

    /** `"mailed"`: the code in the last mail read for [email]; `"wrong"`: it with its last digit changed. */
    private fun mailedCode(email: String, which: JsonElement?): String {
        val code = lastMail[email]?.let { mailCode(it) }
            ?: throw Script("the last mail read for $email has no code (read_mail first)")
        return when ((which as? JsonPrimitive)?.content) {
            "mailed" -> code
            "wrong" -> code.dropLast(1) + ((code.last().digitToInt() + 1) % 10)
            else -> throw Script("email_otp \"code\" is \"mailed\" or \"wrong\", not $which")
        }
    }

    private fun keyView(k: ApiKey) =
        obj("name" to str(k.name), "disabled" to JsonPrimitive(k.disabled), "has_key" to JsonPrimitive(k.key != null))

    private fun profileView(name: String?, email: String?) = obj("name" to str(name), "email" to str(email))

    private fun jsonOrNull(data: String?): JsonElement =
        if (data.isNullOrEmpty()) JsonNull else Json.parseToJsonElement(data)

    // ---- steps --------------------------------------------------------------------------------
    suspend fun step(step: JsonObject): JsonElement {
        val op = step.string("do")
        val asName = step.string("as")
        val epa = app.emailPasswordAuth()
        when (op) {
            "log_in" -> {
                val device = step.string("device") ?: MAIN_DEVICE
                val user = deviceApp(device).logIn(credentials(step.need("credentials").jsonObject))
                return JsonPrimitive(label(user, asName, device))
            }
            "open_device" -> openDevice(
                step.string("name") ?: throw Script("open_device needs \"name\""),
                step.string("platform") ?: throw Script("open_device needs \"platform\""),
                (step["dpop"] as? JsonPrimitive)?.booleanOrNull == true,
            )
            "open_process" -> openProcess(user(step), asName)
            "dpop_bound" -> return dpopBound(user(step))
            "stolen_refresh" -> {
                // A thief's copy of the refresh token, sent as a bearer token with no proof.
                val token = user(step).refreshToken().orEmpty()
                val (status, doc) = http("POST", "$baseUrl/api/client/v2.0/auth/session", null, token)
                return obj("status" to JsonPrimitive(status), "code" to str((doc as? JsonObject)?.string("error_code")))
            }
            "stolen_access" -> {
                val token = user(step).accessToken().orEmpty()
                val (status, _) = http("GET", "$baseUrl/api/client/v2.0/auth/profile", null, token)
                return obj("status" to JsonPrimitive(status))
            }
            "hook_request" -> return hookRequest(
                user(step),
                step.string("method") ?: "GET",
                text(step.need("path")).replace("\$app_id", appId),
            )
            "sessions" -> {
                val list = user(step).sessions()
                lastSessions[step.string("user")!!] = list.map { it.id }
                return JsonArray(
                    list.map {
                        obj(
                            "platform" to str(it.device.platform),
                            "current" to JsonPrimitive(it.current),
                            "provider_type" to str(it.providerType),
                        )
                    },
                )
            }
            "revoke_session" -> user(step).revokeSession(sessionId(step["session"]))
            "register" -> epa.registerUser(text(step.need("email")), text(step.need("password")))
            "confirm_from_outbox" -> {
                val (token, tokenId) = outboxToken(text(step.need("email")), "confirm")
                epa.confirmUser(token, tokenId)
            }
            "confirm" -> epa.confirmUser(text(step.need("token")), text(step.need("token_id")))
            "resend_confirmation" -> epa.resendConfirmationEmail(text(step.need("email")))
            "retry_custom_confirmation" -> epa.retryCustomConfirmation(text(step.need("email")))
            "send_reset_email" -> epa.sendResetPasswordEmail(text(step.need("email")))
            "reset_from_outbox" -> {
                val (token, tokenId) = outboxToken(text(step.need("email")), "reset")
                epa.resetPassword(token, tokenId, text(step.need("password")))
            }
            "read_mail" -> return readMail(text(step.need("email")))
            "confirm_from_mail" -> {
                val (token, tokenId) = mailedToken(text(step.need("email")), CONFIRM_URL)
                epa.confirmUser(token, tokenId)
            }
            "reset_from_mail" -> {
                val (token, tokenId) = mailedToken(text(step.need("email")), RESET_URL)
                epa.resetPassword(token, tokenId, text(step.need("password")))
            }
            "email_otp_send" -> app.emailOtp().send(text(step.need("email")))
            "call_reset_function" -> epa.callResetPasswordFunction(
                text(step.need("email")), text(step.need("password")),
                (step["args"] ?: JsonArray(emptyList())).toString(),
            )
            "current_user" -> return str(labelOfId(app.currentUser()?.id()))
            "all_users" -> return JsonArray(app.allUsers().map { str(labelOfId(it.id())) })
            "state" -> return JsonPrimitive(pascal(user(step).state().name))
            "provider_type" -> return JsonPrimitive(user(step).providerType())
            "identities" -> return JsonArray(user(step).identities().map { it.providerType }.sorted().map { JsonPrimitive(it) })
            "profile" -> {
                val p = user(step).profile()
                return profileView(p.name, p.email)
            }
            "has_tokens" -> {
                val u = user(step)
                return obj(
                    "access" to JsonPrimitive(u.accessToken() != null),
                    "refresh" to JsonPrimitive(u.refreshToken() != null),
                )
            }
            "switch_user" -> app.switchUser(user(step))
            "log_out" -> user(step).logOut(logOutScope(step.string("scope")))
            "remove_user" -> app.removeUser(user(step))
            "delete_user" -> app.deleteUser(user(step))
            "link" -> user(step).linkCredentials(credentials(step.need("credentials").jsonObject))
            "refresh" -> user(step).refreshAccessToken()
            "valid_access_token" -> {
                val minTtl = (step["min_ttl_secs"] as? JsonPrimitive)?.takeIf { it !is JsonNull }
                    ?.let { it.intOrNull ?: throw Script("min_ttl_secs is not an integer: $it") }
                user(step).validAccessToken(minTtl)
            }
            "custom_data" -> return jsonOrNull(user(step).customDataJson())
            "refresh_custom_data" -> return jsonOrNull(user(step).refreshCustomData())
            "refresh_profile" -> {
                val p = user(step).refreshProfile()
                return profileView(p.name, p.email)
            }
            "call_function" -> {
                val args = step["args"] ?: JsonNull
                val raw = if (args is JsonPrimitive && args.isString) args.content else args.toString()
                val result = user(step).callFunction(step.string("name") ?: "", raw)
                return parseOrNull(result) ?: JsonPrimitive(result)
            }
            "request" -> {
                val path = text(step.need("path")).replace("\$app_id", appId)
                val body = step["body"]?.toString()
                val response = user(step).request(step.string("method") ?: "GET", path, body)
                return obj("status" to JsonPrimitive(response.status))
            }
            "api_key_create" -> {
                val k = user(step).apiKeys().create(step.string("name") ?: "")
                keys[asName ?: k.name] = k.id to k.key
                return keyView(k)
            }
            "api_key_list" -> {
                val list = user(step).apiKeys().fetchAll()
                return JsonArray(list.sortedBy { it.name }.map { keyView(it) })
            }
            "api_key_fetch", "api_key_enable", "api_key_disable", "api_key_delete" -> {
                val label = step.string("key") ?: ""
                val keyId = keys[label]?.first ?: label
                val apiKeys = user(step).apiKeys()
                when (op) {
                    "api_key_fetch" -> return keyView(apiKeys.fetch(keyId))
                    "api_key_enable" -> apiKeys.enable(keyId)
                    "api_key_disable" -> apiKeys.disable(keyId)
                    else -> apiKeys.delete(keyId)
                }
            }
            "subscribe" -> {
                if (asName == null) throw Script("subscribe needs \"as\"")
                val recorder = Recorder()
                listeners[asName] = if ("user" in step) {
                    Listener(recorder, user(step).subscribe(recorder), userDevice[step.string("user")] ?: MAIN_DEVICE)
                } else {
                    val device = step.string("device") ?: MAIN_DEVICE
                    Listener(recorder, deviceApp(device).subscribe(recorder), device)
                }
            }
            "unsubscribe" -> {
                val label = step.string("listener")
                val listener = listeners.remove(label)
                    ?: throw Script("unknown listener ${label?.let { "'$it'" } ?: "None"}")
                listener.subscription.cancel()
            }
            "events" -> {
                val label = step.string("listener")
                val listener = listeners[label]
                    ?: throw Script("unknown listener ${label?.let { "'$it'" } ?: "None"}")
                return JsonArray(
                    listener.recorder.take().map {
                        JsonPrimitive("${pascal(it.kind.name)}:${labelOfId(it.userId, listener.device) ?: "-"}")
                    },
                )
            }
            "session_errors" -> {
                val errors = synchronized(sessionErrors) { sessionErrors.toList().also { sessionErrors.clear() } }
                return JsonArray(errors.map { (device, id, kind) -> JsonPrimitive("${labelOfId(id, device)}:$kind") })
            }
            "refresh_count" -> return JsonPrimitive(refreshCount() - refreshBase)
            "restart_app" -> {
                if (storageDir == null) throw Script("restart_app needs \"client\": {\"storage\": \"file\"}")
                listeners.values.forEach { it.subscription.cancel() }
                listeners.clear()
                app = newApp()
                val fresh = app.allUsers().associateBy { it.id() }
                // Only the main device restarts; the other devices' users stay as they are.
                users = users.mapNotNull { (label, u) ->
                    if (userDevice[label] != MAIN_DEVICE) label to u else fresh[u.id()]?.let { label to it }
                }.toMap().toMutableMap()
            }
            "admin_revoke", "admin_disable", "admin_enable", "admin_delete" -> {
                val uid = user(step).id()
                val (method, path) = when (op) {
                    "admin_revoke" -> "PUT" to "/users/$uid/logout"
                    "admin_disable" -> "PUT" to "/users/$uid/disable"
                    "admin_enable" -> "PUT" to "/users/$uid/enable"
                    else -> "DELETE" to "/users/$uid"
                }
                adminOk(method, path)
            }
            "admin_set_custom_data" -> adminOk("PUT", "/users/${user(step).id()}/custom_data", step["data"])
            "advance_server_clock" ->
                adminOk("POST", "/api/admin/v3.0/test/clock", obj("advance_secs" to step.need("secs")))
            else -> throw Script("unknown operation ${op?.let { "'$it'" } ?: "None"}")
        }
        return JsonNull
    }

    override fun close() {
        listeners.values.forEach { it.subscription.cancel() }
        devices.values.forEach { it.close() }
        storageDir?.deleteRecursively()
        if (okHttpClient.isInitialized()) {
            okHttp.dispatcher.executorService.shutdown()
            okHttp.connectionPool.evictAll()
        }
    }
}

/** The social credential kinds of the scenario format, as the test issuer names them. */
private val SOCIAL_KINDS =
    listOf("google_id_token", "google_auth_code", "apple_id_token", "facebook_access_token", "oidc_id_token")

fun signJwt(spec: JsonObject, key: String, appId: String): String {
    val b64 = Base64.getUrlEncoder().withoutPadding()
    fun enc(e: JsonElement) = b64.encodeToString(e.toString().toByteArray())
    val now = System.currentTimeMillis() / 1000
    val expired = (spec["expired"] as? JsonPrimitive)?.booleanOrNull == true
    val claims = linkedMapOf<String, JsonElement>(
        "sub" to (spec["sub"] ?: throw Script("jwt needs \"sub\"")),
        "aud" to JsonPrimitive(appId),
        "iat" to JsonPrimitive(now - 120),
        "exp" to JsonPrimitive(if (expired) now - 60 else now + 3600),
    )
    (spec["claims"] as? JsonObject)?.let { claims.putAll(it) }
    val payload = enc(JsonObject(claims))
    val signature = (spec["signature"] as? JsonPrimitive)?.content
    if (signature == "none") {
        return "${enc(obj("alg" to JsonPrimitive("none"), "typ" to JsonPrimitive("JWT")))}.$payload."
    }
    val header = enc(obj("alg" to JsonPrimitive("HS256"), "typ" to JsonPrimitive("JWT")))
    val secret = if (signature == "wrong_key") "not-the-server-key" else key
    val mac = Mac.getInstance("HmacSHA256").apply { init(SecretKeySpec(secret.toByteArray(), "HmacSHA256")) }
    return "$header.$payload.${b64.encodeToString(mac.doFinal("$header.$payload".toByteArray()))}"
}

/** Null when the outcome meets `expect`, else what went wrong. */
fun checkOutcome(expect: JsonObject?, outcome: JsonObject): String? {
    val got = outcome["error"] as? JsonObject
    if (expect == null) return got?.let { "expected success, got error $it" }
    if ("error" in expect) {
        if (got == null) return "expected error $expect, got $outcome"
        val mismatch = (got["type"] as? JsonPrimitive)?.content != (expect["error"] as? JsonPrimitive)?.content ||
            listOf("code", "kind").any { k -> k in expect && !jsonEquals(got[k] ?: JsonNull, expect.getValue(k)) }
        return if (mismatch) "expected error $expect, got $got" else null
    }
    if ("value" in expect) {
        val ok = outcome["ok"]
        return if (ok == null || !jsonEquals(ok, expect.getValue("value"))) {
            "expected value ${expect["value"]}, got $outcome"
        } else null
    }
    return got?.let { "expected success, got error $it" }
}

// ---- scenarios --------------------------------------------------------------------------------

data class Options(
    val scenarios: File = REPO.resolve("tests/conformance/scenarios"),
    val out: File = targetDir().resolve("conformance/kotlin.json"),
    val baseUrl: String? = null,
    val appId: String? = null,
    val admin: Pair<String, String>? = null,
    val jwtKey: String? = null,
    val filter: String? = null,
    val serverBin: String = serverBin(),
)

data class ScenarioResult(
    val name: String,
    val skipped: String?,
    val passed: Boolean,
    val failures: List<String>,
    val transcript: List<JsonObject>,
) {
    fun toJson() = obj(
        "name" to JsonPrimitive(name),
        "skipped" to str(skipped),
        "passed" to JsonPrimitive(passed),
        "failures" to JsonArray(failures.map { JsonPrimitive(it) }),
        "transcript" to JsonArray(transcript),
    )
}

fun runScenario(file: File, options: Options): ScenarioResult {
    val name = file.nameWithoutExtension
    val scenario = Json.parseToJsonElement(file.readText()).jsonObject
    val serverOpts = (scenario["server"] as? JsonObject) ?: JsonObject(emptyMap())
    if (options.baseUrl != null && serverOpts.isNotEmpty()) {
        return ScenarioResult(name, "needs its own server configuration", false, emptyList(), emptyList())
    }
    val social = (serverOpts["social"] as? JsonPrimitive)?.booleanOrNull == true
    val mail = (serverOpts["mail"] as? JsonPrimitive)?.booleanOrNull == true
    // Started before the server, whose config names the issuer's URL and the relay's port;
    // stopped after it.
    val issuer = if (social && options.baseUrl == null) TestIssuer() else null
    val relay = try {
        if (mail && options.baseUrl == null) MailRelay() else null
    } catch (e: IllegalStateException) {
        // No Python with aiosmtpd: the scenario fails saying how to get one (never a skip).
        issuer?.close()
        return ScenarioResult(name, null, false, listOf(e.message ?: "the SMTP relay did not start"), emptyList())
    }
    val server = try {
        if (options.baseUrl == null) {
            LocalServer(options.serverBin, serverOpts, issuer?.providersToml()?.let { "\n$it" } ?: "", relay)
        } else null
    } catch (e: Exception) {
        issuer?.close()
        relay?.close()
        // The server refused its config (a provider this build lacks, say): this scenario
        // fails, the others still run.
        if (e is IllegalStateException) {
            return ScenarioResult(name, null, false, listOf(e.message ?: "the server did not start"), emptyList())
        }
        throw e
    }
    val failures = mutableListOf<String>()
    val transcript = mutableListOf<JsonObject>()
    try {
        val baseUrl = server?.baseUrl ?: options.baseUrl!!
        val appId = if (server != null) APP_ID else options.appId!!
        val admin = if (server != null) ADMIN else options.admin
        val client = (scenario["client"] as? JsonObject) ?: JsonObject(emptyMap())
        val fileStorage = client.string("storage") == "file"
        val clientDpop = (client["dpop"] as? JsonPrimitive)?.booleanOrNull == true
        Runner(baseUrl, appId, admin, options.jwtKey ?: JWT_KEY, fileStorage, clientDpop, issuer, relay).use { runner ->
            runBlocking {
                val steps = (scenario["steps"] as? JsonArray).orEmpty()
                for ((i, element) in steps.withIndex()) {
                    val step = element as? JsonObject ?: JsonObject(emptyMap())
                    val op = step.string("do") ?: "?"
                    val outcome = try {
                        obj("ok" to runner.placeholders(runner.step(step)))
                    } catch (e: Script) {
                        failures.add("step $i ($op): ${e.message}")
                        break
                    } catch (e: AppException) {
                        obj("error" to normaliseError(e))
                    } catch (e: Exception) {
                        // Not an SDK error (a panic, a broken runner): the scenario fails.
                        failures.add("step $i ($op): unexpected ${e::class.qualifiedName}: ${e.message}")
                        break
                    }
                    checkOutcome(step["expect"] as? JsonObject, outcome)?.let { failures.add("step $i ($op): $it") }
                    transcript.add(obj("step" to JsonPrimitive(i), "do" to JsonPrimitive(op), "outcome" to outcome))
                }
            }
        }
    } finally {
        server?.close()
        issuer?.close()
        relay?.close()
    }
    return ScenarioResult(name, null, failures.isEmpty(), failures, transcript)
}

/**
 * Runs the scenarios, prints SKIP/FAIL (and, when [verbose], PASS) lines and the summary line
 * `<summary>: N passed, N failed`, and writes the transcript to `options.out`.
 */
fun runAll(options: Options, summary: String = "kotlin", verbose: Boolean = true): List<ScenarioResult> {
    val files = (options.scenarios.listFiles { f -> f.name.endsWith(".json") } ?: emptyArray())
        .sortedBy { it.name }
        .filter { options.filter == null || options.filter in it.name }
    val results = files.map { f ->
        runScenario(f, options).also { r ->
            when {
                r.skipped != null -> println("SKIP ${r.name} (${r.skipped})")
                r.passed -> if (verbose) println("PASS ${r.name}")
                else -> println("FAIL ${r.name}\n  " + r.failures.joinToString("\n  "))
            }
        }
    }
    options.out.absoluteFile.parentFile.mkdirs()
    val doc = obj("language" to JsonPrimitive("kotlin"), "scenarios" to JsonArray(results.map { it.toJson() }))
    options.out.writeText(PRETTY.encodeToString(JsonElement.serializer(), doc) + "\n")
    val ran = results.filter { it.skipped == null }
    val failed = ran.count { !it.passed }
    val skipped = results.size - ran.size
    println("$summary: ${ran.size - failed} passed, $failed failed" + (if (skipped > 0) ", $skipped skipped" else ""))
    return results
}

private val PRETTY = Json { prettyPrint = true }

private const val USAGE = """usage: ConformanceRunner [--scenarios DIR] [--out FILE] [--base-url URL --app-id ID]
                         [--admin PUBLIC:PRIVATE] [--jwt-key KEY] [--filter TEXT] [--server-bin PATH]"""

fun parseArgs(args: Array<String>): Options {
    var o = Options()
    var i = 0
    fun value(flag: String): String {
        if (i + 1 >= args.size) throw IllegalArgumentException("$flag needs a value")
        i += 1
        return args[i]
    }
    fun path(v: String) = File(v).let { if (it.isAbsolute) it else File(System.getProperty("user.dir")).resolve(v) }
    while (i < args.size) {
        when (val flag = args[i]) {
            "--scenarios" -> o = o.copy(scenarios = path(value(flag)))
            "--out" -> o = o.copy(out = path(value(flag)))
            "--base-url" -> o = o.copy(baseUrl = value(flag))
            "--app-id" -> o = o.copy(appId = value(flag))
            "--admin" -> {
                val v = value(flag)
                val (pub, priv) = v.split(":", limit = 2).let { it[0] to it.getOrElse(1) { "" } }
                o = o.copy(admin = pub to priv)
            }
            "--jwt-key" -> o = o.copy(jwtKey = value(flag))
            "--filter" -> o = o.copy(filter = value(flag))
            "--server-bin" -> o = o.copy(serverBin = path(value(flag)).path)
            "-h", "--help" -> { println(USAGE); exitProcess(0) }
            else -> throw IllegalArgumentException("unknown argument $flag")
        }
        i += 1
    }
    if ((o.baseUrl == null) != (o.appId == null)) throw IllegalArgumentException("--base-url and --app-id go together")
    return o
}

/** The command-line runner; see tests/conformance/README.md. Exits 1 on any failure. */
fun main(args: Array<String>) {
    val options = try {
        parseArgs(args)
    } catch (e: IllegalArgumentException) {
        System.err.println("$USAGE\nerror: ${e.message}")
        exitProcess(2)
    }
    // Under `mvn exec:java` nothing sets JNA's path: default to cargo's debug build.
    if (System.getProperty("jna.library.path").isNullOrEmpty()) {
        System.setProperty("jna.library.path", targetDir().resolve("debug").path)
    }
    val results = runAll(options)
    val ran = results.filter { it.skipped == null }
    exitProcess(if (ran.isEmpty() || ran.any { !it.passed }) 1 else 0)
}

/** The JUnit entry: every scenario against a local server; fails listing the failing ones. */
class ConformanceTest {
    @Test
    fun `every conformance scenario passes through the Kotlin binding`() {
        // Not "kotlin: ..." : that line is scripts/test-kotlin's summary of the whole suite.
        val results = runAll(Options(), summary = "kotlin conformance", verbose = false)
        val ran = results.filter { it.skipped == null }
        assertTrue(ran.isNotEmpty(), "no scenario ran (none found in ${Options().scenarios})")
        val failing = ran.filter { !it.passed }
        assertTrue(failing.isEmpty()) {
            "${failing.size} of ${ran.size} scenarios failed:\n" +
                failing.joinToString("\n") { r -> "${r.name}\n  " + r.failures.joinToString("\n  ") }
        }
    }
}
