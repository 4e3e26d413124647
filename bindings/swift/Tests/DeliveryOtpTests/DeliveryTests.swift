import DeliveryOtp
import Foundation
import XCTest

/// The app's attempt-state storage, as an iOS app might keep it in memory.
final class MapStateStore: DeviceStateStore, @unchecked Sendable {
    private var values: [String: String] = [:]
    private let lock = NSLock()
    func load(key: String) throws -> String? { lock.lock(); defer { lock.unlock() }; return values[key] }
    func compareAndSet(key: String, expected: String?, value: String) throws -> Bool {
        lock.lock(); defer { lock.unlock() }
        guard values[key] == expected else { return false }
        values[key] = value
        return true
    }
}

/// State kept in files, one per delivery: survives a new store object, as after an app restart.
final class FileStateStore: DeviceStateStore, @unchecked Sendable {
    let dir: URL
    init(dir: URL) { self.dir = dir }
    private func file(_ key: String) -> URL { dir.appendingPathComponent(key.replacingOccurrences(of: "/", with: "_")) }
    func load(key: String) throws -> String? { try? String(contentsOf: file(key), encoding: .utf8) }
    private let lock = NSLock()
    func compareAndSet(key: String, expected: String?, value: String) throws -> Bool {
        lock.lock(); defer { lock.unlock() }
        guard try load(key: key) == expected else { return false }
        try value.write(to: file(key), atomically: true, encoding: .utf8)
        return true
    }
}

/// Storage that fails, as a full disk would.
final class FailingStateStore: DeviceStateStore, @unchecked Sendable {
    func load(key: String) throws -> String? { nil }
    func compareAndSet(key: String, expected: String?, value: String) throws -> Bool {
        throw StoreError.Failed(reason: "disk full")
    }
}

func offlineName(_ o: OfflineOutcome) -> (String, UInt64?) {
    switch o {
    case .acceptedProvisionally(let n): return ("accepted_provisionally", UInt64(n))
    case .rejected(let n): return ("rejected", UInt64(n))
    case .lockedOut(let t): return ("locked_out", secs(t))
    case .expired(let t): return ("expired", secs(t))
    case .notYetValid(let t): return ("not_yet_valid", secs(t))
    case .clockMovedBackwards(let t): return ("clock_moved_backwards", secs(t))
    case .superseded(let s): return ("superseded", UInt64(s))
    }
}

func onlineName(_ o: OnlineOutcome) -> (String, UInt64?) {
    switch o {
    case .confirmed(let n): return ("confirmed", UInt64(n))
    case .rejected(let n): return ("rejected", UInt64(n))
    case .lockedOut(let t): return ("locked_out", secs(t))
    case .alreadyUsed: return ("already_used", nil)
    case .guessedFromTicket: return ("guessed_from_ticket", nil)
    case .ended: return ("ended", nil)
    case .notAssigned: return ("not_assigned", nil)
    case .expired(let t): return ("expired", secs(t))
    case .notYetValid(let t): return ("not_yet_valid", secs(t))
    }
}

let outcomeField = [
    "accepted_provisionally": "attempts_used", "confirmed": "attempts_used", "rejected": "attempts_left",
    "locked_out": "until", "expired": "at", "not_yet_valid": "from",
    "clock_moved_backwards": "latest_seen", "superseded": "by_sequence",
]

/// Every case of the delivery vector files, and the device storage across restarts.
final class DeliveryTests: XCTestCase {
    private func backend(_ keySet: String, _ current: String) throws -> Backend {
        let keys = try KeySet.fromJson(json: keySet)
        try keys.setCurrent(keyId: current)
        return Backend(keys: keys)
    }

    func testCodes() throws {
        let file = "delivery-codes.json"
        let b = try backend(try Vectors.load(file)["key_set"] as! String, "k-2026-11")
        let cases = try Vectors.cases(file)
        XCTAssertEqual(cases.count, 24)
        for c in cases {
            let code = try b.deriveCode(keyId: c.str("key_id"), deliveryId: c.str("delivery_id"),
                                        sequence: c.u64("sequence"), format: codeFormat(c.str("format")))
            XCTAssertEqual(code, c.str("code"), c.name)
        }
    }

    private func settings(_ s: [String: Any]) -> DeliverySettings {
        DeliverySettings(format: codeFormat(s.str("format")), allowShortCodes: s["allow_short_codes"] as! Bool,
                         hashBits: s.u32("hash_bits"), maxAttempts: s.u32("max_attempts"),
                         lifetime: TimeInterval(s.u64("lifetime_secs")))
    }

