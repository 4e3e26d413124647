import DeliveryOtp
import Foundation
import XCTest

/// Reads the shared vector files in the repository's `tests/vectors/`.
enum Vectors {
    static let dir: URL = {
        if let path = ProcessInfo.processInfo.environment["DELIVERY_OTP_VECTORS"] {
            return URL(fileURLWithPath: path)
        }
        // Tests/DeliveryOtpTests/Vectors.swift -> repository root
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<5 { url.deleteLastPathComponent() }
        return url.appendingPathComponent("tests/vectors")
    }()

    static func load(_ name: String) throws -> [String: Any] {
        let data = try Data(contentsOf: dir.appendingPathComponent(name))
        guard let object = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw VectorError.malformed(name)
        }
        return object
    }

    static func cases(_ name: String, _ key: String = "cases") throws -> [[String: Any]] {
        guard let list = try load(name)[key] as? [[String: Any]] else { throw VectorError.malformed("\(name): \(key)") }
        return list
    }
}

enum VectorError: Error { case malformed(String) }

extension Dictionary where Key == String, Value == Any {
    func str(_ key: String) -> String { self[key] as? String ?? "" }
    func optStr(_ key: String) -> String? { self[key] as? String }
    func int(_ key: String) -> Int? { (self[key] as? NSNumber)?.intValue }
    func u32(_ key: String) -> Int32 { Int32((self[key] as? NSNumber)?.intValue ?? -1) }
    /// A u64 the files write as a string, as a signed 64-bit sequence.
    func u64(_ key: String) -> Int64 { Int64(str(key))! }
    /// A u64 the files write as a string, as the 64 bits an Int64 carries.
    func bits(_ key: String) -> Int64 { Int64(bitPattern: UInt64(str(key))!) }
    /// A unix time the files write as a string.
    func time(_ key: String) -> Date { Date(timeIntervalSince1970: TimeInterval(UInt64(str(key))!)) }
    var name: String { str("name") }
}

func hex(_ text: String) -> Data {
    var data = Data()
    var index = text.startIndex
    while index < text.endIndex {
        let next = text.index(index, offsetBy: 2)
        data.append(UInt8(text[index..<next], radix: 16)!)
        index = next
    }
    return data
}

func algorithm(_ name: String) -> Algorithm {
    switch name {
    case "SHA256": return .sha256
    case "SHA512": return .sha512
    default: return .sha1
    }
}

/// The error kind's name and message as the vector files use them. An
/// exhaustive switch: a new error case fails to compile here until named.
func kind(_ error: OtpError) -> (String, String) {
    // The message as an app shows it: LocalizedError's, the core's sentence.
    let message = error.localizedDescription
    switch error {
    case .InvalidDigits: return ("invalid_digits", message)
    case .InvalidPeriod: return ("invalid_period", message)
    case .EmptySecret: return ("empty_secret", message)
    case .SecretTooShort: return ("secret_too_short", message)
    case .SecretTooLong: return ("secret_too_long", message)
    case .RandomUnavailable: return ("random_unavailable", message)
    case .InvalidBase32Character: return ("invalid_base32_character", message)
    case .InvalidBase32Length: return ("invalid_base32_length", message)
    case .TimeBeforeStart: return ("time_before_start", message)
    case .WindowTooLarge: return ("window_too_large", message)
    case .MalformedCode: return ("malformed_code", message)
    case .UnsupportedScheme: return ("unsupported_scheme", message)
    case .UnknownOtpType: return ("unknown_otp_type", message)
    case .MissingAccount: return ("missing_account", message)
    case .MissingSecret: return ("missing_secret", message)
    case .MissingCounter: return ("missing_counter", message)
    case .InvalidParameter: return ("invalid_parameter", message)
    case .DuplicateParameter: return ("duplicate_parameter", message)
    case .ParameterNotAllowed: return ("parameter_not_allowed", message)
    case .UnsupportedAlgorithm: return ("unsupported_algorithm", message)
    case .IssuerMismatch: return ("issuer_mismatch", message)
    case .InvalidLabel: return ("invalid_label", message)
    case .InvalidPercentEncoding: return ("invalid_percent_encoding", message)
    case .InvalidKeyId: return ("invalid_key_id", message)
    case .UnknownKeyId: return ("unknown_key_id", message)
    case .InvalidKey: return ("invalid_key", message)
    case .InvalidKeySet: return ("invalid_key_set", message)
    case .InvalidDeliveryId: return ("invalid_delivery_id", message)
    case .InvalidCodeFormat: return ("invalid_code_format", message)
    case .UnsafeSettings: return ("unsafe_settings", message)
    case .InvalidCodeCharacter: return ("invalid_code_character", message)
    case .WrongCodeLength: return ("wrong_code_length", message)
    case .InvalidTicket: return ("invalid_ticket", message)
    case .UnsupportedTicketVersion: return ("unsupported_ticket_version", message)
    case .TicketMacMismatch: return ("ticket_mac_mismatch", message)
    case .StateStorage: return ("state_storage", message)
    case .CorruptState: return ("corrupt_state", message)
    case .InvalidReceipt: return ("invalid_receipt", message)
    case .UnsupportedReceiptVersion: return ("unsupported_receipt_version", message)
    case .ReceiptMacMismatch: return ("receipt_mac_mismatch", message)
    case .ReceiptConflict: return ("receipt_conflict", message)
    case .InvalidDeviceKey: return ("invalid_device_key", message)
    case .InvalidRequestSignature: return ("invalid_request_signature", message)
    case .InvalidPolicy: return ("invalid_policy", message)
    case .InvalidOrder: return ("invalid_order", message)
    case .InvalidTemplate: return ("invalid_template", message)
    case .InvalidContact: return ("invalid_contact", message)
    case .InvalidNumber: return ("invalid_number", message)
    case .Overflow: return ("overflow", message)
    }
}

/// A number the vector files write as a string (u64) or as a JSON number.
extension Dictionary where Key == String, Value == Any {
    func num(_ key: String) -> UInt64? {
        if let s = self[key] as? String { return UInt64(s) }
        return (self[key] as? NSNumber)?.uint64Value
    }
}

func codeFormat(_ text: String) -> CodeFormat {
    let parts = text.split(separator: "-")
    let n = Int32(parts[1])!
    return parts[0] == "numeric" ? .numeric(digits: n) : .crockford(length: n)
}

/// Runs `body`, which must throw an `OtpError`, and returns its kind and message.
func expectOtpError(_ context: String, _ body: () throws -> Any) -> (String, String) {
    do {
        _ = try body()
        XCTFail("\(context): no error thrown")
    } catch let error as OtpError {
        return kind(error)
    } catch {
        XCTFail("\(context): unexpected error \(error)")
    }
    return ("", "")
}

// Times in these tests are written as unix seconds: `now: 1_000` is the Date
// 1,000 seconds after 1970, and `now + 10` ten seconds later.
extension Date: @retroactive ExpressibleByIntegerLiteral {
    public init(integerLiteral seconds: Int64) { self.init(timeIntervalSince1970: TimeInterval(seconds)) }
}

/// Whole unix seconds of a date the library returned.
func secs(_ date: Date) -> UInt64 { UInt64(date.timeIntervalSince1970) }
