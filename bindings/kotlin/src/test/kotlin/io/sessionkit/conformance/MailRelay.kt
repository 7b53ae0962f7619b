// The loopback SMTP relay of the conformance scenarios with "server": {"mail": true}:
// tests/smtp/relay.py (aiosmtpd) as a child process, run by the Python of
// SESSIONKIT_TEST_SMTP_PYTHON (scripts/test-all makes it: $target/smtp-venv), on a port the kernel
// picks (--port 0; the port is in DIR/ready). Each mail it takes is DIR/mail-NNNN.json.

package io.sessionkit.conformance

import java.io.File
import java.net.URLDecoder
import java.nio.file.Files
import java.util.concurrent.TimeUnit
import kotlinx.serialization.json.Json
import kotlinx.serialization.json.JsonArray
import kotlinx.serialization.json.JsonObject
import kotlinx.serialization.json.JsonPrimitive
import kotlinx.serialization.json.jsonObject

/** What to do when the relay cannot run: the scenario fails saying this, it is never skipped. */
const val HOW_TO_GET_THE_RELAY = "the mail scenarios need a Python with aiosmtpd for their SMTP " +
    "relay: python3 -m venv target/smtp-venv && target/smtp-venv/bin/pip install aiosmtpd " +
    "cryptography, then set SESSIONKIT_TEST_SMTP_PYTHON=\$PWD/target/smtp-venv/bin/python " +
    "(scripts/test-all does both)"

/**
 * One running relay; [close] stops it and deletes its directory. Throws IllegalStateException,
 * saying how to get the relay, when it cannot start.
 */
class MailRelay : AutoCloseable {
    private val dir: File = Files.createTempDirectory("sk-conformance-relay-").toFile()
    private val process: Process

    /** Its port on 127.0.0.1. */
    val port: Int

    init {
        val python = System.getenv("SESSIONKIT_TEST_SMTP_PYTHON")?.takeIf { it.isNotEmpty() }
        if (python == null) {
            dir.deleteRecursively()
            throw IllegalStateException("SESSIONKIT_TEST_SMTP_PYTHON is not set; $HOW_TO_GET_THE_RELAY")
        }
        val script = REPO.resolve("tests/smtp/relay.py")
        // A file, not a pipe that nobody reads while the relay runs; a failed start quotes it.
        val stderr = File(dir, "relay.stderr")
        process = try {
            ProcessBuilder(python, script.path, "--dir", dir.path, "--port", "0")
                .redirectOutput(ProcessBuilder.Redirect.DISCARD)
                .redirectError(stderr)
                .start()
        } catch (e: java.io.IOException) {
            dir.deleteRecursively()
            throw IllegalStateException("cannot run the SMTP relay with $python (${e.message}); $HOW_TO_GET_THE_RELAY")
        }
        val ready = File(dir, "ready")
        val deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30)
        while (!ready.exists()) {
            if (!process.isAlive) {
                val err = stderr.readText().trim().takeLast(500)
                close()
                throw IllegalStateException("the SMTP relay exited (${process.exitValue()}): $err\n$HOW_TO_GET_THE_RELAY")
            }
            if (System.nanoTime() > deadline) {
                close()
                throw IllegalStateException("the SMTP relay did not start within 30 s")
            }
            Thread.sleep(50)
        }
        port = ready.readText().trim().toInt()
    }

    /** The server's `[mail]` table, pointing at this relay. */
    fun toml(): String = "[mail]\nsmtp_url = \"smtp://127.0.0.1:$port\"\nfrom = \"$MAIL_FROM\"\n"

    /** Every mail received for [address] so far (by envelope recipient), in order of arrival. */
    fun mailsTo(address: String): List<JsonObject> =
        (dir.listFiles { f -> f.name.startsWith("mail-") && f.name.endsWith(".json") } ?: emptyArray())
            .sortedBy { it.name }
            .map { Json.parseToJsonElement(it.readText()).jsonObject }
            .filter { mail ->
                (mail["rcpt_tos"] as? JsonArray).orEmpty()
                    .any { (it as? JsonPrimitive)?.content.equals(address, ignoreCase = true) }
            }

    override fun close() {
        process.destroy()
        if (!process.waitFor(5, TimeUnit.SECONDS)) process.destroyForcibly().waitFor()
        dir.deleteRecursively()
    }
}

/** The sender, and the pages the mails link to, of the scenarios with `"mail": true`. */
const val MAIL_FROM = "SessionKit Conformance <no-reply@example.com>"
const val CONFIRM_URL = "https://app.example/confirm"
const val RESET_URL = "https://app.example/reset"

/**
 * The first link in a mail's text part to [page] (a `confirm_url` or `reset_url`) with a
 * query: from `page?` to the next white space.
 */
fun mailLink(text: String, page: String): String? {
    val start = text.indexOf("$page?")
    if (start < 0) return null
    return text.substring(start).split(Regex("\\s")).first()
}

/** The `token` and `tokenId` of a mailed link, URL-decoded (form encoding: `+` is a space). */
fun linkToken(link: String): Pair<String, String>? {
    val query = link.substringAfter('?', "").substringBefore('#')
    val params = mutableMapOf<String, String>()
    for (pair in query.split('&').filter { it.isNotEmpty() }) {
        val (k, v) = pair.split('=', limit = 2).let { it[0] to it.getOrElse(1) { "" } }
        // The first of a repeated name counts, as in the other runners.
        params.putIfAbsent(URLDecoder.decode(k, Charsets.UTF_8), URLDecoder.decode(v, Charsets.UTF_8))
    }
    return (params["token"] ?: return null) to (params["tokenId"] ?: return null)
}

/**
 * The one-time code a mail carries: the first run of 6 to 10 digits (no digit on either side) in
 * its text part, with the words that hold a link left out (a token in a link may hold digits).
 */
fun mailCode(text: String): String? =
    text.split(Regex("\\s+")).filter { "://" !in it }
        .flatMap { it.split(Regex("[^0-9]")) }
        .firstOrNull { it.length in 6..10 }
