package io.sessionkit

import java.util.UUID
import kotlinx.serialization.json.Json
import kotlinx.serialization.json.int
import kotlinx.serialization.json.jsonObject
import kotlinx.serialization.json.jsonPrimitive
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.assertThrows

/**
 * Issue #24: users moved in from another system (an App Services-shaped line: an ObjectId id,
 * custom data, an email/password identity with a hash made by Python's argon2-cffi, a custom-JWT
 * identity) log in from Kotlin as the same users, with the exported ids.
 */
class ImportTest {
    private val password = "correct horse battery staple"
    // argon2-cffi's default parameters (bindings/python/tests/test_admin.py has the same hash).
    private val hash = "\$argon2id\$v=19\$m=65536,t=3,p=4\$jBN4emKrU7ZFsqrx10K8Gg\$r3eFJN0Qm7YpLdVMVYUU3+6T1cnAgaAXQeOhklFU+44"

    @Test
    fun `an imported user logs in with the exported id by password and by custom JWT`() = withServer { server ->
        val userId = UUID.randomUUID().toString().replace("-", "").take(24)
        val email = uniqueEmail()
        val sub = "kt-imported-${UUID.randomUUID().toString().take(8)}"
        val line = """{"id":"$userId","created_at":"2021-06-01T12:00:00Z","custom_data":{"plan":"pro"},""" +
            """"identities":[{"provider_type":"local-userpass","id":"${userId.reversed()}",""" +
            """"profile_data":{"email":"$email"},"password_hash":"$hash"},""" +
            """{"provider_type":"custom-token","id":"$sub"}]}"""
        val (status, body) = server.admin("POST", "/users/import", "[$line]")
        assertEquals(200, status, body)
        val report = Json.parseToJsonElement(body).jsonObject
        assertEquals(1, report.getValue("created").jsonPrimitive.int, body)

        server.app().use { app ->
            val user = app.logIn(Creds.emailPassword(email, password))
            assertEquals(userId, user.id())
            assertTrue(user.customDataJson()!!.contains("\"plan\":\"pro\""), user.customDataJson())
            val again = app.logIn(Creds.jwt(signJwt("""{"sub":"$sub","exp":${nowSecs() + 600}}""")))
            assertEquals(userId, again.id())
            // The hash was upgraded at the first login: the password still works, a wrong one not.
            user.logOut()
            assertEquals(userId, app.logIn(Creds.emailPassword(email, password)).id())
            val wrong = assertThrows<AppException.Service> { app.logIn(Creds.emailPassword(email, "not it")) }
            assertEquals("InvalidPassword", wrong.code)
        }
        // The same line again changes nothing.
        val (_, second) = server.admin("POST", "/users/import", "[$line]")
        assertEquals(1, Json.parseToJsonElement(second).jsonObject.getValue("unchanged").jsonPrimitive.int, second)
    }
}
