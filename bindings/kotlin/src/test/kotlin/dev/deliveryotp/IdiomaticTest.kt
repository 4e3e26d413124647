package dev.deliveryotp

import java.time.Duration
import java.time.Instant
import kotlin.test.assertEquals
import kotlin.test.assertTrue
import kotlinx.coroutines.runBlocking
import org.junit.jupiter.api.Test

/** The hand-written java.time and suspending layer (Idiomatic.kt) gives what the seconds API gives. */
class IdiomaticTest {
    private val start = Instant.ofEpochSecond(1_764_000_000)

    @Test
    fun theCourierFlowWithInstantsAndCoroutines(): Unit = runBlocking {
        KeySet.generate("k1").use { keys ->
            Backend(keys).use { backend ->
                val settings = defaultDeliverySettings().withLifetime(Duration.ofHours(2))
                assertEquals(Duration.ofHours(2), settings.lifetime)
                val issued = backend.issue("PKG-KT-I", "courier-1", at = start, settings = settings)
                assertEquals(1_764_000_000uL, issued.ticket.notBefore())
                assertEquals(1_764_007_200uL, issued.ticket.expiresAt())
                OfflineVerifier(issued.ticket, MapStateStore()).use { verifier ->
                    val outcome = verifier.verifyInBackground(issued.code, start.plusSeconds(60))
                    assertEquals(OfflineOutcome.AcceptedProvisionally(1u), outcome)
                    assertTrue(verifier.verify(issued.code, start.plus(Duration.ofHours(3))) is OfflineOutcome.Expired)
                    val key = backend.provisionDevice("courier-1", "phone-1")
                    val receipt = verifier.receiptInBackground(
                        ReceiptOutcome.DeliveredOffline(issued.code), key, ReceiptDetails("android/1.0"), start.plusSeconds(61),
                    )
                    assertEquals(1_764_000_061uL, receipt.decidedAt())
                    val judged = backend.reconcile(receipt.toJson(), issued.ticket, start.plusSeconds(120))
                    assertEquals(Decision.Confirmed(Verification.OFFLINE), judged.decision)
                    assertEquals(
                        key.signRequest(method = "GET", path = "/v1/x", at = start),
                        key.signRequest("GET", "/v1/x", 1_764_000_000uL, ByteArray(0)),
                    )
                }
                val online = backend.issue("PKG-KT-O", "courier-1", at = start)
                assertEquals(
                    OnlineOutcome.Confirmed(1u),
                    backend.verifyOnline(online.ticket, online.code, "courier-1", "phone-1", start.plusSeconds(5)),
                )
            }
        }
    }
}
