import DeliveryOtp
import Foundation
import XCTest

/// What a careless app does with printed values and hash tables.
final class SafetyTests: XCTestCase {
    private let now: Date = 1_000

    /// Every way Swift turns a value into text: `print`, interpolation,
    /// `String(reflecting:)` and `dump` (which reads the `Mirror`).
    private func renderings(_ value: Any) -> [String] {
        var dumped = ""
        dump(value, to: &dumped)
        var printed = ""
        print(value, to: &printed)
        return [String(describing: value), String(reflecting: value), "\(value)", dumped, printed]
    }

    private func firstMatch(_ pattern: String, in text: String) -> [String] {
        let re = try! NSRegularExpression(pattern: pattern)
        return re.matches(in: text, range: NSRange(text.startIndex..., in: text)).compactMap {
            Range($0.range(at: 1), in: text).map { String(text[$0]) }
        }
    }

    func testNoPrintedValueShowsACodeOrSecret() throws {
        let keys = try KeySet.generate(keyId: "k1")
        let keyMaterial = firstMatch("\"secret\"\\s*:\\s*\"([^\"]+)\"", in: keys.toJson())
        XCTAssertFalse(keyMaterial.isEmpty, "no key found in the key set's JSON")
        let backend = Backend(keys: keys)
        let issued = try backend.issue(deliveryId: "PKG-B10", sequence: 0, courierId: "courier-1", now: now,
                                       settings: defaultDeliverySettings())
        let code = issued.code
        let device = try backend.provisionDevice(courierId: "courier-1", deviceId: "phone-1")
        let deviceKey = try XCTUnwrap(firstMatch("\"key\"\\s*:\\s*\"([^\"]+)\"", in: device.toJson()).first)
        let values = MessageValues(sender: "ACME", deliveryId: "PKG-B10", code: code, expiresAt: now + 3600,
                                   utcOffsetMinutes: 0)
        let templates = MessageTemplates.defaults()
        let sms = try templates.renderSms(locale: "en", values: values)
        let email = try templates.renderEmail(locale: "en", values: values)
        let carries = { (t: String) in t.contains(code) || t.contains(issued.codeGrouped) }
        XCTAssertTrue(carries(sms.text) && carries(email.body), "the messages must carry the code")
        let secret = try Secret.fromBase32(text: "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP")
        let values_: [(String, Any)] = [
            ("IssuedCode", issued),
            ("Ticket", issued.ticket),
            ("KeySet", keys),
            ("DeviceKey", device),
            ("Handover.deliveredOffline", Handover.deliveredOffline(code: code)),
            ("Handover.deliveredOnline", Handover.deliveredOnline(code: code, attemptsUsed: 1)),
            ("ReceiptOutcome.delivered", ReceiptOutcome.delivered(code: code, verified: .offline)),
            ("MessageValues", values),
            ("Sms", sms),
            ("Email", email),
            ("[IssuedCode]", [issued]),
            ("Secret", secret),
            ("KeyUri", try KeyUri(kind: .totp(period: 30), secret: secret, account: "c@acme.example", issuer: "Acme")),
        ]
        for (what, value) in values_ {
            for text in renderings(value) {
                XCTAssertFalse(text.contains(code), "\(what) shows the code: \(text)")
                XCTAssertFalse(text.contains(issued.codeGrouped), "\(what) shows the grouped code: \(text)")
                for k in keyMaterial { XCTAssertFalse(text.contains(k), "\(what) shows a backend key") }
                XCTAssertFalse(text.contains(deviceKey), "\(what) shows the device key")
                XCTAssertFalse(text.contains("JBSWY3DP"), "\(what) shows the secret")
            }
        }
        let online = String(describing: Handover.deliveredOnline(code: code, attemptsUsed: 1))
        XCTAssertTrue(online.contains("attempts_used: 1"), online)
    }

