package io.sessionkit

import java.util.Collections
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertFalse
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.assertThrows

/** Failures surface as the right AppException subclass; the logger never sees a token. */
class ErrorsTest {
    @Test
    fun `errors are AppException subclasses`() = withServer { server ->
        assertThrows<AppException.InsecureUrl> {
            App(AppConfig(appId = "x", baseUrl = "http://example.com", storage = StorageConfig.InMemory))
        }
        assertThrows<AppException.InvalidArgument> { App(server.config(requestTimeoutMs = 0)) }
        val app = server.app()
        val user = app.logIn(Creds.anonymous())
        assertThrows<AppException.InvalidArgument> { user.callFunction("sum", "{not json") }
        val err = assertThrows<AppException.Service> { user.callFunction("no-such-function", "[]") }
        assertTrue(err.code.isNotEmpty() && err.httpStatus >= 400, "$err")
        assertThrows<AppException.ClientUserAlreadyNamed> {
            user.linkCredentials(Creds.anonymous(reuse = false))
        }
        val network = assertThrows<AppException> { app.updateBaseUrl("http://127.0.0.1:1") }
        assertTrue(network is AppException.Network || network is AppException.Timeout, "$network")
        assertEquals(server.baseUrl, app.baseUrl())
    }

    @Test
    fun `a Kotlin logger never sees a token`() = withServer { server ->
        val lines = Collections.synchronizedList(mutableListOf<Triple<LogLevel, String, String>>())
        val logger = object : Logger {
            override fun log(level: LogLevel, target: String, message: String) {
                lines.add(Triple(level, target, message))
            }
        }
        val app = server.app(logger = logger)
        val user = app.logIn(Creds.anonymous())
        val secrets = listOf(user.refreshToken()!!, user.accessToken()!!)
        user.refreshAccessToken()
        user.logOut()
        assertFalse(lines.isEmpty())
        val text = synchronized(lines) { lines.joinToString("\n") { it.third } }
        assertTrue(secrets.none { it in text })
    }
}
