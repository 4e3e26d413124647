// Hand-written, beside the generated delivery_otp.kt: the courier flow with the
// device's clock as a default, and suspending variants that keep the app's
// store I/O off the caller's thread. Each delegates to the generated API, which
// already takes java.time.Instant and java.time.Duration.
@file:JvmName("DeliveryOtpTime")

package dev.deliveryotp

import java.time.Instant
import kotlinx.coroutines.CoroutineDispatcher
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.withContext

/** Checks what the courier typed, now by the device's clock. */
fun OfflineVerifier.verify(entered: String): OfflineOutcome = verify(entered, Instant.now())

/** Makes this ticket's receipt, signed with [key], decided at [at]. */
@JvmOverloads
fun OfflineVerifier.receipt(
    handover: Handover,
    key: DeviceKey,
    details: ReceiptDetails,
    at: Instant = Instant.now(),
): Receipt = receipt(key, handover, at, details)

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
    handover: Handover,
    key: DeviceKey,
    details: ReceiptDetails,
    at: Instant = Instant.now(),
    dispatcher: CoroutineDispatcher = Dispatchers.IO,
): Receipt = withContext(dispatcher) { receipt(handover, key, details, at) }

/** Issues a delivery's code and ticket for [courierId], valid from [at]. */
@JvmOverloads
fun Backend.issue(
    deliveryId: String,
    courierId: String,
    at: Instant = Instant.now(),
    settings: DeliverySettings = defaultDeliverySettings(),
    sequence: Long = 0,
): IssuedCode = issue(deliveryId, sequence, courierId, at, settings)

/** Checks a code online for a courier's device, now by the backend's clock. */
fun Backend.verifyOnline(ticket: Ticket, entered: String, courierId: String, deviceId: String): OnlineOutcome =
    verifyOnline(ticket, entered, courierId, deviceId, Instant.now())

/** Judges a receipt against the ticket as issued, now by the backend's clock. */
fun Backend.reconcile(receiptJson: String, ticket: Ticket): Reconciliation =
    reconcile(receiptJson, ticket, Instant.now())

/** The `Authorization` header for a request to the service, signed now by the device's clock. */
@JvmOverloads
fun DeviceKey.signRequest(method: String, path: String, body: ByteArray = ByteArray(0)): String =
    signRequest(method, path, Instant.now(), body)
