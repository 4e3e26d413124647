package dev.deliveryotp

import kotlin.test.assertEquals
import kotlin.test.assertFailsWith
import kotlin.test.assertFalse
import kotlin.test.assertNotEquals
import kotlin.test.assertNull
import kotlin.test.assertTrue
import org.junit.jupiter.api.Test

/** What an Android app does with the library, beyond the vectors. */
class ApiTest {
    private val rfcSecret = "12345678901234567890".toByteArray()

    @Test
    fun enrolmentRoundTrip() {
        Secret.generate().use { secret ->
            assertEquals(20u, secret.byteLength())
            val uri = formatKeyUri(KeyUri(OtpKind.Totp(30uL), secret, "Acme Deliveries", "courier-17@acme.example", Algorithm.SHA1, 6u))
            assertTrue(uri.startsWith("otpauth://totp/Acme%20Deliveries:courier-17%40acme.example?secret="))
            val key = parseKeyUri(uri)
            keyUriTotp(key).use { totp ->
                val now = 1_764_000_000uL
                val code = totp.generate(now)
                val m = totp.verify(code, now + 30uL)!!
                assertEquals(-1L, m.drift)
                assertNull(totp.verify(code, now + 30uL, lastUsedStep = m.step), "replayed code accepted")
            }
        }
    }

    @Test
    fun defaultsAreSha1SixDigitsThirtySeconds() {
        Secret.fromBytes(rfcSecret).use { s ->
            Totp(s).use { assertEquals("287082", it.generate(59uL)) }
            Hotp(s).use { assertEquals("755224", it.generate(0uL)) }
        }
    }

    @Test
    fun badSettingsAreTypedExceptionsWithReadableMessages() {
        Secret.fromBytes(rfcSecret).use { s ->
            val digits = assertFailsWith<OtpException.InvalidDigits> { Hotp(s, 5u) }
            // The fields are typed, the message is the core's sentence, and
            // toString names the case as any Kotlin exception does.
            assertEquals(Triple(5L, 6L, 10L), Triple(digits.digits, digits.min, digits.max))
            assertEquals("a one-time password has 6 to 10 digits; 5 were asked for", digits.message)
            assertEquals("dev.deliveryotp.OtpException\$InvalidDigits: ${digits.message}", digits.toString())
            assertFailsWith<OtpException.InvalidPeriod> { Totp(s, period = 0uL) }
            Totp(s, t0 = 100uL).use { t ->
                assertFailsWith<OtpException.TimeBeforeStart> { t.generate(99uL) }
                val window = assertFailsWith<OtpException.WindowTooLarge> { t.verify("123456", 200uL, behind = 101uL) }
                assertEquals(101L to 100L, window.requested to window.max)
                val malformed = assertFailsWith<OtpException.MalformedCode> { t.verify("12345x", 200uL) }
                assertFalse(malformed.message!!.contains("12345"), "message repeats the entered code")
            }
        }
        assertFailsWith<OtpException.EmptySecret> { Secret.fromBytes(ByteArray(0)) }
        assertFailsWith<OtpException.SecretTooShort> { Secret.generateWithLength(15u) }
        val bad = assertFailsWith<OtpException.InvalidBase32Character> { Secret.fromBase32("JBSW1Y3D") }
        assertEquals(5L, bad.position)
        assertEquals(true, bad.message?.contains("position 5"))
    }

    @Test
    fun secretsAreRedactedAndCompared() {
        Secret.fromBytes(rfcSecret).use { a ->
            Secret.fromBase32("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ").use { b ->
                assertEquals(a, b)
                assertEquals("Secret([redacted])", a.toString())
                Hotp(a).use { assertFalse(it.toString().contains("GEZDG") || it.toString().contains("1234567890")) }
            }
            Secret.generate().use { c -> assertNotEquals(a, c) }
        }
    }

    @Test
    fun timesPastTwoToThe32() {
        Secret.fromBytes(rfcSecret).use { s ->
            Totp(s, digits = 8u).use { assertEquals("65353130", it.generate(20_000_000_000uL)) }
            Totp(s, period = 1uL).use { t ->
                val max = ULong.MAX_VALUE
                val m = t.verify(t.generate(max), max, behind = 100uL, ahead = 100uL)!!
                assertEquals(max, m.step)
            }
        }
    }

    @Test
    fun nowConveniencesUseTheDeviceClock() {
        Secret.generate().use { s ->
            Totp(s).use { t ->
                val code = t.generateNow()
                assertEquals(6, code.length)
                // The step may tick over between the two calls; one step behind is allowed by default.
                assertTrue(t.verifyNow(code) != null)
            }
        }
    }
}
