import DeliveryOtp
import Foundation
import XCTest

/// The risk policy and the customer's messages from `tests/vectors/policy-*.json`:
/// the same decisions, reasons, masks and texts as Rust and Kotlin.
final class PolicyTests: XCTestCase {
    private func requirementName(_ r: Requirement) -> String {
        switch r {
        case .code: return "code"
        case .photo: return "photo"
        case .noCode: return "no_code"
        case .methodNotAllowed: return "method_not_allowed"
        }
    }

    private func json(_ object: Any) -> String {
        String(data: try! JSONSerialization.data(withJSONObject: object), encoding: .utf8)!
    }

    func testDecisionsMatchTheVectors() throws {
        let file = "policy-decisions.json"
        let policy = try RiskPolicy.fromJson(json: try Vectors.load(file)["rules"] as! String)
        let cases = try Vectors.cases(file)
        XCTAssertGreaterThanOrEqual(cases.count, 20)
        for c in cases {
            let d = try policy.decideJson(orderJson: json(c["order"]!))
            XCTAssertEqual(requirementName(d.requirement), c.str("requirement"), c.name)
            XCTAssertEqual(d.reasons.map(\.code), c["reasons"] as! [String], c.name)
            if let details = c["details"] as? [String] {
                XCTAssertEqual(d.reasons.map(\.detail), details, c.name)
            }
            if case .code(let settings, let verification) = d.requirement {
                let want = c["settings"] as! [String: Any]
                XCTAssertEqual(settings.format, codeFormat(want.str("format")), c.name)
                XCTAssertEqual(settings.hashBits, want.u32("hash_bits"), c.name)
                XCTAssertEqual(settings.maxAttempts, want.u32("max_attempts"), c.name)
                XCTAssertEqual(settings.lifetime, TimeInterval(want.u64("lifetime_secs")), c.name)
                XCTAssertEqual(verification == .online ? "online" : "offline", want.str("verification"), c.name)
            } else {
                XCTAssertNil(c["settings"], c.name)
            }
        }
        let record = Order(valueMinor: 10000, currency: "GBP", method: .safePlace)
        XCTAssertEqual(try RiskPolicy.defaults().decide(order: record).requirement, .photo)
    }

    func testBrokenRulesAndOrdersNameTheField() throws {
        let file = "policy-decisions.json"
        for c in try Vectors.cases(file, "bad_rules") {
            let (k, message) = expectOtpError(c.name) { try RiskPolicy.fromJson(json: c.str("rules")) }
            XCTAssertEqual(k, "invalid_policy", c.name)
            XCTAssertTrue(message.hasPrefix("invalid policy rules at \(c.str("field")): "), "\(c.name): \(message)")
        }
        let policy = RiskPolicy.defaults()
        for c in try Vectors.cases(file, "bad_orders") {
            let (k, message) = expectOtpError(c.name) { try policy.decideJson(orderJson: self.json(c["order"]!)) }
            XCTAssertEqual(k, "invalid_order", c.name)
            XCTAssertTrue(message.hasPrefix("invalid order at \(c.str("field")): "), "\(c.name): \(message)")
        }
    }

    private func values(_ v: [String: Any]) -> MessageValues {
        MessageValues(sender: v.str("sender"), deliveryId: v.str("delivery_id"), code: v.str("code"),
                      expiresAt: v.time("expires_at"), utcOffsetMinutes: Int32(v.int("utc_offset_minutes")!))
    }

    func testMasksAndMessagesMatchTheVectors() throws {
        let file = "policy-messages.json"
        for c in try Vectors.cases(file, "masks") {
            let input = c.str("input")
            let mask = { c.str("kind") == "phone" ? try maskPhone(phone: input) : try maskEmail(email: input) }
            if let masked = c.optStr("masked") {
                XCTAssertEqual(try mask(), masked, input)
            } else {
                let (k, message) = expectOtpError(input) { try mask() }
                XCTAssertEqual(k, c.str("error"), input)
                XCTAssertFalse(message.contains(input), message)
            }
        }
        let t = MessageTemplates.defaults()
        for c in try Vectors.cases(file, "sms") {
            let sms = try t.renderSms(locale: c.str("locale"), values: values(c["values"] as! [String: Any]))
            XCTAssertEqual(sms.text, c.str("text"), c.name)
            XCTAssertEqual(sms.encoding == .gsm7 ? "gsm7" : "ucs2", c.str("encoding"), c.name)
            XCTAssertEqual(sms.units, c.u32("units"), c.name)
            XCTAssertEqual(sms.segments, c.u32("segments"), c.name)
        }
        for c in try Vectors.cases(file, "emails") {
            let email = try t.renderEmail(locale: c.str("locale"), values: values(c["values"] as! [String: Any]))
            XCTAssertEqual(email.subject, c.str("subject"))
            XCTAssertEqual(email.body, c.str("body"))
        }
        for c in try Vectors.cases(file, "bad_values") {
            let (k, message) = expectOtpError(c.name) {
                try t.renderSms(locale: c.optStr("locale") ?? "en", values: self.values(c["values"] as! [String: Any]))
            }
            XCTAssertEqual(k, "invalid_template", c.name)
            XCTAssertTrue(message.hasPrefix("invalid message template at \(c.str("field")): "), message)
        }
        for c in try Vectors.cases(file, "hints") {
            XCTAssertEqual(try t.formatHint(locale: c.str("locale"), format: codeFormat(c.str("format"))), c.str("hint"))
        }
        for c in try Vectors.cases(file, "bad_templates") {
            let (k, message) = expectOtpError(c.name) { try MessageTemplates.fromJson(json: c.str("templates")) }
            XCTAssertEqual(k, "invalid_template", c.name)
            XCTAssertTrue(message.hasPrefix("invalid message template at \(c.str("field")): "), "\(c.name): \(message)")
        }
    }
}
