package dev.deliveryotp

import java.util.concurrent.ConcurrentHashMap
import kotlin.test.assertEquals
import kotlin.test.assertFailsWith
import kotlin.test.assertFalse
import kotlin.test.assertNotEquals
import kotlin.test.assertTrue
import org.junit.jupiter.api.Test

/** A store whose writes fail with whatever [fail] throws, until it is set to null. */
class BrokenStateStore(var fail: (() -> Nothing)?) : DeviceStateStore {
    val values = ConcurrentHashMap<String, String>()
    override fun load(key: String): String? = values[key]
    override fun compareAndSet(key: String, expected: String?, value: String): Boolean {
        fail?.invoke()
        return if (expected == null) values.putIfAbsent(key, value) == null else values.replace(key, expected, value)
    }
}

/** What a careless app does: stores that throw the wrong thing, closed objects, printing values. */
class SafetyTest {
    private val now = at(1_000)

    private fun issue(keys: KeySet, delivery: String): IssuedCode =
        Backend(keys).use { it.issue(delivery, 0, "courier-1", now, defaultDeliverySettings()) }

    @Test
    fun aStoreThatThrowsAnErrorNotAnExceptionGivesNoOutcome() {
        KeySet.generate("k1").use { keys ->
            val issued = issue(keys, "PKG-B7")
            val throwers: List<Pair<String, () -> Nothing>> = listOf(
                "NotImplementedError" to { TODO("save the attempt") },
                "AssertionError" to { throw AssertionError("invariant broken") },
                "StackOverflowError" to { throw StackOverflowError() },
                "IllegalStateException" to { throw IllegalStateException("closed database\n\tat line two") },
            )
            for ((name, thrower) in throwers) {
                val store = BrokenStateStore(thrower)
                OfflineVerifier(issued.ticket, store).use { v ->
                    val e = assertFailsWith<OtpException.StateStorage>(name) { v.verify(issued.code, now.plusSeconds(1)) }
                    assertTrue(e.message!!.contains(name), "$name: ${e.message}")
                    assertFalse(e.message!!.contains("\tat "), "$name: stack trace in the message: ${e.message}")
                    assertTrue(e.message!!.length < 300, "$name: ${e.message!!.length} characters")
                    assertTrue(store.values.isEmpty(), "$name: something was stored")
                    assertEquals(5, v.attemptsLeft(), "$name: a failed save counted")
                    // Once the storage works, the same code is accepted as the first attempt.
                    store.fail = null
                    val ok = v.verify(issued.code, now.plusSeconds(2))
                    assertEquals(OfflineOutcome.AcceptedProvisionally(1), ok, name)
                }
            }
        }
    }

    @Test
    fun aClosedObjectPassedAsAnArgumentIsAClearException() {
        KeySet.generate("k1").use { keys ->
            Backend(keys).use { backend ->
                repeat(50) { i ->
                    val issued = backend.issue("PKG-B8-$i", 0, "courier-1", now, defaultDeliverySettings())
                    val ticket = issued.ticket
                    ticket.close()
                    for ((what, call) in listOf<Pair<String, () -> Any?>>(
                        "OfflineVerifier(ticket)" to { OfflineVerifier(ticket, MapStateStore()) },
                        "codeFor(ticket)" to { backend.codeFor(ticket) },
                        "verifyOnline(ticket)" to { backend.verifyOnline(ticket, issued.code, "courier-1", "phone-1", now) },
                        "reassign(ticket)" to { backend.reassign(ticket, "courier-2", now, defaultDeliverySettings()) },
                    )) {
                        val e = assertFailsWith<IllegalStateException>(what) { call() }
                        assertTrue(e.message!!.contains("destroyed"), "$what: ${e.message}")
                    }
                }
                val key = backend.provisionDevice("courier-1", "phone-1")
                key.close()
                val issued = backend.issue("PKG-B8-key", 0, "courier-1", now, defaultDeliverySettings())
                OfflineVerifier(issued.ticket, MapStateStore()).use { v ->
                    v.verify(issued.code, now.plusSeconds(1))
                    assertFailsWith<IllegalStateException> {
                        v.receipt(key, Handover.DeliveredOffline(issued.code), now.plusSeconds(2), ReceiptDetails("android/1.0"))
                    }
                }
            }
        }
        val secret = Secret.generate()
        secret.close()
        assertFailsWith<IllegalStateException> { Hotp(secret) }
        assertFailsWith<IllegalStateException> { KeyUri(OtpKind.Totp(java.time.Duration.ofSeconds(30)), secret, "c@acme.example", "Acme") }
    }

