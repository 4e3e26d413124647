package dev.deliveryotp

import java.time.Duration
import java.time.Instant
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
            assertEquals(20, secret.byteLength)
            val uri = KeyUri(OtpKind.Totp(Duration.ofSeconds(30)), secret, "courier-17@acme.example", issuer = "Acme Deliveries")
                .use { it.toUri() }
            assertTrue(uri.startsWith("otpauth://totp/Acme%20Deliveries:courier-17%40acme.example?secret="))
            KeyUri.parse(uri).use { it.totp() }.use { totp ->
                val now = at(1_764_000_000)
                val code = totp.generate(now)
                val m = totp.verify(code, now.plusSeconds(30))!!
                assertEquals(-1L, m.drift)
                assertNull(totp.verify(code, now.plusSeconds(30), lastUsedStep = m.step), "replayed code accepted")
            }
        }
    }

    @Test
    fun defaultsAreSha1SixDigitsThirtySeconds() {
        Secret.fromBytes(rfcSecret).use { s ->
            Totp(s).use { assertEquals("287082", it.generate(at(59))) }
            Hotp(s).use { assertEquals("755224", it.generate(0)) }
        }
    }

    @Test
    fun badSettingsAreTypedExceptionsWithReadableMessages() {
        Secret.fromBytes(rfcSecret).use { s ->
            val digits = assertFailsWith<OtpException.InvalidDigits> { Hotp(s, 5) }
            // The fields are typed, the message is the core's sentence, and
            // toString names the case as any Kotlin exception does.
            assertEquals(Triple(5L, 6L, 10L), Triple(digits.digits, digits.min, digits.max))
            assertEquals("a one-time password has 6 to 10 digits; 5 were asked for", digits.message)
            assertEquals("dev.deliveryotp.OtpException\$InvalidDigits: ${digits.message}", digits.toString())
            assertFailsWith<OtpException.InvalidPeriod> { Totp.withPeriod(s, 6, Duration.ZERO, null, at(0)) }
            val fraction = assertFailsWith<OtpException.InvalidNumber> { Totp.withPeriod(s, 6, Duration.ofMillis(1500), null, at(0)) }
            assertEquals("period", fraction.what)
            assertFailsWith<OtpException.InvalidNumber> { Hotp(s, -6) }
            Totp.withPeriod(s, 6, Duration.ofSeconds(30), null, at(100)).use { t ->
                assertFailsWith<OtpException.TimeBeforeStart> { t.generate(at(99)) }
                val window = assertFailsWith<OtpException.WindowTooLarge> { t.verify("123456", at(200), behind = 101) }
                assertEquals(101L to 100L, window.requested to window.max)
                assertFailsWith<OtpException.InvalidNumber> { t.verify("123456", at(200), behind = -1) }
                val malformed = assertFailsWith<OtpException.MalformedCode> { t.verify("12345x", at(200)) }
                assertFalse(malformed.message!!.contains("12345"), "message repeats the entered code")
            }
        }
        assertFailsWith<OtpException.EmptySecret> { Secret.fromBytes(ByteArray(0)) }
        assertFailsWith<OtpException.SecretTooShort> { Secret.generateWithLength(15) }
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
            Totp(s, digits = 8).use { assertEquals("65353130", it.generate(at(20_000_000_000))) }
            Totp.withPeriod(s, 6, Duration.ofSeconds(1), null, at(0)).use { t ->
                val latest = Instant.MAX.truncatedTo(java.time.temporal.ChronoUnit.SECONDS)
                val m = t.verify(t.generate(latest), latest, behind = 100, ahead = 100)!!
                assertEquals(latest.epochSecond, m.step)
            }
            // An HOTP counter is RFC 4226's 8 unsigned bytes: past Long.MAX_VALUE it
            // is a negative Long with the same bits.
            Hotp(s).use { h ->
                val last = -1L // 2^64 - 1
                assertEquals("18446744073709551615", java.lang.Long.toUnsignedString(last))
                assertEquals(last, h.verify(h.generate(last), last - 1, 1))
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
