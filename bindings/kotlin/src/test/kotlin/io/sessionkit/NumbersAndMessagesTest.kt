package io.sessionkit

import org.junit.jupiter.api.Assertions.assertEquals
import kotlinx.coroutines.delay
import org.junit.jupiter.api.Assertions.assertFalse
import org.junit.jupiter.api.Assertions.assertNotEquals
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.assertThrows

/** Issue #13: plain Int/Long literals everywhere, and error messages that are sentences. */
class NumbersAndMessagesTest {
    @Test
    fun `plain literals compile and are used`() = withServer { server ->
        // Int and Long literals, no `u` suffix: the FFI's integers are signed.
        val config = AppConfig(
            appId = APP_ID,
            baseUrl = server.baseUrl,
            storage = StorageConfig.InMemory,
            requestTimeoutMs = 5000,
            refreshMarginSecs = 30,
            maxResponseBytes = 1_000_000,
        )
        App(config).use { app ->
            val user = app.logIn(Creds.anonymous())
            val token = user.validAccessToken(30)
            assertEquals(user.accessToken(), token)
            val response = user.request("GET", "/api/client/v2.0/auth/profile")
            val status: Int = response.status
            assertEquals(200, status)
        }
    }

    @Test
    fun `an Int minimum lifetime decides the refresh`() = withServer(access = 4) { server ->
        val user = server.app().logIn(Creds.anonymous())
        val token = user.accessToken()
        // A 4 s token, just issued: 2 s of life are there, no refresh.
        assertEquals(token, user.validAccessToken(2))
        assertEquals(0, server.refreshCount())
        delay(2_500)
        // At most 1.5 s left now: the same 2 s minimum refreshes, once.
        val fresh = user.validAccessToken(2)
        assertEquals(1, server.refreshCount())
        assertNotEquals(token, fresh)
        assertEquals(user.accessToken(), fresh)
    }

    @Test
    fun `a negative number is an InvalidArgument naming the field`() = withServer { server ->
        val cases = mapOf(
            "request_timeout_ms" to server.config().copy(requestTimeoutMs = -1),
            "refresh_margin_secs" to server.config().copy(refreshMarginSecs = -1),
            "max_response_bytes" to server.config().copy(maxResponseBytes = -5),
        )
        for ((field, config) in cases) {
            val e = assertThrows<AppException.InvalidArgument> { App(config) }
            assertTrue(field in e.message, "$field: ${e.message}")
        }
        val app = server.app()
        val user = app.logIn(Creds.anonymous())
        val e = assertThrows<AppException.InvalidArgument> { user.validAccessToken(-1) }
        assertTrue("min_ttl_secs" in e.message, e.message)
        assertThrows<AppException.InvalidArgument> { user.freshAccessToken(-30) }
        // Checked before the SDK is told anything: the JVM is not marked as exiting.
        val exiting = assertThrows<AppException.InvalidArgument> { foreignRuntimeExiting(-1) }
        assertTrue("timeoutMs" in exiting.message, exiting.message)
        assertEquals(user.accessToken(), user.validAccessToken(0))
    }

    @Test
    fun `httpStatus is an Int and message is the sentence`() = withServer { server ->
        val app = server.app()
        val email = uniqueEmail()
        app.emailPasswordAuth().registerUser(email, "correct-horse")
        val e = assertThrows<AppException.Service> {
            app.logIn(Creds.emailPassword(email, "wrong-horse"))
        }
        assertTrue(e.httpStatus == 401, "${e.httpStatus}")
        assertEquals("InvalidPassword", e.code)
        // The message is describe()'s sentence, not UniFFI's field list; fields stay properties.
        assertEquals(e.describe(), e.message)
        assertTrue(e.message.endsWith("(server error InvalidPassword, HTTP 401)"), e.message)
        assertTrue(e.message.startsWith(e.detail), e.message)
        assertFalse("detail=" in e.message || "httpStatus=" in e.message, e.message)
        assertTrue(e.toString().endsWith(e.message), e.toString())
        // Every variant reads its sentence, e.g. InsecureUrl (a field that is not `detail`).
        val insecure = assertThrows<AppException.InsecureUrl> {
            App(AppConfig(appId = "x", baseUrl = "http://example.com", storage = StorageConfig.InMemory))
        }
        assertEquals(insecure.describe(), insecure.message)
        assertTrue(insecure.message.startsWith("refusing plain http to http://example.com"), insecure.message)
        val closed = assertThrows<AppException.AppClosed> {
            app.shutdown() // closes without releasing the handle
            app.logIn(Creds.anonymous())
        }
        assertTrue(closed.message.startsWith("the App was closed"), closed.message)
    }

    @Test
    fun `StoreException messages are sentences too`() {
        val unavailable = StoreException.Unavailable("device locked")
        assertEquals("session store unavailable: device locked", unavailable.message)
        assertEquals("device locked", unavailable.detail)
        assertEquals("session store corrupt: bad bytes", StoreException.Corrupt("bad bytes").message)
    }
}
