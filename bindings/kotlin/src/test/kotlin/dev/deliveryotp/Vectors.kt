package dev.deliveryotp

import com.google.gson.JsonElement
import com.google.gson.JsonObject
import com.google.gson.JsonParser
import java.io.File
import java.time.Instant

/** Reads the shared vector files in `tests/vectors/` (the directory comes from the
 *  `deliveryotp.vectors` system property that the test command sets). */
object Vectors {
    private val dir: File by lazy {
        val path = System.getProperty("deliveryotp.vectors")
            ?: error("set -Ddeliveryotp.vectors=<repo>/tests/vectors")
        File(path).also { require(it.isDirectory) { "no vector directory at $path" } }
    }

    fun load(name: String): JsonObject = JsonParser.parseString(File(dir, name).readText()).asJsonObject

    fun cases(name: String, key: String = "cases"): List<JsonObject> =
        load(name).getAsJsonArray(key).map { it.asJsonObject }
}

fun JsonObject.str(key: String): String = get(key).asString
fun JsonObject.optStr(key: String): String? = get(key)?.takeUnless(JsonElement::isJsonNull)?.asString
fun JsonObject.int(key: String): Int = get(key).asInt
/** A u64 the vector files write as a string, as the 64 bits a Long carries. */
fun JsonObject.bits(key: String): Long = java.lang.Long.parseUnsignedLong(str(key))
/** A unix time the vector files write as a string. */
fun JsonObject.time(key: String): Instant = at(str(key).toLong())

/** The instant `secs` seconds after 1970. */
fun at(secs: Long): Instant = Instant.ofEpochSecond(secs)

fun hex(text: String): ByteArray = ByteArray(text.length / 2) { text.substring(2 * it, 2 * it + 2).toInt(16).toByte() }

fun algorithm(name: String): Algorithm = when (name) {
    "SHA1" -> Algorithm.SHA1
    "SHA256" -> Algorithm.SHA256
    "SHA512" -> Algorithm.SHA512
    else -> error("unknown algorithm $name")
}

/** The error kind's name as the vector files write it. An exhaustive `when`:
 *  a new error variant fails to compile here until it is named. */
fun kind(e: OtpException): String = when (e) {
    is OtpException.InvalidDigits -> "invalid_digits"
    is OtpException.InvalidPeriod -> "invalid_period"
    is OtpException.EmptySecret -> "empty_secret"
    is OtpException.SecretTooShort -> "secret_too_short"
    is OtpException.SecretTooLong -> "secret_too_long"
    is OtpException.RandomUnavailable -> "random_unavailable"
    is OtpException.InvalidBase32Character -> "invalid_base32_character"
    is OtpException.InvalidBase32Length -> "invalid_base32_length"
    is OtpException.TimeBeforeStart -> "time_before_start"
    is OtpException.WindowTooLarge -> "window_too_large"
    is OtpException.MalformedCode -> "malformed_code"
    is OtpException.UnsupportedScheme -> "unsupported_scheme"
    is OtpException.UnknownOtpType -> "unknown_otp_type"
    is OtpException.MissingAccount -> "missing_account"
    is OtpException.MissingSecret -> "missing_secret"
    is OtpException.MissingCounter -> "missing_counter"
    is OtpException.InvalidParameter -> "invalid_parameter"
    is OtpException.DuplicateParameter -> "duplicate_parameter"
    is OtpException.ParameterNotAllowed -> "parameter_not_allowed"
    is OtpException.UnsupportedAlgorithm -> "unsupported_algorithm"
    is OtpException.IssuerMismatch -> "issuer_mismatch"
    is OtpException.InvalidLabel -> "invalid_label"
    is OtpException.InvalidPercentEncoding -> "invalid_percent_encoding"
    is OtpException.InvalidKeyId -> "invalid_key_id"
    is OtpException.UnknownKeyId -> "unknown_key_id"
    is OtpException.InvalidKey -> "invalid_key"
    is OtpException.InvalidKeySet -> "invalid_key_set"
    is OtpException.InvalidDeliveryId -> "invalid_delivery_id"
    is OtpException.InvalidCodeFormat -> "invalid_code_format"
    is OtpException.UnsafeSettings -> "unsafe_settings"
    is OtpException.InvalidCodeCharacter -> "invalid_code_character"
    is OtpException.WrongCodeLength -> "wrong_code_length"
    is OtpException.InvalidTicket -> "invalid_ticket"
    is OtpException.UnsupportedTicketVersion -> "unsupported_ticket_version"
    is OtpException.TicketMacMismatch -> "ticket_mac_mismatch"
    is OtpException.StateStorage -> "state_storage"
    is OtpException.CorruptState -> "corrupt_state"
    is OtpException.InvalidReceipt -> "invalid_receipt"
    is OtpException.UnsupportedReceiptVersion -> "unsupported_receipt_version"
    is OtpException.ReceiptMacMismatch -> "receipt_mac_mismatch"
    is OtpException.ReceiptConflict -> "receipt_conflict"
    is OtpException.InvalidDeviceKey -> "invalid_device_key"
    is OtpException.InvalidRequestSignature -> "invalid_request_signature"
    is OtpException.InvalidPolicy -> "invalid_policy"
    is OtpException.InvalidOrder -> "invalid_order"
    is OtpException.InvalidTemplate -> "invalid_template"
    is OtpException.InvalidContact -> "invalid_contact"
    is OtpException.InvalidNumber -> "invalid_number"
    is OtpException.Overflow -> "overflow"
}

/** A number that the vector files write as a string (u64, as a Long's 64 bits) or as a JSON number. */
fun JsonObject.num(key: String): Long =
    get(key).let { if (it.asJsonPrimitive.isString) java.lang.Long.parseUnsignedLong(it.asString) else it.asLong }

fun codeFormat(text: String): CodeFormat {
    val (kind, n) = text.split("-")
    return if (kind == "numeric") CodeFormat.Numeric(n.toInt()) else CodeFormat.Crockford(n.toInt())
}