    func testTicketsAreByteExactAndTamperingIsCaught() throws {
        let file = "delivery-tickets.json"
        let keySet = try Vectors.load(file)["key_set"] as! String
        let cases = try Vectors.cases(file)
        XCTAssertEqual(cases.count, 8)
        for c in cases {
            let b = try backend(keySet, c.str("key_id"))
            let issued = try b.issue(deliveryId: c.str("delivery_id"), sequence: c.u64("sequence"),
                                     courierId: c.str("courier_id"), now: c.time("now"),
                                     settings: settings(c["settings"] as! [String: Any]))
            XCTAssertEqual(issued.code, c.str("code"), c.name)
            XCTAssertEqual(issued.codeGrouped.replacingOccurrences(of: " ", with: ""), issued.code, c.name)
            XCTAssertEqual(issued.ticket.toJson(), c.str("ticket"), c.name)
            let read = try b.readTicket(json: c.str("ticket"))
            XCTAssertEqual(read, issued.ticket, c.name)
            XCTAssertEqual(try b.codeFor(ticket: read), c.str("code"), c.name)
            XCTAssertFalse(read.toJson().contains(c.str("code")) || String(reflecting: read).contains(c.str("code")),
                           "\(c.name): ticket shows the code")
        }
        let b = try backend(keySet, "k-2026-11")
        let tampered = try Vectors.cases(file, "tampered")
        XCTAssertGreaterThanOrEqual(tampered.count, 10)
        for c in tampered {
            if let device = c.optStr("device_error") {
                XCTAssertEqual(expectOtpError(c.name) { try Ticket.fromJson(json: c.str("ticket")) }.0, device, c.name)
            } else {
                XCTAssertNoThrow(try Ticket.fromJson(json: c.str("ticket")), c.name)
            }
            XCTAssertEqual(expectOtpError(c.name) { try b.readTicket(json: c.str("ticket")) }.0,
                           c.str("backend_error"), c.name)
        }
    }

    func testNormalization() throws {
        let cases = try Vectors.cases("delivery-normalize.json")
        XCTAssertGreaterThanOrEqual(cases.count, 25)
        for c in cases {
            let format = codeFormat(c.str("format"))
            if let expected = c.optStr("normalized") {
                XCTAssertEqual(try normalizeCode(entered: c.str("entered"), format: format), expected, c.name)
            } else {
                let (k, message) = expectOtpError(c.name) { try normalizeCode(entered: c.str("entered"), format: format) }
                XCTAssertEqual(k, c.str("error"), c.name)
                if let position = c.int("position") {
                    XCTAssertTrue(message.contains("position \(position)"), "\(c.name): \(message)")
                }
            }
        }
    }

    func testScenarios() throws {
        let file = "delivery-scenarios.json"
        let v = try Vectors.load(file)
        let tolerance = TimeInterval(v.u64("clock_tolerance_secs"))
        let scenarios = try Vectors.cases(file, "scenarios")
        XCTAssertGreaterThanOrEqual(scenarios.count, 12)
        for sc in scenarios {
            let store = MapStateStore()
            let backend = try backend(v["key_set"] as! String, "k-2026-11")
            var ticket = try Ticket.fromJson(json: sc.str("ticket"))
            var verifier = try OfflineVerifier.withClockTolerance(ticket: ticket, store: store, clockTolerance: tolerance)
            for (i, step) in (sc["steps"] as! [[String: Any]]).enumerated() {
                let ctx = "\(sc.name), step \(i + 1)"
                switch step.str("do") {
                case "verify":
                    if let error = step.optStr("expect_error") {
                        XCTAssertEqual(expectOtpError(ctx) {
                            try verifier.verify(entered: step.str("entered"), now: step.time("time"))
                        }.0, error, ctx)
                    } else {
                        let (outcome, value) = offlineName(try verifier.verify(entered: step.str("entered"), now: step.time("time")))
                        XCTAssertEqual(outcome, step.str("expect"), ctx)
                        XCTAssertEqual(value, step.num(outcomeField[outcome]!), "\(ctx): value")
                    }
                case "restart":
                    verifier = try OfflineVerifier.withClockTolerance(ticket: ticket, store: store, clockTolerance: tolerance)
                case "switch_ticket":
                    ticket = try Ticket.fromJson(json: step.str("ticket"))
                    verifier = try OfflineVerifier.withClockTolerance(ticket: ticket, store: store, clockTolerance: tolerance)
                case "attempts_left":
                    XCTAssertEqual(UInt64(try verifier.attemptsLeft()), step.num("expect"), ctx)
                case "online":
                    let (outcome, value) = onlineName(try backend.verifyOnline(
                        ticket: ticket, entered: step.str("entered"), courierId: step.str("courier"),
                        deviceId: step.str("device"), now: step.time("time")))
                    XCTAssertEqual(outcome, step.str("expect"), ctx)
                    if let field = outcomeField[outcome] {
                        XCTAssertEqual(value, step.num(field), "\(ctx): value")
                    }
                default:
                    XCTFail("\(ctx): unknown step")
                }
            }
        }
    }

