// Hand-written, beside the generated DeliveryOtp.swift: names uniffi 0.32 cannot
// give. Initializers where it makes `fromJson(json:)`-style factories, and its free
// functions as members of the types they work on. Each delegates to the generated
// API; the factories and functions stay for code written against them.

import Foundation

extension Ticket {
    /// Reads a ticket's JSON, as `fromJson(json:)` does.
    public convenience init(json: String) throws {
        let read = try Ticket.fromJson(json: json)
        self.init(unsafeFromHandle: read.uniffiCloneHandle())
    }
}

extension KeySet {
    /// Reads a key set's JSON, as `fromJson(json:)` does.
    public convenience init(json: String) throws {
        let read = try KeySet.fromJson(json: json)
        self.init(unsafeFromHandle: read.uniffiCloneHandle())
    }
}

extension DeviceKey {
    /// Reads the device key the backend provisioned, as `fromJson(json:)` does.
    public convenience init(json: String) throws {
        let read = try DeviceKey.fromJson(json: json)
        self.init(unsafeFromHandle: read.uniffiCloneHandle())
    }
}

extension Receipt {
    /// Reads a receipt's JSON, as `fromJson(json:)` does.
    public convenience init(json: String) throws {
        let read = try Receipt.fromJson(json: json)
        self.init(unsafeFromHandle: read.uniffiCloneHandle())
    }
}

extension Secret {
    /// Reads RFC 4648 base32, as `fromBase32(text:)` does.
    public convenience init(base32: String) throws {
        let read = try Secret.fromBase32(text: base32)
        self.init(unsafeFromHandle: read.uniffiCloneHandle())
    }

    /// Takes raw key bytes, as `fromBytes(bytes:)` does.
    public convenience init(bytes: Data) throws {
        let read = try Secret.fromBytes(bytes: bytes)
        self.init(unsafeFromHandle: read.uniffiCloneHandle())
    }
}

extension DeliverySettings {
    /// The defaults: 6 digits, a 12-bit hash, 5 attempts, valid for 24 hours.
    public static var standard: DeliverySettings { defaultDeliverySettings() }

    /// Throws `OtpError` when these settings would weaken the check or let a
    /// ticket give its code away.
    public func check() throws { try checkDeliverySettings(settings: self) }
}

extension KeyUri {
    /// Reads an `otpauth://` URI, as `parse(uri:)` does.
    public convenience init(parsing uri: String) throws {
        let read = try KeyUri.parse(uri: uri)
        self.init(unsafeFromHandle: read.uniffiCloneHandle())
    }
}

extension CodeFormat {
    /// What the courier typed, in the code's own form, as `normalizeCode` gives it.
    public func normalize(_ entered: String) throws -> String {
        try normalizeCode(entered: entered, format: self)
    }
}

// The generated API takes `Date` (whole seconds count); these default it to now
// and give the calls Swift's argument labels.

extension OfflineVerifier {
    /// Checks what the courier typed, at `date` (the device's clock by default).
    public func verify(_ entered: String, at date: Date = Date()) throws -> OfflineOutcome {
        try verify(entered: entered, now: date)
    }

    /// Makes this ticket's receipt at `date`, as `receipt(deviceKey:handover:decidedAt:details:)` does.
    public func receipt(
        _ handover: Handover, signedWith key: DeviceKey, details: ReceiptDetails, at date: Date = Date()
    ) throws -> Receipt {
        try receipt(deviceKey: key, handover: handover, decidedAt: date, details: details)
    }
}

extension Backend {
    /// Issues a delivery's code and ticket, valid from `date`.
    public func issue(
        _ deliveryId: String, sequence: Int64 = 0, courier courierId: String,
        settings: DeliverySettings = .standard, at date: Date = Date()
    ) throws -> IssuedCode {
        try issue(deliveryId: deliveryId, sequence: sequence, courierId: courierId, now: date, settings: settings)
    }

    /// Checks a code online for a courier's device, at `date`.
    public func verifyOnline(
        _ entered: String, ticket: Ticket, courier courierId: String, device deviceId: String, at date: Date = Date()
    ) throws -> OnlineOutcome {
        try verifyOnline(ticket: ticket, entered: entered, courierId: courierId, deviceId: deviceId, now: date)
    }

    /// Judges a receipt against the ticket as issued, at `date`.
    public func reconcile(_ receiptJson: String, against ticket: Ticket, at date: Date = Date()) throws -> Reconciliation {
        try reconcile(receiptJson: receiptJson, ticket: ticket, now: date)
    }
}

extension DeviceKey {
    /// The `Authorization` header for a request to the service, signed at `date`.
    /// Throws `OtpError.InvalidNumber` for a date before 1970.
    public func signRequest(_ method: String, path: String, body: Data = Data(), at date: Date = Date()) throws -> String {
        try signRequest(method: method, path: path, timestamp: date, body: body)
    }
}

// The generated OtpError already has the core's message as `description`;
// declaring the conformance makes `"\(error)"`, `localizedDescription` and
// `errorDescription` that sentence instead of the case's reflection.
extension OtpError: CustomStringConvertible {}
