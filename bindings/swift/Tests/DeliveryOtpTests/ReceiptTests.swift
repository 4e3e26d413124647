import DeliveryOtp
import Foundation
import XCTest

/// The decision's name as the vector file writes it.
func decisionName(_ d: Decision) -> String {
    switch d {
    case .confirmed: return "confirmed"
    case .codeMismatch: return "code_mismatch"
    case .guessedFromTicket: return "guessed_from_ticket"
    case .falseClaim: return "false_claim"
    case .tampered: return "tampered"
    case .unknownKey: return "unknown_key"
    case .notAssigned: return "not_assigned"
    case .conflicting: return "conflicting"
    case .stale: return "stale"
    case .notDelivered: return "not_delivered"
    }
}

/// Receipts made on "iOS" from `tests/vectors/delivery-receipts.json`, byte for byte the
/// ones the Python implementation, Rust and Kotlin make; and their reconciliation.
final class ReceiptTests: XCTestCase {
    private let file = "delivery-receipts.json"
    private let reconciledAt: Date = 1_764_100_000

    private func backend() throws -> Backend {
        Backend(keys: try KeySet.fromJson(json: try Vectors.load(file)["key_set"] as! String))
    }

    private func outcome(_ o: [String: Any]) -> Handover {
        if o.str("kind") == "delivered" {
            return o.str("via") == "offline"
                ? .deliveredOffline(code: o.str("code"))
                : .deliveredOnline(code: o.str("code"), attemptsUsed: o.u32("attempts"))
        }
        let reason: NotDeliveredReason
        switch o.str("reason") {
        case "customer_absent": reason = .customerAbsent
        case "code_not_received": reason = .codeNotReceived
        case "refused": reason = .refused
        case "damaged": reason = .damaged
        default: reason = .other(note: o.str("note"))
        }
        return .notDelivered(reason: reason)
    }

    private func details(_ c: [String: Any]) -> ReceiptDetails {
        var location: Location? = nil
        if let l = c["location"] as? [String: Any] {
            location = Location(latMicrodegrees: Int32(l.int("lat")!), lonMicrodegrees: Int32(l.int("lon")!),
                                accuracyM: l.u32("acc"))
        }
        return ReceiptDetails(appVersion: c.str("app_version"), location: location,
                              photoSha256: c.optStr("photo_sha256").map(hex))
    }

    /// Verifies the case's entries on a fresh device and makes the receipt.
    private func make(_ c: [String: Any], _ store: DeviceStateStore = MapStateStore()) throws
        -> (OfflineVerifier, DeviceKey, Receipt) {
        let verifier = OfflineVerifier(ticket: try Ticket.fromJson(json: c.str("ticket")), store: store)
        for e in c["verify"] as! [[String: Any]] {
            _ = try verifier.verify(entered: e.str("entered"), now: e.time("time"))
        }
        let key = try DeviceKey.fromJson(json: c.str("device_key"))
        let receipt = try verifier.receipt(deviceKey: key, handover: outcome(c["outcome"] as! [String: Any]),
                                           decidedAt: c.time("decided_at"), details: details(c))
        return (verifier, key, receipt)
    }

    func testReceiptsMatchTheGoldenBytesAndReconcile() throws {
        let cases = try Vectors.cases(file)
        XCTAssertEqual(cases.count, 13)
        for c in cases {
            let (_, key, receipt) = try make(c)
            XCTAssertEqual(receipt.toJson(), c.str("receipt"), c.name)
            try Receipt.fromJson(json: c.str("receipt")).verifyMac(deviceKey: key)
            let expected = c["reconcile"] as! [String: Any]
            let b = try backend()
            let ticket = try b.readTicket(json: expected.str("ticket"))
            for o in expected["online"] as! [[String: Any]] {
                _ = try b.verifyOnline(ticket: ticket, entered: o.str("entered"), courierId: key.courierId,
                                       deviceId: key.deviceId, now: o.time("time"))
            }
            let r = try b.reconcile(receiptJson: c.str("receipt"), ticket: ticket, now: reconciledAt)
            XCTAssertFalse(r.repeated, c.name)
            XCTAssertEqual(decisionName(r.decision), expected.str("decision"), "\(c.name): \(r.explanation)")
            XCTAssertEqual(r.deliveryId, receipt.deliveryId)
            if case .delivered(let code, _) = receipt.outcome {
                XCTAssertFalse(r.explanation.contains(code), c.name)
            }
            let again = try b.reconcile(receiptJson: c.str("receipt"), ticket: ticket, now: reconciledAt)
            XCTAssertEqual(again.decision, r.decision, c.name)
        }
    }