    @Test
    fun aKeyUriThatCannotBeWrittenIsRefusedWhenMade() {
        Secret.generate().use { secret ->
            val totp = OtpKind.Totp(java.time.Duration.ofSeconds(30))
            val colon = assertFailsWith<OtpException.InvalidLabel> { KeyUri(totp, secret, "acme:bob") }
            assertEquals("account", colon.field)
            assertFailsWith<OtpException.InvalidLabel> { KeyUri(totp, secret, "bob\u202e") }
            assertFailsWith<OtpException.InvalidPeriod> { KeyUri(OtpKind.Totp(java.time.Duration.ofMillis(30_500)), secret, "bob") }
            assertFailsWith<OtpException.InvalidPeriod> { KeyUri(OtpKind.Totp(java.time.Duration.ZERO), secret, "bob") }
            assertFailsWith<OtpException.InvalidDigits> { KeyUri(totp, secret, "bob", digits = 5) }
            assertFailsWith<OtpException.InvalidNumber> { KeyUri(totp, secret, "bob", digits = -6) }
            // HOTP counters keep all 64 bits both ways.
            KeyUri(OtpKind.Hotp(-1L), secret, "bob").use { k ->
                assertTrue(k.toUri().endsWith("&counter=18446744073709551615"), "the unsigned counter is written")
                KeyUri.parse(k.toUri()).use { assertEquals(OtpKind.Hotp(-1L), it.kind) }
            }
        }
    }

    @Test
    fun noPrintedValueShowsACodeOrSecret() {
        KeySet.generate("k1").use { keys ->
            val keyMaterial = Regex("\"secret\"\\s*:\\s*\"([^\"]+)\"").findAll(keys.toJson()).map { it.groupValues[1] }.toList()
            assertTrue(keyMaterial.isNotEmpty(), "no key found in the key set's JSON")
            Backend(keys).use { backend ->
                val issued = backend.issue("PKG-B10", 0, "courier-1", now, defaultDeliverySettings())
                val code = issued.code
                val device = backend.provisionDevice("courier-1", "phone-1")
                val deviceKey = Regex("\"key\"\\s*:\\s*\"([^\"]+)\"").find(device.toJson())!!.groupValues[1]
                val values = MessageValues("ACME", "PKG-B10", code, now.plusSeconds(3600), 0)
                val templates = MessageTemplates.defaults()
                val sms = templates.renderSms("en", values)
                val email = templates.renderEmail("en", values)
                val carries = { t: String -> t.contains(code) || t.contains(issued.codeGrouped) }
                assertTrue(carries(sms.text) && carries(email.body), "the messages must carry the code")
                val secret = Secret.fromBase32("JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP")
                val printed = mapOf(
                    "IssuedCode" to issued.toString(),
                    "IssuedCode in a template" to "issued: $issued",
                    "Ticket" to issued.ticket.toString(),
                    "KeySet" to keys.toString(),
                    "Backend" to backend.toString(),
                    "DeviceKey" to device.toString(),
                    "Handover.DeliveredOffline" to Handover.DeliveredOffline(code).toString(),
                    "Handover.DeliveredOnline" to Handover.DeliveredOnline(code, 1).toString(),
                    "MessageValues" to values.toString(),
                    "Sms" to sms.toString(),
                    "Email" to email.toString(),
                    "Secret" to secret.toString(),
                    "KeyUri" to KeyUri(OtpKind.Totp(java.time.Duration.ofSeconds(30)), secret, "c@acme.example", "Acme").toString(),
                    "Totp" to Totp(secret).toString(),
                )
                for ((what, text) in printed) {
                    assertFalse(text.contains(code), "$what shows the code: $text")
                    assertFalse(text.contains(issued.codeGrouped), "$what shows the grouped code: $text")
                    for (k in keyMaterial) assertFalse(text.contains(k), "$what shows a backend key")
                    assertFalse(text.contains(deviceKey), "$what shows the device key")
                    assertFalse(text.contains("JBSWY3DP"), "$what shows the secret")
                }
                assertTrue(printed.getValue("Handover.DeliveredOnline").contains("attempts_used: 1"), printed.getValue("Handover.DeliveredOnline"))
            }
        }
    }

