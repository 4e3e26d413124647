package dev.deliveryotp

import kotlin.test.assertEquals
import kotlin.test.assertFailsWith
import kotlin.test.assertNotNull
import kotlin.test.assertNull
import kotlin.test.assertTrue
import org.junit.jupiter.api.Test

/** Every case of every shared vector file, through the Kotlin bindings. */
class VectorsTest {
    private fun runOtpFile(file: String): Int {
        val cases = Vectors.cases(file)
        for (c in cases) {
            val ctx = "$file: ${c.str("name")}"
            Secret.fromBytes(hex(c.str("secret_hex"))).use { secret ->
                val alg = algorithm(c.str("algorithm"))
                val code = c.str("code")
                when (c.str("mode")) {
                    "hotp" -> Hotp(secret, c.u32("digits"), alg).use { hotp ->
                        val counter = c.u64("counter")
                        assertEquals(code, hotp.generate(counter), ctx)
                        assertEquals(counter, hotp.verify(code, counter), ctx)
                        val start = if (counter >= 3uL) counter - 3uL else 0uL
                        assertEquals(counter, hotp.verify(code, start, 3uL), ctx)
                    }
                    "totp" -> Totp(secret, c.u32("digits"), c.u64("period"), alg, c.u64("t0")).use { totp ->
                        val time = c.u64("time")
                        assertEquals(code, totp.generate(time), ctx)
                        val m = assertNotNull(totp.verify(code, time), ctx)
                        assertEquals(0L, m.drift, ctx)
                        assertNull(totp.verify(code, time, lastUsedStep = m.step), "$ctx: used step accepted again")
                    }
                    else -> error("$ctx: unknown mode")
                }
            }
        }
        return cases.size
    }

    @Test
    fun rfc4226AppendixD() = assertEquals(50, runOtpFile("rfc4226-hotp.json"))

    @Test
    fun rfc6238AppendixB() = assertEquals(18, runOtpFile("rfc6238-totp.json"))

    @Test
    fun referenceImplementations() = assertTrue(runOtpFile("reference-implementations.json") > 200)

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
            val key = parseKeyUri(c.str("uri"))
            val expectedKind = when (c.str("type")) {
                "totp" -> OtpKind.Totp(c.u64("period"))
                else -> OtpKind.Hotp(c.u64("counter"))
            }
            assertEquals(expectedKind, key.kind, name)
            Secret.fromBytes(hex(c.str("secret_hex"))).use { assertEquals(it, key.secret, name) }
            assertEquals(c.optStr("issuer"), key.issuer, name)
            assertEquals(c.str("account"), key.account, name)
            assertEquals(algorithm(c.str("algorithm")), key.algorithm, name)
            assertEquals(c.u32("digits"), key.digits, name)
            val formatted = formatKeyUri(key)
            assertEquals(c.str("formatted"), formatted, name)
            assertEquals(key, parseKeyUri(formatted), "$name: round trip")
        }
        val invalid = Vectors.cases(file, "invalid")
        assertTrue(invalid.size >= 20)
        for (c in invalid) {
            val name = c.str("name")
            val e = assertFailsWith<OtpException>(name) { parseKeyUri(c.str("uri")) }
            assertEquals(c.str("error"), kind(e), "$name: ${e.message}")
            c.optStr("parameter")?.let { assertTrue(e.message!!.contains("'$it'"), "$name: ${e.message}") }
            assertTrue(!e.message!!.contains("MZXW"), "$name: message shows the secret")
        }
    }
}
