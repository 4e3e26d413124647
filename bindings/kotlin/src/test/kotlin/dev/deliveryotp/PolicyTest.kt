package dev.deliveryotp

import com.google.gson.JsonObject
import kotlin.test.assertEquals
import kotlin.test.assertFailsWith
import kotlin.test.assertFalse
import kotlin.test.assertTrue
import org.junit.jupiter.api.Test

/** The risk policy and the customer's messages from `tests/vectors/policy-*.json`:
 *  the same decisions, reasons, masks and texts as Rust and Swift. */
class PolicyTest {
    private fun requirementName(r: Requirement): String = when (r) {
        is Requirement.Code -> "code"
        Requirement.Photo -> "photo"
        Requirement.NoCode -> "no_code"
        Requirement.MethodNotAllowed -> "method_not_allowed"
    }

    @Test
    fun decisionsMatchTheVectors() {
        val file = "policy-decisions.json"
        val policy = RiskPolicy.fromJson(Vectors.load(file).str("rules"))
        val cases = Vectors.cases(file)
        assertTrue(cases.size >= 20)
        for (c in cases) {
            val name = c.str("name")
            val d = policy.decideJson(c.getAsJsonObject("order").toString())
            assertEquals(c.str("requirement"), requirementName(d.requirement), name)
            assertEquals(c.getAsJsonArray("reasons").map { it.asString }, d.reasons.map { it.code }, name)
            c.getAsJsonArray("details")?.let { want -> assertEquals(want.map { it.asString }, d.reasons.map { it.detail }, name) }
            val r = d.requirement
            if (r is Requirement.Code) {
                val want = c.getAsJsonObject("settings")
                assertEquals(codeFormat(want.str("format")), r.settings.format, name)
                assertEquals(want.int("hash_bits"), r.settings.hashBits, name)
                assertEquals(want.int("max_attempts"), r.settings.maxAttempts, name)
                assertEquals(java.time.Duration.ofSeconds(want.str("lifetime_secs").toLong()), r.settings.lifetime, name)
                assertEquals(want.str("verification"), r.verification.name.lowercase(), name)
            } else {
                assertFalse(c.has("settings"), name)
            }
        }
        // The same order as a record gives the same decision as its JSON.
        val record = Order(valueMinor = 10000, currency = "GBP", method = DeliveryMethod.SAFE_PLACE)
        assertEquals(listOf("order_value", "no_one_to_receive_code"), policy.decide(record).reasons.map { it.code })
        assertEquals(Requirement.Photo, RiskPolicy.defaults().decide(record).requirement)
    }

    @Test
    fun brokenRulesAndOrdersNameTheField() {
        val file = "policy-decisions.json"
        for (c in Vectors.cases(file, "bad_rules")) {
            val e = assertFailsWith<OtpException.InvalidPolicy>(c.str("name")) { RiskPolicy.fromJson(c.str("rules")) }
            assertTrue(e.message!!.startsWith("invalid policy rules at ${c.str("field")}: "), "${c.str("name")}: ${e.message}")
        }
        val policy = RiskPolicy.defaults()
        for (c in Vectors.cases(file, "bad_orders")) {
            val e = assertFailsWith<OtpException.InvalidOrder>(c.str("name")) { policy.decideJson(c.getAsJsonObject("order").toString()) }
            assertTrue(e.message!!.startsWith("invalid order at ${c.str("field")}: "), "${c.str("name")}: ${e.message}")
        }
    }

    private fun values(v: JsonObject) = MessageValues(
        sender = v.str("sender"), deliveryId = v.str("delivery_id"), code = v.str("code"),
        expiresAt = v.time("expires_at"), utcOffsetMinutes = v.get("utc_offset_minutes").asInt,
    )

    @Test
    fun masksAndMessagesMatchTheVectors() {
        val file = "policy-messages.json"
        for (c in Vectors.cases(file, "masks")) {
            val input = c.str("input")
            val mask: () -> String = if (c.str("kind") == "phone") { { maskPhone(input) } } else { { maskEmail(input) } }
            val masked = c.optStr("masked")
            if (masked != null) {
                assertEquals(masked, mask(), input)
            } else {
                val e = assertFailsWith<OtpException>(input) { mask() }
                assertEquals(c.str("error"), kind(e), input)
                assertFalse(e.message!!.contains(input))
            }
        }
        val t = MessageTemplates.defaults()
        for (c in Vectors.cases(file, "sms")) {
            val sms = t.renderSms(c.str("locale"), values(c.getAsJsonObject("values")))
            assertEquals(c.str("text"), sms.text, c.str("name"))
            assertEquals(c.str("encoding"), sms.encoding.name.lowercase(), c.str("name"))
            assertEquals(c.int("units"), sms.units)
            assertEquals(c.int("segments"), sms.segments)
        }
        for (c in Vectors.cases(file, "emails")) {
            val email = t.renderEmail(c.str("locale"), values(c.getAsJsonObject("values")))
            assertEquals(c.str("subject"), email.subject)
            assertEquals(c.str("body"), email.body)
        }
        for (c in Vectors.cases(file, "bad_values")) {
            val e = assertFailsWith<OtpException.InvalidTemplate>(c.str("name")) {
                t.renderSms(c.optStr("locale") ?: "en", values(c.getAsJsonObject("values")))
            }
            assertTrue(e.message!!.startsWith("invalid message template at ${c.str("field")}: "), e.message)
        }
        for (c in Vectors.cases(file, "hints")) {
            assertEquals(c.str("hint"), t.formatHint(c.str("locale"), codeFormat(c.str("format"))))
        }
        for (c in Vectors.cases(file, "bad_templates")) {
            val e = assertFailsWith<OtpException.InvalidTemplate>(c.str("name")) { MessageTemplates.fromJson(c.str("templates")) }
            assertTrue(e.message!!.startsWith("invalid message template at ${c.str("field")}: "), "${c.str("name")}: ${e.message}")
        }
    }
}
