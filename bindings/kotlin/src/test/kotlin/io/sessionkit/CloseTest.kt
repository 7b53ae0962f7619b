package io.sessionkit

import java.io.File
import java.nio.file.Files
import java.util.concurrent.TimeUnit
import kotlinx.coroutines.runBlocking
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.assertThrows

/**
 * A separate JVM that logs in with an App left open: a subscription, auto refresh, a Kotlin
 * logger and refreshes in flight, then main() returns. Prints the user id.
 */
object ExitMain {
    @JvmStatic
    fun main(args: Array<String>) = runBlocking {
        val (baseUrl, dir) = args
        val app = App(
            AppConfig(
                appId = APP_ID, baseUrl = baseUrl, autoRefresh = true,
                storage = StorageConfig.File(dir, null),
                logger = object : Logger {
                    override fun log(level: LogLevel, target: String, message: String) {}
                },
            ),
        )
        app.subscribe { }
        val user = app.logIn(Creds.anonymous(reuse = false))
        println(user.id())
        System.out.flush()
        // Refreshes in flight when main returns; nobody waits for them.
        repeat(3) { Thread { runBlocking { runCatching { user.refreshAccessToken() } } }.apply { isDaemon = true }.start() }
    }
}

class CloseTest {
    @Test
    fun `use closes the App, later calls fail with AppClosed, and the session is kept`() = withServer { server ->
        val dir = Files.createTempDirectory("kt-close").toString()
        val events = Recorder()
        lateinit var user: User
        App(server.config(StorageConfig.File(dir, null))).use { app ->
            app.subscribe(events)
            user = app.logIn(Creds.anonymous(reuse = false))
        }
        val seen = events.kinds().size
        assertThrows<AppException.AppClosed> { user.refreshAccessToken() }
        assertEquals(seen, events.kinds().size, "no event after close")
        App(server.config(StorageConfig.File(dir, null))).use { again ->
            assertEquals(listOf(user.id()), again.allUsers().map { it.id() })
            again.currentUser()!!.refreshAccessToken()
        }
    }

    @Test
    fun `shutdown closes without releasing the handle`() = withServer { server ->
        val app = server.app()
        app.logIn(Creds.anonymous())
        app.shutdown()
        assertTrue(app.isClosed())
        assertThrows<AppException.AppClosed> { app.logIn(Creds.anonymous()) }
        app.close()
    }

    @Test
    fun `a JVM that ends with an App still open exits 0 and keeps the session`() = withServer { server ->
        val runs = (System.getenv("SESSIONKIT_JVM_EXIT_RUNS") ?: "20").toInt()
        val java = File(System.getProperty("java.home"), "bin/java").path
        val failures = mutableListOf<String>()
        for (i in 0 until runs) {
            val dir = Files.createTempDirectory("kt-exit").toString()
            // The library comes from the class path (target/classes/linux-x86-64), as in the
            // jar; a jna.library.path is passed on only if the suite was given one.
            val libraryPath = System.getProperty("jna.library.path")?.let { listOf("-Djna.library.path=$it") }.orEmpty()
            val p = ProcessBuilder(
                listOf(java, "-cp", System.getProperty("java.class.path")) + libraryPath +
                    listOf(ExitMain::class.java.name, server.baseUrl, dir),
            ).redirectErrorStream(true).start()
            val out = p.inputStream.bufferedReader().readText()
            if (!p.waitFor(60, TimeUnit.SECONDS)) {
                p.destroyForcibly()
                failures += "run $i hung"
                continue
            }
            if (p.exitValue() != 0) {
                failures += "run $i exited ${p.exitValue()}: ${out.takeLast(300)}"
                continue
            }
            val id = out.lines().first().trim()
            App(server.config(StorageConfig.File(dir, null))).use { again ->
                val kept = again.allUsers().map { it.id() }
                if (id !in kept) failures += "run $i: the session of $id is gone ($kept)"
            }
        }
        assertTrue(failures.isEmpty(), "${failures.size} of $runs runs failed: ${failures.take(3)}")
    }
}
