package io.sessionkit

import java.util.Collections
import java.util.concurrent.ExecutionException
import java.util.concurrent.TimeUnit
import kotlinx.coroutines.delay
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertFalse
import org.junit.jupiter.api.Assertions.assertNull
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.assertThrows

/**
 * Issue #25: a user sees and ends their own sessions. Two Apps with separate in-memory stores
 * act as two devices of one user (a custom-JWT subject), each with its own DeviceInfo.
 */
class UserSessionsTest {
    /** One device: its App, the user logged in there, and its session-error handler's calls. */
    private class Device(val app: App, val user: User, val errors: MutableList<Pair<String, SessionErrorKind>>) :
        AutoCloseable {
        override fun close() = app.close()
    }

    private suspend fun device(server: TestServer, platform: String, sub: String): Device {
        val app = App(
            server.config().copy(
                device = DeviceInfo(
                    platform = platform,
                    platformVersion = "1.0",
                    deviceName = "$platform test device",
                    appVersion = "$platform-2.4.0",
                ),
            ),
        )
        val errors = Collections.synchronizedList(mutableListOf<Pair<String, SessionErrorKind>>())
        app.onSessionError { user, error -> errors.add(user.id() to error.kind) }
        val user = app.logIn(Creds.jwt(signJwt("""{"sub":"$sub","exp":${nowSecs() + 600}}""")))
        return Device(app, user, errors)
    }

    @Test
    fun `each device lists both, and revoking the other ends it at its next refresh`() = withServer { server ->
        device(server, "iOS", "kim").use { phone ->
            device(server, "macOS", "kim").use { laptop ->
                assertEquals(phone.user.id(), laptop.user.id())
                val seen: List<SessionInfo> = phone.user.sessions()
                assertEquals(2, seen.size, "$seen")
                assertEquals(listOf(true, false), seen.map { it.current })
                assertEquals(listOf("iOS", "macOS"), seen.map { it.device.platform })
                assertEquals("macOS test device", seen[1].device.deviceName)
                assertEquals("1.0", seen[1].device.platformVersion)
                assertEquals("macOS-2.4.0", seen[1].device.appVersion)
                assertEquals("custom-token", seen[0].providerType)
                assertNull(seen[0].apiKeyName)
                assertFalse(seen[0].created.isAfter(seen[0].lastUsed), "$seen")
                // The data class's toString names the fields and holds no token.
                val text = seen.toString()
                assertTrue("platform=iOS" in text, text)
                assertFalse(phone.user.refreshToken()!! in text)
                assertEquals(listOf(false, true), laptop.user.sessions().map { it.current })

                phone.user.revokeSession(seen[1].id)
                assertEquals(listOf(seen[0].id), phone.user.sessions().map { it.id })
                val err = assertThrows<AppException.SessionExpired> { laptop.user.refreshAccessToken() }
                assertEquals(SessionErrorKind.SESSION_REVOKED, err.kind)
                assertEquals(UserState.LOGGED_OUT, laptop.user.state())
                // Called once, on the revoked device only, even after another try.
                assertThrows<AppException> { laptop.user.refreshAccessToken() }
                waitFor(what = "the laptop's session error") { laptop.errors.isNotEmpty() }
                delay(100) // a second call would have come by now
                assertEquals(listOf(laptop.user.id() to SessionErrorKind.SESSION_REVOKED), laptop.errors.toList())
                assertEquals(emptyList<Any>(), phone.errors.toList())
                phone.user.refreshAccessToken()

                // Again (no longer live), or an id nobody has: 404 SessionNotFound.
                for (id in listOf(seen[1].id, "000000000000000000000000")) {
                    val gone = assertThrows<AppException.Service> { phone.user.revokeSession(id) }
                    assertEquals("SessionNotFound", gone.code)
                    assertEquals(404, gone.httpStatus.toInt())
                }
                assertThrows<AppException.InvalidArgument> { phone.user.revokeSession("../profile") }
            }
        }
    }

