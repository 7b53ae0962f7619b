package io.sessionkit.consumer;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import io.sessionkit.App;
import io.sessionkit.AppConfig;
import io.sessionkit.AppException;
import io.sessionkit.Creds;
import io.sessionkit.SessionKit;
import io.sessionkit.SessionKitFutures;
import io.sessionkit.StorageConfig;
import io.sessionkit.User;
import io.sessionkit.UserState;
import java.io.BufferedReader;
import java.io.File;
import java.io.InputStreamReader;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.jar.JarFile;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** The installed jar, used from Java as a dependency, against a real sessionkit-server. */
class ConsumerTest {
    private static final String APP_ID = "consumer-app";
    private static Process server;
    private static Path dir;
    private static String baseUrl;

    @BeforeAll
    static void startServer() throws Exception {
        String bin = System.getProperty("sessionkit.server.bin");
        assertTrue(bin != null && new File(bin).canExecute(), "no server binary: " + bin);
        dir = Files.createTempDirectory("sessionkit-consumer-");
        Path config = dir.resolve("server.toml");
        Files.writeString(config, """
            listen = "127.0.0.1:0"
            data_dir = "%s"
            rate_limits = { enabled = false }

            [admin]
            public_key = "consumer-admin-public"
            private_key = "consumer-admin-private"

            # Email/password needs a mail relay outside tests (#23); this one is never reached
            # by what the consumer does, and would only hold mail in the queue.
            [mail]
            smtp_url = "smtp://127.0.0.1:2525"
            from = "Consumer <no-reply@consumer.example>"

            [[app]]
            id = "%s"

            [app.providers.anon-user]
            [app.providers.local-userpass]
            auto_confirm = true
            reset_url = "https://consumer.example/reset"
            """.formatted(dir.resolve("data"), APP_ID));
        server = new ProcessBuilder(bin, "--config", config.toString(), "--listen", "127.0.0.1:0")
            .redirectError(ProcessBuilder.Redirect.DISCARD).start();
        String line = new BufferedReader(new InputStreamReader(server.getInputStream())).readLine();
        assertTrue(line != null && line.startsWith("listening on "), "server did not start: " + line);
        baseUrl = line.substring("listening on ".length()).trim();
    }

    @AfterAll
    static void stopServer() throws Exception {
        if (server != null) {
            server.destroy();
            if (!server.waitFor(10, TimeUnit.SECONDS)) server.destroyForcibly().waitFor();
        }
        if (dir != null) {
            try (var paths = Files.walk(dir)) {
                paths.sorted(java.util.Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
            }
        }
    }

    @Test
    void theJarCarriesItsNativeLibrary() throws Exception {
        // Nothing tells JNA where the library is: it comes out of the jar.
        assertNull(System.getProperty("jna.library.path"));
        String jar = App.class.getProtectionDomain().getCodeSource().getLocation().getPath();
        assertTrue(jar.endsWith(".jar") && jar.contains("/io/sessionkit/sessionkit/"), jar);
        try (JarFile file = new JarFile(jar)) {
            assertNotNull(file.getEntry("linux-x86-64/libsessionkit_ffi.so"));
        }
    }

    @Test
    void okHttpIsNotPassedOnToUsersOfTheJar() {
        // io.sessionkit.okhttp's dependency is optional (#15): this project, which logs in above
        // and below, does not get OkHttp on its classpath.
        assertThrows(ClassNotFoundException.class, () -> Class.forName("okhttp3.OkHttpClient"));
    }

    @Test
    void logsInAndCallsFromJava() throws Exception {
        AppConfig config = SessionKit.appConfig(APP_ID, baseUrl, StorageConfig.InMemory.INSTANCE);
        config.setRequestTimeoutMs(5000); // a plain long, no unsigned type
        try (App app = new App(config)) {
            User user = SessionKitFutures.logInAsync(app, Creds.anonymous()).get(10, TimeUnit.SECONDS);
            assertEquals(UserState.LOGGED_IN, user.state());
            assertEquals(user, app.currentUser());
            assertNotNull(user.accessToken());
            String sum = SessionKitFutures.callFunctionAsync(user, "sum", "[1, 2]").get(10, TimeUnit.SECONDS);
            assertEquals("3", sum.trim());
            String token = SessionKitFutures.validAccessTokenAsync(user, 30).get(10, TimeUnit.SECONDS);
            assertEquals(user.accessToken(), token);
            SessionKitFutures.logOutAsync(user).get(10, TimeUnit.SECONDS);
            assertEquals(UserState.REMOVED, user.state()); // anonymous: logging out removes
        }
    }

    @Test
    void errorsAreAppExceptionsWithSentences() throws Exception {
        try (App app = new App(SessionKit.appConfig(APP_ID, baseUrl))) {
            SessionKitFutures.registerUserAsync(app.emailPasswordAuth(), "ada@example.com", "correct-horse")
                .get(10, TimeUnit.SECONDS);
            ExecutionException e = assertThrows(ExecutionException.class, () ->
                SessionKitFutures.logInAsync(app, Creds.emailPassword("ada@example.com", "wrong-horse"))
                    .get(10, TimeUnit.SECONDS));
            AppException.Service service = assertInstanceOf(AppException.Service.class, e.getCause());
            int status = service.getHttpStatus();
            assertEquals(401, status);
            assertEquals("InvalidPassword", service.getCode());
            assertTrue(service.getMessage().endsWith("(server error InvalidPassword, HTTP 401)"),
                service.getMessage());
        }
    }
}
