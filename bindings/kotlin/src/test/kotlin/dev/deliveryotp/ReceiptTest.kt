package dev.deliveryotp

import com.google.gson.JsonObject
import kotlin.test.assertEquals
import kotlin.test.assertFailsWith
import kotlin.test.assertFalse
import kotlin.test.assertNotNull
import kotlin.test.assertTrue
import org.junit.jupiter.api.Test

/** The decision's name as the vector file writes it. */
fun decisionName(d: Decision): String = when (d) {
    is Decision.Confirmed -> "confirmed"
    Decision.CodeMismatch -> "code_mismatch"
    is Decision.GuessedFromTicket -> "guessed_from_ticket"
    is Decision.FalseClaim -> "false_claim"
    Decision.Tampered -> "tampered"
    is Decision.UnknownKey -> "unknown_key"
    is Decision.NotAssigned -> "not_assigned"
    Decision.Conflicting -> "conflicting"
    is Decision.Stale -> "stale"
    is Decision.NotDelivered -> "not_delivered"
}

/** Receipts made on "Android" from `tests/vectors/delivery-receipts.json`, byte for byte
 *  the ones the Python implementation, Rust and Swift make; and their reconciliation. */
class ReceiptTest {
    private val file = "delivery-receipts.json"
    private val reconciledAt = at(1_764_100_000)

    private fun backend(): Backend = KeySet.fromJson(Vectors.load(file).str("key_set")).use { Backend(it) }

    private fun outcome(o: JsonObject): Handover = when (o.str("kind")) {
        "delivered" -> if (o.str("via") == "offline") Handover.DeliveredOffline(o.str("code"))
            else Handover.DeliveredOnline(o.str("code"), o.get("attempts").asInt)
        else -> Handover.NotDelivered(
            when (o.str("reason")) {
                "customer_absent" -> NotDeliveredReason.CustomerAbsent
                "code_not_received" -> NotDeliveredReason.CodeNotReceived
                "refused" -> NotDeliveredReason.Refused
                "damaged" -> NotDeliveredReason.Damaged
                else -> NotDeliveredReason.Other(o.str("note"))
            },
        )
    }

    private fun details(c: JsonObject) = ReceiptDetails(
        appVersion = c.str("app_version"),
        location = c.getAsJsonObject("location")?.let {
            Location(it.get("lat").asInt, it.get("lon").asInt, it.get("acc").asInt)
        },
        photoSha256 = c.optStr("photo_sha256")?.let(::hex),
    )

    /** Verifies the case's entries on a fresh device and makes the receipt. */
    private fun make(c: JsonObject, store: DeviceStateStore = MapStateStore()): Triple<OfflineVerifier, DeviceKey, Receipt> {
        val verifier = OfflineVerifier(Ticket.fromJson(c.str("ticket")), store)
        for (e in c.getAsJsonArray("verify").map { it.asJsonObject }) verifier.verify(e.str("entered"), e.time("time"))
        val key = DeviceKey.fromJson(c.str("device_key"))
        return Triple(verifier, key, verifier.receipt(key, outcome(c.getAsJsonObject("outcome")), c.time("decided_at"), details(c)))
    }

    @Test
    fun receiptsMatchTheGoldenBytesAndReconcile() {
        val cases = Vectors.cases(file)
        assertEquals(13, cases.size)
        for (c in cases) {
            val name = c.str("name")
            val (_, key, receipt) = make(c)
            assertEquals(c.str("receipt"), receipt.toJson(), name)
            Receipt.fromJson(c.str("receipt")).verifyMac(key)
            val expected = c.getAsJsonObject("reconcile")
            val b = backend()
            val ticket = b.readTicket(expected.str("ticket"))
            for (o in expected.getAsJsonArray("online").map { it.asJsonObject }) {
                b.verifyOnline(ticket, o.str("entered"), key.courierId, key.deviceId, o.time("time"))
            }
            val r = b.reconcile(c.str("receipt"), ticket, reconciledAt)
            assertEquals(expected.str("decision"), decisionName(r.decision), "$name: ${r.explanation}")
            assertEquals(receipt.deliveryId, r.deliveryId)
            assertFalse(r.repeated, name)
            val code = (receipt.outcome as? ReceiptOutcome.Delivered)?.code
            if (code != null) assertFalse(r.explanation.contains(code), name)
            // The same receipt again, as a retry after a timeout: the same decision.
            val again = b.reconcile(c.str("receipt"), ticket, reconciledAt)
            assertEquals(r.decision, again.decision, name)
        }
    }

    @Test
    fun tamperedReceiptsAreRefusedOrFlagged() {
        val b = backend()
        val ticket = b.readTicket(Vectors.load(file).str("ticket"))
        for (t in Vectors.cases(file, "tampered")) {
            val name = t.str("name")
            val error = t.optStr("error")
            if (error != null) {
                val e = assertFailsWith<OtpException>(name) { b.reconcile(t.str("receipt"), ticket, reconciledAt) }
                assertEquals(error, kind(e), name)
                assertEquals(error, kind(assertFailsWith<OtpException>(name) { Receipt.fromJson(t.str("receipt")) }), name)
            } else {
                assertEquals(t.str("decision"), decisionName(b.reconcile(t.str("receipt"), ticket, reconciledAt).decision), name)
            }
        }
    }