    @Test
    fun `another user's session id is not found and that session lives on`() = withServer { server ->
        device(server, "Android", "ana").use { ana ->
            device(server, "Linux", "ben").use { ben ->
                val bens = ben.user.sessions().single()
                val err = assertThrows<AppException.Service> { ana.user.revokeSession(bens.id) }
                assertEquals("SessionNotFound", err.code)
                ben.user.refreshAccessToken()
                assertEquals(listOf(bens.id), ben.user.sessions().map { it.id })
            }
        }
    }

    @Test
    fun `other devices keeps this one, everywhere logs it out too`() = withServer { server ->
        device(server, "Android", "lea").use { phone ->
            device(server, "iPadOS", "lea").use { tablet ->
                phone.user.logOut(LogOutScope.OTHER_DEVICES)
                assertEquals(UserState.LOGGED_IN, phone.user.state())
                phone.user.refreshAccessToken()
                val err = assertThrows<AppException.SessionExpired> { tablet.user.refreshAccessToken() }
                assertEquals(SessionErrorKind.SESSION_REVOKED, err.kind)
                waitFor(what = "the tablet's session error") { tablet.errors.isNotEmpty() }
                assertEquals(listOf(tablet.user.id() to SessionErrorKind.SESSION_REVOKED), tablet.errors.toList())
                assertEquals(listOf(true), phone.user.sessions().map { it.current })

                device(server, "Linux", "lea").use { desktop ->
                    assertEquals(2, desktop.user.sessions().size)
                    phone.user.logOut(LogOutScope.EVERYWHERE)
                    assertEquals(UserState.LOGGED_OUT, phone.user.state())
                    val gone = assertThrows<AppException.SessionExpired> { desktop.user.refreshAccessToken() }
                    assertEquals(SessionErrorKind.SESSION_REVOKED, gone.kind)
                    waitFor(what = "the desktop's session error") { desktop.errors.isNotEmpty() }
                    assertEquals(1, desktop.errors.size)
                    // A logout here, not an expiry: no session error on this device.
                    assertEquals(emptyList<Any>(), phone.errors.toList())
                }
            }
        }
    }

    @Test
    fun `the default scope is this device only`() = withServer { server ->
        device(server, "iOS", "max").use { phone ->
            device(server, "macOS", "max").use { laptop ->
                phone.user.logOut()
                assertEquals(UserState.LOGGED_OUT, phone.user.state())
                assertEquals(listOf(true), laptop.user.sessions().map { it.current })
                laptop.user.logOut(LogOutScope.THIS_DEVICE)
                assertEquals(UserState.LOGGED_OUT, laptop.user.state())
            }
        }
    }

    @Test
    fun `futures list, revoke and log out without a coroutine`() = withServer { server ->
        device(server, "Android", "zoe").use { phone ->
            device(server, "Windows", "zoe").use { laptop ->
                device(server, "Linux", "zoe").use { desktop ->
                    val list = phone.user.sessionsAsync().get(10, TimeUnit.SECONDS)
                    assertEquals(listOf("Android", "Windows", "Linux"), list.map { it.device.platform })
                    assertNull(phone.user.revokeSessionAsync(list[1].id).get(10, TimeUnit.SECONDS))
                    val e = assertThrows<ExecutionException> {
                        phone.user.revokeSessionAsync(list[1].id).get(10, TimeUnit.SECONDS)
                    }
                    assertEquals("SessionNotFound", (e.cause as? AppException.Service)?.code, "${e.cause}")
                    assertThrows<AppException.SessionExpired> { laptop.user.refreshAccessToken() }
                    assertNull(phone.user.logOutAsync(LogOutScope.OTHER_DEVICES).get(10, TimeUnit.SECONDS))
                    assertThrows<AppException.SessionExpired> { desktop.user.refreshAccessToken() }
                    assertEquals(1, phone.user.sessionsAsync().join().size)
                    assertNull(phone.user.logOutAsync().get(10, TimeUnit.SECONDS))
                    assertEquals(UserState.LOGGED_OUT, phone.user.state())
                }
            }
        }
    }
}
