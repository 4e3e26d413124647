import DeliveryOtp
import Foundation
import XCTest

/// The hand-written Swift names (Swifty.swift) give what the generated ones give.
final class SwiftyTests: XCTestCase {
    func testInitializersReadWhatTheFactoriesRead() throws {
        let keys = try KeySet.generate(keyId: "k1")
        let sameKeys = try KeySet(json: keys.toJson())
        XCTAssertEqual(sameKeys.currentId, "k1")
        let backend = Backend(keys: sameKeys)
        let issued = try backend.issue(deliveryId: "PKG-S", sequence: 0, courierId: "courier-1", now: 1_000,
                                       settings: .standard)
        let ticket = try Ticket(json: issued.ticket.toJson())
        XCTAssertEqual(ticket, issued.ticket)
        XCTAssertEqual(try backend.codeFor(ticket: ticket), issued.code)
        let key = try DeviceKey(json: try backend.provisionDevice(courierId: "courier-1", deviceId: "phone-1").toJson())
        XCTAssertEqual(key.deviceId, "phone-1")
        let verifier = OfflineVerifier(ticket: ticket, store: MapStateStore())
        _ = try verifier.verify(entered: issued.code, now: 1_001)
        let receipt = try verifier.receipt(deviceKey: key, handover: .deliveredOffline(code: issued.code),
                                           decidedAt: 1_002, details: ReceiptDetails(appVersion: "ios/1.0"))
        XCTAssertEqual(try Receipt(json: receipt.toJson()), receipt)
        XCTAssertEqual(try Secret(base32: "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"),
                       try Secret(bytes: Data("12345678901234567890".utf8)))
        XCTAssertThrowsError(try Ticket(json: "{}"))
    }

    func testMembersDoWhatTheFreeFunctionsDo() throws {
        XCTAssertEqual(DeliverySettings.standard, defaultDeliverySettings())
        XCTAssertNoThrow(try DeliverySettings.standard.check())
        var unsafe = DeliverySettings.standard
        unsafe.hashBits = 16
        XCTAssertThrowsError(try unsafe.check())
        let key = try KeyUri(parsing: "otpauth://totp/Acme:bob?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&digits=8")
        XCTAssertEqual(try key.totp().generate(time: 59), "94287082")
        XCTAssertEqual(try KeyUri(parsing: try key.toUri()), key)
        XCTAssertThrowsError(try KeyUri(kind: .totp(period: 30.5), secret: key.secret, account: "bob")) { error in
            guard case OtpError.InvalidPeriod = error else { return XCTFail("\(error)") }
        }
        XCTAssertThrowsError(try KeyUri(kind: .totp(period: 30), secret: key.secret, account: "acme:bob")) { error in
            guard case OtpError.InvalidLabel(let field, _) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(field, "account")
        }
        let lastCounter = try KeyUri(kind: .hotp(counter: -1), secret: key.secret, account: "bob")
        XCTAssertTrue(try lastCounter.toUri().hasSuffix("&counter=18446744073709551615"))
        XCTAssertEqual(try CodeFormat.numeric(digits: 6).normalize("４８２ ９１３"), "482913")
    }
}

/// The flow with dates: what the generated API gives with the same seconds.
final class SwiftyDatesTests: XCTestCase {
    func testTheCourierFlowWithDates() throws {
        let start = Date(timeIntervalSince1970: 1_764_000_000)
        let backend = Backend(keys: try KeySet.generate(keyId: "k1"))
        let issued = try backend.issue("PKG-D", courier: "courier-1", at: start)
        XCTAssertEqual(issued.ticket.notBefore, 1_764_000_000)
        let verifier = OfflineVerifier(ticket: issued.ticket, store: MapStateStore())
        guard case .acceptedProvisionally(1) = try verifier.verify(issued.code, at: start.addingTimeInterval(60)) else {
            return XCTFail("the right code was not accepted")
        }
        guard case .expired = try verifier.verify(issued.code, at: start.addingTimeInterval(2 * 86_400)) else {
            return XCTFail("a day later the ticket should be expired")
        }
        let key = try backend.provisionDevice(courierId: "courier-1", deviceId: "phone-1")
        let receipt = try verifier.receipt(.deliveredOffline(code: issued.code), signedWith: key,
                                           details: ReceiptDetails(appVersion: "ios/1.0"),
                                           at: start.addingTimeInterval(61))
        XCTAssertEqual(receipt.decidedAt, 1_764_000_061)
        let judged = try backend.reconcile(receipt.toJson(), against: issued.ticket, at: start.addingTimeInterval(120))
        XCTAssertEqual(judged.decision, .confirmed(verified: .offline))
        let online = try backend.issue("PKG-D2", courier: "courier-1", at: start)
        let outcome = try backend.verifyOnline(online.code, ticket: online.ticket, courier: "courier-1",
                                               device: "phone-1", at: start.addingTimeInterval(5))
        XCTAssertEqual(outcome, .confirmed(attemptsUsed: 1))
        XCTAssertEqual(try key.signRequest("GET", path: "/v1/x", at: start),
                       try key.signRequest(method: "GET", path: "/v1/x", timestamp: 1_764_000_000, body: Data()))
        // A date before 1970 is a typed error, never 1970 itself.
        XCTAssertEqual(
            expectOtpError("1969") { try key.signRequest("GET", path: "/v1/x", at: Date(timeIntervalSince1970: -5)) }.0,
            "invalid_number")
    }
}