    @Test
    fun sequencesOfReceiptsForOneTicket() {
        val v = Vectors.load(file)
        for (seq in v.getAsJsonArray("sequences").map { it.asJsonObject }) {
            val b = backend()
            val ticket = b.readTicket(v.str("ticket"))
            for ((i, step) in seq.getAsJsonArray("steps").map { it.asJsonObject }.withIndex()) {
                val r = b.reconcile(step.str("receipt"), ticket, reconciledAt)
                val ctx = "${seq.str("name")}, step $i"
                assertEquals(step.str("decision"), decisionName(r.decision), ctx)
                assertEquals(step.get("repeated").asBoolean, r.repeated, ctx)
            }
        }
    }

    @Test
    fun falseClaimsAreNamed() {
        val v = Vectors.load(file)
        for (c in v.getAsJsonArray("false_claims").map { it.asJsonObject }) {
            val b = backend()
            val r = b.reconcile(c.str("receipt"), b.readTicket(v.str("ticket")), reconciledAt)
            assertEquals(Decision.FalseClaim(c.str("field")), r.decision, c.str("name"))
        }
    }

    @Test
    fun aReceiptCanBeMadeAgainAfterARestartButNeverChanged() {
        val c = Vectors.cases(file)[0]
        val store = MapStateStore()
        val (verifier, key, receipt) = make(c, store)
        val restarted = OfflineVerifier(verifier.ticket, store)
        assertEquals(receipt.toJson(), assertNotNull(restarted.storedReceipt()).toJson())
        val again = restarted.receipt(key, outcome(c.getAsJsonObject("outcome")), c.time("decided_at"), details(c))
        assertEquals(receipt.toJson(), again.toJson())
        val e = assertFailsWith<OtpException.ReceiptConflict> {
            restarted.receipt(key, Handover.NotDelivered(NotDeliveredReason.Refused), c.time("decided_at"), details(c))
        }
        assertTrue(e.message!!.contains("outcome"), e.message)
    }

    @Test
    fun provisioningAtLoginAndTheBruteForcingCourier() {
        val b = KeySet.generate("k1").use { Backend(it) }
        val keyJson = b.provisionDevice("courier-17", "pixel-8-0042").toJson()
        val key = DeviceKey.fromJson(keyJson)
        assertEquals("courier-17", key.courierId)
        assertFalse(key.toString().contains(keyJson.substringAfter("\"key\":\"").substringBefore('"')), "Debug shows the key")
        val issued = b.issue("PKG-7", 0, "courier-17", at(1_764_000_000), defaultDeliverySettings())
        // Try every code on a scratch copy of the device until one passes the hash.
        val candidate = (0 until 1_000_000).asSequence().map { "%06d".format(it) }.filter { it != issued.code }.first {
            OfflineVerifier(issued.ticket, MapStateStore()).verify(it, at(1_764_000_100)) is OfflineOutcome.AcceptedProvisionally
        }
        val device = OfflineVerifier(issued.ticket, MapStateStore())
        assertTrue(device.verify(candidate, at(1_764_000_100)) is OfflineOutcome.AcceptedProvisionally)
        val receipt = device.receipt(key, Handover.DeliveredOffline(candidate), at(1_764_000_101), ReceiptDetails("android/3.4.1"))
        val r = b.reconcile(receipt.toJson(), issued.ticket, at(1_764_000_200))
        assertEquals(Decision.CodeMismatch, r.decision)
        assertFalse(r.explanation.contains(issued.code))
        assertFailsWith<OtpException.InvalidReceipt> { locationFromDegrees(91.0, 0.0, 5) }
        assertEquals(Location(51507400, -127800, 12), locationFromDegrees(51.5074, -0.1278, 12))
        // Details compare by value, photo bytes included; a digest that is not 32 bytes is a typed error.
        assertEquals(ReceiptDetails("a/1", null, ByteArray(32) { 7 }), ReceiptDetails("a/1", null, ByteArray(32) { 7 }))
        val short = assertFailsWith<OtpException.InvalidReceipt> {
            OfflineVerifier(issued.ticket, MapStateStore()).receipt(
                key, Handover.NotDelivered(NotDeliveredReason.Refused), at(1_764_000_101),
                ReceiptDetails("android/3.4.1", photoSha256 = ByteArray(31)),
            )
        }
        assertEquals("a photo digest has 32 bytes, not 31", short.reason)
    }

    @Test
    fun requestSignaturesMatchTheVectors() {
        val cases = Vectors.cases("device-requests.json")
        assertEquals(4, cases.size)
        for (c in cases) {
            DeviceKey.fromJson(c.str("device_key")).use { key ->
                val header = key.signRequest(c.str("method"), c.str("path"), c.time("timestamp"), c.str("body").toByteArray(Charsets.UTF_8))
                assertEquals(c.str("authorization"), header, c.str("name"))
            }
        }
    }
}
