package dev.deliveryotp;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Instant;
import java.util.concurrent.ConcurrentHashMap;
import org.junit.jupiter.api.Test;

/**
 * The courier-app flow from Java, through the names that are usable there:
 * the generated classes, and the java.time layer (DeliveryOtpTime).
 */
class JavaFlowTest {
    /** The app's store, in Java; it may throw the checked StoreException. */
    static final class MapStore implements DeviceStateStore {
        final ConcurrentHashMap<String, String> values = new ConcurrentHashMap<>();
        boolean broken = false;

        @Override
        public String load(String key) throws StoreException {
            return values.get(key);
        }

        @Override
        public boolean compareAndSet(String key, String expected, String value) throws StoreException {
            if (broken) {
                throw new StoreException.Failed("disk full");
            }
            return expected == null ? values.putIfAbsent(key, value) == null : values.replace(key, expected, value);
        }
    }

    @Test
    void aDeliveryFromIssueToDecision() throws Exception {
        Instant start = Instant.ofEpochSecond(1_764_000_000L);
        try (KeySet keys = KeySet.Companion.generate("k1"); Backend backend = new Backend(keys)) {
            IssuedCode issued = DeliveryOtpTime.issue(backend, "PKG-JAVA", "courier-1", start);
            MapStore store = new MapStore();
            try (OfflineVerifier verifier = new OfflineVerifier(issued.getTicket(), store)) {
                OfflineOutcome outcome = verifier.verify(issued.getCode(), start.plusSeconds(60));
                assertTrue(outcome instanceof OfflineOutcome.AcceptedProvisionally, outcome.toString());
                DeviceKey key = backend.provisionDevice("courier-1", "phone-1");
                Receipt receipt = DeliveryOtpTime.receipt(verifier, new Handover.DeliveredOffline(issued.getCode()), key,
                    new ReceiptDetails("java/1.0", null, null), start.plusSeconds(61));
                Reconciliation judged = backend.reconcile(receipt.toJson(), issued.getTicket(), start.plusSeconds(120));
                assertEquals(new Decision.Confirmed(Verification.OFFLINE), judged.getDecision());
                assertEquals(0L, judged.getSequence());
                assertEquals(start.plusSeconds(61), receipt.getDecidedAt());
            }
            // A failing store is a typed exception, and nothing counts.
            MapStore broken = new MapStore();
            broken.broken = true;
            try (OfflineVerifier verifier = new OfflineVerifier(issued.getTicket(), broken)) {
                OtpException.StateStorage e =
                    assertThrows(OtpException.StateStorage.class, () -> verifier.verify(issued.getCode(), start));
                assertTrue(e.getMessage().contains("disk full"), e.getMessage());
                assertTrue(broken.values.isEmpty());
            }
        }
    }
}