    func testTamperedReceiptsAreRefusedOrFlagged() throws {
        let b = try backend()
        let ticket = try b.readTicket(json: try Vectors.load(file)["ticket"] as! String)
        for t in try Vectors.cases(file, "tampered") {
            if let error = t.optStr("error") {
                XCTAssertEqual(expectOtpError(t.name) {
                    try b.reconcile(receiptJson: t.str("receipt"), ticket: ticket, now: self.reconciledAt)
                }.0, error, t.name)
                XCTAssertEqual(expectOtpError(t.name) { try Receipt.fromJson(json: t.str("receipt")) }.0, error, t.name)
            } else {
                let r = try b.reconcile(receiptJson: t.str("receipt"), ticket: ticket, now: reconciledAt)
                XCTAssertEqual(decisionName(r.decision), t.str("decision"), t.name)
            }
        }
    }

    func testSequencesOfReceiptsForOneTicket() throws {
        let v = try Vectors.load(file)
        for seq in v["sequences"] as! [[String: Any]] {
            let b = try backend()
            let ticket = try b.readTicket(json: v["ticket"] as! String)
            for (i, step) in (seq["steps"] as! [[String: Any]]).enumerated() {
                let r = try b.reconcile(receiptJson: step.str("receipt"), ticket: ticket, now: reconciledAt)
                let ctx = "\(seq["name"] as! String), step \(i)"
                XCTAssertEqual(decisionName(r.decision), step.str("decision"), ctx)
                XCTAssertEqual(r.repeated, step["repeated"] as! Bool, ctx)
            }
        }
    }

    func testFalseClaimsAreNamed() throws {
        let v = try Vectors.load(file)
        for c in v["false_claims"] as! [[String: Any]] {
            let b = try backend()
            let r = try b.reconcile(receiptJson: c.str("receipt"), ticket: try b.readTicket(json: v["ticket"] as! String),
                                    now: reconciledAt)
            XCTAssertEqual(r.decision, .falseClaim(field: c.str("field")), c.name)
        }
    }

    func testAReceiptCanBeMadeAgainAfterARestartButNeverChanged() throws {
        let c = try Vectors.cases(file)[0]
        let store = MapStateStore()
        let (verifier, key, receipt) = try make(c, store)
        let restarted = OfflineVerifier(ticket: verifier.ticket, store: store)
        XCTAssertEqual(try restarted.storedReceipt()?.toJson(), receipt.toJson())
        let again = try restarted.receipt(deviceKey: key, handover: outcome(c["outcome"] as! [String: Any]),
                                          decidedAt: c.time("decided_at"), details: details(c))
        XCTAssertEqual(again.toJson(), receipt.toJson())
        let (k, message) = expectOtpError("changed outcome") {
            try restarted.receipt(deviceKey: key, handover: .notDelivered(reason: .refused),
                                  decidedAt: c.time("decided_at"), details: self.details(c))
        }
        XCTAssertEqual(k, "receipt_conflict")
        XCTAssertTrue(message.contains("outcome"), message)
    }

    func testProvisioningAtLoginAndTheBruteForcingCourier() throws {
        let b = Backend(keys: try KeySet.generate(keyId: "k1"))
        let key = try DeviceKey.fromJson(json: try b.provisionDevice(courierId: "courier-23", deviceId: "iphone-15-0007").toJson())
        XCTAssertEqual(key.courierId, "courier-23")
        let issued = try b.issue(deliveryId: "PKG-7", sequence: 0, courierId: "courier-23", now: 1_764_000_000,
                                 settings: defaultDeliverySettings())
        var candidate = ""
        for x in 0..<1_000_000 {
            let c = String(format: "%06d", x)
            if c == issued.code { continue }
            if case .acceptedProvisionally = try OfflineVerifier(ticket: issued.ticket, store: MapStateStore())
                .verify(entered: c, now: 1_764_000_100) {
                candidate = c
                break
            }
        }
        XCTAssertEqual(candidate.count, 6)
        let device = OfflineVerifier(ticket: issued.ticket, store: MapStateStore())
        _ = try device.verify(entered: candidate, now: 1_764_000_100)
        let receipt = try device.receipt(deviceKey: key, handover: .deliveredOffline(code: candidate),
                                         decidedAt: 1_764_000_101, details: ReceiptDetails(appVersion: "ios/3.4.0"))
        let r = try b.reconcile(receiptJson: receipt.toJson(), ticket: issued.ticket, now: 1_764_000_200)
        XCTAssertEqual(r.decision, .codeMismatch)
        XCTAssertFalse(r.explanation.contains(issued.code))
        XCTAssertEqual(try locationFromDegrees(latitude: 51.5074, longitude: -0.1278, accuracyM: 12),
                       Location(latMicrodegrees: 51507400, lonMicrodegrees: -127800, accuracyM: 12))
    }

    func testRequestSignaturesMatchTheVectors() throws {
        let cases = try Vectors.cases("device-requests.json")
        XCTAssertEqual(cases.count, 4)
        for c in cases {
            let key = try DeviceKey.fromJson(json: c.str("device_key"))
            let header = try key.signRequest(method: c.str("method"), path: c.str("path"),
                                         timestamp: c.time("timestamp"), body: Data(c.str("body").utf8))
            XCTAssertEqual(header, c.str("authorization"), c.str("name"))
        }
    }
}
