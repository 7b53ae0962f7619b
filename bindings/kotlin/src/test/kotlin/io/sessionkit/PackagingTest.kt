package io.sessionkit

import org.junit.jupiter.api.Assertions.assertNotNull
import org.junit.jupiter.api.Assertions.assertNull
import org.junit.jupiter.api.Test

/** Issue #13: the native library travels as a resource; the jar test is tests/maven-consumer. */
class PackagingTest {
    @Test
    fun `the native library is found as a resource, without jna library path`() = withServer { server ->
        // surefire sets no jna.library.path: JNA can only have found the library on the class path.
        assertNull(System.getProperty("jna.library.path"))
        assertNotNull(App::class.java.getResource("/linux-x86-64/libsessionkit_ffi.so"))
        server.app().use { app -> assertNotNull(app.logIn(Creds.anonymous()).currentAccessToken()) }
    }
}
