package io.sessionkit

import java.net.URLEncoder
import java.util.concurrent.TimeUnit
import kotlinx.coroutines.runBlocking
import kotlinx.serialization.json.Json
import kotlinx.serialization.json.jsonArray
import kotlinx.serialization.json.jsonObject
import kotlinx.serialization.json.jsonPrimitive
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.assertThrows

/**
 * Email one-time codes (#23) against the real server with `[app.providers.email-otp]`; the code
 * is read from the server's dev outbox through the admin API (kind `email-otp`, the code in
 * `token`), as the mail would bring it.
 */
class EmailOtpTest {
    private fun withOtpServer(block: suspend (TestServer) -> Unit) =
        TestServer.start(extraToml = "[app.providers.email-otp]").use { server -> runBlocking { block(server) } }

    /** The newest one-time code the server mailed to [email]. */
    private fun mailedCode(server: TestServer, email: String): String {
        val (status, body) = server.admin("GET", "/outbox?email=${URLEncoder.encode(email, Charsets.UTF_8)}")
        assertEquals(200, status, body)
        val codes = Json.parseToJsonElement(body).jsonArray.map { it.jsonObject }
            .filter { it["kind"]?.jsonPrimitive?.content == "email-otp" }
            .map { it.getValue("token").jsonPrimitive.content }
        assertTrue(codes.isNotEmpty(), "no email-otp mail for $email: $body")
        return codes.last()
    }

    /** Another code of the same length. */
    private fun wrong(code: String) = code.dropLast(1) + ((code.last().digitToInt() + 1) % 10)

    @Test
    fun `a mailed code logs in once as a user with an email-otp identity`() = withOtpServer { server ->
        server.app().use { app ->
            val email = uniqueEmail()
            app.emailOtp().send(email)
            val code = mailedCode(server, email)
            assertTrue(code.length >= 6 && code.all { it.isDigit() }, code)

            val refused = assertThrows<AppException.Service> { app.logIn(Creds.emailOtp(email, wrong(code))) }
            assertEquals("InvalidCode" to 401, refused.code to refused.httpStatus)

            val user = app.logIn(Creds.emailOtp(email, code))
            assertEquals("email-otp", user.providerType())
            assertEquals(listOf("email-otp"), user.identities().map { it.providerType })
            assertEquals(email, user.profile().email)

            // Single use: the same code again finds no live code.
            val again = assertThrows<AppException.Service> { app.logIn(Creds.emailOtp(email, code)) }
            assertEquals("CodeExpired" to 401, again.code to again.httpStatus)
        }
    }

    @Test
    fun `a code linked to an anonymous user later logs into that user`() = withOtpServer { server ->
        server.app().use { app ->
            val anon = app.logIn(Creds.anonymous(reuse = false))
            val email = uniqueEmail()
            app.emailOtp().send(email)
            anon.linkCredentials(Creds.emailOtp(email, mailedCode(server, email)))
            assertEquals(listOf("anon-user", "email-otp"), anon.identities().map { it.providerType }.sorted())

            // On another device (a fresh App), through the Java futures.
            server.app().use { other ->
                other.emailOtp().sendAsync(email).get(10, TimeUnit.SECONDS)
                val user = other.logInAsync(Creds.emailOtp(email, mailedCode(server, email))).get(10, TimeUnit.SECONDS)
                assertEquals(anon.id(), user.id())
            }
        }
    }
}