    @Test
    fun equalTicketsAndSecretsHashAlike() {
        KeySet.generate("k1").use { keys ->
            val issued = issue(keys, "PKG-hash")
            val json = issued.ticket.toJson()
            val a = Ticket.fromJson(json)
            val b = Ticket.fromJson(json)
            assertEquals(a, b)
            assertEquals(a.hashCode(), b.hashCode())
            assertEquals(1, hashSetOf(a, b, issued.ticket).size)
            val other = issue(keys, "PKG-hash-2").ticket
            assertEquals(2, hashSetOf(a, other).size)
        }
        val s1 = Secret.fromBase32("JBSWY3DPEHPK3PXP")
        val s2 = Secret.fromBytes("Hello!\u00de\u00ad\u00be\u00ef".toByteArray(Charsets.ISO_8859_1))
        assertEquals(s1, s2)
        assertEquals(1, hashSetOf(s1, s2).size)
        assertEquals(2, hashSetOf(s1, Secret.generate()).size)
    }

    @Test
    fun aRotationReachesTheBackendMadeBeforeIt() {
        KeySet.generate("k1").use { keys ->
            Backend(keys).use { backend ->
                val before = backend.issue("PKG-R1", 0, "courier-1", now, defaultDeliverySettings())
                assertEquals("k1", before.ticket.keyId)
                keys.rotate("k2")
                val after = backend.issue("PKG-R2", 0, "courier-1", now, defaultDeliverySettings())
                assertEquals("k2", after.ticket.keyId)
                // Tickets of the old key are still the backend's own.
                assertEquals(before.code, backend.codeFor(backend.readTicket(before.ticket.toJson())))
                val key = backend.provisionDevice("courier-1", "phone-1")
                assertEquals("k2", key.keyId)
                OfflineVerifier(before.ticket, MapStateStore()).use { v ->
                    v.verify(before.code, now.plusSeconds(1))
                    val receipt = v.receipt(key, Handover.DeliveredOffline(before.code), now.plusSeconds(2), ReceiptDetails("android/1.0"))
                    val decision = backend.reconcile(receipt.toJson(), before.ticket, now.plusSeconds(3)).decision
                    assertEquals(Decision.Confirmed(Verification.OFFLINE), decision)
                }
            }
        }
    }

    @Test
    fun valuesPrintReadablyAndCompareByValue() {
        assertEquals("CodeMismatch", Decision.CodeMismatch.toString())
        assertEquals("Ended", OnlineOutcome.Ended.toString())
        val uri = "otpauth://totp/Acme:bob?secret=JBSWY3DPEHPK3PXP&issuer=Acme"
        assertEquals(KeyUri.parse(uri), KeyUri.parse(uri))
        assertEquals(KeyUri.parse(uri).hashCode(), KeyUri.parse(uri).hashCode())
        assertEquals(1, hashSetOf(KeyUri.parse(uri), KeyUri.parse(uri)).size)
        assertNotEquals(KeyUri.parse(uri), KeyUri.parse(uri.replace("bob", "alice")))
        KeySet.generate("k1").use { keys ->
            Backend(keys).use { backend ->
                val issued = backend.issue("PKG-EQ", 0, "courier-1", now, defaultDeliverySettings())
                val again = backend.issue("PKG-EQ", 0, "courier-1", now, defaultDeliverySettings())
                assertEquals(issued, again)
                val keyJson = backend.provisionDevice("courier-1", "phone-1").toJson()
                assertEquals(1, hashSetOf(DeviceKey.fromJson(keyJson), DeviceKey.fromJson(keyJson)).size)
                OfflineVerifier(issued.ticket, MapStateStore()).use { v ->
                    v.verify(issued.code, now.plusSeconds(1))
                    val r = v.receipt(DeviceKey.fromJson(keyJson), Handover.DeliveredOffline(issued.code), now.plusSeconds(2), ReceiptDetails("android/1.0"))
                    assertEquals(1, hashSetOf(r, Receipt.fromJson(r.toJson())).size)
                }
            }
        }
    }
}
