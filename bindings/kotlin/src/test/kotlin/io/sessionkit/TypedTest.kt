package io.sessionkit

import kotlinx.serialization.SerialName
import kotlinx.serialization.Serializable
import kotlinx.serialization.json.JsonArray
import kotlinx.serialization.json.JsonPrimitive
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertNull
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.assertThrows

@Serializable
data class Point(val x: Int, val y: Int, val label: String? = null)

@Serializable
data class WhoAmI(@SerialName("user_id") val userId: String)

@Serializable
data class Prefs(val theme: String, val size: Int)

/** Issue #13: callFunction<T> and customData<T> through kotlinx.serialization. */
class TypedTest {
    @Test
    fun `typed function calls encode the arguments and decode the result`() = withServer { server ->
        val user = server.app().logIn(Creds.anonymous())
        assertEquals(42, user.callFunction<Int>("sum", 40, 2))
        assertEquals(2.5, user.callFunction<Double>("sum", 1, 1.5))
        // echo returns its arguments as an array: every kind of argument round-trips.
        val echoed = user.callFunction<List<Point>>("echo", Point(1, 2), Point(3, 4, "b"))
        assertEquals(listOf(Point(1, 2), Point(3, 4, "b")), echoed)
        val mixed = user.callFunction<List<kotlinx.serialization.json.JsonElement>>(
            "echo", "text", true, null, listOf(1, 2), mapOf("k" to "v"), JsonPrimitive(7),
        )
        assertEquals("""["text",true,null,[1,2],{"k":"v"},7]""", JsonArray(mixed).toString())
        assertEquals(user.id(), user.callFunction<WhoAmI>("whoami").userId)
        // The JSON-string form is still the member.
        assertEquals("42", user.callFunction("sum", "[40, 2]").trim())
    }

    @Test
    fun `typed calls fail clearly`() = withServer { server ->
        val user = server.app().logIn(Creds.anonymous())
        val wrongShape = assertThrows<AppException.InvalidArgument> { user.callFunction<Point>("sum", 1, 2) }
        assertTrue("Point" in wrongShape.message, wrongShape.message)
        class NotSerializable(val x: Int)
        val bad = assertThrows<AppException.InvalidArgument> { user.callFunction<Int>("sum", NotSerializable(1)) }
        assertTrue("NotSerializable" in bad.message, bad.message)
        val missing = assertThrows<AppException.Service> { user.callFunction<Int>("no-such-function") }
        assertEquals(404, missing.httpStatus)
    }

    @Test
    fun `typed custom data`() = withServer { server ->
        val app = server.app()
        val user = app.emailUser()
        assertNull(user.customData<Prefs>())
        val (status, body) = server.admin("PUT", "/users/${user.id()}/custom_data", """{"theme":"dark","size":3,"extra":1}""")
        assertTrue(status in 200..299, "$status $body")
        // Unknown keys ("extra", and the server's own) are ignored by the default Json.
        assertEquals(Prefs("dark", 3), user.refreshCustomData<Prefs>())
        assertEquals(Prefs("dark", 3), user.customData<Prefs>())
        assertThrows<AppException.InvalidArgument> { user.customData<Point>() }
    }
}
