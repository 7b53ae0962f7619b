package io.sessionkit

import org.junit.jupiter.api.Assertions.assertFalse
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test

/** No string form of a type that holds a secret shows it (#12, item 14). */
class RedactionTest {
    @Test
    fun `toString of credentials and API keys never shows the secret`() {
        val secrets = listOf("hunter2-password", "k".repeat(64), "eyJhbGciOiJIUzI1NiJ9.e30.sig", "{\"s\":1}")
        val objects = listOf(
            Credentials.EmailPassword("ada@example.com", secrets[0]),
            Credentials.ApiKey(secrets[1]),
            Credentials.Jwt(secrets[2]),
            Credentials.Function(secrets[3]),
            ApiKey(id = "abc", key = secrets[1], name = "ci", disabled = false),
        )
        for (o in objects) {
            for (text in listOf(o.toString(), "$o", listOf(o).toString())) {
                for (s in secrets) assertFalse(text.contains(s), "${o::class.simpleName} shows a secret: $text")
                assertTrue(text.contains("<redacted>"), text)
            }
        }
        assertTrue(objects[0].toString().contains("ada@example.com"))
        assertTrue(ApiKey(id = "abc", key = null, name = "ci", disabled = true).toString().contains("key=null"))
    }
}