    func testAttemptsSurviveAnAppRestartWithFileStorage() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("delivery-otp-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let backend = Backend(keys: try KeySet.generate(keyId: "k1"))
        let now: Date = 1_764_000_000
        let issued = try backend.issue(deliveryId: "PKG-42", sequence: 0, courierId: "courier-1", now: now, settings: defaultDeliverySettings())
        let wrong = issued.code == "000000" ? "000001" : "000000"
        do {  // first run of the app: two wrong codes
            let first = OfflineVerifier(ticket: try Ticket.fromJson(json: issued.ticket.toJson()), store: FileStateStore(dir: dir))
            _ = try first.verify(entered: wrong, now: now + 10)
            _ = try first.verify(entered: wrong, now: now + 11)
        }
        // The app restarts: new store object, new verifier, same files.
        let second = OfflineVerifier(ticket: try Ticket.fromJson(json: issued.ticket.toJson()), store: FileStateStore(dir: dir))
        XCTAssertEqual(try second.attemptsLeft(), 3, "attempts were lost across the restart")
        XCTAssertEqual(try second.verify(entered: issued.code, now: now + 20), .acceptedProvisionally(attemptsUsed: 3))
        for file in try FileManager.default.contentsOfDirectory(atPath: dir.path) {
            let text = try String(contentsOf: dir.appendingPathComponent(file), encoding: .utf8)
            XCTAssertFalse(text.contains(issued.code), "stored state shows the code")
        }
    }

    func testAFailingStoreGivesNoOutcome() throws {
        let issued = try Backend(keys: try KeySet.generate(keyId: "k1"))
            .issue(deliveryId: "PKG-43", sequence: 0, courierId: "courier-1", now: 1_000, settings: defaultDeliverySettings())
        let verifier = OfflineVerifier(ticket: issued.ticket, store: FailingStateStore())
        let (k, message) = expectOtpError("failing store") { try verifier.verify(entered: issued.code, now: 1_001) }
        XCTAssertEqual(k, "state_storage")
        XCTAssertTrue(message.contains("disk full"), message)
    }

    func testSettingsThatRevealTheCodeAreRefused() throws {
        var s = defaultDeliverySettings()
        XCTAssertEqual(s.format, .numeric(digits: 6))
        XCTAssertEqual(s.hashBits, 12)
        XCTAssertEqual(s.maxAttempts, 5)
        try checkDeliverySettings(settings: s)
        s.hashBits = 14
        let (k, message) = expectOtpError("t = 14") { try checkDeliverySettings(settings: s) }
        XCTAssertEqual(k, "unsafe_settings")
        XCTAssertTrue(message.contains("candidates"), message)
        XCTAssertEqual(try expectedCandidates(format: .numeric(digits: 6), hashBits: 12), 244.140625)
        XCTAssertEqual(try falseAcceptProbability(hashBits: 12), 1.0 / 4096)
        s.hashBits = 12
        s.lifetime = 90.5
        let (fraction, _) = expectOtpError("90.5 s") { try checkDeliverySettings(settings: s) }
        XCTAssertEqual(fraction, "invalid_number")
    }

    /// Issue 11, B6: many verifier objects on many threads share one count per ticket.
    func testManyVerifiersOnOneStoreNeverExceedTheLimit() throws {
        let issued = try Backend(keys: try KeySet.generate(keyId: "k1"))
            .issue(deliveryId: "PKG-45", sequence: 0, courierId: "courier-1", now: 1_000,
                   settings: defaultDeliverySettings())
        let store = MapStateStore()
        let compared = NSLock()
        var count = 0
        DispatchQueue.concurrentPerform(iterations: 64) { i in
            let wrong = String(format: "%06d", (i * 7919) % 1_000_000)
            if wrong == issued.code { return }
            let v = OfflineVerifier(ticket: issued.ticket, store: store)
            switch try? v.verify(entered: wrong, now: 1_001) {
            case .rejected, .acceptedProvisionally:
                compared.lock(); count += 1; compared.unlock()
            default: break
            }
        }
        XCTAssertEqual(try OfflineVerifier(ticket: issued.ticket, store: store).attemptsLeft(), 0)
        XCTAssertLessThanOrEqual(count, 4)
    }
}
