package io.sessionkit

import io.sessionkit.okhttp.SessionKitIOException
import io.sessionkit.okhttp.authorizeWith
import java.security.KeyPair
import java.security.KeyPairGenerator
import java.security.Signature
import java.security.spec.ECGenParameterSpec
import java.util.Base64
import java.util.Collections
import java.util.UUID
import java.util.concurrent.ConcurrentHashMap
import kotlinx.serialization.json.Json
import kotlinx.serialization.json.jsonObject
import kotlinx.serialization.json.jsonPrimitive
import okhttp3.MediaType.Companion.toMediaType
import okhttp3.OkHttpClient
import okhttp3.Request
import okhttp3.RequestBody.Companion.toRequestBody
import org.junit.jupiter.api.Assertions.assertEquals
import org.junit.jupiter.api.Assertions.assertNotNull
import org.junit.jupiter.api.Assertions.assertNull
import org.junit.jupiter.api.Assertions.assertTrue
import org.junit.jupiter.api.Test
import org.junit.jupiter.api.assertThrows

/**
 * DPoP (#29) through the Kotlin binding, against the real server with `dpop = "required"` (or
 * `"optional"`): `AppConfig(dpop = true)` binds each login's session to a key, every SDK request
 * and every request through the OkHttp interceptor carries a proof, and a copied token alone is
 * refused. The server's own `GET .../auth/profile` checks proofs as an app's backend would. No
 * token, proof or key is ever printed: assertions show statuses, schemes and error codes only.
 */
class DpopTest {
    private val base64Url = Base64.getUrlDecoder()

    /** The `cnf.jkt` claim of an access token (null when it has none). */
    private fun cnfJkt(accessToken: String): String? {
        val payload = String(base64Url.decode(accessToken.split('.')[1]))
        val cnf = Json.parseToJsonElement(payload).jsonObject["cnf"] ?: return null
        return cnf.jsonObject["jkt"]?.jsonPrimitive?.content
    }

    private fun profile(server: TestServer) =
        Request.Builder().url("${server.baseUrl}/api/client/v2.0/auth/profile").build()

    /** One network attempt as OkHttp sent it: the Authorization scheme, whether it had a proof. */
    data class Sent(val scheme: String?, val proof: Boolean, val status: Int)

    /** A client with the SDK's interceptor that records each network attempt (no token kept). */
    private fun recordingClient(user: User, sent: MutableList<Sent>): OkHttpClient =
        OkHttpClient.Builder().authorizeWith(user).addNetworkInterceptor { chain ->
            val request = chain.request()
            val response = chain.proceed(request)
            sent.add(Sent(request.header("Authorization")?.substringBefore(' '), request.header("DPoP") != null, response.code))
            response
        }.build()

