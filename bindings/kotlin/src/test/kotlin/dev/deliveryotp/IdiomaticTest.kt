package dev.deliveryotp

import java.time.Duration
import java.time.Instant
import kotlin.test.assertEquals
import kotlin.test.assertFailsWith
import kotlin.test.assertTrue
import kotlinx.coroutines.runBlocking
import org.junit.jupiter.api.Test

/** The API in java.time terms, and the hand-written layer (Idiomatic.kt): defaults to the
 *  device's clock, and suspending variants for what touches the app's store. */
class IdiomaticTest {
    private val start = Instant.ofEpochSecond(1_764_000_000)

    @Test
    fun theCourierFlowWithInstantsAndCoroutines(): Unit = runBlocking {
        KeySet.generate("k1").use { keys ->
            Backend(keys).use { backend ->
                val settings = defaultDeliverySettings().copy(lifetime = Duration.ofHours(2))
                val issued = backend.issue("PKG-KT-I", "courier-1", at = start, settings = settings)
                assertEquals(start, issued.ticket.notBefore)
                assertEquals(start.plus(Duration.ofHours(2)), issued.ticket.expiresAt)
                assertEquals(0L, issued.ticket.sequence)
                OfflineVerifier(issued.ticket, MapStateStore()).use { verifier ->
                    val outcome = verifier.verifyInBackground(issued.code, start.plusSeconds(60))
                    assertEquals(OfflineOutcome.AcceptedProvisionally(1), outcome)
                    // An instant before 1970 is a typed error, never 1970 itself.
                    val early = assertFailsWith<OtpException.InvalidNumber> { verifier.verify(issued.code, Instant.ofEpochSecond(-5)) }
                    assertEquals("time", early.what)
                    val late = verifier.verify(issued.code, start.plus(Duration.ofHours(3)))
                    assertEquals(OfflineOutcome.Expired(issued.ticket.expiresAt), late)
                    val key = backend.provisionDevice("courier-1", "phone-1")
                    val receipt = verifier.receiptInBackground(
                        Handover.DeliveredOffline(issued.code), key, ReceiptDetails("android/1.0"), start.plusSeconds(61),
                    )
                    assertEquals(start.plusSeconds(61), receipt.decidedAt)
                    val judged = backend.reconcile(receipt.toJson(), issued.ticket, start.plusSeconds(120))
                    assertEquals(Decision.Confirmed(Verification.OFFLINE), judged.decision)
                    assertEquals(
                        key.signRequest("GET", "/v1/x", start, ByteArray(0)),
                        // A fraction of a second is dropped: requests are signed in whole seconds.
                        key.signRequest("GET", "/v1/x", start.plusMillis(999), ByteArray(0)),
                    )
                }
                val online = backend.issue("PKG-KT-O", "courier-1", at = start)
                assertEquals(
                    OnlineOutcome.Confirmed(1),
                    backend.verifyOnline(online.ticket, online.code, "courier-1", "phone-1", start.plusSeconds(5)),
                )
                // Without a time, the device's clock: a ticket issued now verifies now.
                val fresh = backend.issue("PKG-KT-N", "courier-1")
                OfflineVerifier(fresh.ticket, MapStateStore()).use { v ->
                    assertTrue(v.verify(fresh.code) is OfflineOutcome.AcceptedProvisionally)
                }
            }
        }
    }
}
