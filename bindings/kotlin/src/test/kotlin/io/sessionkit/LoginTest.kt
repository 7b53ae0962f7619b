package io.sessionkit

import java.util.UUID
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertFalse
import org.junit.jupiter.api.Assertions.assertNotEquals
import org.junit.jupiter.api.Assertions.assertNotNull
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.assertThrows

/** Logging in with each of the five providers, against the real server. */
class LoginTest {
    @Test
    fun `anonymous login and reuse`() = withServer { server ->
        server.app().use { app ->
            val user = app.logIn(Creds.anonymous(reuse = true))
            assertEquals("anon-user", user.providerType())
            assertEquals(UserState.LOGGED_IN, user.state())
            assertEquals(user, app.currentUser())
            assertNotNull(user.accessToken())
            assertNotNull(user.refreshToken())
            assertEquals(user, app.logIn(Creds.anonymous(reuse = true)))
            val fresh = app.logIn(Creds.anonymous(reuse = false))
            assertNotEquals(user, fresh)
            assertEquals(setOf(user.id(), fresh.id()), app.allUsers().map { it.id() }.toSet())
        }
    }

    @Test
    fun `email and password login`() = withServer { server ->
        val app = server.app()
        val email = uniqueEmail()
        val user = app.emailUser(email)
        assertEquals("local-userpass", user.providerType())
        assertEquals(email, user.profile().email)
        assertEquals(listOf("local-userpass"), user.identities().map { it.providerType })
        val err = assertThrows<AppException.Service> {
            app.logIn(Creds.emailPassword(email, "wrong-horse"))
        }
        assertEquals("InvalidPassword", err.code)
        assertEquals(401, err.httpStatus.toInt())
        assertEquals(user, app.currentUser()) // a failed login changes nobody
    }

    @Test
    fun `api key login`() = withServer { server ->
        val owner = server.app().emailUser()
        val key = owner.apiKeys().create("ci-script")
        assertNotNull(key.key)
        assertEquals("ci-script", key.name)
        assertFalse(key.disabled)
        assertEquals(listOf(key.id), owner.apiKeys().fetchAll().map { it.id })
        val user = server.app().logIn(Creds.apiKey(key.key!!))
        assertEquals(owner.id(), user.id())
        assertTrue(user.identities().any { it.providerType == "api-key" && it.id == key.id })
        owner.apiKeys().disable(key.id)
        assertTrue(owner.apiKeys().fetch(key.id).disabled)
        assertThrows<AppException.Service> { server.app().logIn(Creds.apiKey(key.key!!)) }
    }

    @Test
    fun `custom JWT login`() = withServer { server ->
        val app = server.app()
        val sub = "jwt-${UUID.randomUUID().toString().take(8)}"
        val token = signJwt("""{"sub":"$sub","exp":${nowSecs() + 600},"name":"Ada"}""")
        val user = app.logIn(Creds.jwt(token))
        assertEquals("custom-token", user.providerType())
        assertEquals("Ada", user.profile().name)
        assertEquals(sub, user.identities().single().id)
        val forged = signJwt("""{"sub":"$sub","exp":${nowSecs() + 600}}""", key = "not-the-key")
        val err = assertThrows<AppException.Service> { app.logIn(Creds.jwt(forged)) }
        assertEquals(401, err.httpStatus.toInt())
    }

    @Test
    fun `custom function login`() = withServer { server ->
        val app = server.app()
        val payload = """{"username":"fn-${UUID.randomUUID().toString().take(8)}"}"""
        val first = app.logIn(Creds.function(payload))
        assertEquals("custom-function", first.providerType())
        assertEquals(first.id(), server.app().logIn(Creds.function(payload)).id())
        assertNotEquals(first.id(), server.app().logIn(Creds.function("""{"username":"someone-else"}""")).id())
        assertThrows<AppException.InvalidArgument> { app.logIn(Creds.function("not json")) }
    }

    @Test
    fun `call function and request`() = withServer { server ->
        val user = server.app().logIn(Creds.anonymous())
        assertEquals("6", user.callFunction("sum", "[1, 2, 3]").trim())
        val response = user.request("GET", "/api/client/v2.0/auth/profile")
        assertEquals(200, response.status.toInt())
        assertEquals(user.id(), jsonString(response.body, "user_id"))
    }
}
