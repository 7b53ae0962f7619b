package io.sessionkit

import io.sessionkit.conformance.TestIssuer
import kotlinx.coroutines.runBlocking
import kotlinx.serialization.json.Json
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.assertThrows

/**
 * Social sign-in (#14) through the Creds shorthands, against the real server configured to trust
 * the loopback test issuer (tests/src/issuer.rs), which mints the provider tokens.
 */
class SocialLoginTest {
    private fun withSocialServer(block: suspend (TestServer, TestIssuer) -> Unit) =
        TestIssuer().use { issuer ->
            TestServer.start(extraToml = issuer.providersToml()).use { server ->
                runBlocking { block(server, issuer) }
            }
        }

    private fun spec(json: String) = Json.parseToJsonElement(json)

    @Test
    fun `a Google ID token logs in and the same subject is the same user later`() =
        withSocialServer { server, issuer ->
            server.app().use { app ->
                val token = issuer.credential(
                    "google_id_token", spec("""{"sub": "g-kt", "email": "ada@example.com", "name": "Ada"}"""),
                )
                val user = app.logIn(Creds.googleIdToken(token))
                assertEquals("oauth2-google", user.providerType())
                assertEquals(listOf("oauth2-google"), user.identities().map { it.providerType })
                assertEquals("Ada", user.profile().name)
                assertEquals("ada@example.com", user.profile().email)
                user.logOut()
                // A new token for the same subject, without the email: the same user.
                val again = app.logIn(Creds.googleIdToken(issuer.credential("google_id_token", spec("""{"sub": "g-kt"}"""))))
                assertEquals(user.id(), again.id())
                // A token for another client id is refused by the server, and nobody logs in.
                val refused = issuer.credential("google_id_token", spec("""{"sub": "g-other", "aud": "wrong"}"""))
                val e = assertThrows<AppException.Service> { app.logIn(Creds.googleIdToken(refused)) }
                assertEquals("AuthError", e.code)
                assertEquals(again.id(), app.currentUser()?.id())
            }
        }

    @Test
    fun `an Apple identity linked to an anonymous user then logs in as that user`() =
        withSocialServer { server, issuer ->
            server.app().use { app ->
                val anon = app.logIn(Creds.anonymous(reuse = false))
                anon.linkCredentials(Creds.apple(issuer.credential("apple_id_token", spec("""{"sub": "apple-kt"}"""))))
                assertEquals(listOf("anon-user", "oauth2-apple"), anon.identities().map { it.providerType }.sorted())
                val apple = app.logIn(Creds.apple(issuer.credential("apple_id_token", spec("""{"sub": "apple-kt"}"""))))
                assertEquals(anon.id(), apple.id())
            }
        }
}
