import DeliveryOtp
import Foundation
import XCTest

/// The app's attempt state in an actor, as an app that keeps it in a database
/// context or behind `UserDefaults` would.
actor ActorStore: AsyncDeviceStateStore {
    private var values: [String: String] = [:]
    private var failing = false

    func setFailing(_ value: Bool) { failing = value }
    var count: Int { values.count }

    func load(key: String) async throws -> String? { values[key] }

    func compareAndSet(key: String, expected: String?, value: String) async throws -> Bool {
        if failing { throw StoreError.Failed(reason: "disk full") }
        guard values[key] == expected else { return false }
        values[key] = value
        return true
    }
}

/// The courier flow with Swift concurrency: async verify and receipt over a store an actor implements.
final class AsyncTests: XCTestCase {
    private let start: Date = 1_764_000_000

    func testAnActorKeepsTheAttemptsAndTheFlowEndsConfirmed() async throws {
        let backend = Backend(keys: try KeySet.generate(keyId: "k1"))
        let issued = try backend.issue("PKG-ASYNC", courier: "courier-1", at: start)
        let store = ActorStore()
        let verifier = OfflineVerifier(ticket: issued.ticket, asyncStore: store)
        let wrong = issued.code == "000000" ? "000001" : "000000"
        let first = try await verifier.verify(wrong, at: start + 10)
        // A wrong code passes the 12-bit hash 1 time in 4096; count it either way.
        XCTAssertTrue([.rejected(attemptsLeft: 4), .acceptedProvisionally(attemptsUsed: 1)].contains(first), "\(first)")
        // A second verifier on the same actor sees the same count.
        let again = OfflineVerifier(ticket: issued.ticket, asyncStore: store)
        let second = try await again.verify(issued.code, at: start + 20)
        XCTAssertEqual(second, .acceptedProvisionally(attemptsUsed: 2))
        let key = try backend.provisionDevice(courierId: "courier-1", deviceId: "phone-1")
        let receipt = try await again.receipt(
            .deliveredOffline(code: issued.code), signedWith: key, details: ReceiptDetails(appVersion: "ios/1.0"),
            at: start + 21)
        XCTAssertEqual(receipt.decidedAt, start + 21)
        let judged = try backend.reconcile(receipt.toJson(), against: issued.ticket, at: start + 60)
        XCTAssertEqual(judged.decision, .confirmed(verified: .offline))
        let stored = await store.count
        XCTAssertGreaterThan(stored, 0)
    }

    func testManyTasksOnOneActorNeverExceedTheLimit() async throws {
        let backend = Backend(keys: try KeySet.generate(keyId: "k1"))
        let issued = try backend.issue("PKG-ASYNC-MANY", courier: "courier-1", at: start)
        let store = ActorStore()
        let ticket = issued.ticket
        let code = issued.code
        let compared = try await withThrowingTaskGroup(of: Int.self) { group in
            for i in 0..<32 {
                group.addTask {
                    let wrong = String(format: "%06d", (i * 7919 + 1) % 1_000_000)
                    if wrong == code { return 0 }
                    let verifier = OfflineVerifier(ticket: ticket, asyncStore: store)
                    switch try await verifier.verify(wrong, at: self.start + 5) {
                    case .rejected, .acceptedProvisionally: return 1
                    default: return 0
                    }
                }
            }
            return try await group.reduce(0, +)
        }
        // Five attempts: four are reported as rejected or accepted, the fifth as the lockout it causes.
        XCTAssertLessThanOrEqual(compared, 4)
        XCTAssertEqual(try OfflineVerifier(ticket: ticket, asyncStore: store).attemptsLeft(), 0)
    }

    func testAFailingActorGivesATypedErrorAndCountsNothing() async throws {
        let backend = Backend(keys: try KeySet.generate(keyId: "k1"))
        let issued = try backend.issue("PKG-ASYNC-FAIL", courier: "courier-1", at: start)
        let store = ActorStore()
        await store.setFailing(true)
        let verifier = OfflineVerifier(ticket: issued.ticket, asyncStore: store)
        do {
            _ = try await verifier.verify(issued.code, at: start + 5)
            XCTFail("a failed save gave an outcome")
        } catch let error as OtpError {
            guard case .StateStorage(let reason) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(reason.contains("disk full"), reason)
        }
        await store.setFailing(false)
        let stored = await store.count
        XCTAssertEqual(stored, 0)
        let later = try await verifier.verify(issued.code, at: start + 6)
        XCTAssertEqual(later, .acceptedProvisionally(attemptsUsed: 1))
    }
}
