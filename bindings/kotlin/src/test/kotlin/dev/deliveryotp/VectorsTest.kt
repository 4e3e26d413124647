package dev.deliveryotp

import java.time.Duration
import java.time.Instant
import kotlin.test.assertEquals
import kotlin.test.assertFailsWith
import kotlin.test.assertNotNull
import kotlin.test.assertNull
import kotlin.test.assertTrue
import org.junit.jupiter.api.Test

/** Every case of every shared vector file, through the Kotlin bindings. */
class VectorsTest {
    /** Runs a file's cases; returns how many ran and how many TOTP times
     *  lay past what `Instant` holds (Rust's own tests run those). */
    private fun runOtpFile(file: String): Pair<Int, Int> {
        val cases = Vectors.cases(file)
        var pastInstant = 0
        for (c in cases) {
            val ctx = "$file: ${c.str("name")}"
            Secret.fromBytes(hex(c.str("secret_hex"))).use { secret ->
                val alg = algorithm(c.str("algorithm"))
                val code = c.str("code")
                when (c.str("mode")) {
                    "hotp" -> Hotp(secret, c.int("digits"), alg).use { hotp ->
                        // The counter's 64 bits: past Long.MAX_VALUE it is negative.
                        val counter = c.bits("counter")
                        assertEquals(code, hotp.generate(counter), ctx)
                        assertEquals(counter, hotp.verify(code, counter), ctx)
                        val start = if (java.lang.Long.compareUnsigned(counter, 3) >= 0) counter - 3 else 0L
                        assertEquals(counter, hotp.verify(code, start, 3), ctx)
                    }
                    "totp" -> Totp.withPeriod(secret, c.int("digits"), Duration.ofSeconds(c.str("period").toLong()), alg, at(c.str("t0").toLong())).use { totp ->
                        val seconds = java.lang.Long.parseUnsignedLong(c.str("time"))
                        if (seconds < 0 || seconds > Instant.MAX.epochSecond) {
                            pastInstant++
                            return@use
                        }
                        val time = at(seconds)
                        assertEquals(code, totp.generate(time), ctx)
                        val m = assertNotNull(totp.verify(code, time), ctx)
                        assertEquals(0L, m.drift, ctx)
                        assertNull(totp.verify(code, time, lastUsedStep = m.step), "$ctx: used step accepted again")
                    }
                    else -> error("$ctx: unknown mode")
                }
            }
        }
        return cases.size to pastInstant
    }

    @Test
    fun rfc4226AppendixD() = assertEquals(50 to 0, runOtpFile("rfc4226-hotp.json"))

    @Test
    fun rfc6238AppendixB() = assertEquals(18 to 0, runOtpFile("rfc6238-totp.json"))

    @Test
    fun referenceImplementations() {
        val (ran, pastInstant) = runOtpFile("reference-implementations.json")
        assertTrue(ran > 200, "$ran cases")
        // The TOTP cases at unix times 2^63 and 2^64 - 1: no Instant holds those.
        assertEquals(45, pastInstant)
    }

    @Test
    fun rfc4648Base32() {
        val file = "rfc4648-base32.json"
        val cases = Vectors.cases(file)
        assertEquals(6, cases.size)
        for (c in cases) {
            val bytes = hex(c.str("bytes_hex"))
            Secret.fromBase32(c.str("encoded")).use { s ->
                Secret.fromBytes(bytes).use { expected -> assertEquals(expected, s, c.str("name")) }
                assertEquals(c.str("encoded").trimEnd('='), s.toBase32(), c.str("name"))
            }
        }
        for (c in Vectors.cases(file, "lenient")) {
            Secret.fromBase32(c.str("text")).use { s ->
                Secret.fromBytes(hex(c.str("bytes_hex"))).use { expected -> assertEquals(expected, s, c.str("name")) }
            }
        }
        val invalid = Vectors.cases(file, "invalid")
        assertTrue(invalid.isNotEmpty())
        for (c in invalid) {
            val e = assertFailsWith<OtpException>(c.str("name")) { Secret.fromBase32(c.str("text")) }
            assertEquals(c.str("error"), kind(e), c.str("name"))
            c.optStr("position")?.let {
                assertEquals(it.toLong(), (e as OtpException.InvalidBase32Character).position, c.str("name"))
                assertTrue(e.message!!.contains("position $it"), "${c.str("name")}: ${e.message}")
            }
            c.optStr("length")?.let {
                assertEquals(it.toLong(), (e as OtpException.InvalidBase32Length).length, c.str("name"))
                assertTrue(e.message!!.contains("$it characters"), "${c.str("name")}: ${e.message}")
            }
        }
    }

    @Test
    fun otpauthUris() {
        val file = "otpauth-uri.json"
        val valid = Vectors.cases(file, "valid")
        assertTrue(valid.size >= 10)
        for (c in valid) {
            val name = c.str("name")
            val key = KeyUri.parse(c.str("uri"))
            val expectedKind = when (c.str("type")) {
                "totp" -> OtpKind.Totp(Duration.ofSeconds(c.str("period").toLong()))
                else -> OtpKind.Hotp(c.bits("counter"))
            }
            assertEquals(expectedKind, key.kind, name)
            Secret.fromBytes(hex(c.str("secret_hex"))).use { assertEquals(it, key.secret, name) }
            assertEquals(c.optStr("issuer"), key.issuer, name)
            assertEquals(c.str("account"), key.account, name)
            assertEquals(algorithm(c.str("algorithm")), key.algorithm, name)
            assertEquals(c.int("digits"), key.digits, name)
            val formatted = key.toUri()
            assertEquals(c.str("formatted"), formatted, name)
            assertEquals(key, KeyUri.parse(formatted), "$name: round trip")
            KeyUri(key.kind, key.secret, key.account, key.issuer, key.algorithm, key.digits).use {
                assertEquals(key, it, "$name: made from its fields")
            }
        }
        val invalid = Vectors.cases(file, "invalid")
        assertTrue(invalid.size >= 20)
        for (c in invalid) {
            val name = c.str("name")
            val e = assertFailsWith<OtpException>(name) { KeyUri.parse(c.str("uri")) }
            assertEquals(c.str("error"), kind(e), "$name: ${e.message}")
            c.optStr("parameter")?.let { assertTrue(e.message!!.contains("'$it'"), "$name: ${e.message}") }
            assertTrue(!e.message!!.contains("MZXW"), "$name: message shows the secret")
        }
    }
}
