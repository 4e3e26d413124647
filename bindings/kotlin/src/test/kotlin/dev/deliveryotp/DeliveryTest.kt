package dev.deliveryotp

import com.google.gson.JsonObject
import java.io.File
import java.nio.file.Files
import java.time.Duration
import java.util.concurrent.ConcurrentHashMap
import kotlin.test.assertEquals
import kotlin.test.assertFailsWith
import kotlin.test.assertFalse
import kotlin.test.assertTrue
import kotlin.test.fail
import org.junit.jupiter.api.Test

/** The app's attempt-state storage, as an Android app might keep it in memory. */
class MapStateStore : DeviceStateStore {
    val values = ConcurrentHashMap<String, String>()
    override fun load(key: String): String? = values[key]
    override fun compareAndSet(key: String, expected: String?, value: String): Boolean =
        if (expected == null) values.putIfAbsent(key, value) == null else values.replace(key, expected, value)
}

/** State kept in files, one per delivery: survives a new store object, as after an app restart. */
class FileStateStore(private val dir: File) : DeviceStateStore {
    private fun file(key: String) = File(dir, key.replace('/', '_'))
    override fun load(key: String): String? = file(key).takeIf { it.exists() }?.readText()
    @Synchronized
    override fun compareAndSet(key: String, expected: String?, value: String): Boolean {
        if (load(key) != expected) return false
        file(key).writeText(value)
        return true
    }
}

/** Storage that fails, as a full disk would. */
class FailingStateStore : DeviceStateStore {
    override fun load(key: String): String? = null
    override fun compareAndSet(key: String, expected: String?, value: String): Boolean = throw StoreException.Failed("disk full")
}

/** The outcome's name and number (a count, a sequence, or a time's unix seconds). */
fun offlineName(o: OfflineOutcome): Pair<String, Long?> = when (o) {
    is OfflineOutcome.AcceptedProvisionally -> "accepted_provisionally" to o.attemptsUsed.toLong()
    is OfflineOutcome.Rejected -> "rejected" to o.attemptsLeft.toLong()
    is OfflineOutcome.LockedOut -> "locked_out" to o.until.epochSecond
    is OfflineOutcome.Expired -> "expired" to o.at.epochSecond
    is OfflineOutcome.NotYetValid -> "not_yet_valid" to o.from.epochSecond
    is OfflineOutcome.ClockMovedBackwards -> "clock_moved_backwards" to o.latestSeen.epochSecond
    is OfflineOutcome.Superseded -> "superseded" to o.bySequence
}

fun onlineName(o: OnlineOutcome): Pair<String, Long?> = when (o) {
    is OnlineOutcome.Confirmed -> "confirmed" to o.attemptsUsed.toLong()
    is OnlineOutcome.Rejected -> "rejected" to o.attemptsLeft.toLong()
    is OnlineOutcome.LockedOut -> "locked_out" to o.until.epochSecond
    OnlineOutcome.AlreadyUsed -> "already_used" to null
    OnlineOutcome.GuessedFromTicket -> "guessed_from_ticket" to null
    OnlineOutcome.Ended -> "ended" to null
    OnlineOutcome.NotAssigned -> "not_assigned" to null
    is OnlineOutcome.Expired -> "expired" to o.at.epochSecond
    is OnlineOutcome.NotYetValid -> "not_yet_valid" to o.from.epochSecond
}

/** The field of a step that holds the outcome's number, by outcome name. */
val outcomeField = mapOf(
    "accepted_provisionally" to "attempts_used", "confirmed" to "attempts_used", "rejected" to "attempts_left",
    "locked_out" to "until", "expired" to "at", "not_yet_valid" to "from",
    "clock_moved_backwards" to "latest_seen", "superseded" to "by_sequence",
)

/** Every case of the delivery vector files, and the device storage across restarts. */
class DeliveryTest {
    private fun backend(keySet: String, current: String): Backend =
        KeySet.fromJson(keySet).use { keys -> keys.setCurrent(current); Backend(keys) }

    @Test
    fun codes() {
        val v = Vectors.load("delivery-codes.json")
        val cases = Vectors.cases("delivery-codes.json")
        assertEquals(24, cases.size)
        val b = backend(v.str("key_set"), "k-2026-11")
        for (c in cases) {
            val code = b.deriveCode(c.str("key_id"), c.str("delivery_id"), c.str("sequence").toLong(), codeFormat(c.str("format")))
            assertEquals(c.str("code"), code, c.str("name"))
        }
    }

    private fun settings(s: JsonObject) = DeliverySettings(
        format = codeFormat(s.str("format")),
        allowShortCodes = s.get("allow_short_codes").asBoolean,
        hashBits = s.int("hash_bits"),
        maxAttempts = s.int("max_attempts"),
        lifetime = Duration.ofSeconds(s.str("lifetime_secs").toLong()),
    )