    func testEqualTicketsAndSecretsHashAlike() throws {
        let backend = Backend(keys: try KeySet.generate(keyId: "k1"))
        let issued = try backend.issue(deliveryId: "PKG-hash", sequence: 0, courierId: "courier-1", now: now,
                                       settings: defaultDeliverySettings())
        let json = issued.ticket.toJson()
        let a = try Ticket.fromJson(json: json)
        let b = try Ticket.fromJson(json: json)
        XCTAssertEqual(a, b)
        XCTAssertEqual(a.hashValue, b.hashValue)
        XCTAssertEqual(Set([a, b, issued.ticket]).count, 1)
        let other = try backend.issue(deliveryId: "PKG-hash-2", sequence: 0, courierId: "courier-1", now: now,
                                      settings: defaultDeliverySettings()).ticket
        XCTAssertEqual(Set([a, other]).count, 2)
        let s1 = try Secret.fromBase32(text: "JBSWY3DPEHPK3PXP")
        let s2 = try Secret.fromBytes(bytes: Data([0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x21, 0xde, 0xad, 0xbe, 0xef]))
        XCTAssertEqual(s1, s2)
        XCTAssertEqual(Set([s1, s2]).count, 1)
        XCTAssertEqual(Set([s1, try Secret.generate()]).count, 2)
    }

    func testARotationReachesTheBackendMadeBeforeIt() throws {
        let keys = try KeySet.generate(keyId: "k1")
        let backend = Backend(keys: keys)
        let before = try backend.issue(deliveryId: "PKG-R1", sequence: 0, courierId: "courier-1", now: now,
                                       settings: defaultDeliverySettings())
        XCTAssertEqual(before.ticket.keyId, "k1")
        try keys.rotate(newKeyId: "k2")
        let after = try backend.issue(deliveryId: "PKG-R2", sequence: 0, courierId: "courier-1", now: now,
                                      settings: defaultDeliverySettings())
        XCTAssertEqual(after.ticket.keyId, "k2")
        XCTAssertEqual(try backend.codeFor(ticket: try backend.readTicket(json: before.ticket.toJson())), before.code)
        let key = try backend.provisionDevice(courierId: "courier-1", deviceId: "phone-1")
        let verifier = OfflineVerifier(ticket: before.ticket, store: MapStateStore())
        _ = try verifier.verify(entered: before.code, now: now + 1)
        let receipt = try verifier.receipt(deviceKey: key, handover: .deliveredOffline(code: before.code),
                                           decidedAt: now + 2, details: ReceiptDetails(appVersion: "ios/1.0"))
        let decision = try backend.reconcile(receiptJson: receipt.toJson(), ticket: before.ticket, now: now + 3).decision
        XCTAssertEqual(decision, .confirmed(verified: .offline))
    }

    func testValuesPrintReadablyAndCompareByValue() throws {
        XCTAssertEqual(String(describing: Decision.codeMismatch), "CodeMismatch")
        let uri = "otpauth://totp/Acme:bob?secret=JBSWY3DPEHPK3PXP&issuer=Acme"
        XCTAssertEqual(try KeyUri(parsing: uri), try KeyUri(parsing: uri))
        XCTAssertEqual(Set([try KeyUri(parsing: uri), try KeyUri(parsing: uri)]).count, 1)
        XCTAssertNotEqual(try KeyUri(parsing: uri), try KeyUri(parsing: uri.replacingOccurrences(of: "bob", with: "alice")))
        let backend = Backend(keys: try KeySet.generate(keyId: "k1"))
        let issued = try backend.issue(deliveryId: "PKG-EQ", sequence: 0, courierId: "courier-1", now: now,
                                       settings: defaultDeliverySettings())
        let again = try backend.issue(deliveryId: "PKG-EQ", sequence: 0, courierId: "courier-1", now: now,
                                      settings: defaultDeliverySettings())
        XCTAssertEqual(issued, again)
        let keyJson = try backend.provisionDevice(courierId: "courier-1", deviceId: "phone-1").toJson()
        XCTAssertEqual(Set([try DeviceKey.fromJson(json: keyJson), try DeviceKey.fromJson(json: keyJson)]).count, 1)
        let verifier = OfflineVerifier(ticket: issued.ticket, store: MapStateStore())
        _ = try verifier.verify(entered: issued.code, now: now + 1)
        let receipt = try verifier.receipt(deviceKey: try DeviceKey.fromJson(json: keyJson),
                                           handover: .deliveredOffline(code: issued.code), decidedAt: now + 2,
                                           details: ReceiptDetails(appVersion: "ios/1.0"))
        XCTAssertEqual(Set([receipt, try Receipt.fromJson(json: receipt.toJson())]).count, 1)
    }
}