    /**
     * What a thief with a copy of the refresh token gets: POST auth/session with it as a bearer
     * token and no proof, by raw OkHttp. The status and the body's error_code.
     */
    private fun stolenRefresh(server: TestServer, refreshToken: String): Pair<Int, String?> {
        val request = Request.Builder().url("${server.baseUrl}/api/client/v2.0/auth/session")
            .header("Authorization", "Bearer $refreshToken")
            .post(ByteArray(0).toRequestBody())
            .build()
        OkHttpClient().newCall(request).execute().use { response ->
            val body = response.body.string()
            val code = Regex(""""error_code"\s*:\s*"([^"]*)"""").find(body)?.groupValues?.get(1)
            return response.code to code
        }
    }

    /**
     * A DpopSigner as an Android Keystore one would be, with java.security: P-256 keys made by
     * KeyPairGenerator, public keys as SubjectPublicKeyInfo DER (`PublicKey.getEncoded()`),
     * DER signatures from `SHA256withECDSA`. [failure], when set, is thrown by every call that
     * needs a key, as a locked device's key store would.
     */
    class JcaSigner : DpopSigner {
        val keys = ConcurrentHashMap<String, KeyPair>()
        val created: MutableList<String> = Collections.synchronizedList(mutableListOf())
        val deleted: MutableList<String> = Collections.synchronizedList(mutableListOf())
        @Volatile var failure: Exception? = null

        private fun key(handle: String): KeyPair {
            failure?.let { throw it }
            return keys[handle] ?: throw DpopSignerException.Failed("no key $handle")
        }

        override fun createKey(): String {
            failure?.let { throw it }
            val generator = KeyPairGenerator.getInstance("EC").apply { initialize(ECGenParameterSpec("secp256r1")) }
            val handle = "dpop-${UUID.randomUUID()}"
            keys[handle] = generator.generateKeyPair()
            created.add(handle)
            return handle
        }

        override fun publicKey(handle: String): ByteArray = key(handle).public.encoded

        override fun sign(handle: String, message: ByteArray): ByteArray =
            Signature.getInstance("SHA256withECDSA").run {
                initSign(key(handle).private)
                update(message)
                sign()
            }

        override fun deleteKey(handle: String) {
            keys.remove(handle)
            deleted.add(handle)
        }
    }

    @Test
    fun `a login with dpop binds the session and every request carries a proof`() = withServer(dpop = "required") { server ->
        App(server.config(dpop = true)).use { app ->
            val user = app.emailUser()
            val thumbprint = user.dpopThumbprint()
            assertNotNull(thumbprint, "the session is bound")
            assertEquals(thumbprint, cnfJkt(user.accessToken()!!))
            user.refreshAccessToken()
            assertEquals(thumbprint, user.dpopThumbprint())
            assertEquals(thumbprint, cnfJkt(user.accessToken()!!))
            assertEquals("3", user.callFunction("sum", "[1, 2]"))

            // The interceptor: `Authorization: DPoP` and a proof, accepted by the server.
            val sent = Collections.synchronizedList(mutableListOf<Sent>())
            val client = recordingClient(user, sent)
            repeat(3) { client.newCall(profile(server)).execute().use { assertEquals(200, it.code) } }
            assertEquals(List(3) { Sent("DPoP", true, 200) }, sent.toList())
            // The access token alone, as a bearer token, is refused.
            val stolen = Request.Builder().url("${server.baseUrl}/api/client/v2.0/auth/profile")
                .header("Authorization", "Bearer ${user.accessToken()}").build()
            OkHttpClient().newCall(stolen).execute().use { assertEquals(401, it.code) }
            // A proof is for one request: the method, the URL and the token are in it.
            val token = user.accessToken()!!
            val proof = user.dpopProof("GET", "${server.baseUrl}/api/client/v2.0/auth/profile", token)
            assertNotNull(proof)
            assertEquals(3, proof!!.split('.').size, "a compact JWS")
            // The interceptor's direct path makes the same kind of proof, with the nonce given.
            val url = "${server.baseUrl}/api/client/v2.0/auth/profile"
            val direct = user.directDpopProof("GET", url, token, "n-1")!!
            val claims = Json.parseToJsonElement(
                String(Base64.getUrlDecoder().decode(direct.split('.')[1])),
            ).jsonObject
            assertEquals("GET", claims["htm"]!!.jsonPrimitive.content)
            assertEquals(url, claims["htu"]!!.jsonPrimitive.content)
            assertEquals("n-1", claims["nonce"]!!.jsonPrimitive.content)
            assertNotNull(claims["ath"])
            // Accepted by the server as the generated call's are (its nonce is ignored here).
            val byHand = Request.Builder().url(url).header("Authorization", "DPoP $token")
                .header("DPoP", user.directDpopProof("GET", url, token, null)!!).build()
            OkHttpClient().newCall(byHand).execute().use { assertEquals(200, it.code) }
        }
    }

    @Test
    fun `a stolen refresh token is refused and the device goes on`() = withServer(dpop = "required") { server ->
        App(server.config(dpop = true)).use { app ->
            val handled = java.util.concurrent.atomic.AtomicInteger()
            app.onSessionError { _, _ -> handled.incrementAndGet() }
            val user = app.emailUser()
            val (status, code) = stolenRefresh(server, user.refreshToken()!!)
            assertEquals(400 to "InvalidDPoPProof", status to code)
            assertEquals(UserState.LOGGED_IN, user.state())
            val before = user.accessToken()
            user.refreshAccessToken()
            assertTrue(before != user.accessToken(), "a new access token")
            assertEquals("7", user.callFunction("sum", "[3, 4]"))
            assertEquals(0, handled.get())
        }
    }

    @Test
    fun `a bearer session on an optional app sends Bearer through the interceptor`() = withServer(dpop = "optional") { server ->
        server.app().use { app ->
            val user = app.emailUser()
            assertNull(user.dpopThumbprint())
            assertNull(cnfJkt(user.accessToken()!!))
            assertNull(user.dpopProof("GET", "${server.baseUrl}/x", user.accessToken()!!))
            assertNull(user.directDpopProof("GET", "${server.baseUrl}/x", user.accessToken()!!, null))
            val sent = Collections.synchronizedList(mutableListOf<Sent>())
            val client = recordingClient(user, sent)
            repeat(2) { client.newCall(profile(server)).execute().use { assertEquals(200, it.code) } }
            assertEquals(List(2) { Sent("Bearer", false, 200) }, sent.toList())
            // The copied refresh token of a bearer session works: that is what DPoP is for.
            assertEquals(201, stolenRefresh(server, user.refreshToken()!!).first)
        }
    }

    @Test
    fun `a refused token is refreshed once and the replay carries a proof for the new token`() =
        withServer(dpop = "required") { server ->
            App(server.config(dpop = true)).use { app ->
                val user = app.emailUser()
                val client = recordingClient(user, Collections.synchronizedList(mutableListOf()))
                val old = user.accessToken()
                // The server's clock passes the token's end (and every proof's iat is then too
                // old for it: it asks for its nonce); the device's does not.
                server.advanceClock(3600)
                val before = server.refreshCount()
                client.newCall(profile(server)).execute().use { assertEquals(200, it.code) }
                assertTrue(old != user.accessToken(), "refreshed")
                assertTrue(server.refreshCount() > before)
                assertEquals(UserState.LOGGED_IN, user.state())
            }
        }

    @Test
    fun `the interceptor answers a nonce challenge once and keeps the nonce`() = withServer(dpop = "required") { server ->
        App(server.config(dpop = true)).use { app ->
            val user = app.logIn(Creds.anonymous())
            val sent = Collections.synchronizedList(mutableListOf<Sent>())
            val client = recordingClient(user, sent)
            // Every proof's iat is now 600 s old to the server: it answers with a nonce challenge.
            server.advanceClock(600)
            val before = server.refreshCount()
            client.newCall(profile(server)).execute().use { assertEquals(200, it.code) }
            assertEquals(listOf(Sent("DPoP", true, 401), Sent("DPoP", true, 200)), sent.toList())
            // The next proofs carry the nonce: no challenge.
            sent.clear()
            repeat(2) { client.newCall(profile(server)).execute().use { assertEquals(200, it.code) } }
            assertEquals(List(2) { Sent("DPoP", true, 200) }, sent.toList())
            // Once that nonce has expired (they last 5 to 10 minutes), the next challenge is
            // answered the same way, a request body sent again with it.
            server.advanceClock(600)
            sent.clear()
            val call = Request.Builder().url("${server.baseUrl}/api/client/v2.0/app/$APP_ID/functions/call")
                .post("""{"name":"sum","arguments":[2,3]}""".toRequestBody("application/json".toMediaType()))
                .build()
            client.newCall(call).execute().use { response ->
                assertEquals(200, response.code)
                assertEquals("5", response.body.string().trim())
            }
            assertEquals(listOf(Sent("DPoP", true, 401), Sent("DPoP", true, 200)), sent.toList())
            // No refresh: a challenge is not a refused token.
            assertEquals(before, server.refreshCount())
        }
    }

    @Test
    fun `a java security signer holds the keys, and logOut deletes the key`() = withServer(dpop = "required") { server ->
        val signer = JcaSigner()
        App(server.config(dpop = true, dpopSigner = signer)).use { app ->
            val user = app.emailUser()
            assertEquals(1, signer.created.size)
            val handle = signer.created.single()
            assertEquals(91, signer.keys.getValue(handle).public.encoded.size, "SubjectPublicKeyInfo DER")
            val thumbprint = user.dpopThumbprint()
            assertNotNull(thumbprint)
            assertEquals(thumbprint, cnfJkt(user.accessToken()!!))
            user.refreshAccessToken()
            assertEquals(thumbprint, cnfJkt(user.accessToken()!!))
            assertEquals("6", user.callFunction("sum", "[1, 2, 3]"))
            OkHttpClient.Builder().authorizeWith(user).build().newCall(profile(server)).execute()
                .use { assertEquals(200, it.code) }
            assertEquals(400, stolenRefresh(server, user.refreshToken()!!).first)
            assertTrue(signer.deleted.isEmpty())
            user.logOut()
            waitFor(what = "deleteKey") { signer.deleted.isNotEmpty() }
            assertEquals(listOf(handle), signer.deleted.toList())
            assertTrue(signer.keys.isEmpty())
        }
    }

    @Test
    fun `a signer that fails fails the request with Storage and keeps the session`() = withServer(dpop = "required") { server ->
        val signer = JcaSigner()
        App(server.config(dpop = true, dpopSigner = signer)).use { app ->
            val handled = java.util.concurrent.atomic.AtomicInteger()
            app.onSessionError { _, _ -> handled.incrementAndGet() }
            val user = app.emailUser()
            signer.failure = DpopSignerException.Failed("the key store is locked")
            val e = assertThrows<AppException.Storage> { user.refreshAccessToken() }
            assertTrue(e.message!!.contains("the key store is locked"), e.message)
            assertEquals("the key store is locked", signer.failure!!.message)
            assertEquals(UserState.LOGGED_IN, user.state())
            // Any other exception of the signer (a KeyStoreException) counts as Failed.
            signer.failure = java.security.KeyStoreException("keystore unavailable")
            assertThrows<AppException.Storage> { user.callFunction("sum", "[1]") }
            assertEquals(UserState.LOGGED_IN, user.state())
            signer.failure = DpopSignerException.Failed("the key store is locked")
            // Through the interceptor: the call fails before sending, with the same error.
            val io = assertThrows<SessionKitIOException> {
                OkHttpClient.Builder().authorizeWith(user).build().newCall(profile(server)).execute()
            }
            assertTrue(io.error is AppException.Storage, "${io.error}")
            assertTrue(signer.deleted.isEmpty(), "the key is kept")
            // Unlocked (the device unlocked): the session goes on.
            signer.failure = null
            user.refreshAccessToken()
            assertEquals("2", user.callFunction("sum", "[2]"))
            assertEquals(UserState.LOGGED_IN, user.state())
            assertEquals(0, handled.get())
        }
    }

    @Test
    fun `a signer without dpop is refused when the App is made`() = withServer { server ->
        val e = assertThrows<AppException.InvalidArgument> { App(server.config(dpopSigner = JcaSigner())) }
        assertTrue(e.message!!.contains("dpop"), e.message)
    }
}
