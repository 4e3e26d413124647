// Hand-written, beside the generated delivery_otp.kt: the courier flow with
// java.time, and suspending variants that keep the app's store I/O off the
// caller's thread. Each delegates to the generated API.
@file:JvmName("DeliveryOtpTime")

package dev.deliveryotp

import java.time.Duration
import java.time.Instant
import kotlinx.coroutines.CoroutineDispatcher
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.withContext

/** Whole unix seconds; an instant before 1970 counts as 0. */
internal val Instant.unixSeconds: ULong get() = if (epochSecond < 0) 0uL else epochSecond.toULong()

/**
 * A verifier for [ticket] over the app's [store], with the default clock tolerance
 * (for Java, which cannot use the constructor's default argument).
 */
fun offlineVerifier(ticket: Ticket, store: DeviceStateStore): OfflineVerifier = OfflineVerifier(ticket, store)

/** Checks what the courier typed, at [at] (the device's clock by default). */
@JvmOverloads
fun OfflineVerifier.verify(entered: String, at: Instant = Instant.now()): OfflineOutcome =
    verify(entered, at.unixSeconds)

/** Makes this ticket's receipt, signed with [key], decided at [at]. */
@JvmOverloads
fun OfflineVerifier.receipt(
    outcome: ReceiptOutcome,
    key: DeviceKey,
    details: ReceiptDetails,
    at: Instant = Instant.now(),
): Receipt = receipt(key, outcome, at.unixSeconds, details)

/** [verify] on [dispatcher] (I/O by default): the app's store is read and written there. */
@JvmOverloads
suspend fun OfflineVerifier.verifyInBackground(
    entered: String,
    at: Instant = Instant.now(),
    dispatcher: CoroutineDispatcher = Dispatchers.IO,
): OfflineOutcome = withContext(dispatcher) { verify(entered, at) }

/** [receipt] on [dispatcher] (I/O by default): the receipt is stored before it is returned. */
@JvmOverloads
suspend fun OfflineVerifier.receiptInBackground(
    outcome: ReceiptOutcome,
    key: DeviceKey,
    details: ReceiptDetails,
    at: Instant = Instant.now(),
    dispatcher: CoroutineDispatcher = Dispatchers.IO,
): Receipt = withContext(dispatcher) { receipt(outcome, key, details, at) }

/** Issues a delivery's code and ticket for [courierId], valid from [at]. */
@JvmOverloads
fun Backend.issue(
    deliveryId: String,
    courierId: String,
    at: Instant = Instant.now(),
    settings: DeliverySettings = defaultDeliverySettings(),
    sequence: Long = 0,
): IssuedCode {
    require(sequence >= 0) { "a sequence is 0 or more" }
    return issue(deliveryId, sequence.toULong(), courierId, at.unixSeconds, settings)
}

/** Checks a code online for a courier's device, at [at]. */
@JvmOverloads
fun Backend.verifyOnline(
    ticket: Ticket,
    entered: String,
    courierId: String,
    deviceId: String,
    at: Instant = Instant.now(),
): OnlineOutcome = verifyOnline(ticket, entered, courierId, deviceId, at.unixSeconds)

/** Judges a receipt against the ticket as issued, at [at]. */
@JvmOverloads
fun Backend.reconcile(receiptJson: String, ticket: Ticket, at: Instant = Instant.now()): Reconciliation =
    reconcile(receiptJson, ticket, at.unixSeconds)

/** The `Authorization` header for a request to the service, signed at [at]. */
@JvmOverloads
fun DeviceKey.signRequest(method: String, path: String, body: ByteArray = ByteArray(0), at: Instant = Instant.now()): String =
    signRequest(method, path, at.unixSeconds, body)

/** How long a code issued with these settings stays valid. */
val DeliverySettings.lifetime: Duration get() = Duration.ofSeconds(lifetimeSecs.toLong())

/** These settings with another lifetime (whole seconds). */
fun DeliverySettings.withLifetime(lifetime: Duration): DeliverySettings {
    require(!lifetime.isNegative) { "a lifetime is not negative" }
    return copy(lifetimeSecs = lifetime.seconds.toULong())
}
