package dev.deliveryotp

import com.google.gson.JsonObject
import com.google.gson.JsonParser
import java.net.URI
import java.net.http.HttpClient
import java.net.http.HttpRequest
import java.net.http.HttpResponse
import kotlin.test.assertEquals
import kotlin.test.assertTrue
import kotlin.test.fail
import org.junit.jupiter.api.Test

/**
 * The courier app against the real service over HTTP (scripts/test-kotlin starts
 * `delivery-otp-server` and passes its address and admin token): log in, fetch the
 * tickets, check the code offline, sign and upload the receipt, read the decision.
 * The backend's calls use the admin token; the phone's are signed with its device key.
 */
class ServiceHttpTest {
    private val base = System.getProperty("deliveryotp.server")
        ?: fail("deliveryotp.server is not set: run scripts/test-kotlin, which starts the service")
    private val adminToken = System.getProperty("deliveryotp.adminToken")
        ?: fail("deliveryotp.adminToken is not set: run scripts/test-kotlin")
    private val http = HttpClient.newHttpClient()

    private fun send(method: String, path: String, authorization: String, body: String?): Pair<Int, JsonObject> {
        val builder = HttpRequest.newBuilder(URI.create(base + path)).header("Authorization", authorization)
        val publisher = if (body == null) HttpRequest.BodyPublishers.noBody() else HttpRequest.BodyPublishers.ofString(body)
        if (body != null) builder.header("Content-Type", "application/json")
        val response = http.send(builder.method(method, publisher).build(), HttpResponse.BodyHandlers.ofString())
        val json = if (response.body().isBlank()) JsonObject() else JsonParser.parseString(response.body()).asJsonObject
        return response.statusCode() to json
    }

    /** A backend call, with the admin token. */
    private fun backend(method: String, path: String, body: String? = null) = send(method, path, "Bearer $adminToken", body)

    /** A phone's call, signed with its device key over the exact bytes sent. */
    private fun phone(key: DeviceKey, method: String, path: String, body: String? = null): Pair<Int, JsonObject> {
        val bytes = body?.toByteArray(Charsets.UTF_8) ?: ByteArray(0)
        return send(method, path, key.signRequestNow(method, path, bytes), body)
    }

    @Test
    fun aCourierAppDeliversAgainstTheService() {
        val delivery = "PKG-KT-${System.nanoTime()}"
        // Login: the backend provisions the device and hands its key to the app.
        val (provisioned, login) = backend("POST", "/v1/devices", """{"courier_id":"courier-kt","device_id":"pixel-kt"}""")
        assertEquals(201, provisioned, login.toString())
        DeviceKey.fromJson(login["device_key"].asString).use { key ->
            // The order service asks for a code (150 EUR: an offline check).
            val order = """{"value_minor":15000,"currency":"EUR","method":"hand_to_customer","categories":[],"region_risk":10,""" +
                """"customer_preference":"none","first_delivery_to_address":false,"not_received_claims":0}"""
            val (issuedStatus, issued) = backend("POST", "/v1/deliveries",
                """{"delivery_id":"$delivery","courier_id":"courier-kt","order":$order,"contact":{"email":"ada@example.com"}}""")
            assertEquals(201, issuedStatus, issued.toString())
            assertEquals("offline", issued["verification"].asString)
            // The customer reads the code from the e-mail.
            val mail = issued.getAsJsonObject("message")["body"].asString
            val code = Regex("""\b\d{3} \d{3}\b""").find(mail)?.value?.replace(" ", "") ?: fail("no code in: $mail")

            // The phone fetches its tickets, signed.
            val (ticketsStatus, tickets) = phone(key, "GET", "/v1/devices/courier-kt/pixel-kt/tickets")
            assertEquals(200, ticketsStatus, tickets.toString())
            val ticketJson = tickets.getAsJsonArray("tickets").map { it.asString }
                .first { Ticket.fromJson(it).use { t -> t.deliveryId == delivery } }

            // At the door, with no signal: the offline check, then the receipt.
            Ticket.fromJson(ticketJson).use { ticket ->
                OfflineVerifier(ticket, MapStateStore()).use { verifier ->
                    val outcome = verifier.verifyNow(code)
                    assertTrue(outcome is OfflineOutcome.AcceptedProvisionally, outcome.toString())
                    val receipt = verifier.receiptNow(key, Handover.DeliveredOffline(code), ReceiptDetails("android/test"))
                    // Back online: the signed upload, and the backend's decision.
                    val upload = JsonObject().apply { add("receipts", com.google.gson.JsonArray().apply { add(receipt.toJson()) }) }.toString()
                    val (uploadStatus, results) = phone(key, "POST", "/v1/receipts", upload)
                    assertEquals(200, uploadStatus, results.toString())
                    val result = results.getAsJsonArray("results")[0].asJsonObject
                    assertEquals("confirmed", result["decision"].asString, result.toString())
                    assertTrue(!results.toString().contains(code), "the code came back in a response")
                }
            }
            val (status, state) = backend("GET", "/v1/deliveries/$delivery")
            assertEquals(200, status)
            assertEquals("confirmed", state["status"].asString, state.toString())
            // A request signed by this phone for another courier's tickets is refused.
            val (refused, problem) = phone(key, "GET", "/v1/devices/courier-x/pixel-x/tickets")
            assertEquals(403, refused)
            assertEquals("not_signer", problem["kind"].asString)
        }
    }
}
