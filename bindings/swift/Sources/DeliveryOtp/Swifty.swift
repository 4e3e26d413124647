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
    /// Reads an `otpauth://` URI, as `parseKeyUri(uri:)` does.
    public init(parsing uri: String) throws { self = try parseKeyUri(uri: uri) }

    /// The `otpauth://` URI (it holds the secret), as `formatKeyUri(key:)` gives it.
    public func uri() throws -> String { try formatKeyUri(key: self) }

    /// A TOTP generator for this key.
    public func totp() throws -> Totp { try keyUriTotp(key: self) }

    /// An HOTP generator for this key.
    public func hotp() throws -> Hotp { try keyUriHotp(key: self) }
}

extension CodeFormat {
    /// What the courier typed, in the code's own form, as `normalizeCode` gives it.
    public func normalize(_ entered: String) throws -> String {
        try normalizeCode(entered: entered, format: self)
    }
}