    @Test
    fun ticketsAreByteExactAndTamperingIsCaught() {
        val file = "delivery-tickets.json"
        val keySet = Vectors.load(file).str("key_set")
        val cases = Vectors.cases(file)
        assertEquals(8, cases.size)
        for (c in cases) {
            val name = c.str("name")
            val b = backend(keySet, c.str("key_id"))
            val issued = b.issue(c.str("delivery_id"), c.str("sequence").toLong(), c.str("courier_id"), c.time("now"),
                settings(c.getAsJsonObject("settings")))
            assertEquals(c.str("code"), issued.code, name)
            assertEquals(issued.code, issued.codeGrouped.replace(" ", ""), name)
            assertEquals(c.str("ticket"), issued.ticket.toJson(), name)
            val read = b.readTicket(c.str("ticket"))
            assertEquals(issued.ticket, read, name)
            assertEquals(c.str("code"), b.codeFor(read), name)
            assertFalse(read.toJson().contains(c.str("code")) || read.toString().contains(c.str("code")), "$name: ticket shows the code")
        }
        val b = backend(keySet, "k-2026-11")
        val tampered = Vectors.cases(file, "tampered")
        assertTrue(tampered.size >= 10)
        for (c in tampered) {
            val name = c.str("name")
            val device = c.optStr("device_error")
            if (device == null) {
                Ticket.fromJson(c.str("ticket"))
            } else {
                val e = assertFailsWith<OtpException>(name) { Ticket.fromJson(c.str("ticket")) }
                assertEquals(device, kind(e), "$name: ${e.message}")
            }
            val e = assertFailsWith<OtpException>(name) { b.readTicket(c.str("ticket")) }
            assertEquals(c.str("backend_error"), kind(e), "$name: ${e.message}")
        }
    }

    @Test
    fun normalization() {
        val cases = Vectors.cases("delivery-normalize.json")
        assertTrue(cases.size >= 25)
        for (c in cases) {
            val name = c.str("name")
            val format = codeFormat(c.str("format"))
            val expected = c.optStr("normalized")
            if (expected != null) {
                assertEquals(expected, normalizeCode(c.str("entered"), format), name)
            } else {
                val e = assertFailsWith<OtpException>(name) { normalizeCode(c.str("entered"), format) }
                assertEquals(c.str("error"), kind(e), name)
                c.optStr("position")?.let {
                    assertEquals(it.toLong(), (e as OtpException.InvalidCodeCharacter).position, name)
                    assertTrue(e.message!!.contains("position $it"), "$name: ${e.message}")
                }
            }
        }
    }

    @Test
    fun scenarios() {
        val file = "delivery-scenarios.json"
        val v = Vectors.load(file)
        val tolerance = Duration.ofSeconds(v.str("clock_tolerance_secs").toLong())
        val scenarios = Vectors.cases(file, "scenarios")
        assertTrue(scenarios.size >= 12)
        for (sc in scenarios) {
            val name = sc.str("name")
            val store = MapStateStore()
            val backend = backend(v.str("key_set"), "k-2026-11")
            var ticket = Ticket.fromJson(sc.str("ticket"))
            var verifier = OfflineVerifier.withClockTolerance(ticket, store, tolerance)
            for ((i, step) in sc.getAsJsonArray("steps").map { it.asJsonObject }.withIndex()) {
                val ctx = "$name, step ${i + 1}"
                when (step.str("do")) {
                    "verify" -> {
                        val error = step.optStr("expect_error")
                        if (error != null) {
                            val e = assertFailsWith<OtpException>(ctx) { verifier.verify(step.str("entered"), step.time("time")) }
                            assertEquals(error, kind(e), ctx)
                        } else {
                            val (outcome, value) = offlineName(verifier.verify(step.str("entered"), step.time("time")))
                            assertEquals(step.str("expect"), outcome, ctx)
                            assertEquals(step.num(outcomeField.getValue(outcome)), value, "$ctx: value")
                        }
                    }
                    "restart" -> verifier = OfflineVerifier.withClockTolerance(ticket, store, tolerance)
                    "switch_ticket" -> {
                        ticket = Ticket.fromJson(step.str("ticket"))
                        verifier = OfflineVerifier.withClockTolerance(ticket, store, tolerance)
                    }
                    "attempts_left" -> assertEquals(step.num("expect"), verifier.attemptsLeft().toLong(), ctx)
                    "online" -> {
                        val (outcome, value) = onlineName(backend.verifyOnline(ticket, step.str("entered"), step.str("courier"), step.str("device"), step.time("time")))
                        assertEquals(step.str("expect"), outcome, ctx)
                        outcomeField[outcome]?.let { assertEquals(step.num(it), value, "$ctx: value") }
                    }
                    else -> fail("$ctx: unknown step")
                }
            }
        }
    }

