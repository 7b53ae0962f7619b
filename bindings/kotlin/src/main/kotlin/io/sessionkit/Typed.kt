// Typed forms of the JSON-string members (callFunction, customDataJson), through
// kotlinx.serialization: arguments are encoded to a JSON array, the result is decoded into T.
// The string forms stay; these only encode before and decode after them.

package io.sessionkit

import kotlinx.serialization.KSerializer
import kotlinx.serialization.SerializationException
import kotlinx.serialization.json.Json
import kotlinx.serialization.json.JsonArray
import kotlinx.serialization.json.JsonElement
import kotlinx.serialization.json.JsonNull
import kotlinx.serialization.json.JsonObject
import kotlinx.serialization.json.JsonPrimitive
import kotlinx.serialization.serializer

/**
 * The Json the typed members use when none is given: unknown keys are ignored, because a
 * server's documents (custom data with its `_id` and `user_id`, a function's result) usually
 * carry more than the class an app decodes them into.
 */
val SessionKitJson: Json = Json { ignoreUnknownKeys = true }

/**
 * Calls the server function [name] with [args] and decodes its result into [T]:
 * `val n: Int = user.callFunction<Int>("sum", 1, 2)`. The JSON-string form
 * ([User.callFunction] with `argsJson`) stays; this one encodes the arguments into a JSON array
 * first and decodes the result text after, so it has the same authentication and the same
 * refresh-and-replay-once on a 401.
 *
 * Arguments may be `null`, strings, numbers, booleans, [JsonElement]s, lists, arrays and maps
 * of these (map keys as strings), and instances of `@Serializable` classes. Give the type
 * argument: without one, `user.callFunction("f", "x")` is the member that takes a JSON text.
 *
 * @param json how to encode and decode; default [SessionKitJson].
 * @return the function's result decoded into [T] (a nullable [T] for a function that may
 *   return `null`).
 * @throws AppException.InvalidArgument if an argument cannot be encoded (a class that is not
 *   `@Serializable`) or the result does not decode into [T]; the message says which.
 * @throws AppException as [User.callFunction] does: Service (the function failed, or does not
 *   exist; `httpStatus`, `code`), SessionExpired, Network, Timeout, ...
 */
suspend inline fun <reified T> User.callFunction(
    name: String,
    vararg args: Any?,
    json: Json = SessionKitJson,
): T {
    val result = callFunction(name, encodeFunctionArgs(json, args))
    return decodeTyped(json, serializer<T>(), result, "the result of function '$name'")
}

/**
 * This user's custom data (the `user_data` claim of the current access token, as
 * [User.customDataJson]) decoded into [T]; `null` when there is none. No network: call
 * [User.refreshCustomData] first for the server's latest.
 *
 * @param json how to decode; default [SessionKitJson] (unknown keys ignored).
 * @throws AppException.InvalidArgument if the custom data does not decode into [T].
 */
inline fun <reified T : Any> User.customData(json: Json = SessionKitJson): T? =
    customDataJson()?.let { decodeTyped(json, serializer<T>(), it, "the custom data") }

/**
 * Fetches this user's custom data from the server ([User.refreshCustomData]: a token refresh,
 * so the new `user_data` claim) and decodes it into [T]; `null` when there is none.
 *
 * @param json how to decode; default [SessionKitJson] (unknown keys ignored).
 * @throws AppException.InvalidArgument if the custom data does not decode into [T].
 * @throws AppException as [User.refreshCustomData] does (SessionExpired, Network, ...).
 */
suspend inline fun <reified T : Any> User.refreshCustomData(json: Json = SessionKitJson): T? =
    refreshCustomData()?.let { decodeTyped(json, serializer<T>(), it, "the custom data") }

/** The arguments as one JSON array text. Public for the inline [callFunction] only. */
@PublishedApi
internal fun encodeFunctionArgs(json: Json, args: Array<out Any?>): String =
    JsonArray(args.map { encodeArg(json, it) }).toString()

private fun encodeArg(json: Json, arg: Any?): JsonElement = when (arg) {
    null -> JsonNull
    is JsonElement -> arg
    is String -> JsonPrimitive(arg)
    is Number -> JsonPrimitive(arg)
    is Boolean -> JsonPrimitive(arg)
    is Iterable<*> -> JsonArray(arg.map { encodeArg(json, it) })
    is Array<*> -> JsonArray(arg.map { encodeArg(json, it) })
    is Map<*, *> -> JsonObject(arg.entries.associate { (k, v) -> k.toString() to encodeArg(json, v) })
    else -> try {
        // The runtime class's serializer: present for @Serializable classes (and enums).
        json.encodeToJsonElement(json.serializersModule.serializer(arg.javaClass), arg)
    } catch (e: SerializationException) {
        throw AppException.InvalidArgument(
            "cannot encode a ${arg.javaClass.name} as a function argument: ${e.message}",
        )
    } catch (e: IllegalArgumentException) {
        throw AppException.InvalidArgument(
            "cannot encode a ${arg.javaClass.name} as a function argument: ${e.message}",
        )
    }
}

/** [text] decoded with [serializer]. Public for the inline typed members only. */
@PublishedApi
internal fun <T> decodeTyped(json: Json, serializer: KSerializer<T>, text: String, what: String): T =
    try {
        json.decodeFromString(serializer, text)
    } catch (e: IllegalArgumentException) {
        // SerializationException is an IllegalArgumentException: a shape that does not fit T.
        throw AppException.InvalidArgument(
            "$what does not decode into ${serializer.descriptor.serialName}: ${e.message}",
        )
    }
