package io.sessionkit

import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertFalse
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test

/** No string form of a type that holds a secret shows it (#12, item 14). */
class RedactionTest {
    @Test
    fun `toString of credentials and API keys never shows the secret`() {
        val secrets = listOf("hunter2-password", "k".repeat(64), "eyJhbGciOiJIUzI1NiJ9.e30.sig", "{\"s\":1}", "90210417")
        val objects = listOf(
            Credentials.EmailPassword("ada@example.com", secrets[0]),
            // The email one-time code (#23).
            Creds.emailOtp("ada@example.com", secrets[4]),
            Credentials.ApiKey(secrets[1]),
            Credentials.Jwt(secrets[2]),
            Credentials.Function(secrets[3]),
            // Social sign-in (#14): every one is a bearer secret of the provider's.
            Creds.googleIdToken(secrets[2]),
            Creds.googleAuthCode(secrets[1]),
            Creds.apple(secrets[2]),
            Creds.facebook(secrets[1]),
            Creds.oidc("corp", secrets[2]),
            ApiKey(id = "abc", key = secrets[1], name = "ci", disabled = false),
        )
        for (o in objects) {
            for (text in listOf(o.toString(), "$o", listOf(o).toString())) {
                for (s in secrets) assertFalse(text.contains(s), "${o::class.simpleName} shows a secret: $text")
                assertTrue(text.contains("<redacted>"), text)
            }
        }
        assertTrue(objects[0].toString().contains("ada@example.com"))
        assertEquals("EmailOtp(email=ada@example.com, code=<redacted>)", objects[1].toString())
        // The provider name is configuration, not a secret: it stays readable.
        assertTrue(Creds.oidc("corp", secrets[2]).toString().contains("provider=corp"))
        assertTrue(ApiKey(id = "abc", key = null, name = "ci", disabled = true).toString().contains("key=null"))
    }
}