    @Test
    fun attemptsSurviveAnAppRestartWithFileStorage() {
        val dir = Files.createTempDirectory("delivery-otp-state").toFile()
        try {
            KeySet.generate("k1").use { keys ->
                val backend = Backend(keys)
                val now = at(1_764_000_000)
                val issued = backend.issue("PKG-42", 0, "courier-1", now, defaultDeliverySettings())
                val wrong = (0..999_999).map { it.toString().padStart(6, '0') }.first { it != issued.code }
                // First run of the app: two wrong codes.
                val first = OfflineVerifier(Ticket.fromJson(issued.ticket.toJson()), FileStateStore(dir))
                repeat(2) { first.verify(wrong, now.plusSeconds(10)) }
                first.close()
                // The app restarts: new store object, new verifier, same files.
                val second = OfflineVerifier(Ticket.fromJson(issued.ticket.toJson()), FileStateStore(dir))
                val left = second.attemptsLeft()
                if (left == 5) fail("attempts were lost across the restart")
                // A wrong code may pass the 12-bit hash 1 time in 4096; the first two counted either way.
                assertTrue(left == 3, "left $left")
                val outcome = second.verify(issued.code, now.plusSeconds(20))
                assertEquals(OfflineOutcome.AcceptedProvisionally(3), outcome)
                // Nothing the device stores shows the code.
                dir.listFiles()!!.forEach { assertFalse(it.readText().contains(issued.code)) }
            }
        } finally {
            dir.deleteRecursively()
        }
    }

    @Test
    fun aFailingStoreGivesNoOutcome() {
        KeySet.generate("k1").use { keys ->
            val issued = Backend(keys).issue("PKG-43", 0, "courier-1", at(1_000), defaultDeliverySettings())
            val verifier = OfflineVerifier(issued.ticket, FailingStateStore())
            val e = assertFailsWith<OtpException.StateStorage> { verifier.verify(issued.code, at(1_001)) }
            assertTrue(e.message!!.contains("disk full"), e.message)
        }
    }

    @Test
    fun settingsThatRevealTheCodeAreRefused() {
        val s = defaultDeliverySettings()
        assertEquals(CodeFormat.Numeric(6), s.format)
        assertEquals(12, s.hashBits)
        assertEquals(5, s.maxAttempts)
        assertEquals(Duration.ofDays(1), s.lifetime)
        checkDeliverySettings(s)
        val e = assertFailsWith<OtpException.UnsafeSettings> { checkDeliverySettings(s.copy(hashBits = 14)) }
        assertTrue(e.message!!.contains("candidates"), e.message)
        assertFailsWith<OtpException.InvalidCodeFormat> { checkDeliverySettings(s.copy(format = CodeFormat.Numeric(5), hashBits = 8)) }
        checkDeliverySettings(s.copy(format = CodeFormat.Numeric(5), hashBits = 8, allowShortCodes = true))
        // Numbers Kotlin can write but the library cannot use are typed errors, not wrapped values.
        val negative = assertFailsWith<OtpException.UnsafeSettings> { checkDeliverySettings(s.copy(maxAttempts = -1)) }
        assertEquals("a code allows 1 to 100 attempts, not -1", negative.reason)
        val fraction = assertFailsWith<OtpException.InvalidNumber> { checkDeliverySettings(s.copy(lifetime = Duration.ofMillis(90_500))) }
        assertEquals("lifetime", fraction.what)
        assertEquals(244.140625, expectedCandidates(CodeFormat.Numeric(6), 12))
        assertEquals(1.0 / 4096, falseAcceptProbability(12))
    }

    @Test
    fun keyRotationKeepsOldTicketsVerifying() {
        KeySet.generate("2026-10").use { keys ->
            val old = Backend(keys).issue("PKG-44", 0, "courier-1", at(1_000), defaultDeliverySettings())
            keys.rotate("2026-11")
            assertEquals("2026-11", keys.currentId)
            assertEquals(listOf("2026-11", "2026-10"), keys.ids)
            val backend = Backend(KeySet.fromJson(keys.toJson()))
            val fresh = backend.issue("PKG-44", 1, "courier-1", at(2_000), defaultDeliverySettings())
            assertEquals("2026-11", fresh.ticket.keyId)
            assertEquals(old.code, backend.codeFor(backend.readTicket(old.ticket.toJson())))
        }
    }

    /** Issue 11, B6: many verifier objects on many threads share one count per ticket. */
    @Test
    fun manyVerifiersOnOneStoreNeverExceedTheLimit() {
        KeySet.generate("k1").use { keys ->
            val issued = Backend(keys).issue("PKG-45", 0, "courier-1", at(1_000), defaultDeliverySettings())
            val store = MapStateStore()
            val compared = java.util.concurrent.atomic.AtomicInteger()
            val threads = (0 until 16).map { t ->
                Thread {
                    repeat(4) { i ->
                        OfflineVerifier(issued.ticket, store).use { v ->
                            val wrong = ((t * 4 + i) * 7919 % 1_000_000).toString().padStart(6, '0')
                            if (wrong != issued.code) {
                                when (v.verify(wrong, at(1_001))) {
                                    is OfflineOutcome.Rejected, is OfflineOutcome.AcceptedProvisionally -> compared.incrementAndGet()
                                    else -> {}
                                }
                            }
                        }
                    }
                }
            }
            threads.forEach { it.start() }
            threads.forEach { it.join() }
            // The fifth wrong try is compared and reported as the lockout it causes.
            val left = OfflineVerifier(issued.ticket, store).use { it.attemptsLeft() }
            assertEquals(0, left)
            assertTrue(compared.get() <= 4, "compared ${compared.get()}")
        }
    }
}
