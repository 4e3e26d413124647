// Hand-written, beside the generated DeliveryOtp.swift: the courier flow with
// Swift concurrency. uniffi's `DeviceStateStore` is a synchronous protocol, so
// an `actor` or a `@MainActor` class cannot implement it; `AsyncDeviceStateStore`
// is the same two operations, async, and the verifier's async methods run the
// library off the caller's thread and wait for the store there.

import Foundation

/// Where the app keeps attempt state, for stores that are actors or live on
/// the main actor (a SwiftData or Core Data context, `UserDefaults` behind an
/// actor). The contract is `DeviceStateStore`'s: `compareAndSet` saves `value`
/// only if the stored value is still `expected` (nil: none), as one step, and
/// returns only once the value is durably written. Throw `StoreError.Failed`
/// when the storage fails; anything else thrown is reported as an unexpected
/// store failure. Either way the verification gives no outcome and counts nothing.
public protocol AsyncDeviceStateStore: Sendable {
    /// The value saved under `key`, or nil.
    func load(key: String) async throws -> String?
    /// Saves `value` under `key` if the value there is still `expected`; returns whether it did.
    func compareAndSet(key: String, expected: String?, value: String) async throws -> Bool
}

/// The library calls its store synchronously. This bridge is only ever called
/// on a Dispatch thread of `OfflineVerifier`'s async methods (never on Swift's
/// cooperative pool, which the store's actor needs), so waiting here for the
/// actor cannot starve it.
final class AsyncStoreBridge: DeviceStateStore, @unchecked Sendable {
    private let store: AsyncDeviceStateStore

    init(_ store: AsyncDeviceStateStore) { self.store = store }

    func load(key: String) throws -> String? {
        try wait { [store] in try await store.load(key: key) }
    }

    func compareAndSet(key: String, expected: String?, value: String) throws -> Bool {
        try wait { [store] in try await store.compareAndSet(key: key, expected: expected, value: value) }
    }

    private func wait<T: Sendable>(_ operation: @escaping @Sendable () async throws -> T) throws -> T {
        let done = DispatchSemaphore(value: 0)
        let box = ResultBox<T>()
        Task.detached {
            do { box.set(.success(try await operation())) } catch { box.set(.failure(error)) }
            done.signal()
        }
        done.wait()
        return try box.get()
    }
}

/// One result handed from a task to the thread that waits for it.
private final class ResultBox<T: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var result: Result<T, Error>?

    func set(_ value: Result<T, Error>) {
        lock.lock()
        result = value
        lock.unlock()
    }

    func get() throws -> T {
        lock.lock()
        defer { lock.unlock() }
        guard let result else {
            throw StoreError.Failed(reason: "the store gave no answer")
        }
        return try result.get()
    }
}

/// Runs `work` on a Dispatch thread and resumes the caller with its result.
private func offCallerThread<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        DispatchQueue.global(qos: .userInitiated).async {
            continuation.resume(with: Result { try work() })
        }
    }
}

extension OfflineVerifier {
    /// A verifier for `ticket` keeping its state in an async store (an actor,
    /// or a `@MainActor` class). Use its async `verify` and `receipt`.
    public convenience init(ticket: Ticket, asyncStore: AsyncDeviceStateStore) {
        let made = OfflineVerifier(ticket: ticket, store: AsyncStoreBridge(asyncStore))
        self.init(unsafeFromHandle: made.uniffiCloneHandle())
    }

    /// Checks what the courier typed at `date`, off the caller's thread: the
    /// store is read and written before this returns, and the main actor stays free.
    public func verify(_ entered: String, at date: Date = Date()) async throws -> OfflineOutcome {
        try await offCallerThread { [self] in try self.verify(entered: entered, now: date) }
    }

    /// Makes and stores this ticket's receipt at `date`, off the caller's thread.
    public func receipt(
        _ handover: Handover, signedWith key: DeviceKey, details: ReceiptDetails, at date: Date = Date()
    ) async throws -> Receipt {
        try await offCallerThread { [self] in
            try self.receipt(deviceKey: key, handover: handover, decidedAt: date, details: details)
        }
    }
}
