package io.sessionkit

import java.util.concurrent.ConcurrentHashMap
import java.util.concurrent.atomic.AtomicInteger
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertNotNull
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.assertThrows

/** A SessionStore written in Kotlin: an in-memory map, as an app might use its Keystore. */
class MapStore : SessionStore {
    val data = ConcurrentHashMap<String, ByteArray>()
    val saves = AtomicInteger()
    override fun load(): ByteArray? = data["doc"]
    override fun save(bytes: ByteArray) {
        data["doc"] = bytes.copyOf()
        saves.incrementAndGet()
    }
}

class StoreTest {
    @Test
    fun `a Kotlin store restores users in a second App`() = withServer { server ->
        val store = MapStore()
        val app = server.app(StorageConfig.Custom(store))
        val kept = app.emailUser()
        val anon = app.logIn(Creds.anonymous())
        app.switchUser(kept)
        assertTrue(store.saves.get() > 0)
        assertNotNull(store.data["doc"])

        val again = server.app(StorageConfig.Custom(store))
        assertEquals(setOf(kept.id(), anon.id()), again.allUsers().map { it.id() }.toSet())
        val restored = again.currentUser()!!
        assertEquals(kept.id(), restored.id())
        assertEquals(UserState.LOGGED_IN, restored.state())
        assertEquals(kept.refreshToken(), restored.refreshToken())
        restored.refreshAccessToken() // the restored session works on the server
        assertEquals("4", restored.callFunction("sum", "[2, 2]").trim())
    }

    @Test
    fun `a lambda store works too, and logging out is saved`() = withServer { server ->
        var doc: ByteArray? = null
        val store = sessionStore({ doc }, { doc = it })
        val app = server.app(StorageConfig.Custom(store))
        val user = app.emailUser()
        user.logOut()
        val again = server.app(StorageConfig.Custom(store))
        assertEquals(UserState.LOGGED_OUT, again.allUsers().single().state())
        assertEquals(null, again.currentUser())
    }

    @Test
    fun `store errors reach the app as AppException Storage`() = withServer { server ->
        val locked = object : SessionStore {
            override fun load(): ByteArray? = throw StoreException.Unavailable("device locked")
            override fun save(bytes: ByteArray) = throw StoreException.Unavailable("device locked")
        }
        val err = assertThrows<AppException.Storage> { server.app(StorageConfig.Custom(locked)) }
        assertTrue(err.detail.contains("device locked"), err.detail)
    }
}
