package io.sessionkit

import java.util.concurrent.CompletionException
import java.util.concurrent.ExecutionException
import java.util.concurrent.TimeUnit
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertNull
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.assertThrows

/** Issue #13: CompletableFuture forms for Java callers, used here without coroutines. */
class FuturesTest {
    @Test
    fun `futures log in, call and log out without a coroutine`() {
        TestServer.start().use { server ->
            App(appConfig(APP_ID, server.baseUrl)).use { app ->
                val email = uniqueEmail()
                app.emailPasswordAuth().registerUserAsync(email, "correct-horse").get(10, TimeUnit.SECONDS)
                val user = app.logInAsync(Creds.emailPassword(email, "correct-horse")).get(10, TimeUnit.SECONDS)
                assertEquals(user, app.currentUser())
                val sum = user.callFunctionAsync("sum", "[2, 3]").thenApply { it.trim().toInt() }
                assertEquals(5, sum.get(10, TimeUnit.SECONDS))
                assertEquals(user.accessToken(), user.validAccessTokenAsync().get(10, TimeUnit.SECONDS))
                assertEquals(200, user.requestAsync("GET", "/api/client/v2.0/auth/profile").join().status)
                val key = user.apiKeys().createAsync("k").join()
                assertEquals(listOf(key.id), user.apiKeys().fetchAllAsync().join().map { it.id })
                assertNull(user.logOutAsync().get(10, TimeUnit.SECONDS))
                assertEquals(UserState.LOGGED_OUT, user.state())
            }
        }
    }

    @Test
    fun `a failed call fails the future with the AppException as its cause`() {
        TestServer.start().use { server ->
            App(appConfig(APP_ID, server.baseUrl)).use { app ->
                val future = app.logInAsync(Creds.emailPassword(uniqueEmail(), "nobody"))
                val e = assertThrows<ExecutionException> { future.get(10, TimeUnit.SECONDS) }
                val cause = e.cause
                assertTrue(cause is AppException.Service && cause.httpStatus == 401, "$cause")
                val joined = assertThrows<CompletionException> {
                    app.logInAsync(Creds.anonymous()).thenCompose { it.validAccessTokenAsync(-1) }.join()
                }
                assertTrue(joined.cause is AppException.InvalidArgument, "${joined.cause}")
            }
        }
    }
}
