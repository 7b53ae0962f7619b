package io.sessionkit

import kotlinx.coroutines.runBlocking
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertNull
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.assertThrows

/** The server's login lockout through the SDK (#22): its Retry-After as `retryAfterSecs`. */
class RetryAfterTest {
    @Test
    fun `the login lockout carries retryAfterSecs`() =
        TestServer.start(rateLimits = "{ logins_per_account_per_hour = 2 }").use { server ->
            runBlocking {
                server.app().use { app ->
                    // Two attempts an hour on one account; the third waits for the next one.
                    val email = uniqueEmail()
                    app.emailUser(email)
                    val refused = assertThrows<AppException.Service> {
                        app.logIn(Creds.emailPassword(email, "wrong-horse"))
                    }
                    assertEquals(401, refused.httpStatus)
                    assertNull(refused.retryAfterSecs)
                    val locked = assertThrows<AppException.Service> {
                        app.logIn(Creds.emailPassword(email, "correct-horse"))
                    }
                    assertEquals(429, locked.httpStatus)
                    assertEquals("TooManyRequests", locked.code)
                    val secs = locked.retryAfterSecs
                    assertTrue(secs != null && secs in 60L..3600L, "$secs")
                    // Also readable on the base type, as an app catching AppException does.
                    val caught: AppException = locked
                    assertEquals(secs, caught.retryAfterSecs)
                    assertNull((AppException.Network("down") as AppException).retryAfterSecs)
                    assertTrue("correct-horse" !in locked.message, locked.message)
                }
            }
        }
}
